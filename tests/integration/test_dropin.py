"""Coming from uvicorn, gunicorn or granian (issue 11 §1): every flag of `uvicorn --help` (0.54)
and the gunicorn and granian flags of README.md's table, each with a value, accepted with the
same meaning or refused with one exact line; the config file and its precedence; uvicorn's
variables and run() keywords; the error messages, word for word.

Most rows are checked in this process against the command line's own loader (cli.load_config,
pure Python); one real server per group of accepted flags shows their effects end to end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from coachwhip import compat, envfile, sources
from coachwhip.cli import load_config
from coachwhip.config import Config, ConfigError
from conftest import Serve
from harness import ACCESS_RE, HERE, ServerProcess, free_port, poll, run_cli
from tlscerts import Certs

APP = "apps.dropin_apps:app"
C, K, CA = "cert.pem", "key.pem", "ca.pem"  # TLS files are read at startup, not by the loader
TLS = ("--ssl-certfile", C)
UVICORN = Path(__file__).resolve().parents[2] / "bench" / ".venv" / "bin" / "uvicorn"
GRANIAN = UVICORN.with_name("granian")


@dataclasses.dataclass(frozen=True)
class Accepted:
    """The flag sets these settings; `note` is the line it leaves in the log ("": none)."""

    settings: dict[str, Any]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Refused:
    """Status 2 and exactly this line on stderr (after "coachwhip: error: ")."""

    line: str


Case = tuple[tuple[str, ...], Accepted | Refused]

H1 = "coachwhip's engine parses HTTP/1.1 itself; serving as --http auto (HTTP/1.1 and HTTP/2)"
NO_PID = "coachwhip writes no pid file; let systemd or the container track the process"
NO_USER = (
    "coachwhip does not switch users; start it as that user (systemd User=/Group=, Docker USER)"
)
ONE_THREAD = "coachwhip's engine runs one I/O thread per worker; use --workers N"
LOOPS = "coachwhip runs on uvloop or asyncio; use --loop uvloop"
NO_H2_PINGS = (
    "coachwhip sends no HTTP/2 keepalive pings; idle connections get GOAWAY after "
    "--timeout-keep-alive SECONDS"
)
METRICS_BIND = "use --metrics-bind HOST:PORT (coachwhip serves /-/metrics there)"
RELOAD_EXCLUDE = "use --reload-exclude PATTERN (a glob on file names; repeatable)"

# `uvicorn --help` of uvicorn 0.54, in its order: every flag with a value.
UVICORN_CASES: list[Case] = [
    (("--host", "127.0.0.2"), Accepted({"host": "127.0.0.2"})),
    (("--port", "9001"), Accepted({"port": 9001})),
    (("--uds", "/tmp/cw.sock"), Accepted({"uds": "/tmp/cw.sock"})),
    (("--fd", "3"), Accepted({"fd": 3})),
    (("--reload",), Accepted({"reload": True})),
    (("--reload-dir", "apps"), Accepted({"reload_dir": ["apps"]})),
    (("--reload-include", "*.txt"), Accepted({"reload_include": ["*.txt"]})),
    (("--reload-exclude", "*.tmp"), Accepted({"reload_exclude": ["*.tmp"]})),
    (
        ("--reload-delay", "0.5"),
        Accepted(
            {"reload": False},
            "--reload-delay: coachwhip watches files with inotify (no polling): changes are seen "
            "at once",
        ),
    ),
    (("--workers", "2"), Accepted({"workers": 2})),
    (("--loop", "auto"), Accepted({"loop": "auto"})),
    (("--loop", "asyncio"), Accepted({"loop": "asyncio"})),
    (("--loop", "uvloop"), Accepted({"loop": "uvloop"})),
    (("--loop", "none"), Accepted({"loop": "asyncio"})),
    (("--loop", "zuvloop"), Refused(f"--loop zuvloop: {LOOPS}")),
    (("--http", "auto"), Accepted({"http": "auto"})),
    (
        ("--http", "h11"),
        Accepted({"http": "auto"}, f"--http h11: uvicorn's choice of HTTP/1.1 parser; {H1}"),
    ),
    (
        ("--http", "httptools"),
        Accepted({"http": "auto"}, f"--http httptools: uvicorn's choice of HTTP/1.1 parser; {H1}"),
    ),
    (
        ("--http", "zttp"),
        Accepted({"http": "auto"}, f"--http zttp: uvicorn's choice of HTTP parser; {H1}"),
    ),
    (
        ("--http2",),
        Accepted(
            {"http": "auto"},
            "--http2: HTTP/2 is on with --http auto (the default): h2 by ALPN over TLS, h2c with "
            "prior knowledge on a plain port",
        ),
    ),
    (("--ws", "auto"), Accepted({"ws": "auto"})),
    (("--ws", "websockets"), Accepted({"ws": "websockets"})),  # served as auto, said by run()
    (("--ws", "websockets-sansio"), Accepted({"ws": "websockets-sansio"})),
    (("--ws", "wsproto"), Accepted({"ws": "wsproto"})),
    (("--ws-max-size", "1024"), Accepted({"ws_max_size": 1024})),
    (("--ws-max-queue", "8"), Accepted({"ws_max_queue": 8})),
    (("--ws-ping-interval", "5"), Accepted({"ws_ping_interval": 5.0})),
    (("--ws-ping-timeout", "6"), Accepted({"ws_ping_timeout": 6.0})),
    (("--ws-per-message-deflate", "false"), Accepted({"ws_per_message_deflate": False})),
    (("--lifespan", "off"), Accepted({"lifespan": "off"})),
    (("--interface", "asgi2"), Accepted({"interface": "asgi2"})),
    (("--interface", "wsgi"), Accepted({"interface": "wsgi"})),
    (("--log-config", "log.json"), Accepted({"log_config": "log.json"})),
    (("--log-level", "trace"), Accepted({"log_level": "trace"})),
    (("--access-log",), Accepted({"access_log": True})),
    (("--no-access-log",), Accepted({"access_log": False})),
    (("--use-colors",), Accepted({"use_colors": True})),
    (("--no-use-colors",), Accepted({"use_colors": False})),
    (("--proxy-headers",), Accepted({"proxy_headers": True})),
    (("--no-proxy-headers",), Accepted({"proxy_headers": False})),
    (("--server-header",), Accepted({"server_header": True})),
    (("--no-server-header",), Accepted({"server_header": False})),
    (("--date-header",), Accepted({"date_header": True})),
    (("--no-date-header",), Accepted({"date_header": False})),
    (
        ("--forwarded-allow-ips", "10.0.0.0/8,::1"),
        Accepted({"forwarded_allow_ips": "10.0.0.0/8,::1"}),
    ),
    (("--root-path", "/api"), Accepted({"root_path": "/api"})),
    (("--limit-concurrency", "10"), Accepted({"limit_concurrency": 10})),
    (("--backlog", "64"), Accepted({"backlog": 64})),
    (("--limit-max-requests", "100"), Accepted({"max_requests": 100})),
    (("--limit-max-requests-jitter", "10"), Accepted({"max_requests_jitter": 10})),
    (("--timeout-keep-alive", "7"), Accepted({"timeout_keep_alive": 7.0})),
    (("--timeout-graceful-shutdown", "3"), Accepted({"timeout_graceful_shutdown": 3.0})),
    (("--timeout-worker-healthcheck", "9"), Accepted({"timeout_worker_healthcheck": 9.0})),
    ((*TLS, "--ssl-keyfile", K), Accepted({"ssl_certfile": C, "ssl_keyfile": K})),
    (("--ssl-certfile", C), Accepted({"ssl_certfile": C})),
    ((*TLS, "--ssl-keyfile-password", "pw"), Accepted({"ssl_keyfile_password": "pw"})),
    ((*TLS, "--ssl-version", "17"), Accepted({"ssl_certfile": C})),
    ((*TLS, "--ssl-version", "2"), Accepted({"ssl_certfile": C})),
    (
        (*TLS, "--ssl-version", "5"),
        Refused(
            "--ssl-version 5: coachwhip cannot serve TLS 1.2 only (TLS 1.3 is always on); drop "
            "--ssl-version (--ssl-min-version 1.2 is the default)"
        ),
    ),
    (
        (*TLS, "--ssl-version", "3"),
        Refused(
            "--ssl-version 3: coachwhip never accepts TLS 1.0 or 1.1; drop --ssl-version (TLS 1.2 "
            "and 1.3 are served; --ssl-min-version 1.3 for 1.3 only)"
        ),
    ),
    (
        (*TLS, "--ssl-cert-reqs", "2", "--ssl-ca-certs", CA),
        Accepted({"ssl_cert_reqs": 2, "ssl_ca_certs": CA}),
    ),
    ((*TLS, "--ssl-ca-certs", CA), Accepted({"ssl_ca_certs": CA})),
    ((*TLS, "--ssl-ciphers", "ECDHE+AESGCM"), Accepted({"ssl_ciphers": "ECDHE+AESGCM"})),
    (("--header", "x-a:b"), Accepted({"header": ["x-a:b"]})),
    (("--app-dir", "apps"), Accepted({"app_dir": "apps"})),
    (("--h11-max-incomplete-event-size", "16384"), Accepted({"limit_request_header_size": 16384})),
    (
        ("--reset-contextvars",),
        Accepted(
            {},
            "--reset-contextvars: each request already runs in its own copy of the server's "
            "context; what the lifespan sets is not visible to requests",
        ),
    ),
    (("--factory",), Accepted({"factory": True})),
]

# gunicorn 27's flags of README.md's table.
GUNICORN_CASES: list[Case] = [
    (("-w", "3"), Accepted({"workers": 3})),
    (
        ("-b", ":8080", "-b", "unix:/tmp/cw.sock"),
        Accepted({"bind": [":8080", "unix:/tmp/cw.sock"]}),
    ),
    (("--bind", "127.0.0.1:9002"), Accepted({"bind": ["127.0.0.1:9002"]})),
    (("-t", "0"), Accepted({"timeout_worker_healthcheck": 0.0})),
    (("--timeout", "60"), Accepted({"timeout_worker_healthcheck": 60.0})),
    (("--graceful-timeout", "5"), Accepted({"timeout_graceful_shutdown": 5.0})),
    (("--keep-alive", "2"), Accepted({"timeout_keep_alive": 2.0})),
    (("--access-logfile", "-"), Accepted({"access_logfile": "-"})),
    (("--error-logfile", "err.log"), Accepted({"error_logfile": "err.log"})),
    (("--log-file", "err.log"), Accepted({"error_logfile": "err.log"})),
    (("--threads", "4"), Accepted({"threads": 4})),
    (
        ("-k", "uvicorn.workers.UvicornWorker"),
        Accepted(
            {},
            "-k uvicorn.workers.UvicornWorker: coachwhip serves the app with its own engine; "
            "nothing to change",
        ),
    ),
    (
        ("-k", "uvicorn_worker.UvicornWorker"),
        Accepted(
            {},
            "-k uvicorn_worker.UvicornWorker: coachwhip serves the app with its own engine; "
            "nothing to change",
        ),
    ),
    (
        ("--worker-class", "coachwhip.workers.CoachwhipWorker"),
        Accepted(
            {},
            "--worker-class coachwhip.workers.CoachwhipWorker: coachwhip serves the app with its "
            "own engine; nothing to change",
        ),
    ),
    (
        ("-k", "gthread"),
        Accepted({}, "-k gthread: coachwhip runs a WSGI app on --threads threads in each worker"),
    ),
    (
        ("-k", "gevent"),
        Refused(
            "-k gevent: coachwhip has no worker classes; drop -k (its engine serves ASGI and WSGI "
            "apps itself: --workers N processes, --threads N for WSGI)"
        ),
    ),
    (
        ("--preload",),
        Accepted(
            {},
            "--preload: each coachwhip worker imports the app itself (workers are fresh "
            "interpreters, not forks)",
        ),
    ),
    (("--max-requests", "5"), Accepted({"max_requests": 5})),
    (("--max-requests-jitter", "2"), Accepted({"max_requests_jitter": 2})),
    (("--reuse-port",), Accepted({"reuse_port": True})),
    (("--backlog", "32"), Accepted({"backlog": 32})),
    (("--limit-request-line", "4096"), Accepted({"limit_request_line": 4096})),
    (("--limit-request-fields", "50"), Accepted({"limit_request_fields": 50})),
    (("--proxy-protocol",), Accepted({"proxy_protocol": True})),
    (("--worker-connections", "100"), Accepted({"max_connections": 100})),
    (("--forwarded-allow-ips", "*"), Accepted({"forwarded_allow_ips": "*"})),
    (("--proxy-allow-from", "10.0.0.1"), Accepted({"forwarded_allow_ips": "10.0.0.1"})),
    (("--root-path", "/x"), Accepted({"root_path": "/x"})),
    (("--log-level", "warning"), Accepted({"log_level": "warning"})),
    (("--reload",), Accepted({"reload": True})),
    (("--certfile", C), Accepted({"ssl_certfile": C})),
    ((*TLS, "--keyfile", K), Accepted({"ssl_keyfile": K})),
    (
        (*TLS, "--ca-certs", CA, "--cert-reqs", "1"),
        Accepted({"ssl_ca_certs": CA, "ssl_cert_reqs": 1}),
    ),
    ((*TLS, "--ciphers", "ECDHE+AESGCM"), Accepted({"ssl_ciphers": "ECDHE+AESGCM"})),
    ((*TLS, "--ssl-version", "TLS_SERVER"), Accepted({"ssl_certfile": C})),
    (
        ("--limit-request-field_size", "8190"),
        Refused(
            "--limit-request-field_size: coachwhip limits the whole request head, not each "
            "field; use --limit-request-header-size BYTES"
        ),
    ),
    (
        ("--pythonpath", "src"),
        Refused("--pythonpath: coachwhip puts one directory first on sys.path: use --app-dir DIR"),
    ),
    (
        ("-D",),
        Refused(
            "-D: coachwhip runs in the foreground; let systemd, supervisord or the container run "
            "it in the background"
        ),
    ),
    (
        ("--daemon",),
        Refused(
            "--daemon: coachwhip runs in the foreground; let systemd, "
            "supervisord or the container run it in the background"
        ),
    ),
    (("-p", "app.pid"), Refused(f"-p: {NO_PID}")),
    (("-u", "www-data"), Refused(f"-u: {NO_USER}")),
    (("-g", "www-data"), Refused(f"-g: {NO_USER}")),
    (
        ("--statsd-host", "localhost:8125"),
        Refused("--statsd-host: coachwhip exports Prometheus metrics, not StatsD; use --metrics"),
    ),
    (("--access-logformat", "%(h)s %(r)s"), Accepted({"access_log_format": "%(h)s %(r)s"})),
    (("--log-config", "log.ini"), Accepted({"log_config": "log.ini"})),
    (("--log-config-json", "log.json"), Accepted({"log_config": "log.json"})),
]

# granian 2.8's flags of README.md's table (and granian 1's --log-access).
GRANIAN_CASES: list[Case] = [
    (("--interface", "asgi"), Accepted({"interface": "asgi3", "lifespan": "auto"})),
    (("--interface", "asginl"), Accepted({"interface": "asgi3", "lifespan": "off"})),
    (("--interface", "wsgi"), Accepted({"interface": "wsgi"})),
    (
        ("--interface", "rsgi"),
        Refused(
            "--interface rsgi: coachwhip does not implement RSGI (granian's own interface); use "
            "--interface asgi3 or wsgi"
        ),
    ),
    (("--http", "1"), Accepted({"http": "1"})),
    (("--http", "2"), Accepted({"http": "2"})),
    (("--ws",), Accepted({"ws": "auto"})),
    (("--no-ws",), Accepted({"ws": "none"})),
    (("--workers", "2"), Accepted({"workers": 2})),
    (("--blocking-threads", "4"), Accepted({"threads": 4})),
    (("--loop", "uvloop"), Accepted({"loop": "uvloop"})),
    (("--loop", "rloop"), Refused(f"--loop rloop: {LOOPS}")),
    (
        ("--loop", "winloop"),
        Refused("--loop winloop: coachwhip runs on Linux only; use --loop uvloop"),
    ),
    (("--backlog", "256"), Accepted({"backlog": 256})),
    (("--log-level", "info"), Accepted({"log_level": "info"})),
    (("--access-log",), Accepted({"access_log": True})),
    (("--log-access",), Accepted({"access_log": True})),
    (("--no-log-access",), Accepted({"access_log": False})),
    (("--ssl-certificate", C), Accepted({"ssl_certfile": C})),
    (("--ssl-certificate", C, "--ssl-keyfile", K), Accepted({"ssl_keyfile": K})),
    ((*TLS, "--ssl-keyfile-password", "pw"), Accepted({"ssl_keyfile_password": "pw"})),
    ((*TLS, "--ssl-protocol-min", "tls1.3"), Accepted({"ssl_min_version": "1.3"})),
    ((*TLS, "--ssl-protocol-min", "tls1.2"), Accepted({"ssl_min_version": "1.2"})),
    ((*TLS, "--ssl-ca", CA), Accepted({"ssl_ca_certs": CA})),
    ((*TLS, "--ssl-ca", CA, "--ssl-client-verify"), Accepted({"ssl_cert_reqs": 2})),
    ((*TLS, "--no-ssl-client-verify"), Accepted({"ssl_cert_reqs": 0})),
    (("--url-path-prefix", "/g"), Accepted({"root_path": "/g"})),
    (("--uds", "/tmp/g.sock", "--uds-permissions", "660"), Accepted({"uds_mode": "660"})),
    (("--workers-max-rss", "512"), Accepted({"workers_max_rss": 512})),
    (("--factory",), Accepted({"factory": True})),
    (("--no-factory",), Accepted({"factory": False})),
    (("--reload",), Accepted({"reload": True})),
    (("--reload-paths", "apps"), Accepted({"reload_dir": ["apps"]})),
    (("--runtime-threads", "2"), Refused(f"--runtime-threads: {ONE_THREAD}")),
    (("--runtime-mode", "mt"), Refused(f"--runtime-mode: {ONE_THREAD}")),
    (
        ("--backpressure", "100"),
        Refused(
            "--backpressure: coachwhip answers 503 beyond --limit-concurrency N instead of "
            "queueing; use --limit-concurrency N or --max-connections N"
        ),
    ),
    (
        ("--workers-lifetime", "3600"),
        Refused("--workers-lifetime: coachwhip recycles by count; use --max-requests N"),
    ),
    (
        ("--static-path-mount", "static"),
        Refused(
            "--static-path-mount: coachwhip serves no static files itself; serve them from the "
            "app or the proxy"
        ),
    ),
    (("--pid-file", "app.pid"), Refused(f"--pid-file: {NO_PID}")),
    (("--access-log-fmt", "[%(time)s]"), Accepted({"access_log_format": "[%(time)s]"})),
    (("--log-config", "log.json"), Accepted({"log_config": "log.json"})),
    (("--host", "127.0.0.2", "--port", "8001"), Accepted({"host": "127.0.0.2", "port": 8001})),
    (("--http2-max-concurrent-streams", "50"), Accepted({"http2_max_concurrent_streams": 50})),
    (("--http2-max-frame-size", "32768"), Accepted({"http2_max_frame_size": 32768})),
    (("--http2-max-headers-size", "32768"), Accepted({"http2_max_headers_size": 32768})),
    (
        ("--http2-initial-stream-window-size", "65535"),
        Accepted({"http2_initial_stream_window_size": 65535}),
    ),
    (
        ("--http2-initial-connection-window-size", "2097152"),
        Accepted({"http2_initial_connection_window_size": 2097152}),
    ),
    (("--env-files", ".env"), Refused("--env-file .env: No such file or directory")),
    (("--metrics",), Accepted({"metrics": True})),
    (("--no-metrics",), Accepted({"metrics": False})),
    (("--no-reload",), Accepted({"reload": False})),
    (("--no-access-log",), Accepted({"access_log": False})),
    (("--no-log",), Accepted({"log_level": "critical"})),
    (("--log",), Accepted({}, "--log: logging is on; --log-level sets how much")),
    (
        ("--blocking-threads-idle-timeout", "30"),
        Accepted(
            {},
            "--blocking-threads-idle-timeout: coachwhip's WSGI threads (--threads) live as long "
            "as their worker",
        ),
    ),
    (
        ("--runtime-blocking-threads", "64"),
        Accepted(
            {},
            "--runtime-blocking-threads: coachwhip's engine does no blocking work on its I/O "
            "thread; WSGI apps run on --threads N",
        ),
    ),
    (
        ("--task-impl", "rust"),
        Accepted(
            {},
            "--task-impl: coachwhip runs the app's coroutines as asyncio tasks on --loop's loop",
        ),
    ),
    (
        ("--http1-buffer-size", "65536"),
        Accepted(
            {},
            "--http1-buffer-size: coachwhip sizes its buffers itself; the request head is "
            "bounded by --limit-request-header-size",
        ),
    ),
    (
        ("--http1-keep-alive",),
        Accepted(
            {},
            "--http1-keep-alive: HTTP/1.1 keep-alive is on; --timeout-keep-alive sets how long "
            "an idle connection stays",
        ),
    ),
    (
        ("--no-http1-pipeline-flush",),
        Accepted(
            {},
            "--no-http1-pipeline-flush: coachwhip writes the responses of pipelined requests in "
            "one write",
        ),
    ),
    (
        ("--http1-pipeline-flush",),
        Accepted(
            {},
            "--http1-pipeline-flush: coachwhip writes the responses of pipelined requests in "
            "one write",
        ),
    ),
    (
        ("--http2-adaptive-window",),
        Accepted(
            {},
            "--http2-adaptive-window: coachwhip's HTTP/2 stream windows are fixed "
            "(--http2-initial-stream-window-size) and reopen as the app reads",
        ),
    ),
    (
        ("--no-http2-adaptive-window",),
        Accepted(
            {},
            "--no-http2-adaptive-window: coachwhip's HTTP/2 stream windows are fixed "
            "(--http2-initial-stream-window-size) and reopen as the app reads",
        ),
    ),
    (
        ("--http2-max-send-buffer-size", "409600"),
        Accepted(
            {},
            "--http2-max-send-buffer-size: coachwhip holds at most 64 KiB of a stream's unsent "
            "output before the app's send() waits",
        ),
    ),
    (
        ("--respawn-failed-workers",),
        Accepted(
            {},
            "--respawn-failed-workers: coachwhip's supervisor always replaces a worker that dies",
        ),
    ),
    (
        ("--respawn-interval", "3.5"),
        Accepted(
            {},
            "--respawn-interval: coachwhip replaces a dead worker at once, backing off while it "
            "keeps failing",
        ),
    ),
    (
        ("--rss-sample-interval", "30"),
        Accepted({}, "--rss-sample-interval: coachwhip checks --workers-max-rss every second"),
    ),
    (
        ("--rss-samples", "1"),
        Accepted({}, "--rss-samples: coachwhip checks --workers-max-rss every second"),
    ),
    (
        ("--metrics-scrape-interval", "15"),
        Accepted(
            {},
            "--metrics-scrape-interval: coachwhip's metrics are read when /-/metrics is scraped",
        ),
    ),
    (
        ("--reload-tick", "50"),
        Accepted({}, "--reload-tick: coachwhip watches files with inotify (no polling)"),
    ),
    (
        ("--reload-ignore-worker-failure",),
        Accepted(
            {},
            "--reload-ignore-worker-failure: coachwhip's --reload keeps watching when a worker "
            "fails to import the app, and restarts it on the next change",
        ),
    ),
    (
        ("--no-reload-ignore-worker-failure",),
        Accepted(
            {},
            "--no-reload-ignore-worker-failure: coachwhip's --reload keeps watching when a "
            "worker fails to import the app, and restarts it on the next change",
        ),
    ),
    (
        ("--http1-header-read-timeout", "30000"),
        Refused(
            "--http1-header-read-timeout: use --timeout-request-header SECONDS (granian's value "
            "is in milliseconds, coachwhip's in seconds)"
        ),
    ),
    (
        ("--no-http1-keep-alive",),
        Refused(
            "--no-http1-keep-alive: coachwhip keeps HTTP/1.1 connections alive; use "
            "--timeout-keep-alive SECONDS to close idle ones sooner"
        ),
    ),
    (
        ("--http2-keep-alive-interval", "10000"),
        Refused(f"--http2-keep-alive-interval: {NO_H2_PINGS}"),
    ),
    (("--http2-keep-alive-timeout", "20"), Refused(f"--http2-keep-alive-timeout: {NO_H2_PINGS}")),
    (
        ("--no-respawn-failed-workers",),
        Refused(
            "--no-respawn-failed-workers: coachwhip's supervisor always replaces a worker that "
            "dies; drop the flag"
        ),
    ),
    (
        ("--workers-kill-timeout", "10"),
        Refused(
            "--workers-kill-timeout: use --timeout-graceful-shutdown SECONDS (how long workers "
            "may finish before they are killed)"
        ),
    ),
    (
        ("--ssl-crl", "crl.pem"),
        Refused(
            "--ssl-crl: coachwhip does not check certificate revocation lists; verify client "
            "certificates against --ssl-ca-certs and check revocation in the proxy"
        ),
    ),
    (("--metrics-address", "0.0.0.0"), Refused(f"--metrics-address: {METRICS_BIND}")),
    (("--metrics-port", "9090"), Refused(f"--metrics-port: {METRICS_BIND}")),
    (("--reload-ignore-dirs", "x"), Refused(f"--reload-ignore-dirs: {RELOAD_EXCLUDE}")),
    (("--reload-ignore-paths", "x"), Refused(f"--reload-ignore-paths: {RELOAD_EXCLUDE}")),
    (("--reload-ignore-patterns", "x"), Refused(f"--reload-ignore-patterns: {RELOAD_EXCLUDE}")),
    (
        ("--process-name", "web"),
        Refused("--process-name: coachwhip does not rename its processes"),
    ),
    (
        ("--static-path-route", "/static"),
        Refused(
            "--static-path-route: coachwhip serves no static files itself; serve them from the "
            "app or the proxy"
        ),
    ),
    (
        ("--static-path-dir-to-file", "index.html"),
        Refused(
            "--static-path-dir-to-file: coachwhip serves no static files itself; serve them from "
            "the app or the proxy"
        ),
    ),
    (
        ("--static-path-expires", "3600"),
        Refused(
            "--static-path-expires: coachwhip serves no static files itself; serve them from the "
            "app or the proxy"
        ),
    ),
]

# Every option of `granian --help` (2.8.7), each name as its flag; `--no-X` forms count for X.
GRANIAN_HELP_FLAGS = """
--host --port --uds --uds-permissions --interface --http --ws --workers --blocking-threads
--blocking-threads-idle-timeout --runtime-threads --runtime-blocking-threads --runtime-mode --loop
--task-impl --backlog --backpressure --http1-buffer-size --http1-header-read-timeout
--http1-keep-alive --http1-pipeline-flush --http2-adaptive-window
--http2-initial-connection-window-size --http2-initial-stream-window-size
--http2-keep-alive-interval --http2-keep-alive-timeout --http2-max-concurrent-streams
--http2-max-frame-size --http2-max-headers-size --http2-max-send-buffer-size --log --log-level
--log-config --access-log --access-log-fmt --ssl-certificate --ssl-keyfile --ssl-keyfile-password
--ssl-protocol-min --ssl-ca --ssl-crl --ssl-client-verify --url-path-prefix
--respawn-failed-workers --respawn-interval --rss-sample-interval --rss-samples --workers-lifetime
--workers-max-rss --workers-kill-timeout --factory --working-dir --env-files --static-path-route
--static-path-mount --static-path-dir-to-file --static-path-expires --metrics
--metrics-scrape-interval --metrics-address --metrics-port --reload --reload-paths
--reload-ignore-dirs --reload-ignore-patterns --reload-ignore-paths --reload-tick
--reload-ignore-worker-failure --process-name --pid-file --version --help
""".split()

UVICORN_HELP_FLAGS = """
--host --port --uds --fd --reload --reload-dir --reload-include --reload-exclude --reload-delay
--workers --loop --http --http2 --ws --ws-max-size --ws-max-queue --ws-ping-interval
--ws-ping-timeout --ws-per-message-deflate --lifespan --interface --env-file --log-config
--log-level --access-log --use-colors --proxy-headers --server-header --date-header
--forwarded-allow-ips --root-path --limit-concurrency --backlog --limit-max-requests
--limit-max-requests-jitter --timeout-keep-alive --timeout-graceful-shutdown
--timeout-worker-healthcheck --ssl-keyfile --ssl-certfile --ssl-keyfile-password --ssl-version
--ssl-cert-reqs --ssl-ca-certs --ssl-ciphers --header --version --app-dir
--h11-max-incomplete-event-size --reset-contextvars --factory --help
""".split()
# tested by their own tests below
ELSEWHERE = {"--env-file", "--version", "--help", "--working-dir"}


def outcome(argv: tuple[str, ...], directory: Path, environ: dict[str, str] | None = None) -> Any:
    """The Config of `coachwhip ARGV APP`, or the one line it fails with."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return load_config([*argv, APP], {} if environ is None else environ, str(directory))
    except SystemExit as exc:
        assert exc.code == 2, f"status {exc.code}: {err.getvalue()}"
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, f"expected one line: {err.getvalue()!r}"
        return lines[0]
    except ConfigError as exc:  # main() prints these as one line, status 2
        return f"coachwhip: error: {exc}"


