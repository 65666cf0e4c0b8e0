"""The servers under test: their command lines, and a handle that starts one pinned to given CPUs
(CPU 0 in the main suite), waits until it answers, samples its memory and CPU time and stops it.
ASGI servers serve the ASGI scenarios, WSGI servers the `wsgi-*` ones; coachwhip serves both.
Servers that speak HTTP/2 (ServerSpec.h2) serve the `h2*` ones, over HTTP/2 only."""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h2setup
import procfs
import tlssetup
import wssetup
from scenarios import H2_KEYS, WSGI_KEYS
from tlssetup import TlsFiles

BENCH_DIR = Path(__file__).resolve().parent
SERVER_CPU = 0
NOFILE = 65536  # servers and the idle-connection client both need > 10,000 descriptors
KEEP_ALIVE_S = 120  # so 10,000 idle connections stay open while they are measured
BACKLOG = 2048  # hypercorn's default (100) drops SYNs at 256 connections
GRANIAN_BACKPRESSURE = 16384
# Python threads per worker in the WSGI scenarios, the same for every server that has them:
# coachwhip --threads, gunicorn gthread --threads, granian --blocking-threads, uWSGI --threads.
WSGI_THREADS = 8


@dataclass(frozen=True)
class ServerSpec:
    """How to run one server: `argv(bin_dir, app, port)` builds the command line; `env` is added
    to the environment; `flags` is the one-line description that goes into the report;
    `only` restricts it to those scenarios (empty: all of them). `workers` > 1: a supervisor
    runs that many worker processes as its children; the handle waits for all of them and
    measures the CPU time of each. `tls(files, port)` gives the flags that make it serve TLS
    with the bench certificate (None: it takes no part in the TLS scenarios). `ws_flags` are
    added in the WebSocket scenarios (which WebSocket implementation a server uses).

    `asgi` / `wsgi`: which apps it serves: the ASGI scenarios (and the idle measurements), the
    WSGI ones (`wsgi-*`), or both; `wsgi_flags` are added in the WSGI scenarios (coachwhip's
    `--interface wsgi --threads N`). `module`: an optional peer's Python module; when it does
    not import (the package did not install, see envsetup.py) the server is skipped, not
    failed.

    `h2(files, port, directory)` gives the flags that make it serve HTTP/2 in the `h2*`
    scenarios: h2c with prior knowledge on a plain port when `files` is None, h2 by ALPN over
    TLS with the bench certificate otherwise (TLS flags included; `directory` is for generated
    configuration). None: it has no HTTP/2 and takes no part in them."""

    name: str
    argv: Callable[[Path, str, int], list[str]]
    flags: str
    env: tuple[tuple[str, str], ...] = ()
    only: tuple[str, ...] = ()
    workers: int = 1
    tls: Callable[[TlsFiles, int], list[str]] | None = None
    ws_flags: tuple[str, ...] = ()
    asgi: bool = True
    wsgi: bool = False
    wsgi_flags: tuple[str, ...] = ()
    module: str = ""
    h2: Callable[[TlsFiles | None, int, Path], list[str]] | None = None
    # A line each worker prints once it serves (gunicorn's workers); empty: coachwhip's
    # supervisor, which prints "Listening on ... with N workers" once all of them are ready.
    ready_log: str = ""

    def runs_in(self, scenario: str) -> bool:
        kind = self.wsgi if scenario in WSGI_KEYS else self.asgi
        return kind and (not self.only or scenario in self.only)

    def unavailable(self) -> str | None:
        """Why this server cannot run here (an optional peer not installed), or None."""
        if self.module and importlib.util.find_spec(self.module) is None:
            return (
                f"not installed (`import {self.module}` fails; an optional peer: see "
                f"bench/requirements.txt and the setup log bench/logs/setup.log)"
            )
        return None

    def serves(self, scenario: str, over_tls: bool) -> bool:
        """Takes part in `scenario` (a key, or "idle"/"idle-tls"), plain or over TLS."""
        if scenario in H2_KEYS and self.h2 is None:
            return False
        return self.runs_in(scenario) and (not over_tls or self.tls is not None)


