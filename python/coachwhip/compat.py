"""Other servers' habits: uvicorn's, gunicorn's and granian's flags, uvicorn.run()'s keywords and
UVICORN_* variables, each taken as the coachwhip setting of the same meaning, accepted without
effect (with a note for the log) where coachwhip already behaves so, or refused with one line
that says what to use instead. README.md, "Coming from uvicorn, gunicorn or granian", is the
table of all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from coachwhip.config import (
    OPTION_BY_ATTR,
    ConfigError,
    Option,
    check_headers,
    check_value,
    parse_text,
    suggest,
)


@dataclasses.dataclass(frozen=True)
class Foreign:
    """A flag (or run() keyword) of another server."""

    flags: tuple[str, ...]  # as typed: ("-w",), ("--limit-max-requests",); () for a keyword only
    target: str = ""  # the coachwhip setting it sets
    const: Any = None  # with a target: the flag takes no value and sets the target to this
    refuse: str = ""  # refused: why, and what to use instead
    note: str = ""  # accepted without effect: said once in the log
    check: Callable[[str, str], str] | None = None  # (flag, value) -> note; ConfigError: refused
    value: bool = True  # the flag takes a value (for refused, note and check flags)
    keyword: str = ""  # uvicorn.run()'s keyword for it, also read as UVICORN_<KEYWORD>


def _worker_class(flag: str, value: str) -> str:
    name = value.strip()
    if name in ("coachwhip.workers.CoachwhipWorker", "asgi") or name.startswith(
        ("uvicorn.workers.", "uvicorn_worker.")
    ):
        return f"{flag} {name}: coachwhip serves the app with its own engine; nothing to change"
    if name in ("sync", "gthread") or name.startswith("gunicorn.workers.g"):
        return f"{flag} {name}: coachwhip runs a WSGI app on --threads threads in each worker"
    raise ConfigError(
        f"{flag} {name}: coachwhip has no worker classes; drop {flag} (its engine serves ASGI "
        "and WSGI apps itself: --workers N processes, --threads N for WSGI)"
    )


def _ssl_version(flag: str, value: str) -> str:
    text = value.strip().upper().removeprefix("PROTOCOL_")
    if text in ("2", "16", "17", "TLS", "SSLV23", "TLS_SERVER", "TLS_CLIENT"):
        return ""  # "negotiate the best version": coachwhip does, from TLS 1.2 up
    if text in ("3", "4", "TLSV1", "TLSV1_1"):
        raise ConfigError(
            f"{flag} {value}: coachwhip never accepts TLS 1.0 or 1.1; drop {flag} "
            "(TLS 1.2 and 1.3 are served; --ssl-min-version 1.3 for 1.3 only)"
        )
    if text in ("5", "TLSV1_2"):
        raise ConfigError(
            f"{flag} {value}: coachwhip cannot serve TLS 1.2 only (TLS 1.3 is always on); drop "
            f"{flag} (--ssl-min-version 1.2 is the default)"
        )
    raise ConfigError(
        f"{flag} {value}: expected one of Python's ssl.PROTOCOL_* numbers; coachwhip serves TLS "
        "1.2 and 1.3: drop it, or use --ssl-min-version 1.2|1.3"
    )


def _reload_delay(flag: str, value: str) -> str:
    try:
        float(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected a number of seconds") from None
    return f"{flag}: coachwhip watches files with inotify (no polling): changes are seen at once"


FOREIGN: tuple[Foreign, ...] = (
    # --- the same setting under another name
    Foreign(("-w",), "workers"),
    Foreign(("-b",), "bind"),
    Foreign(("-t", "--timeout"), "timeout_worker_healthcheck"),
    Foreign(("--graceful-timeout",), "timeout_graceful_shutdown"),
    Foreign(("--keep-alive",), "timeout_keep_alive"),
    Foreign(("--limit-max-requests",), "max_requests", keyword="limit_max_requests"),
    Foreign(
        ("--limit-max-requests-jitter",), "max_requests_jitter", keyword="limit_max_requests_jitter"
    ),
    Foreign(
        ("--h11-max-incomplete-event-size",),
        "limit_request_header_size",
        keyword="h11_max_incomplete_event_size",
    ),
    Foreign((), "reload_dir", keyword="reload_dirs"),
    Foreign((), "reload_include", keyword="reload_includes"),
    Foreign((), "reload_exclude", keyword="reload_excludes"),
    Foreign((), "header", keyword="headers"),  # uvicorn.run(headers=[(name, value), ...])
    Foreign(("--reload-paths",), "reload_dir"),
    Foreign(("--ssl-certificate", "--certfile"), "ssl_certfile"),
    Foreign(("--keyfile",), "ssl_keyfile"),
    Foreign(("--ssl-ca", "--ca-certs"), "ssl_ca_certs"),
    Foreign(("--cert-reqs",), "ssl_cert_reqs"),
    Foreign(("--ciphers",), "ssl_ciphers"),
    Foreign(("--ssl-protocol-min",), "ssl_min_version"),
    Foreign(("--blocking-threads",), "threads"),
    Foreign(("--url-path-prefix",), "root_path"),
    Foreign(("--uds-permissions",), "uds_mode"),
    Foreign(("--proxy-allow-from",), "forwarded_allow_ips"),
    Foreign(("--worker-connections",), "max_connections"),
    Foreign(("--log-access",), "access_log"),
    Foreign(("--log-file",), "error_logfile"),
    Foreign(("--working-dir",), "chdir"),
    Foreign(("--env-files",), "env_file"),
    Foreign(("--log-config-json",), "log_config"),  # gunicorn's: a dictConfig in JSON
    Foreign(("--access-logformat",), "access_log_format"),  # gunicorn's atoms
    Foreign(("--access-log-fmt",), "access_log_format"),  # granian's names
    # --- a flag for one value of a setting
    Foreign(("--no-ws",), "ws", const="none"),
    Foreign(("--ssl-client-verify",), "ssl_cert_reqs", const=2),
    Foreign(("--no-ssl-client-verify",), "ssl_cert_reqs", const=0),
    # --- accepted: coachwhip already behaves so
    Foreign(
        ("--http2",),
        note="--http2: HTTP/2 is on with --http auto (the default): h2 by ALPN over TLS, h2c with "
        "prior knowledge on a plain port",
        value=False,
        keyword="http2",
    ),
    Foreign(
        ("--reset-contextvars",),
        note="--reset-contextvars: each request already runs in its own copy of the server's "
        "context; what the lifespan sets is not visible to requests",
        value=False,
        keyword="reset_contextvars",
    ),
    Foreign(("--reload-delay",), check=_reload_delay, keyword="reload_delay"),
    Foreign(
        ("--preload",),
        note="--preload: each coachwhip worker imports the app itself (workers are fresh "
        "interpreters, not forks)",
        value=False,
    ),
    Foreign(("-k", "--worker-class"), check=_worker_class),
    Foreign(("--ssl-version",), check=_ssl_version, keyword="ssl_version"),
    # granian's tuning flags for what coachwhip's engine decides itself
    Foreign(
        ("--blocking-threads-idle-timeout",),
        note="--blocking-threads-idle-timeout: coachwhip's WSGI threads (--threads) live as long "
        "as their worker",
    ),
    Foreign(
        ("--runtime-blocking-threads",),
        note="--runtime-blocking-threads: coachwhip's engine does no blocking work on its I/O "
        "thread; WSGI apps run on --threads N",
    ),
    Foreign(
        ("--task-impl",),
        note="--task-impl: coachwhip runs the app's coroutines as asyncio tasks on --loop's loop",
    ),
    Foreign(
        ("--http1-buffer-size",),
        note="--http1-buffer-size: coachwhip sizes its buffers itself; the request head is "
        "bounded by --limit-request-header-size",
    ),
    Foreign(
        ("--http1-keep-alive",),
        note="--http1-keep-alive: HTTP/1.1 keep-alive is on; --timeout-keep-alive sets how long an "
        "idle connection stays",
        value=False,
    ),
    Foreign(
        ("--http1-pipeline-flush", "--no-http1-pipeline-flush"),
        note="--http1-pipeline-flush: coachwhip writes the responses of pipelined requests in one "
        "write",
        value=False,
    ),
    Foreign(
        ("--http2-adaptive-window", "--no-http2-adaptive-window"),
        note="--http2-adaptive-window: coachwhip's HTTP/2 stream windows are fixed "
        "(--http2-initial-stream-window-size) and reopen as the app reads",
        value=False,
    ),
    Foreign(
        ("--http2-max-send-buffer-size",),
        note="--http2-max-send-buffer-size: coachwhip holds at most 64 KiB of a stream's unsent "
        "output before the app's send() waits",
    ),
    Foreign(("--log",), note="--log: logging is on; --log-level sets how much", value=False),
    Foreign(("--no-log",), "log_level", const="critical"),
    Foreign(
        ("--respawn-failed-workers",),
        note="--respawn-failed-workers: coachwhip's supervisor always replaces a worker that dies",
        value=False,
    ),
    Foreign(
        ("--respawn-interval",),
        note="--respawn-interval: coachwhip replaces a dead worker at once, backing off while it "
        "keeps failing",
    ),
    Foreign(
        ("--rss-sample-interval", "--rss-samples"),
        note="--rss-sample-interval: coachwhip checks --workers-max-rss every second",
    ),
    Foreign(
        ("--metrics-scrape-interval",),
        note="--metrics-scrape-interval: coachwhip's metrics are read when /-/metrics is scraped",
    ),
    Foreign(
        ("--reload-tick",),
        note="--reload-tick: coachwhip watches files with inotify (no polling)",
    ),
    Foreign(
        ("--reload-ignore-worker-failure", "--no-reload-ignore-worker-failure"),
        note="--reload-ignore-worker-failure: coachwhip's --reload keeps watching when a worker "
        "fails to import the app, and restarts it on the next change",
        value=False,
    ),
    # --- refused
    Foreign(
        ("--http1-header-read-timeout",),
        refuse="use --timeout-request-header SECONDS (granian's value is in milliseconds, "
        "coachwhip's in seconds)",
    ),
    Foreign(
        ("--no-http1-keep-alive",),
        refuse="coachwhip keeps HTTP/1.1 connections alive; use --timeout-keep-alive SECONDS to "
        "close idle ones sooner",
        value=False,
    ),
    Foreign(
        ("--http2-keep-alive-interval", "--http2-keep-alive-timeout"),
        refuse="coachwhip sends no HTTP/2 keepalive pings; idle connections get GOAWAY after "
        "--timeout-keep-alive SECONDS",
    ),
    Foreign(
        ("--no-respawn-failed-workers",),
        refuse="coachwhip's supervisor always replaces a worker that dies; drop the flag",
        value=False,
    ),
    Foreign(
        ("--workers-kill-timeout",),
        refuse="use --timeout-graceful-shutdown SECONDS (how long workers may finish before they "
        "are killed)",
    ),
    Foreign(
        ("--ssl-crl",),
        refuse="coachwhip does not check certificate revocation lists; verify client "
        "certificates against --ssl-ca-certs and check revocation in the proxy",
    ),
    Foreign(
        ("--metrics-address", "--metrics-port"),
        refuse="use --metrics-bind HOST:PORT (coachwhip serves /-/metrics there)",
    ),
    Foreign(
        ("--reload-ignore-dirs", "--reload-ignore-paths", "--reload-ignore-patterns"),
        refuse="use --reload-exclude PATTERN (a glob on file names; repeatable)",
    ),
    Foreign(
        ("--process-name",),
        refuse="coachwhip does not rename its processes",
    ),
    Foreign(
        ("-D", "--daemon"),
        refuse="coachwhip runs in the foreground; let systemd, supervisord or the container run "
        "it in the background",
        value=False,
    ),
    Foreign(
        ("-p", "--pid", "--pid-file"),
        refuse="coachwhip writes no pid file; let systemd or the container track the process",
    ),
    Foreign(
        ("-u", "--user", "-g", "--group"),
        refuse="coachwhip does not switch users; start it as that user (systemd User=/Group=, "
        "Docker USER)",
    ),
    Foreign(
        ("--limit-request-field_size", "--limit-request-field-size"),
        refuse="coachwhip limits the whole request head, not each field; use "
        "--limit-request-header-size BYTES",
    ),
    Foreign(
        ("--pythonpath",),
        refuse="coachwhip puts one directory first on sys.path: use --app-dir DIR",
    ),
    Foreign(
        ("--statsd-host",),
        refuse="coachwhip exports Prometheus metrics, not StatsD; use --metrics",
    ),
    Foreign(
        ("--runtime-threads", "--runtime-mode"),
        refuse="coachwhip's engine runs one I/O thread per worker; use --workers N",
    ),
    Foreign(
        ("--backpressure",),
        refuse="coachwhip answers 503 beyond --limit-concurrency N instead of queueing; use "
        "--limit-concurrency N or --max-connections N",
    ),
    Foreign(("--workers-lifetime",), refuse="coachwhip recycles by count; use --max-requests N"),
    Foreign(
        (
            "--static-path-mount",
            "--static-path-route",
            "--static-path-dir-to-file",
            "--static-path-expires",
        ),
        refuse="coachwhip serves no static files itself; serve them from the app or the proxy",
    ),
    Foreign(
        (),
        refuse="coachwhip's TLS is OpenSSL in its engine, not Python's ssl module; use the "
        "ssl_* settings",
        keyword="ssl_context_factory",
    ),
)

BY_KEYWORD: dict[str, Foreign] = {f.keyword: f for f in FOREIGN if f.keyword}
BY_LONG_FLAG: dict[str, Foreign] = {
    flag[2:].replace("-", "_"): f for f in FOREIGN for flag in f.flags if flag.startswith("--")
}
# uvicorn.run()'s keywords; uvicorn's command line reads each as UVICORN_<KEYWORD> too.
UVICORN_KEYWORDS = (
    "host port uds fd loop http http2 ws ws_max_size ws_max_queue ws_ping_interval "
    "ws_ping_timeout ws_per_message_deflate lifespan interface reload reload_dirs "
    "reload_includes reload_excludes reload_delay workers env_file log_config log_level "
    "access_log proxy_headers server_header date_header forwarded_allow_ips root_path "
    "limit_concurrency backlog limit_max_requests limit_max_requests_jitter timeout_keep_alive "
    "timeout_graceful_shutdown timeout_worker_healthcheck ssl_keyfile ssl_certfile "
    "ssl_keyfile_password ssl_version ssl_cert_reqs ssl_ca_certs ssl_ciphers ssl_context_factory "
    "headers use_colors app_dir factory h11_max_incomplete_event_size reset_contextvars"
).split()


# --- run() keywords -------------------------------------------------------------------------


def _unset(keyword: str, value: Any) -> bool:
    """True for uvicorn.run()'s defaults of the keywords coachwhip has no setting for."""
    if isinstance(value, bool):
        return value is False
    return value in (None, [], (), {}) or (keyword, value) in (("reload_delay", 0.25),)