def check_case(argv: tuple[str, ...], expected: Accepted | Refused, tmp_path: Path) -> None:
    got = outcome(argv, tmp_path)
    if isinstance(expected, Refused):
        assert got == f"coachwhip: error: {expected.line}"
        return
    assert isinstance(got, Config), got
    for attr, value in expected.settings.items():
        assert getattr(got, attr) == value, attr
    assert got.notes == ([expected.note] if expected.note else [])
    assert got.warnings == []


def ids(cases: list[Case]) -> list[str]:
    return [" ".join(argv) for argv, _ in cases]


@pytest.mark.parametrize(("argv", "expected"), UVICORN_CASES, ids=ids(UVICORN_CASES))
def test_uvicorn_flag(argv: tuple[str, ...], expected: Accepted | Refused, tmp_path: Path) -> None:
    check_case(argv, expected, tmp_path)


@pytest.mark.parametrize(("argv", "expected"), GUNICORN_CASES, ids=ids(GUNICORN_CASES))
def test_gunicorn_flag(argv: tuple[str, ...], expected: Accepted | Refused, tmp_path: Path) -> None:
    check_case(argv, expected, tmp_path)


@pytest.mark.parametrize(("argv", "expected"), GRANIAN_CASES, ids=ids(GRANIAN_CASES))
def test_granian_flag(argv: tuple[str, ...], expected: Accepted | Refused, tmp_path: Path) -> None:
    check_case(argv, expected, tmp_path)


