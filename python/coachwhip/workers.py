"""gunicorn worker classes: coachwhip's engine inside gunicorn's worker processes.

    gunicorn -k coachwhip.workers.CoachwhipWorker -w 4 -b 0.0.0.0:8000 main:app

gunicorn's arbiter binds the sockets, forks the workers, reads its settings and handles the
signals sent to it; each worker serves gunicorn's sockets with the engine, as one worker of
`coachwhip --workers N` does (coachwhip.server.Worker), with gunicorn in the supervisor's
place:

- the sockets are the arbiter's (`self.sockets`, already listening; the worker serves
  duplicates of their fds, so closing them at the drain leaves the arbiter's open);
- gunicorn's settings become a coachwhip Config (`config_from_gunicorn`); the engine's other
  settings come from COACHWHIP_* variables;
- the heartbeat is gunicorn's `notify()`, from the event loop, also while draining;
- SIGTERM drains, SIGINT and SIGQUIT stop at once, SIGUSR1 reopens gunicorn's log files,
  SIGABRT (gunicorn's timeout) exits at once; SIGHUP, SIGTTIN and SIGTTOU are the arbiter's;
- --max-requests: the engine counts, and the worker drains and exits; gunicorn starts another;
- logging goes through gunicorn's handlers (`route_logging`).

Made at import, that is in the arbiter before it forks (gunicorn imports the worker class
there), and so shared by every worker: the TLS session-ticket secret, and a page of shared
memory that says whether any worker has started yet and how many starts failed in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import signal
import sys
from types import FrameType
from typing import Any

from gunicorn.workers.base import Worker as _GunicornWorker

from coachwhip import logs, tls
from coachwhip.config import LOG_LEVELS, OPTION_BY_ATTR, Config, ConfigError
from coachwhip.interface import choose
from coachwhip.logs import access_logger, error_logger
from coachwhip.server import FORCED_EXIT_STATUS, StartupError, Worker, _new_loop
from coachwhip.sockets import BindError

# gunicorn's exit statuses for a worker (gunicorn.arbiter.Arbiter): BOOT_ERROR makes the
# arbiter stop ("Worker failed to boot.") instead of respawning the worker.
WORKER_BOOT_ERROR = 3
RETRY_STATUS = 1  # any other non-zero status: the arbiter logs it and starts a new worker
FIRST_RETRY_S = 0.5
LONGEST_RETRY_S = 30.0
# The whole request head is bounded, not each field: this much at least (coachwhip's default).
HEAD_FLOOR = OPTION_BY_ATTR["limit_request_header_size"].default
UNLIMITED_HEAD = 1024 * 1024  # gunicorn's limit_request_field_size 0 ("unlimited")

_TICKET_SECRET = os.urandom(tls.SECRET_BYTES)
_SHARED = mmap.mmap(-1, mmap.PAGESIZE)  # MAP_SHARED | MAP_ANONYMOUS: forks share it
# Byte offsets in _SHARED: a worker has been ready; failed starts in a row; a worker has
# exited with WORKER_BOOT_ERROR (gunicorn is stopping).
_EVER_READY, _FAILURES, _BOOT_FAILED = 0, 1, 2
BOOT_FAILED_WAIT_S = 1.0


def _setting(cfg: Any, name: str, default: Any) -> Any:
    """A gunicorn setting, or `default` when this gunicorn has no such setting."""
    return cfg.settings[name].get() if name in cfg.settings else default


def _allow_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value or []]


def config_from_gunicorn(
    cfg: Any, fds: list[int], max_requests: int, environ: dict[str, str] | None = None
) -> Config:
    """The coachwhip Config for gunicorn's settings `cfg`, serving the listening sockets `fds`.

    gunicorn's settings decide what gunicorn has a setting for; COACHWHIP_* variables (in
    `environ`, default os.environ) set the rest. Raises ConfigError."""
    line = int(cfg.limit_request_line) or 8190
    line = max(line, OPTION_BY_ATTR["limit_request_line"].minimum or 0)
    field_size = int(cfg.limit_request_field_size)
    head = UNLIMITED_HEAD if field_size <= 0 else max(HEAD_FLOOR, line + field_size)
    graceful = float(cfg.graceful_timeout)
    proxy_protocol = _setting(cfg, "proxy_protocol", False)
    proxy_protocol = proxy_protocol not in (False, None, "off")
    allow = _allow_list(cfg.forwarded_allow_ips)
    if proxy_protocol:  # one list of trusted peers in the engine, for both
        allow += [a for a in _allow_list(_setting(cfg, "proxy_allow_ips", "")) if a not in allow]
    protocols = _allow_list(_setting(cfg, "http_protocols", "h1"))
    explicit: dict[str, Any] = {
        "bind": [f"fd://{fd}" for fd in fds],
        "host": "127.0.0.1",
        "uds": None,
        "fd": None,
        "reuse_port": False,
        "workers": 1,
        "reload": False,
        "chdir": None,
        "max_requests": max_requests,
        "max_requests_jitter": 0,  # gunicorn drew it already
        "timeout_worker_healthcheck": float(cfg.timeout),
        # Drain 1 s less than gunicorn waits before its SIGKILL, so that the lifespan shutdown
        # runs in time.
        "timeout_graceful_shutdown": graceful - 1 if graceful >= 2 else graceful / 2,
        "timeout_keep_alive": float(cfg.keepalive) if cfg.keepalive > 0 else 1.0,
        "limit_request_line": min(line, head),
        "limit_request_fields": int(cfg.limit_request_fields) or 32768,
        "limit_request_header_size": head,
        "max_connections": max(1, int(cfg.worker_connections)),
        "threads": max(1, int(cfg.threads)),
        "forwarded_allow_ips": "*" if "*" in allow else ",".join(allow) or "127.0.0.1",
        "proxy_headers": True,
        "proxy_protocol": proxy_protocol,
        "http": "auto" if "h2" in protocols else "1",
        "root_path": _setting(cfg, "root_path", "") or os.environ.get("SCRIPT_NAME", ""),
        "lifespan": _setting(cfg, "asgi_lifespan", "auto"),
        "loop": _setting(cfg, "asgi_loop", "auto"),
    }
    access_format = cfg.settings.get("access_log_format")
    if access_format is not None and access_format.get() != type(access_format).default:
        # gunicorn's atoms are coachwhip's too; left at gunicorn's default, the line is
        # uvicorn's, as under uvicorn's worker.
        explicit["access_log_format"] = access_format.get()
    if "websocket_max_message_size" in cfg.settings:
        explicit["ws_max_size"] = int(cfg.websocket_max_message_size) or 2**31 - 1
    for ours, theirs in (
        ("http2_max_concurrent_streams", "http2_max_concurrent_streams"),
        ("http2_initial_stream_window_size", "http2_initial_window_size"),
        ("http2_max_frame_size", "http2_max_frame_size"),
        ("http2_max_headers_size", "http2_max_header_list_size"),
    ):
        if theirs in cfg.settings:
            explicit[ours] = int(cfg.settings[theirs].get()) or 2**32 - 1
    if cfg.certfile or cfg.keyfile:
        explicit.update(
            ssl_certfile=cfg.certfile,
            ssl_keyfile=cfg.keyfile,
            ssl_ca_certs=cfg.ca_certs,
            ssl_cert_reqs=int(cfg.cert_reqs),
        )
        if cfg.ciphers:
            explicit["ssl_ciphers"] = cfg.ciphers
    config = Config.load(explicit, os.environ if environ is None else environ)
    if config.metrics or config.shutdown_delay:
        config.warnings.append(
            "under gunicorn, --metrics (each worker would count only its own requests) and "
            "--shutdown-delay are not applied: use `coachwhip --workers N` for them"
        )
        config.metrics, config.metrics_bind, config.shutdown_delay = False, None, 0.0
    return config


def route_logging(gunicorn_log: Any, level: str = "info") -> bool:
    """coachwhip's loggers write through gunicorn's handlers (its files, format, syslog; its
    SIGUSR1 reopens them), at gunicorn's level, as uvicorn's worker does. A logger that a
    logging config gave handlers of its own is left alone; with a logger class that has no
    `error_log`, coachwhip logs to stderr as it does alone. Returns whether to write an access
    log: as gunicorn, only when one is configured."""
    error_log = getattr(gunicorn_log, "error_log", None)
    access_log = getattr(gunicorn_log, "access_log", None)
    if not isinstance(error_log, logging.Logger):
        logs.configure(level if level in LOG_LEVELS else "info", access_log=False)
        return False
    own_access = bool(access_logger.handlers)  # from the user's logging config
    for ours, theirs in ((error_logger, error_log), (access_logger, access_log)):
        if not isinstance(theirs, logging.Logger) or ours.handlers:
            continue
        ours.handlers = list(theirs.handlers)
        ours.setLevel(theirs.level)
        ours.propagate = False
    if own_access:
        return True
    enabled = getattr(gunicorn_log, "access_log_enabled", None)
    if enabled is None:
        enabled = getattr(getattr(gunicorn_log, "cfg", None), "accesslog", None)
    return bool(enabled) and bool(access_logger.handlers)


class _Link:
    """What server.Worker reports to its supervisor (coachwhip._worker's protocol), turned
    into what gunicorn expects: READY is logged and remembered, RETIRE (--max-requests)
    drains and exits. BEAT is not needed: the worker beats from its own timer."""

    def __init__(self, worker: CoachwhipWorker) -> None:
        self.worker = worker

    def send(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "READY":
            self.worker.on_ready()
        elif kind == "RETIRE":
            self.worker.on_retire(rest)


class _Engine(Worker):
    """coachwhip's worker, with gunicorn's signals and heartbeat."""

    def __init__(self, gunicorn_worker: CoachwhipWorker, config: Config, app: Any, **kw: Any):
        super().__init__(config, app, _Link(gunicorn_worker), **kw)
        self.gunicorn_worker = gunicorn_worker

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        self.gunicorn_worker.install_loop_signals(loop)

    def _heartbeat(self, server: Any) -> None:
        """gunicorn's heartbeat runs from CoachwhipWorker.beat(), before and after READY."""


class CoachwhipWorker(_GunicornWorker):
    """`gunicorn -k coachwhip.workers.CoachwhipWorker`: serves ASGI and WSGI apps with
    coachwhip's engine in gunicorn's worker processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine: _Engine | None = None
        self.access_log = True
        self.interface = ""
        self.stall_logged = False
        self.ready = False
        self.exit_status = 0

    # -- in the arbiter ---------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Run once by the arbiter at startup: say what gunicorn's other workers do that this
        one does not."""

        def changed(name: str) -> bool:
            setting = cfg.settings.get(name)
            return setting is not None and bool(setting.get() != type(setting).default)

        notes = []
        for hook in ("pre_request", "post_request"):
            if changed(hook):
                notes.append(f"the {hook} hook is not called (the engine answers requests)")
        if _setting(cfg, "statsd_host", None):
            notes.append("--statsd-host sees no requests (the engine answers them)")
        if changed("ssl_context"):
            notes.append("the ssl_context hook is not called (TLS runs in the engine)")
        if cfg.reuse_port:
            notes.append(
                "--reuse-port gives each worker its own socket: connections waiting in the "
                "queue of a worker that stops are reset"
            )
        if cfg.keepalive <= 0:
            notes.append(
                "--keep-alive 0 cannot turn keep-alive off: idle connections close after 1 s"
            )
        for note in notes:
            log.warning("coachwhip worker: %s", note)

    # -- in the worker ----------------------------------------------------------------------

    def init_signals(self) -> None:
        """Before the event loop runs: gunicorn's handlers for SIGTERM (alive = False),
        SIGINT/SIGQUIT (exit) and SIGABRT; the arbiter's signals ignored. The event loop
        installs its own for SIGTERM, SIGINT, SIGQUIT and SIGUSR1 (install_loop_signals)."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for ignored in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
            signal.signal(ignored, signal.SIG_IGN)  # a `kill -HUP -PGID` is the arbiter's
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.siginterrupt(signal.SIGTERM, False)
        signal.siginterrupt(signal.SIGUSR1, False)

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """gunicorn's timeout: this worker stopped beating (its event loop is stuck). Runs
        between two bytecodes of whatever is stuck; exits at once, without unwinding through
        the app (which could catch it) or a WSGI engine thread still running."""
        self.alive = False
        with contextlib.suppress(Exception):
            self.cfg.worker_abort(self)
        error_logger.error("No heartbeat for --timeout %ss: exiting now", self.cfg.timeout)
        for handler in {*error_logger.handlers, *logging.getLogger().handlers}:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(1)

    def install_loop_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self.graceful_stop)
        loop.add_signal_handler(signal.SIGINT, self.quick_stop)
        loop.add_signal_handler(signal.SIGQUIT, self.quick_stop)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        if not self.alive:  # SIGTERM before the loop ran
            self.graceful_stop()

    def graceful_stop(self) -> None:
        self.alive = False
        if self.engine is not None:
            self.engine._on_signal(signal.SIGTERM)  # a third one forces, as in coachwhip

    def quick_stop(self) -> None:
        self.alive = False
        with contextlib.suppress(Exception):
            self.cfg.worker_int(self)
        if self.engine is not None:
            self.engine._force()

    def on_ready(self) -> None:
        self.ready = True
        _SHARED[_EVER_READY], _SHARED[_FAILURES] = 1, 0
        error_logger.info("Serving with coachwhip's engine (pid %d, %s)", self.pid, self.interface)
        context = self.engine.tls if self.engine is not None else None
        if context is not None and self.age == 1:  # the first worker says what it serves
            tls.announce(context)

    def on_retire(self, reason: str) -> None:
        error_logger.info("Autorestarting worker: %s", reason)
        self.graceful_stop()

    def beat(self) -> None:
        """gunicorn's heartbeat (`notify()`), from the event loop: a loop stuck in blocking code
        stops beating, and the arbiter aborts this worker after --timeout. Also while draining,
        which --graceful-timeout bounds."""
        engine = self.engine
        server = engine.engine if engine is not None else None
        if self.alive and self.ppid != os.getppid():
            error_logger.info("Parent changed, shutting down: %s", self)
            self.graceful_stop()
        elif not self.alive and engine is not None and not engine.stopping.is_set():
            self.graceful_stop()  # gunicorn's --reload thread said so (it sets alive only)
        limit = float(self.cfg.timeout)
        stalled = server.wsgi_stalled if server is not None and self.interface == "wsgi" else 0.0
        if limit and stalled >= limit:
            if not self.stall_logged:
                self.stall_logged = True
                error_logger.error(
                    "All %d WSGI threads have been busy for %.0fs with requests waiting: no "
                    "heartbeat, so gunicorn replaces this worker (--timeout)",
                    engine.config.threads if engine is not None else 0,
                    stalled,
                )
        else:
            self.notify()
        interval = max(0.05, min(1.0, self.timeout / 2)) if self.timeout else 1.0
        asyncio.get_running_loop().call_later(interval, self.beat)

    # Settings this class imposes over gunicorn's and COACHWHIP_* (CoachwhipH11Worker).
    OVERRIDES: dict[str, Any] = {}

    def run(self) -> None:
        # The engine serves duplicates of the arbiter's sockets and closes them when it drains;
        # gunicorn's own copies in this process are closed now, so that once every worker is
        # draining and the arbiter has closed its copy (gunicorn stopping), new connections
        # are refused at once instead of waiting in a queue nobody accepts from.
        fds = [os.dup(sock.fileno()) for sock in self.sockets]
        for sock in self.sockets:
            with contextlib.suppress(Exception):
                sock.close()
        max_requests = self.max_requests if self.max_requests < sys.maxsize else 0
        try:
            config = config_from_gunicorn(self.cfg, fds, max_requests)
            for attr, value in self.OVERRIDES.items():
                setattr(config, attr, value)
            loop = _new_loop(config.loop)
        except ConfigError as exc:
            loop, config = asyncio.new_event_loop(), None
            failure: str | None = str(exc)
        else:
            failure = None
        try:
            self.exit_status = loop.run_until_complete(self._main(config, failure))
        finally:
            _cancel_tasks(loop)
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if self.exit_status:
            sys.exit(self.exit_status)

    async def _main(self, config: Config | None, failure: str | None) -> int:
        self.beat()
        if config is None:
            return await self._failed(failure or "bad settings")
        self.access_log = route_logging(self.log, str(self.cfg.loglevel).lower())
        config.access_log = self.access_log
        logs.use_access_format(config.access_log_format)
        for note in config.notes:
            error_logger.info("%s", note)
        for warning in config.warnings:
            error_logger.warning("%s", warning)
        try:
            engine = self._engine(config)
            os.environ[tls.SECRET_ENV] = str(_secret_fd())
            self.engine = engine
            status = await engine.serve()
        except (ConfigError, StartupError, BindError) as exc:
            if self.ready:
                raise
            return await self._failed(str(exc))
        except Exception as exc:
            if self.ready:
                raise
            error_logger.exception("Exception while starting the app")
            return await self._failed(f"{type(exc).__name__}: {exc}")
        # A quick stop (SIGINT, SIGQUIT) exits 0, as gunicorn's own workers do.
        return 0 if status in (0, FORCED_EXIT_STATUS) else status

    def _engine(self, config: Config) -> _Engine:
        from coachwhip.importer import _call_factory, _is_factory

        app = self.wsgi
        uri = str(getattr(self.app, "app_uri", None) or "the app")
        if _is_factory(app):
            error_logger.warning(
                "'%s' is a function without parameters: taken as an app factory and called to "
                "build the app (gunicorn's way to say so: '%s()')",
                uri,
                uri,
            )
            app = _call_factory(app, uri)
        interface, served, note = choose(app, config.interface, repr(uri))
        if interface == "wsgi" and config.lifespan == "on":
            raise ConfigError(
                "--asgi-lifespan on: a WSGI app has no lifespan (PEP 3333); drop it, or set "
                "COACHWHIP_INTERFACE=asgi3 if the app is ASGI"
            )
        if interface != "wsgi":  # gunicorn's --threads is for WSGI apps only
            config.threads = OPTION_BY_ATTR["threads"].default
        self.interface = interface
        return _Engine(self, config, served, interface=interface, interface_note=note)

    async def _failed(self, reason: str) -> int:
        """A start that failed: gunicorn stops (no respawn loop) while no worker has ever
        started; after that, the worker waits longer each time before it exits and is
        respawned, while the others serve."""
        error_logger.error("Worker failed to start: %s", reason)
        loop = asyncio.get_running_loop()
        if not _SHARED[_EVER_READY]:
            if _SHARED[_BOOT_FAILED]:
                # Another worker has told gunicorn, which is stopping: wait a moment for its
                # SIGTERM, then exit 0 (a SIGTERM sent before this worker set its handlers is
                # lost). A second boot failure reaped while the arbiter stops crashes it
                # (gunicorn 27.0.1: status 1 and a traceback instead of 3).
                deadline = loop.time() + BOOT_FAILED_WAIT_S
                while self.alive and loop.time() < deadline:
                    await asyncio.sleep(0.05)
                return 0
            _SHARED[_BOOT_FAILED] = 1
            error_logger.error(
                "No worker has started yet: stopping gunicorn rather than starting this one "
                "again (fix the cause and start gunicorn again)"
            )
            return WORKER_BOOT_ERROR
        failures = min(_SHARED[_FAILURES] + 1, 255)
        _SHARED[_FAILURES] = failures
        delay = min(FIRST_RETRY_S * 2 ** (failures - 1), LONGEST_RETRY_S)
        error_logger.error("Other workers serve on; a new worker starts in %gs", delay)
        deadline = loop.time() + delay
        while self.alive and loop.time() < deadline:
            await asyncio.sleep(min(0.1, deadline - loop.time()))
        return RETRY_STATUS


class CoachwhipH11Worker(CoachwhipWorker):
    """For the users of uvicorn's UvicornH11Worker (its variant without uvloop and httptools):
    the same engine, on asyncio's own event loop."""

    OVERRIDES: dict[str, Any] = {"loop": "asyncio"}


def _secret_fd() -> int:
    """A memfd with the arbiter's ticket secret, where server.Worker reads a supervisor's
    (coachwhip.tls.inherited_secret): every worker of this gunicorn resumes the others'
    TLS sessions."""
    fd = os.memfd_create("coachwhip-tls-tickets", os.MFD_CLOEXEC)
    os.write(fd, _TICKET_SECRET)
    return fd


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does at the end: tasks the app left running are cancelled and
    awaited."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