def _python_value(opt: Option, value: Any) -> Any:
    """uvicorn.run()'s Python types as coachwhip's: paths, lists, None for 'the default'."""
    if value is None and opt.attr in ("ws_ping_interval", "ws_ping_timeout"):
        return 0.0  # uvicorn: None turns pings off
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if opt.attr == "header" and isinstance(value, (list, tuple)):
        return [_header_item(v) for v in value]
    if opt.kind == "list" and isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if opt.kind == "list" and isinstance(value, (list, tuple)):
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    if opt.attr == "forwarded_allow_ips" and isinstance(value, (list, tuple)):
        return ",".join(value)
    if opt.attr == "log_level" and isinstance(value, int) and not isinstance(value, bool):
        return "trace" if value <= 5 else logging.getLevelName(value).lower()
    return value


def _header_item(pair: Any) -> Any:
    """uvicorn.run(headers=[(name, value), ...])'s pair as --header's NAME:VALUE (a str stays)."""
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
        if ":" in pair[0]:
            raise ConfigError(
                f"headers {tuple(pair)!r}: {pair[0]!r} is not a valid field name (no ':')"
            )
        return f"{pair[0]}:{pair[1]}"
    if isinstance(pair, str):
        return pair
    raise ConfigError(
        f"headers: expected (name, value) pairs of str, e.g. [('X-Frame-Options', 'DENY')], "
        f"got {pair!r}"
    )