@pytest.mark.parametrize(
    ("cases", "help_flags", "binary"),
    [
        pytest.param(UVICORN_CASES, UVICORN_HELP_FLAGS, UVICORN, id="uvicorn 0.54"),
        pytest.param(GRANIAN_CASES, GRANIAN_HELP_FLAGS, GRANIAN, id="granian 2.8.7"),
    ],
)
def test_the_table_has_every_flag_of_the_servers_help(
    cases: list[Case], help_flags: list[str], binary: Path
) -> None:
    covered = {arg for argv, _ in cases for arg in argv if arg.startswith("--")}
    covered |= {f"--{arg[5:]}" for arg in covered if arg.startswith("--no-")}
    missing = [flag for flag in help_flags if flag not in covered | ELSEWHERE]
    assert missing == []
    if not binary.exists():
        return  # the benchmark's virtualenv is not there: the list above is that version's
    done = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
    live = set(re.findall(r"^\s+(--[a-z0-9-]+)", done.stdout, re.MULTILINE))
    assert live <= set(help_flags), f"{binary.name} has new flags: {live - set(help_flags)}"


def test_granian_variables_are_read_as_its_flags(tmp_path: Path) -> None:
    environ = {
        "GRANIAN_WORKERS": "3",
        "GRANIAN_WEBSOCKETS": "false",  # --no-ws
        "GRANIAN_LOG_ACCESS_ENABLED": "Yes",
        "GRANIAN_RELOAD_PATHS": "apps lib",  # a repeatable option: split on whitespace
        "GRANIAN_TASK_IMPL": "rust",
        "GRANIAN_FACTORY": "0",  # false, with no --no- form used: the default
        "GRANIAN_BLOCKING_THREADS": "",  # empty: unset, as click has it
        "GRANIAN_NOT_AN_OPTION": "1",  # ignored, as granian ignores it
    }
    config = outcome((), tmp_path, environ)
    assert isinstance(config, Config)
    assert (config.workers, config.ws, config.access_log) == (3, "none", True)
    assert (config.reload_dir, config.factory, config.threads) == (["apps", "lib"], False, 8)
    assert config.notes == [
        "--task-impl: coachwhip runs the app's coroutines as asyncio tasks on --loop's loop "
        "(from GRANIAN_TASK_IMPL)"
    ]


