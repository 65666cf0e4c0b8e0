"""TLS settings -> the engine's TlsContext, and the ticket secret shared by the workers.

The engine loads and checks the certificate, key and CAs (OpenSSL, in C++); this module only
gathers the --ssl-* settings, turns the engine's refusal into a ConfigError (one line naming the
file), logs what is served, and hands the session-ticket secret from the supervisor to its
workers through an inherited memfd (never on disk, never in the environment).
"""

from __future__ import annotations

import os
from typing import Any

from coachwhip.config import Config, ConfigError
from coachwhip.logs import error_logger

SECRET_ENV = "COACHWHIP_WORKER_TLS_SECRET"  # the fd of the supervisor's memfd
SECRET_BYTES = 32
# What ALPN offers for each --http (most preferred first).
ALPN = {"auto": "h2,http/1.1", "1": "http/1.1", "2": "h2"}


def load(config: Config, secret: bytes | None = None) -> Any:
    """The _core.TlsContext for `config`, or None without --ssl-certfile. Raises ConfigError."""
    if config.ssl_certfile is None:
        return None
    from coachwhip import _core

    try:
        return _core.TlsContext(
            config.ssl_certfile,
            keyfile=config.ssl_keyfile,
            password=config.ssl_keyfile_password,
            ca_certs=config.ssl_ca_certs,
            cert_reqs=config.ssl_cert_reqs,
            ciphers=config.ssl_ciphers,
            min_version=config.ssl_min_version,
            ticket_secret=secret,
            alpn=ALPN[config.http],
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def announce(context: Any) -> None:
    """Logs the certificate served (and any warning about it)."""
    error_logger.info("TLS certificate %s", context.description)
    for warning in context.warnings:
        error_logger.warning("%s", warning)


def make_secret_fd() -> int:
    """A memfd holding a fresh ticket secret, for the supervisor to pass to its workers."""
    fd = os.memfd_create("coachwhip-tls-tickets", os.MFD_CLOEXEC)
    os.write(fd, os.urandom(SECRET_BYTES))
    return fd


def inherited_secret() -> bytes | None:
    """In a worker: the supervisor's ticket secret (the fd is closed after reading)."""
    spec = os.environ.pop(SECRET_ENV, "")
    if not spec.isdigit():
        return None
    fd = int(spec)
    try:
        return os.pread(fd, SECRET_BYTES, 0)
    finally:
        os.close(fd)