def _checked(opt: Option, keyword: str, value: Any) -> Any:
    """check_value, with a keyword's name in the message and the value it probably meant."""
    try:
        return check_value(opt, value, keyword)
    except ConfigError as exc:
        hint = ""
        if isinstance(value, str) and opt.kind in ("int", "float", "bool"):
            try:
                hint = f"; did you mean {keyword}={parse_text(opt, value, keyword)!r}?"
            except ConfigError:
                pass
        raise ConfigError(f"{exc}{hint}") from None


def from_keywords(keywords: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """run()'s keywords (coachwhip's settings or uvicorn.run()'s) -> (settings, notes)."""
    settings: dict[str, Any] = {}
    notes: list[str] = []
    for keyword, value in keywords.items():
        foreign = BY_KEYWORD.get(keyword)
        if keyword == "app":
            settings["app"] = value
        elif keyword in OPTION_BY_ATTR or (foreign is not None and foreign.target):
            opt = OPTION_BY_ATTR[foreign.target if foreign else keyword]
            value = _python_value(opt, value)
            if value is None and opt.default is not None:
                continue  # uvicorn.run()'s None: coachwhip's default
            settings[opt.attr] = _checked(opt, keyword, value)
        elif foreign is not None:
            if _unset(keyword, value):
                continue
            if foreign.refuse:
                raise ConfigError(f"{keyword}: {foreign.refuse}")
            note = foreign.check(keyword, str(value)) if foreign.check else foreign.note
            if note:
                notes.append(note.replace(foreign.flags[0], keyword, 1))
        else:
            known = [*OPTION_BY_ATTR, *BY_KEYWORD]
            raise ConfigError(f"unknown setting {keyword!r}{suggest(keyword, known)}")
    return settings, notes


# --- UVICORN_* variables --------------------------------------------------------------------


def from_uvicorn_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """uvicorn's UVICORN_<KEYWORD> variables -> (settings, notes)."""
    settings: dict[str, Any] = {}
    notes: list[str] = []
    app = environ.get("UVICORN_APP")
    if app:
        settings["app"] = app
    for keyword in UVICORN_KEYWORDS:
        name = "UVICORN_" + keyword.upper()
        raw = environ.get(name)
        if not raw:
            continue
        where = f"{name}={raw!r}"
        foreign = BY_KEYWORD.get(keyword)
        target = foreign.target if foreign else keyword
        if target:
            opt = OPTION_BY_ATTR[target]
            if opt.kind == "list":  # click splits a multiple option's variable on whitespace
                settings[target] = raw.split()
                if target == "header":
                    check_headers(settings[target], name)
            else:
                settings[target] = parse_text(opt, raw, where)
        elif foreign is not None and foreign.refuse:
            raise ConfigError(f"{name}: {foreign.refuse}")
        elif foreign is not None and foreign.check:
            note = foreign.check(name, raw)
            if note:
                notes.append(note)
        elif foreign is not None and raw.strip().lower() in ("1", "true", "yes", "on"):
            notes.append(foreign.note.replace(foreign.flags[0], name, 1))
    return settings, notes