def test_granian_variables_rank_below_flags_and_coachwhip_variables(tmp_path: Path) -> None:
    environ = {"GRANIAN_WORKERS": "3", "GRANIAN_BACKLOG": "99", "GRANIAN_PORT": "8123"}
    (tmp_path / "pyproject.toml").write_text("[tool.coachwhip]\nport = 9000\nbacklog = 7\n")
    config = outcome(("--workers", "5"), tmp_path, {**environ, "COACHWHIP_BACKLOG": "11"})
    assert isinstance(config, Config)
    assert (config.workers, config.backlog, config.port) == (5, 11, 8123)


@pytest.mark.parametrize(
    ("variable", "line"),
    [
        (
            "GRANIAN_WEBSOCKETS=maybe",
            "GRANIAN_WEBSOCKETS='maybe': expected a boolean (1/0, true/false, yes/no, on/off), "
            "as for granian's --ws",
        ),
        ("GRANIAN_PORT=abc", "GRANIAN_PORT='abc': --port 'abc': expected a whole number"),
        (
            "GRANIAN_METRICS_PORT=9090",
            f"GRANIAN_METRICS_PORT='9090': --metrics-port: {METRICS_BIND}",
        ),
        (
            "GRANIAN_INTERFACE=rsgi",
            "--interface rsgi: coachwhip does not implement RSGI "
            "(granian's own interface); use --interface asgi3 or wsgi",
        ),
    ],
)
def test_a_bad_granian_variable_is_named(variable: str, line: str, tmp_path: Path) -> None:
    name, _, value = variable.partition("=")
    assert outcome((), tmp_path, {name: value}) == f"coachwhip: error: {line}"


