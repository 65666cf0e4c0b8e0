"""Logging set-up: uvicorn-style lines on stderr, through the standard `logging` module.

Loggers: `coachwhip.error` (server messages and app tracebacks) and `coachwhip.access` (one line
per response). Apps may attach their own handlers to either.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from typing import TextIO

from coachwhip.config import ConfigError

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("coachwhip.error")
access_logger = logging.getLogger("coachwhip.access")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(10)
        return super().format(record)


def configure(
    level_name: str,
    access_log: bool,
    access_logfile: str | None = None,
    error_logfile: str | None = None,
) -> None:
    """Lines go to stderr, or as gunicorn's --error-logfile/--access-logfile say: a path (a
    file, reopened when logrotate moves it) or '-' (stderr for the server's log, stdout for
    the access log). Called again, it replaces the handlers it installed."""
    level = TRACE if level_name == "trace" else getattr(logging, level_name.upper())
    parent = logging.getLogger("coachwhip")
    _install(parent, _handler(error_logfile, sys.stderr, "--error-logfile"))
    parent.setLevel(level)
    parent.propagate = False
    if access_logfile is not None:
        _install(access_logger, _handler(access_logfile, sys.stdout, "--access-logfile"))
        access_logger.propagate = False
    else:
        _install(access_logger, None)
        access_logger.propagate = True
    access_logger.disabled = not access_log


def _handler(path: str | None, dash: TextIO, flag: str) -> logging.Handler:
    handler: logging.Handler
    if path is None or path == "-":
        handler = logging.StreamHandler(dash if path == "-" else sys.stderr)
    else:
        try:
            handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: {exc.strerror}") from None
    handler.setFormatter(_Formatter("%(levelprefix)s%(message)s"))
    return handler


def _install(logger: logging.Logger, handler: logging.Handler | None) -> None:
    for old in [h for h in logger.handlers if getattr(h, "_coachwhip", False)]:
        logger.removeHandler(old)
        old.close()
    if handler is not None:
        handler._coachwhip = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def engine_log(level: int, message: str) -> None:
    """Sink for the C++ engine's messages (level is a `logging` level number)."""
    error_logger.log(level, message)