def _uvicorn(bin_dir: Path, app: str, port: int) -> list[str]:
    return [
        str(bin_dir / "uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--lifespan",
        "off",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
        "--backlog",
        str(BACKLOG),
    ]


def _granian(threads: int) -> Callable[[Path, str, int], list[str]]:
    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        return [
            str(bin_dir / "granian"),
            app,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--runtime-threads",
            str(threads),
            "--loop",
            "uvloop",
            "--http",
            "1",
            "--backlog",
            str(BACKLOG),
            # Its default backpressure (backlog / workers) caps open connections, idle ones
            # included, so 10,000 idle connections need a higher one.
            "--backpressure",
            str(GRANIAN_BACKPRESSURE),
            "--http1-header-read-timeout",
            "60000",
        ]

    return argv


def _hypercorn(bin_dir: Path, app: str, port: int) -> list[str]:
    return [
        str(bin_dir / "hypercorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "uvloop",
        "--keep-alive",
        str(KEEP_ALIVE_S),
        "--backlog",
        str(BACKLOG),
    ]


def _coachwhip_access_log(*extra: str) -> Callable[[Path, str, int], list[str]]:
    """coachwhip with its access log on, written to /dev/null: the records, their formatting and
    a write() per batch are measured; a disk is not."""

    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        base = _coachwhip(bin_dir, app, port)
        base.remove("--no-access-log")
        return [*base, "--access-log", "--access-logfile", "/dev/null", *extra]

    return argv


def _coachwhip(bin_dir: Path, app: str, port: int) -> list[str]:
    return [
        str(bin_dir / "coachwhip"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
        "--loop",
        "uvloop",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
        "--backlog",
        str(BACKLOG),
    ]


def _gunicorn(worker_class: str, threads: int) -> Callable[[Path, str, int], list[str]]:
    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        return [
            str(bin_dir / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            worker_class,
            *(["--threads", str(threads)] if threads > 1 else []),
            "--keep-alive",
            str(KEEP_ALIVE_S),
            "--backlog",
            str(BACKLOG),
            # gunicorn 27's control socket defaults to one path per user
            # (~/.gunicorn/gunicorn.ctl), which the two gunicorn entries, started together,
            # would share.
            "--no-control-socket",
        ]

    return argv


def _gunicorn_asgi(
    worker_class: str, workers: int, extra: tuple[str, ...] = ()
) -> Callable[[Path, str, int], list[str]]:
    """gunicorn's arbiter with an ASGI worker class: coachwhip's, or uvicorn's."""

    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        return [
            str(bin_dir / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--keep-alive",
            str(KEEP_ALIVE_S),
            "--backlog",
            str(BACKLOG),
            "--no-control-socket",
            *extra,
        ]

    return argv


def _granian_wsgi(runtime_threads: int) -> Callable[[Path, str, int], list[str]]:
    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        return [
            str(bin_dir / "granian"),
            app,
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--blocking-threads",
            str(WSGI_THREADS),
            "--runtime-threads",
            str(runtime_threads),
            "--http",
            "1",
            "--backlog",
            str(BACKLOG),
            "--backpressure",
            str(GRANIAN_BACKPRESSURE),
            "--http1-header-read-timeout",
            "60000",
        ]

    return argv


def _uwsgi(bin_dir: Path, app: str, port: int) -> list[str]:
    """uWSGI from PyPI's pyuwsgi wheel: a master and one worker with WSGI_THREADS threads,
    serving HTTP itself (no separate router process) with --http-socket, which closes the
    connection after each response. Not --http11-socket: its keep-alive holds a thread per
    connection, so with 8 threads a 9th connection was not answered until one of the 8 went
    idle for --socket-timeout, and wrk at 64 connections measured 8 of them."""
    return [
        str(bin_dir / "uwsgi"),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--module",
        app,
        "--master",
        "--processes",
        "1",
        "--threads",
        str(WSGI_THREADS),
        "--listen",
        str(BACKLOG),
        # Say what --http-socket does (it closes after each response, silently otherwise), so
        # that wrk reconnects instead of sending the next request into a closed connection
        # and counting a read error each time.
        "--add-header",
        "Connection: close",
        "--disable-logging",
        "--need-app",
        "--single-interpreter",
    ]


def _wsgi_serve(server: str) -> Callable[[Path, str, int], list[str]]:
    """bjoern and fastwsgi through bench/apps/wsgi_serve.py (neither has a usable CLI)."""

    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        return [
            str(bin_dir / "python"),
            "-m",
            "apps.wsgi_serve",
            server,
            app,
            "--port",
            str(port),
            "--backlog",
            str(BACKLOG),
        ]

    return argv


def _coachwhip_workers(count: int, reuse_port: bool) -> Callable[[Path, str, int], list[str]]:
    def argv(bin_dir: Path, app: str, port: int) -> list[str]:
        extra = ["--reuse-port"] if reuse_port else []
        return [*_coachwhip(bin_dir, app, port), "--workers", str(count), *extra]

    return argv


def _tls_flags(cert_flag: str, key_flag: str) -> Callable[[TlsFiles, int], list[str]]:
    def flags(files: TlsFiles, port: int) -> list[str]:
        return [cert_flag, str(files.cert), key_flag, str(files.key)]

    return flags


def _nginx(bin_dir: Path, app: str, port: int) -> list[str]:
    """nginx from Debian; everything else, TLS included, is in the file `_nginx_tls` writes."""
    return ["nginx", "-e", "stderr"]


def _nginx_tls(files: TlsFiles, port: int) -> list[str]:
    conf = tlssetup.nginx_conf(files, port, BACKLOG, KEEP_ALIVE_S, NOFILE)
    return ["-p", str(conf.parent), "-c", str(conf)]


def _nginx_h2(files: TlsFiles | None, port: int, directory: Path) -> list[str]:
    """nginx's configuration with `listen ... http2` (h2c, prior knowledge only) or `listen
    ... ssl http2` (ALPN h2 and http/1.1)."""
    conf = tlssetup.nginx_conf(
        files, port, BACKLOG, KEEP_ALIVE_S, NOFILE, http2=True, directory=directory
    )
    return ["-p", str(conf.parent), "-c", str(conf)]


def _h2_flags(
    flags: tuple[str, ...], tls: Callable[[TlsFiles, int], list[str]]
) -> Callable[[TlsFiles | None, int, Path], list[str]]:
    """HTTP/2 by `flags` (none: the server's default already serves h2c with prior knowledge
    and offers h2 by ALPN), plus its TLS flags over TLS."""

    def build(files: TlsFiles | None, port: int, directory: Path) -> list[str]:
        return [*flags, *(tls(files, port) if files is not None else [])]

    return build


def _wsload_echo(bin_dir: Path, app: str, port: int) -> list[str]:
    """bench/wsload's own echo server (C++, no Python, no app): the limit of the load
    generator."""
    return [str(wssetup.WSLOAD), "--serve", str(port)]


TLS_ONLY = ("tls-hello", "tls-handshake", "tls-resume", "idle-tls")
# nginx also answers by itself over HTTP/2 (`listen ... http2`): the hello ones and idle-h2c.
NGINX_H2 = ("h2c-hello", "h2-hello", "idle-h2c")
WS_ONLY = ("ws-echo", "ws-large", "idle-ws", "idle-ws-deflate")

SPECS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "coachwhip",
            _coachwhip,
            f"--no-access-log --lifespan off --loop uvloop (WSGI scenarios: also --interface "
            f"wsgi --threads {WSGI_THREADS})",
            tls=_tls_flags("--ssl-certfile", "--ssl-keyfile"),
            wsgi=True,
            wsgi_flags=("--interface", "wsgi", "--threads", str(WSGI_THREADS)),
            # Its default `--http auto` serves h2c with prior knowledge and offers h2 by ALPN.
            h2=_h2_flags((), _tls_flags("--ssl-certfile", "--ssl-keyfile")),
        ),
        ServerSpec(
            "uvicorn",
            _uvicorn,
            "--workers 1 --loop uvloop --http httptools --no-access-log --lifespan off",
            tls=_tls_flags("--ssl-certfile", "--ssl-keyfile"),
            # Its legacy websockets implementation, as the issue asks (0.54's `auto` is
            # websockets-sansio: `uvicorn-sansio` below).
            ws_flags=("--ws", "websockets"),
        ),
        # WebSocket scenarios only: uvicorn with its other WebSocket implementation.
        ServerSpec(
            "uvicorn-wsproto",
            _uvicorn,
            "uvicorn's flags above, --ws wsproto",
            only=WS_ONLY,
            ws_flags=("--ws", "wsproto"),
        ),
        # --runtime-threads 2 beat granian's default of 1 by 5-15% on the one core it is given
        # (bench/README.md, "The servers' settings"); granian-rt1 below keeps that re-checkable.
        ServerSpec(
            "granian",
            _granian(2),
            "--interface asgi --workers 1 --runtime-threads 2 --loop uvloop --http 1 "
            "--backpressure 16384 (HTTP/2 scenarios: `--http 2`, after `--http 1`: the last "
            "wins)",
            tls=_tls_flags("--ssl-certificate", "--ssl-keyfile"),
            # HTTP/2 only: h2c with prior knowledge on a plain port, ALPN h2 over TLS.
            h2=_h2_flags(("--http", "2"), _tls_flags("--ssl-certificate", "--ssl-keyfile")),
        ),
        ServerSpec(
            "hypercorn",
            _hypercorn,
            "--workers 1 --worker-class uvloop (access log off by default)",
            tls=_tls_flags("--certfile", "--keyfile"),
            # Its defaults: h2c with prior knowledge (the preface is recognised), ALPN h2 and
            # http/1.1 over TLS.
            h2=_h2_flags((), _tls_flags("--certfile", "--keyfile")),
        ),
        # TLS scenarios (and the HTTP/2 hello ones) only: Debian's nginx terminating TLS and
        # answering by itself (`return 200 "Hello, world!"`), one worker process: the limit.
        ServerSpec(
            "nginx",
            _nginx,
            'Debian\'s nginx, `worker_processes 1`, `return 200 "Hello, world!"` (no app), '
            "TLSv1.2 TLSv1.3, `keepalive_requests 1000000`, access log off (HTTP/2: `listen "
            "... http2`, `listen ... ssl http2`)",
            only=TLS_ONLY + NGINX_H2,
            tls=_nginx_tls,
            h2=_nginx_h2,
        ),
        ServerSpec(
            "coachwhip-ceiling",
            _coachwhip,
            "coachwhip with COACHWHIP_BENCH_CEILING=1: C++ answers, Python never runs",
            env=(("COACHWHIP_BENCH_CEILING", "1"),),
            only=("hello",),
        ),
        # WebSocket scenarios only: bench/wsload --serve, a C++ epoll echo server with no app:
        # what the load generator can do against a server that costs next to nothing.
        ServerSpec(
            "wsload-echo",
            _wsload_echo,
            "bench/wsload --serve: a C++ echo server, one thread, no Python, no app (the load "
            "generator's limit)",
            only=("ws-echo", "ws-large"),
        ),
        # Not run by default: uvicorn 0.54's default WebSocket implementation.
        ServerSpec(
            "uvicorn-sansio",
            _uvicorn,
            "uvicorn's flags above, --ws websockets-sansio (what 0.54 picks for `--ws auto`)",
            only=WS_ONLY,
            ws_flags=("--ws", "websockets-sansio"),
        ),
        # Not run by default: granian with its default threading (--servers granian,granian-rt1).
        ServerSpec(
            "granian-rt1",
            _granian(1),
            "--interface asgi --workers 1 --runtime-threads 1 --loop uvloop --http 1 "
            "--backpressure 16384",
        ),
        # WSGI scenarios only (wsgi-*): the WSGI peers, one worker process each, with
        # WSGI_THREADS Python threads where the server has threads.
        ServerSpec(
            "gunicorn",
            _gunicorn("sync", 1),
            "--workers 1 --worker-class sync --backlog 2048 --no-control-socket (the sync "
            "worker serves one request at a time and closes every connection: no keep-alive; "
            "access log off by default)",
            asgi=False,
            wsgi=True,
        ),
        ServerSpec(
            "gunicorn-gthread",
            _gunicorn("gthread", WSGI_THREADS),
            f"--workers 1 --worker-class gthread --threads {WSGI_THREADS} --keep-alive 120 "
            f"--backlog 2048 --no-control-socket",
            asgi=False,
            wsgi=True,
        ),
        ServerSpec(
            "granian-wsgi",
            _granian_wsgi(2),
            f"--interface wsgi --workers 1 --blocking-threads {WSGI_THREADS} --runtime-threads "
            f"2 --http 1 --backpressure 16384",
            asgi=False,
            wsgi=True,
        ),
        ServerSpec(
            "uwsgi",
            _uwsgi,
            f"uWSGI (pyuwsgi) --http-socket --master --processes 1 --threads {WSGI_THREADS} "
            f"--listen 2048 --disable-logging --single-interpreter (no keep-alive: with "
            f"--http11-socket's, connections beyond the {WSGI_THREADS} threads wait unanswered)",
            asgi=False,
            wsgi=True,
        ),
        ServerSpec(
            "bjoern",
            _wsgi_serve("bjoern"),
            "bjoern.run() through apps/wsgi_serve.py: one thread (libev), listen backlog 2048",
            asgi=False,
            wsgi=True,
            module="bjoern",
        ),
        ServerSpec(
            "fastwsgi",
            _wsgi_serve("fastwsgi"),
            "fastwsgi through apps/wsgi_serve.py: one thread (libuv), listen backlog 2048",
            asgi=False,
            wsgi=True,
            module="fastwsgi",
        ),
        # Not run by default: granian's WSGI with one runtime thread (--servers
        # granian-wsgi,granian-wsgi-rt1), as granian-rt1 is for ASGI.
        ServerSpec(
            "granian-wsgi-rt1",
            _granian_wsgi(1),
            f"--interface wsgi --workers 1 --blocking-threads {WSGI_THREADS} --runtime-threads "
            f"1 --http 1 --backpressure 16384",
            asgi=False,
            wsgi=True,
        ),
        # Not in the main suite: the cost of the access log (issue 11), run with
        # `--scenarios hello --servers coachwhip,coachwhip-access-log,coachwhip-access-log-json`.
        ServerSpec(
            "coachwhip-access-log",
            _coachwhip_access_log(),
            "as coachwhip, with --access-log --access-logfile /dev/null (uvicorn's line)",
            only=("hello", "json1k", "fastapi"),
        ),
        ServerSpec(
            "coachwhip-access-log-json",
            _coachwhip_access_log("--access-log-format", "json"),
            "as coachwhip, with --access-log --access-logfile /dev/null --access-log-format json",
            only=("hello", "json1k", "fastapi"),
        ),
        # Not in the main suite: the workers report (run.py --workers-report) compares these
        # with `coachwhip`, on both CPUs.
        ServerSpec(
            "coachwhip-w2",
            _coachwhip_workers(2, reuse_port=False),
            "--no-access-log --lifespan off --loop uvloop --workers 2 (one listening socket, "
            "shared by the workers)",
            workers=2,
        ),
        ServerSpec(
            "coachwhip-w2-reuseport",
            _coachwhip_workers(2, reuse_port=True),
            "--no-access-log --lifespan off --loop uvloop --workers 2 --reuse-port (a "
            "SO_REUSEPORT socket per worker)",
            workers=2,
        ),
        # Also in the workers report: the same two workers under gunicorn's arbiter, with
        # coachwhip's worker class and with uvicorn's (the uvicorn-worker package).
        ServerSpec(
            "gunicorn-coachwhip-w2",
            _gunicorn_asgi("coachwhip.workers.CoachwhipWorker", 2, ("--asgi-lifespan", "off")),
            "gunicorn --workers 2 --worker-class coachwhip.workers.CoachwhipWorker --keep-alive "
            "120 --backlog 2048 --asgi-lifespan off --no-control-socket (gunicorn's arbiter, "
            "coachwhip's engine and uvloop; no access log without --access-logfile)",
            workers=2,
            ready_log=r"Serving with coachwhip's engine",
        ),
        ServerSpec(
            "gunicorn-uvicorn-w2",
            _gunicorn_asgi("uvicorn_worker.UvicornWorker", 2),
            "gunicorn --workers 2 --worker-class uvicorn_worker.UvicornWorker --keep-alive 120 "
            "--backlog 2048 --no-control-socket (uvicorn-worker: uvloop, httptools; lifespan "
            "auto, the class has no setting for it; no access log without --access-logfile)",
            workers=2,
            module="uvicorn_worker",
            ready_log=r"Application startup complete",
        ),
    )
}
PEERS = ("coachwhip", "uvicorn", "granian", "hypercorn")
# The WSGI peers, in the order they run (after coachwhip) in the wsgi-* scenarios.
WSGI_SERVERS = ("gunicorn", "gunicorn-gthread", "granian-wsgi", "uwsgi", "bjoern", "fastwsgi")
# Who runs by default, in this order; each takes part only where `only` allows.
MAIN_SERVERS = (
    "coachwhip",
    "uvicorn",
    "uvicorn-wsproto",
    "granian",
    "hypercorn",
    "coachwhip-ceiling",
    "nginx",
    "wsload-echo",
    *WSGI_SERVERS,
)
WORKERS_SERVERS = (
    "coachwhip",
    "coachwhip-w2",
    "coachwhip-w2-reuseport",
    "gunicorn-coachwhip-w2",
    "gunicorn-uvicorn-w2",
)


class ServerError(RuntimeError):
    """A server did not start, did not answer, or answered wrongly. The message names its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile(limit: int = NOFILE) -> int:
    """Raise RLIMIT_NOFILE of this process as far as allowed; return the soft limit now set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), max(hard, limit)))
    except (ValueError, OSError):  # not root: the hard limit is the ceiling
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, limit), hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """One running server process (and its children), on CPUs `cpus` (taskset -c syntax),
    logging to `log_path`."""

    def __init__(
        self,
        spec: ServerSpec,
        app: str,
        bin_dir: Path,
        log_path: Path,
        cpus: str = str(SERVER_CPU),
        extra: tuple[str, ...] = (),
        tls_files: TlsFiles | None = None,
        h2: bool = False,
    ) -> None:
        self.spec = spec
        self.app = app
        self.port = free_port()
        self.log_path = log_path
        self.tls = tls_files is not None
        self.tls_files = tls_files
        self.h2 = h2  # spoken to over HTTP/2 only (readiness and checks included)
        if h2:
            if spec.h2 is None:
                raise ValueError(f"{spec.name} has no HTTP/2")
            extra = (*spec.h2(tls_files, self.port, log_path.parent), *extra)
        elif tls_files is not None:
            if spec.tls is None:
                raise ValueError(f"{spec.name} has no TLS flags")
            extra = (*spec.tls(tls_files, self.port), *extra)
        self.argv = ["taskset", "-c", cpus, *spec.argv(bin_dir, app, self.port), *extra]
        # Nothing from the caller's environment configures a server behind the bench's back.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("COACHWHIP_", "GRANIAN_", "UWSGI_", "GUNICORN_"))
        }
        env.update(spec.env, PYTHONPATH=str(BENCH_DIR), PYTHONUNBUFFERED="1")
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        self._log = log_path.open("ab")
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=BENCH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
        self.pids = [self.proc.pid]
        self.worker_pids: list[int] = []  # with spec.workers > 1: the supervisor's children
        self.started = time.monotonic()

    @property
    def name(self) -> str:
        return self.spec.name

    def fail(self, why: str) -> ServerError:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return ServerError(f"{self.name}: {why} (log {self.log_path}):\n  " + "\n  ".join(tail))

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Poll with an HTTP GET until the server answers; return the seconds since its start."""
        while time.monotonic() - self.started < timeout_s:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before answering")
            try:
                self.request("GET", "/", b"", timeout_s=2.0)
            except OSError:
                time.sleep(0.05)
                continue
            self._wait_workers(timeout_s)
            self.refresh_pids()
            return time.monotonic() - self.started
        raise self.fail(f"did not answer within {timeout_s:.0f} s")

    def _wait_workers(self, timeout_s: float) -> None:
        """With a supervisor, the first answer may come from the first worker to be ready:
        wait (until `timeout_s` after the start) for all worker processes to exist and for
        the supervisor's "Listening on ... with N workers", which it prints once all are ready.
        Otherwise the pids taken now would miss a worker's memory and CPU time."""
        want = self.spec.workers
        if want <= 1:
            return
        announced = re.compile(rf"Listening on .* with {want} worker")
        each = re.compile(self.spec.ready_log) if self.spec.ready_log else None
        while True:
            count = len(procfs.tree(self.proc.pid)) - 1
            text = self.log_path.read_text(errors="replace")
            ready = len(each.findall(text)) >= want if each else announced.search(text)
            if count >= want and ready:
                return
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} while starting workers")
            if time.monotonic() - self.started >= timeout_s:
                why = (
                    f"has {count} of {want} worker processes"
                    if count < want
                    else f'never printed "Listening on ... with {want} workers"'
                    if each is None
                    else f"has not {want} times printed {self.spec.ready_log!r}"
                )
                raise self.fail(f"{why} {timeout_s:.0f} s after its start")
            time.sleep(0.05)

    def request(
        self, method: str, path: str, body: bytes, timeout_s: float = 10.0
    ) -> tuple[int, bytes]:
        if self.h2:
            got = h2setup.request(self.port, method, path, body, self.tls, timeout_s)
            return got.status, got.body
        conn: http.client.HTTPConnection
        if self.tls:
            unverified = ssl.create_default_context()
            unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout_s, context=unverified
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body or None)
            response = conn.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as e:
            raise OSError(str(e)) from e
        finally:
            conn.close()

    def refresh_pids(self) -> None:
        self.pids = procfs.tree(self.proc.pid)
        if self.spec.workers > 1:
            self.worker_pids = procfs.children(self.proc.pid)

    def worker_cpu_seconds(self) -> list[float]:
        """CPU time so far of each worker in `worker_pids` (empty without a supervisor)."""
        return [procfs.cpu_seconds([pid]) for pid in self.worker_pids]

    def lost_workers(self) -> list[int]:
        """Workers in `worker_pids` that are no longer the supervisor's children (they died;
        the supervisor may have replaced them): their CPU time for the run is incomplete."""
        alive = set(procfs.children(self.proc.pid))
        return [pid for pid in self.worker_pids if pid not in alive]

    def rss_kib(self) -> tuple[int, int]:
        """(whole process tree, largest process) VmRSS in KiB."""
        return procfs.tree_rss_kib(self.pids)

    def cpu_seconds(self) -> float:
        return procfs.cpu_seconds(self.pids)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT (graceful), then SIGKILL to the whole session after `timeout_s`."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._log.write(b"\n[bench] no exit after SIGINT; SIGKILL\n")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers: workers, resource trackers
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=timeout_s)
        self._log.close()