def test_gunicorn_cmd_args_rank_below_the_command_line(tmp_path: Path) -> None:
    environ = {"GUNICORN_CMD_ARGS": "-w 3 --keep-alive 4 -k uvicorn.workers.UvicornWorker"}
    config = outcome(("--keep-alive", "9"), tmp_path, environ)
    assert isinstance(config, Config)
    assert (config.workers, config.timeout_keep_alive) == (3, 9.0)
    assert config.notes == [
        "-k uvicorn.workers.UvicornWorker: coachwhip serves the app with its own engine; nothing "
        "to change",
        "Flags read from GUNICORN_CMD_ARGS",
    ]


def test_dirs_and_files_flags(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    config = outcome(("--chdir", str(tmp_path / "work")), tmp_path)
    assert isinstance(config, Config) and config.chdir == str(tmp_path / "work")
    config = outcome(("--working-dir", str(tmp_path / "work")), tmp_path)
    assert isinstance(config, Config) and config.chdir == str(tmp_path / "work")
    assert outcome(("--chdir", str(tmp_path / "nope")), tmp_path) == (
        f"coachwhip: error: --chdir {str(tmp_path / 'nope')!r} is not a directory"
    )
    environ: dict[str, str] = {}
    config = outcome(("-e", "CW_A=1", "--env", "CW_B=x=y"), tmp_path, environ)
    assert isinstance(config, Config)
    assert environ == {"CW_A": "1", "CW_B": "x=y"}
    assert outcome(("-e", "CW_A"), tmp_path) == "coachwhip: error: -e 'CW_A': expected KEY=VALUE"


# --- errors: never the value, never an abbreviation, a suggestion only when close -------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("--worker", "2"), "unknown flag --worker; did you mean --workers?"),
        (("--wokers", "2"), "unknown flag --wokers; did you mean --workers?"),
        (
            ("--timout-keep-alive", "2"),
            "unknown flag --timout-keep-alive; did you mean --timeout-keep-alive?",
        ),
        (("--root_path", "/x"), "unknown flag --root_path; did you mean --root-path?"),
        (("--root", "/x"), "unknown flag --root"),  # no abbreviation, nothing close
        (("--no-such-flag", "cfg.json"), "unknown flag --no-such-flag"),
        (("--frobnicate=3",), "unknown flag --frobnicate"),
        (("-x",), "unknown flag -x"),
    ],
)
def test_unknown_flag_is_named_with_a_close_suggestion(
    argv: tuple[str, ...], line: str, tmp_path: Path
) -> None:
    assert outcome(argv, tmp_path) == f"coachwhip: error: {line} (see coachwhip --help)"


def test_a_flags_value_is_never_blamed() -> None:
    # The issue's example: a flag before the app used to report "--log-config main:app".
    result = run_cli("--cw-unknown", "cfg.json", "apps.raw:app", timeout=15)
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [
        "coachwhip: error: unknown flag --cw-unknown (see coachwhip --help)"
    ]
    # --log-config takes its value: the file is what is wrong, never the app's name.
    result = run_cli("--log-config", "cfg.json", "apps.raw:app", timeout=15)
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [
        "coachwhip: error: --log-config cfg.json: cannot read it (No such file or directory)"
    ]


def test_a_second_positional_argument_is_one_line(tmp_path: Path) -> None:
    assert outcome(("other:app",), tmp_path) == (
        "coachwhip: error: unexpected argument 'apps.dropin_apps:app': give one "
        "MODULE:ATTRIBUTE (see coachwhip --help)"
    )


def test_unknown_and_refused_flags_from_the_real_command_line() -> None:
    result = run_cli("--port", "0", "--worker", "2", "apps.raw:app", timeout=15)
    assert result.returncode == 2
    assert result.stderr_lines == [
        "coachwhip: error: unknown flag --worker; did you mean --workers? (see coachwhip --help)"
    ]
    result = run_cli("--header", "x-a", "apps.raw:app", timeout=15)
    assert result.returncode == 2
    assert result.stderr_lines == [
        "coachwhip: error: --header 'x-a': expected NAME:VALUE, with a ':' after the name; e.g. "
        "--header 'X-Frame-Options: DENY'"
    ]
    assert result.stdout == ""


# --- real servers: each group of accepted flags, with effects that are cheap to see ----------


def test_uvicorn_command_line_serves(serve: Serve, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('export CW_FROM_FILE="from env file"\nCW_KEPT=file\n')
    server = serve(
        APP,
        *("--host", "127.0.0.1", "--http", "h11", "--http2", "--ws", "wsproto"),
        *("--loop", "none", "--lifespan", "on", "--interface", "asgi3", "--reload-delay", "0.5"),
        *("--reset-contextvars", "--timeout-keep-alive", "7", "--root-path", "/api"),
        *("--h11-max-incomplete-event-size", "16384", "--no-use-colors", "--backlog", "64"),
        *("--limit-concurrency", "100", "--ws-max-size", "1024", "--proxy-headers"),
        *("--env-file", str(env_file), "--timeout-graceful-shutdown", "3"),
        env={"CW_KEPT": "environment"},
    )
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/scope").json() == {"root_path": "/api"}
        assert client.get("/env/CW_FROM_FILE").text == "from env file"
        assert client.get("/env/CW_KEPT").text == "environment"  # set variables win
        assert client.get("/context").text == "unset"  # --reset-contextvars: as always
    for note in (
        f"--http h11: uvicorn's choice of HTTP/1.1 parser; {H1}",
        "--http2: HTTP/2 is on with --http auto",
        "--ws wsproto: coachwhip's WebSocket is built into its engine; serving as --ws auto",
        f"Loaded 1 environment variable(s) from {env_file} (1 already set, kept)",
    ):
        assert server.find_line(r"^INFO: +" + re.escape(note)), f"{note!r} not in the log"
    assert server.stop() == 0


def test_uvicorn_limit_max_requests_replaces_the_worker(serve: Serve) -> None:
    # uvicorn alone exits after N requests; coachwhip's supervisor replaces the worker instead.
    server = serve(APP, "--limit-max-requests", "3", "--limit-max-requests-jitter", "0")
    for _ in range(4):
        assert httpx.get(server.url + "/", timeout=5, headers={"connection": "close"}).text == "/"
    server.wait_for_line(r"^INFO: +Replacing worker \[\d+\]: max-requests \(3 served\)", 10)
    assert httpx.get(server.url + "/", timeout=5).text == "/"
    assert server.stop() == 0


def test_gunicorn_command_line_serves(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    access = tmp_path / "access.log"
    server = serve(
        APP,
        *("-w", "2", "-b", f"127.0.0.1:{port}", "-t", "0", "--graceful-timeout", "5"),
        *("--keep-alive", "2", "-k", "uvicorn.workers.UvicornWorker", "--threads", "2"),
        *("--access-logfile", str(access), "--error-logfile", "-", "-e", "CW_FROM_E=e"),
        *("--chdir", str(HERE), "--preload", "--max-requests-jitter", "0"),
        port=None,
        cwd=tmp_path,  # the app is found through --chdir
    )
    assert server.port == port
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/env/CW_FROM_E").text == "e"
        assert client.get("/ok").status_code == 200
    poll(lambda: "GET /ok HTTP/1.1" in access.read_text(), 5, what="the access line in the file")
    assert not server.find_line(ACCESS_RE), "access lines must go to --access-logfile only"
    assert server.find_line(
        r"^INFO: +-k uvicorn\.workers\.UvicornWorker: coachwhip serves the app with its own engine"
    )
    assert server.stop() == 0


def test_gunicorn_error_logfile_takes_the_servers_log(serve: Serve, tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    server = serve(APP, "--error-logfile", str(log), "--access-logfile", "-", ready=None)
    poll(lambda: log.exists() and "Listening on" in log.read_text(), 15, what="the ready line")
    port = int(re.findall(r"Listening on http://127\.0\.0\.1:(\d+)", log.read_text())[0])
    assert httpx.get(f"http://127.0.0.1:{port}/ok", timeout=5).status_code == 200
    poll(lambda: server.find_line(ACCESS_RE), 5, what="the access line on stdout")
    assert not server.find_line("Listening on")
    assert server.stop() == 0


def test_granian_command_line_serves(serve: Serve, certs: Certs) -> None:
    server = serve(
        APP,
        *("--interface", "asgi", "--http", "1", "--ws", "--workers", "1"),
        *("--blocking-threads", "2", "--log-access", "--url-path-prefix", "/g"),
        *("--ssl-certificate", str(certs.ecdsa.chain), "--ssl-keyfile", str(certs.ecdsa.key)),
        *("--ssl-protocol-min", "tls1.2", "--backlog", "256"),
        ready=r"Listening on https://([\d.]+):(\d+)",
    )
    port = int(server.wait_for_line(r"Listening on https://[\d.]+:(\d+)").group(1))
    response = httpx.get(f"https://127.0.0.1:{port}/scope", verify=False, timeout=5)
    assert response.json() == {"root_path": "/g"}
    assert response.http_version == "HTTP/1.1"
    assert server.find_line(r"Interface: asgi3")
    assert server.stop() == 0


def test_granian_variables_serve(serve: Serve, certs: Certs) -> None:
    """The same setup as above, from a granian Dockerfile's ENV lines."""
    server = serve(
        APP,
        env={
            "GRANIAN_INTERFACE": "asgi",
            "GRANIAN_HTTP": "1",
            "GRANIAN_URL_PATH_PREFIX": "/env",
            "GRANIAN_SSL_CERTIFICATE": str(certs.ecdsa.chain),
            "GRANIAN_SSL_KEYFILE": str(certs.ecdsa.key),
            "GRANIAN_LOG_ACCESS_ENABLED": "true",
        },
        ready=r"Listening on https://([\d.]+):(\d+)",
    )
    port = int(server.wait_for_line(r"Listening on https://[\d.]+:(\d+)").group(1))
    response = httpx.get(f"https://127.0.0.1:{port}/scope", verify=False, timeout=5)
    assert response.json() == {"root_path": "/env"}
    assert response.http_version == "HTTP/1.1"
    assert server.find_line(r"Interface: asgi3")
    assert server.wait_for_line(r'"GET /scope HTTP/1.1" 200')
    assert server.stop() == 0


# --- config files ---------------------------------------------------------------------------


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.coachwhip]\nworkers = 2\ntimeout-keep-alive = 9\n'
        'root_path = "/file"\nbacklog = "100"\nhttp = 2\nbind = ":7000"\n'
    )
    environ = {"COACHWHIP_TIMEOUT_KEEP_ALIVE": "8", "COACHWHIP_ROOT_PATH": "/env"}
    config = outcome(("--root-path", "/flag"), tmp_path, environ)
    assert isinstance(config, Config)
    assert config.root_path == "/flag"  # flag > env
    assert config.timeout_keep_alive == 8.0  # env > file
    assert config.workers == 2 and config.backlog == 100  # file > default
    assert config.http == "2" and config.bind == [":7000"]
    assert config.max_requests == 0  # default
    assert config.notes == ["Settings read from pyproject.toml [tool.coachwhip]"]
    # uvicorn's variables rank below coachwhip's, above the file
    environ = {"UVICORN_WORKERS": "3", "UVICORN_TIMEOUT_KEEP_ALIVE": "4"}
    config = outcome((), tmp_path, {**environ, "COACHWHIP_TIMEOUT_KEEP_ALIVE": "6"})
    assert isinstance(config, Config)
    assert (config.workers, config.timeout_keep_alive) == (3, 6.0)


def test_config_file_flag_replaces_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.coachwhip]\nworkers = 2\nbacklog = 99\n")
    (tmp_path / "cw.toml").write_text(
        'app = "main:app"\nworkers = 5\nreload-dir = "src"\nkeep-alive = 3\nproxy-headers = false\n'
    )
    config = load_config(["-c", str(tmp_path / "cw.toml")], {}, str(tmp_path))
    assert (config.app, config.workers, config.backlog) == ("main:app", 5, 2048)
    assert config.reload_dir == ["src"] and config.timeout_keep_alive == 3.0
    assert config.proxy_headers is False
    assert config.notes == [f"Settings read from {tmp_path / 'cw.toml'}"]
    environ = {"COACHWHIP_CONFIG": str(tmp_path / "cw.toml")}
    assert load_config([], environ, str(tmp_path)).workers == 5


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("wokers = 2\n", "{f}: wokers: unknown setting; did you mean 'workers'?"),
        ("workers = 'two'\n", "{f}: workers = 'two': expected a whole number"),
        ("workers = 1.5\n", "{f}: workers: expected int, got float 1.5"),
        ("http = 3\n", "{f}: http = 3: expected one of auto, 1, 2, h11, httptools, zttp"),
        (
            "forwarded-allow-ips = '10.0.0.1/8'\n",
            "{f}: forwarded-allow-ips: '10.0.0.1/8' is not an IP address or CIDR",
        ),
        ("workers = \n", "{f}: not valid TOML: Invalid value (at line 1, column 11)"),
    ],
)
def test_config_file_errors_name_the_file_and_key(text: str, line: str, tmp_path: Path) -> None:
    path = tmp_path / "cw.toml"
    path.write_text(text)
    assert outcome(("-c", str(path)), tmp_path) == "coachwhip: error: " + line.format(f=path)


def test_missing_config_file(tmp_path: Path) -> None:
    assert outcome(("-c", "nope.toml"), tmp_path) == "coachwhip: error: -c nope.toml: no such file"


GUNICORN_CONF = """\
import multiprocessing
workers = multiprocessing.cpu_count() * 2 + 1
bind = "0.0.0.0:8000"
keepalive = 5
preload_app = True
raw_env = ["A=1"]
def post_fork(server, worker):
    pass
"""
GUNICORN_TRANSLATION = (
    "workers = multiprocessing.cpu_count() * 2 + 1 -> --workers N; bind = '0.0.0.0:8000' -> "
    "--bind 0.0.0.0:8000; keepalive = 5 -> --timeout-keep-alive 5; raw_env = ['A=1'] -> -e A=1; "
    "no equivalent: post_fork"
)


def test_gunicorn_conf_py_is_refused_with_its_translation(tmp_path: Path) -> None:
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(GUNICORN_CONF)
    assert outcome(("-c", str(path)), tmp_path) == (
        f"coachwhip: error: -c {path}: coachwhip reads TOML config files, not "
        "gunicorn's Python ones; put its settings on the command line or in a TOML file "
        f"({GUNICORN_TRANSLATION})"
    )


def test_gunicorn_conf_py_next_to_the_app_is_one_warning(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    server = serve(APP, "--app-dir", str(HERE), cwd=tmp_path)
    warnings = [line for line in server.lines if line.startswith("WARNING")]
    assert warnings == [
        "WARNING:  coachwhip does not read gunicorn.conf.py (gunicorn's Python config): put its "
        "settings on the command line or under [tool.coachwhip] in pyproject.toml "
        f"({GUNICORN_TRANSLATION})"
    ]
    assert server.stop() == 0


def test_pyproject_is_read_by_a_real_server(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.coachwhip]\napp-dir = "{HERE}"\nroot-path = "/from-file"\nno-such = 1\n'
    )
    result = run_cli("--port", "0", APP, cwd=tmp_path, timeout=15)
    assert result.returncode == 2
    assert result.stderr_lines == [
        "coachwhip: error: pyproject.toml [tool.coachwhip]: no-such: unknown setting"
    ]
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.coachwhip]\napp-dir = "{HERE}"\nroot-path = "/from-file"\n'
    )
    server = serve(APP, cwd=tmp_path)
    assert httpx.get(server.url + "/scope", timeout=5).json() == {"root_path": "/from-file"}
    assert server.find_line(r"^INFO: +Settings read from pyproject\.toml \[tool\.coachwhip\]$")
    assert server.stop() == 0


# --- --env-file -------------------------------------------------------------------------------


def test_env_file_syntax() -> None:
    text = (
        "# a comment\n\nA=1\nexport B = two words  # trailing comment\nC='literal ${A} \\n'\n"
        'D="escaped ${A}\\tx"\nE="two\nlines"\nF=${B}-${NOPE:-default}-${HOME}\nnot a line\n'
        "G=\nH=a#b\n"
    )
    found, warnings = envfile.parse(text, {"HOME": "/home/u"})
    assert found == {
        "A": "1",
        "B": "two words",
        "C": "literal ${A} \\n",
        "D": "escaped 1\tx",
        "E": "two\nlines",
        "F": "two words-default-/home/u",
        "G": "",
        "H": "a#b",
    }
    assert warnings == ["line 10 is not KEY=VALUE; skipped"]


def test_env_file_sets_variables_before_the_settings_are_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COACHWHIP_WORKERS=3\nAPP_SECRET=s\nbroken line\n")
    environ = {"COACHWHIP_ENV_FILE": str(tmp_path / ".env")}
    config = outcome((), tmp_path, environ)
    assert isinstance(config, Config)
    assert config.workers == 3 and environ["APP_SECRET"] == "s"
    assert config.warnings == [
        f"COACHWHIP_ENV_FILE {tmp_path / '.env'}: line 3 is not KEY=VALUE; skipped"
    ]
    assert outcome(("--env-file", "missing.env"), tmp_path) == (
        "coachwhip: error: --env-file missing.env: No such file or directory"
    )


# --- uvicorn's variables and run() keywords -----------------------------------------------------


def test_uvicorn_variables() -> None:
    environ = {
        "UVICORN_PORT": "9100",
        "UVICORN_RELOAD_DIRS": "src lib",
        "UVICORN_LIMIT_MAX_REQUESTS": "50",
        "UVICORN_PROXY_HEADERS": "false",
        "UVICORN_HTTP2": "true",
        "UVICORN_APP": "main:app",
    }
    settings, notes = compat.from_uvicorn_env(environ)
    assert settings == {
        "app": "main:app",
        "port": 9100,
        "reload_dir": ["src", "lib"],
        "max_requests": 50,
        "proxy_headers": False,
    }
    assert notes == [
        "UVICORN_HTTP2: HTTP/2 is on with --http auto (the default): h2 by ALPN over TLS, h2c "
        "with prior knowledge on a plain port"
    ]
    assert compat.from_uvicorn_env({"UVICORN_HEADERS": "x-a:b x-c:d"}) == (
        {"header": ["x-a:b", "x-c:d"]},
        [],
    )
    with pytest.raises(ConfigError, match=r"^UVICORN_PORT='x': expected a whole number$"):
        compat.from_uvicorn_env({"UVICORN_PORT": "x"})


def test_run_takes_uvicorn_run_keywords(tmp_path: Path) -> None:
    keywords = {
        "host": "0.0.0.0",
        "port": 9000,
        "workers": None,
        "reload_dirs": str(tmp_path),
        "reload_includes": ["*.py", "*.html"],
        "limit_max_requests": 100,
        "limit_concurrency": None,
        "timeout_graceful_shutdown": None,
        "ws_ping_interval": None,
        "forwarded_allow_ips": ["10.0.0.1", "10.0.0.2"],
        "log_level": 10,
        "ssl_certfile": tmp_path / "cert.pem",
        "headers": None,
        "log_config": None,
        "http": "h11",
        "http2": False,
        "reload_delay": 0.25,
        "ssl_version": 17,
        "h11_max_incomplete_event_size": None,
        "reset_contextvars": True,
        "use_colors": None,
    }
    settings, notes = compat.from_keywords(keywords)
    config = sources.load(settings, environ={}, notes=notes)
    assert (config.host, config.port, config.workers) == ("0.0.0.0", 9000, 1)
    assert config.reload_dir == [str(tmp_path)] and config.reload_include == ["*.py", "*.html"]
    assert config.max_requests == 100 and config.limit_concurrency == 0
    assert config.ws_ping_interval == 0.0 and config.forwarded_allow_ips == "10.0.0.1,10.0.0.2"
    assert config.log_level == "debug" and config.ssl_certfile == str(tmp_path / "cert.pem")
    assert config.http == "auto"
    assert config.notes == [
        "reset_contextvars: each request already runs in its own copy of the server's context; "
        "what the lifespan sets is not visible to requests",
        f"--http h11: uvicorn's choice of HTTP/1.1 parser; {H1}",
    ]


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"wokers": 2}, "unknown setting 'wokers'; did you mean 'workers'?"),
        (
            {"reload_dir": ["a"], "limit_max_request": 1},
            "unknown setting 'limit_max_request'; did you mean 'limit_max_requests'?",
        ),
        ({"qwerty": 1}, "unknown setting 'qwerty'"),
        ({"port": "8000"}, "port: expected int, got str '8000'; did you mean port=8000?"),
        ({"reload": "true"}, "reload: expected bool, got str 'true'; did you mean reload=True?"),
        ({"port": "http"}, "port: expected int, got str 'http'"),
        (
            {"headers": [("x-a", "b"), ("date", "x")]},
            "headers 'date:x': coachwhip writes the current date on every response; drop it "
            "(--no-date-header leaves it out)",
        ),
        (
            {"ssl_context_factory": print},
            "ssl_context_factory: coachwhip's TLS is OpenSSL in its engine, not Python's ssl "
            "module; use the ssl_* settings",
        ),
        (
            {"ssl_version": 5},
            "ssl_version 5: coachwhip cannot serve TLS 1.2 only (TLS 1.3 is always on); drop "
            "ssl_version (--ssl-min-version 1.2 is the default)",
        ),
    ],
)
def test_run_keyword_errors_are_close_suggestions(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        compat.from_keywords(keywords)
    assert str(raised.value) == message


def test_run_with_uvicorn_keywords_serves() -> None:
    script = (
        "import coachwhip\n"
        "coachwhip.run('apps.dropin_apps:app', port=0, limit_max_requests=None, http='httptools',"
        " log_level=20, headers=[], reload_delay=0.25, timeout_graceful_shutdown=None,"
        " root_path='/kw')\n"
    )
    server = ServerProcess("", python_args=["-c", script], cwd=HERE)
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/scope", timeout=5).json() == {"root_path": "/kw"}
        assert server.find_line(r"^INFO: +--http httptools: uvicorn's choice")
        assert server.stop() == 0
    finally:
        server.kill()


# --- the app: factories and import errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "line"),
    [
        (
            "apps.dropin_apps:app",
            "--factory: 'apps.dropin_apps:app' takes (scope, receive, send), so it is the app "
            "itself, not a factory (one is called without arguments); drop --factory",
        ),
        (
            "apps.dropin_apps:needs_settings",
            "--factory: 'apps.dropin_apps:needs_settings' takes (settings), so it is the app "
            "itself, not a factory (one is called without arguments); drop --factory",
        ),
        (
            "apps.dropin_apps:create_async",
            "--factory: 'apps.dropin_apps:create_async' is an async function; the factory must be "
            "a plain function that returns the app",
        ),
        (
            "apps.dropin_apps:returns_none",
            "--factory: 'apps.dropin_apps:returns_none()' returned NoneType, not an app; the "
            "factory must return the ASGI or WSGI callable",
        ),
        (
            "apps.dropin_apps:SET_IN_LIFESPAN",
            "--factory: 'apps.dropin_apps:SET_IN_LIFESPAN' is not callable, got ContextVar",
        ),
    ],
    ids=["an-app", "takes-arguments", "async", "returns-none", "not-callable"],
)
def test_factory_mistakes_are_one_line(target: str, line: str) -> None:
    result = run_cli("--port", "0", "--factory", target, timeout=15)
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [f"coachwhip: error: {line}"]
    assert "Traceback" not in result.output


def test_a_factory_without_factory_flag_is_detected(serve: Serve) -> None:
    server = serve("apps.dropin_apps:create_app")
    assert httpx.get(server.url + "/hello", timeout=5).text == "/hello"
    assert server.find_line(
        r"^WARNING: +'apps\.dropin_apps:create_app' is a function without parameters: taken as "
        r"an app factory and called to build the app; say so with --factory$"
    )
    assert server.stop() == 0


def test_gunicorn_module_without_attribute_means_application(serve: Serve) -> None:
    server = serve("apps.dropin_apps")
    assert httpx.get(server.url + "/x", timeout=5).text == "/x"
    result = run_cli("--port", "0", "apps.raw", timeout=15)
    assert result.stderr_lines == [
        'coachwhip: error: the app must be given as "module:attribute" (e.g. main:app), got '
        "\"apps.raw\" (and module 'apps.raw' has no 'application', gunicorn's default); did you "
        "mean apps.raw:app?"
    ]


@pytest.mark.parametrize(
    ("args", "marker", "user_file"),
    [
        (("apps.broken_import:app",), "ValueError: cw-broken-import-marker", "broken_import.py"),
        (
            ("--factory", "apps.dropin_apps:broken_factory"),
            "ValueError: cw-broken-factory-marker",
            "dropin_apps.py",
        ),
        (
            ("--workers", "2", "apps.broken_import:app"),
            "ValueError: cw-broken-import-marker",
            "broken_import.py",
        ),
    ],
    ids=["import", "factory", "in-a-worker"],
)
def test_the_apps_error_shows_the_users_frames_only(
    args: tuple[str, ...], marker: str, user_file: str
) -> None:
    result = run_cli("--port", "0", *args, timeout=30)
    assert result.returncode != 0, result.output
    assert marker in result.stderr and user_file in result.stderr
    frames = re.findall(r'^  File "([^"]+)"', result.stderr, re.MULTILINE)
    assert frames, result.stderr
    assert [f for f in frames if "coachwhip" in Path(f).parts or "importlib" in f] == []
    assert "Listening on" not in result.output
