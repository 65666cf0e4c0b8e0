"""run(): one worker process serving one app until SIGINT/SIGTERM.

Order of events: import the app, bind the socket, run lifespan startup, start the engine and
print "Listening on ..." (the readiness line), serve; on the first signal stop accepting, let
requests in flight finish (bounded by --timeout-graceful-shutdown), close idle connections, run
lifespan shutdown, return 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import resource
import signal
import socket
import threading
from typing import Any, Protocol

from coachwhip import __version__, compat, logs, sources, tls
from coachwhip.config import OPTION_BY_ATTR, Config, ConfigError, split_header
from coachwhip.importer import import_app
from coachwhip.interface import choose
from coachwhip.lifespan import Lifespan
from coachwhip.logs import error_logger
from coachwhip.sockets import (
    BindError,
    close_listener,
    describe,
    open_listeners,
    open_metrics_listener,
)

FORCED_EXIT_STATUS = 130


class StartupError(RuntimeError):
    """The app's lifespan startup failed; the server did not serve."""


class SupervisorLink(Protocol):
    """How a worker reports to its supervisor (coachwhip._worker)."""

    def send(self, line: str) -> None: ...


def run(
    app: Any = None,
    /,
    config: Config | None = None,
    supervisor: SupervisorLink | None = None,
    **settings: Any,
) -> int:
    """Serves `app` (an ASGI callable or "module:attribute") until a shutdown signal.

    Keyword settings are the command-line flags with underscores (port=8000, root_path="/api"),
    or uvicorn.run()'s keywords (coachwhip.compat).
    Returns the exit status (0 after a clean shutdown). Raises ConfigError for a bad setting or
    app name, StartupError when lifespan startup fails. With workers > 1 (or recycling or
    reload settings) a supervisor process runs the workers (coachwhip.supervisor).
    """
    if config is None:
        keywords, notes = compat.from_keywords(settings)
        if app is not None:
            keywords["app"] = app
        config = sources.load(keywords, notes=notes)
    log_config = config.log_config
    if isinstance(log_config, str) and config.chdir is not None:
        log_config = os.path.join(config.chdir, log_config)  # relative to --chdir, as the rest
    logs.configure(
        config.log_level,
        config.access_log,
        config.access_logfile,
        config.error_logfile,
        log_config=log_config,
        use_colors=config.use_colors,
        access_log_format=config.access_log_format,
    )
    if supervisor is None:
        for note in config.notes:
            error_logger.info("%s", note)
        for warning in config.warnings:
            error_logger.warning("%s", warning)
    if config.chdir is not None:
        os.chdir(config.chdir)
    if supervisor is None and config.ws not in ("auto", "none"):
        error_logger.info(
            "--ws %s: coachwhip's WebSocket is built into its engine; serving as --ws auto",
            config.ws,
        )
    if supervisor is None and config.needs_supervisor():
        if not isinstance(config.app, str):
            raise ConfigError(
                "with --workers > 1, --max-requests, --workers-max-rss or --reload the app "
                'must be given as an import string ("module:attribute") so that each worker '
                "can import it"
            )
        from coachwhip.supervisor import Supervisor

        return Supervisor(config).run()
    if isinstance(config.app, str):
        target = import_app(config.app, config.app_dir, config.factory)
    else:
        target = config.app() if config.factory else config.app
    name = repr(config.app) if isinstance(config.app, str) else "the app"
    interface, served, note = choose(target, config.interface, name)
    if interface == "wsgi" and config.lifespan == "on":
        raise ConfigError(
            "--lifespan on: a WSGI app has no lifespan (PEP 3333); drop --lifespan on, or use "
            "--interface asgi3 if the app is ASGI"
        )
    loop = _new_loop(config.loop)
    try:
        worker = Worker(config, served, supervisor, interface=interface, interface_note=note)
        return loop.run_until_complete(worker.serve())
    except BindError as exc:
        error_logger.error("%s", exc)
        return 1
    finally:
        _cancel_leftover_tasks(loop)
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


LEFTOVER_TASKS_TIMEOUT = 5.0


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run() does as it ends: the tasks the app left running (a background loop
    started at startup, a fire-and-forget task of a request) are cancelled and awaited, so that
    their `finally` blocks run and none is destroyed pending ("Task was destroyed but it is
    pending!"). Unlike asyncio.run(), the wait is bounded: a task that ignores its
    cancellation for LEFTOVER_TASKS_TIMEOUT seconds is named in a warning, and the process
    exits anyway."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=LEFTOVER_TASKS_TIMEOUT))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task cancelled at exit",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        names = ", ".join(sorted(task.get_name() for task in pending))
        error_logger.warning(
            "%d task(s) still running %gs after they were cancelled at exit (%s): they catch "
            "asyncio.CancelledError and carry on; exiting without them",
            len(pending),
            LEFTOVER_TASKS_TIMEOUT,
            names,
        )
        for task in pending:
            task._log_destroy_pending = False  # type: ignore[attr-defined] (said above)


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            if kind == "uvloop":
                from coachwhip.config import ConfigError

                raise ConfigError(
                    "--loop uvloop: uvloop is not installed "
                    "(pip install uvloop, or use --loop asyncio)"
                ) from None
    return asyncio.new_event_loop()


def _raise_open_files_limit(wanted_connections: int) -> None:
    """Lifts the soft RLIMIT_NOFILE to the hard limit, so --max-connections is reachable."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = wanted_connections + 64  # listening socket, epoll, timerfd, the app's own files
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft < wanted:
        error_logger.warning(
            "The open-files limit (%d) is below --max-connections (%d): connections beyond it "
            "will be refused by accept(); raise it with 'ulimit -n'",
            soft,
            wanted_connections,
        )


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class Worker:
    def __init__(
        self,
        config: Config,
        app: Any,
        supervisor: SupervisorLink | None = None,
        interface: str = "asgi3",
        interface_note: str = "",
    ) -> None:
        self.config = config
        self.app = app
        self.interface = interface
        self.interface_note = interface_note or f"--interface {interface}"
        self.wsgi_threads: list[threading.Thread] = []
        self.supervisor = supervisor
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()
        self.signals = 0
        self.retire_asked = False
        self.engine: Any = None  # the _core.Server, once serving
        self.tls: Any = None  # the _core.TlsContext with --ssl-certfile
        self.tls_secret: bytes | None = None  # its session-ticket secret (kept across reloads)
        self.not_ready = False  # the supervisor said a shutdown is near (SIGUSR1)
        # --max-requests with jitter: each worker draws its own limit, so that workers started
        # together do not all retire together.
        jitter = random.randint(0, config.max_requests_jitter) if config.max_requests_jitter else 0
        self.max_requests = config.max_requests + jitter if config.max_requests else 0

    def _engine(
        self, loop: asyncio.AbstractEventLoop, lifespan: Lifespan | None, hold_requests: bool
    ) -> Any:
        try:
            return self._new_server(loop, lifespan, hold_requests)
        except ValueError as exc:  # a setting the engine refuses: a usage error, not a crash
            raise ConfigError(str(exc)) from None

    def _new_server(
        self, loop: asyncio.AbstractEventLoop, lifespan: Lifespan | None, hold_requests: bool
    ) -> Any:
        from coachwhip import _asgi, _core, _wsgi

        config = self.config
        wsgi = self.interface == "wsgi"
        # The request and response fields the access log format shows (%({name}i)s ...).
        fields = logs.AccessFormat(config.access_log_format) if config.access_log_format else None
        # multiprocess: under a supervisor another process may run the app at the same time
        # (other workers, or the one being replaced).
        environ = _wsgi.base_environ(config.root_path, config.threads, self.supervisor is not None)
        return _core.Server(
            self.app,
            loop,
            _wsgi.report_failure if wsgi else _asgi.report_failure,
            root_path=config.root_path,
            state=lifespan.state if lifespan is not None else {},
            keep_alive=config.timeout_keep_alive,
            server_header=config.server_header,
            date_header=config.date_header,
            headers=[split_header(item, "--header") for item in config.header or ()] or None,
            access_log=logs.access if config.access_log else None,
            access_log_flush=logs.flush_access,
            access_log_request_fields=fields.request_fields if fields else None,
            access_log_response_fields=fields.response_fields if fields else None,
            error_log=logs.engine_log,
            log_level=logs.error_logger.getEffectiveLevel(),
            timeout_request_header=config.timeout_request_header,
            timeout_request_body=config.timeout_request_body,
            timeout_write=config.timeout_write,
            min_request_body_rate=config.min_request_body_rate,
            min_response_rate=config.min_response_rate,
            min_rate_grace=config.min_rate_grace,
            limit_request_line=config.limit_request_line,
            limit_request_fields=config.limit_request_fields,
            limit_request_header_size=config.limit_request_header_size,
            limit_request_body=config.limit_request_body,
            limit_concurrency=config.limit_concurrency,
            max_connections=config.max_connections,
            request_limit=self.max_requests if self.supervisor is not None else 0,
            on_request_limit=self._retire_for_max_requests,
            health=config.health,
            readiness=config.readiness,
            hold_requests=hold_requests,
            forwarded_allow_ips=config.forwarded_allow_ips,
            proxy_headers=config.proxy_headers,
            proxy_protocol=config.proxy_protocol,
            metrics=config.metrics and not config.metrics_bind,
            tls=self.tls,
            timeout_tls_handshake=config.timeout_tls_handshake,
            websocket=config.ws != "none" and not wsgi,
            ws_max_size=config.ws_max_size,
            ws_max_queue=config.ws_max_queue,
            ws_ping_interval=config.ws_ping_interval,
            ws_ping_timeout=config.ws_ping_timeout,
            ws_per_message_deflate=config.ws_per_message_deflate,
            http1=config.http != "2",
            http2=config.http != "1",
            http2_max_concurrent_streams=config.http2_max_concurrent_streams,
            http2_initial_stream_window_size=config.http2_initial_stream_window_size,
            http2_initial_connection_window_size=config.http2_initial_connection_window_size,
            http2_max_frame_size=config.http2_max_frame_size,
            http2_max_headers_size=config.http2_max_headers_size,
            wsgi_environ=environ if wsgi else None,
            **self._shared_metrics(),
        )

    def _metrics_socket(self) -> socket.socket | None:
        """--metrics-bind: the supervisor's socket (inherited), or one bound here."""
        if self.config.metrics_bind is None:
            return None
        inherited = os.environ.get("COACHWHIP_WORKER_METRICS_SOCKET") if self.supervisor else None
        if inherited:
            return socket.socket(fileno=int(inherited))
        return open_metrics_listener(self.config.metrics_bind, self.config.backlog)

    def _shared_metrics(self) -> dict[str, int]:
        """Under a supervisor with --metrics: the shared region's fd and this worker's slot."""
        spec = os.environ.get("COACHWHIP_WORKER_METRICS", "") if self.supervisor else ""
        fd, _, slot = spec.partition(":")
        return {"metrics_fd": int(fd), "metrics_slot": int(slot)} if slot else {}

    async def serve(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        # Under a supervisor, which checked the files and logged the certificate already, the
        # ticket secret comes from it: every worker resumes the others' sessions. Loaded first:
        # a mistake in the files is one line on stderr, and nothing else.
        secret = tls.inherited_secret() if self.supervisor else os.urandom(tls.SECRET_BYTES)
        self.tls_secret = secret
        self.tls = tls.load(config, secret)
        error_logger.info(
            "Started coachwhip %s (pid %d, %s loop)", __version__, os.getpid(), _loop_name(loop)
        )
        if self.tls is not None and self.supervisor is None:
            tls.announce(self.tls)
        threads = f", {config.threads} threads" if self.interface == "wsgi" else ""
        error_logger.info("Interface: %s (%s)%s", self.interface, self.interface_note, threads)
        if self.interface != "wsgi" and config.threads != OPTION_BY_ATTR["threads"].default:
            error_logger.info("--threads %d: used by WSGI apps only; ignored", config.threads)
        _raise_open_files_limit(config.max_connections)
        socks = open_listeners(config)
        self._install_signals(loop)
        wsgi = self.interface == "wsgi"  # no lifespan in PEP 3333
        lifespan = (
            Lifespan(self.app, config.lifespan) if config.lifespan != "off" and not wsgi else None
        )
        # A single process accepts while the app starts, so /-/ready can answer 503 meanwhile;
        # requests for the app are held until its startup completed. A worker under the
        # supervisor accepts only once started: the workers already running serve meanwhile.
        early = self.supervisor is None and lifespan is not None
        server = self._engine(loop, lifespan, hold_requests=True) if early else None
        metrics_sock = self._metrics_socket()
        if server is not None:
            for sock in socks:
                server.add_listener(sock)
            if metrics_sock is not None:
                server.add_internal_listener(metrics_sock)
            loop.add_reader(server.fileno(), server.on_readable)
        if lifespan is not None and not await lifespan.startup():
            if server is not None:
                loop.remove_reader(server.fileno())
                server.stop_accepting()
                server.close_all()
            for sock in socks:
                close_listener(sock, config)
            raise StartupError(f"application startup failed: {lifespan.failure}")
        if self.stopping.is_set() and self.supervisor is not None:
            for sock in socks:  # told to stop while starting: never report ready
                close_listener(sock, config)
            return 0
        if server is None:
            server = self._engine(loop, lifespan, hold_requests=False)
            self._start_wsgi_threads(server)
            for sock in socks:
                server.add_listener(sock)
            if metrics_sock is not None:
                server.add_internal_listener(metrics_sock)
            if wsgi:
                server.start_engine_thread()  # WSGI: the engine never waits on the GIL
            else:
                loop.add_reader(server.fileno(), server.on_readable)
        else:
            server.set_ready(True)
            server.release_requests()
        self.engine = server
        if self.not_ready:
            server.set_ready(False)
        if self.supervisor is None:
            where = ", ".join(describe(sock, config.scheme) for sock in socks)
            error_logger.info("Listening on %s (Press CTRL+C to quit)", where)
        else:
            self.supervisor.send("READY")
            self._heartbeat(server)
        if not self.stopping.is_set():
            await self.stopping.wait()
        status = await self._drain(server, socks)
        self._stop_wsgi_threads(server)
        if wsgi:
            server.stop_engine_thread()
        else:
            loop.remove_reader(server.fileno())
        if metrics_sock is not None:
            metrics_sock.close()
        if lifespan is not None and not self.forced.is_set():
            await lifespan.shutdown()
        error_logger.info("Finished server process [%d]", os.getpid())
        return status

    async def _drain(self, server: Any, socks: list[socket.socket]) -> int:
        """Graceful stop: refuse new connections, finish requests in flight, close the rest.

        With --shutdown-delay, first keep serving (new connections too) for that long while
        /-/ready answers 503, so that a load balancer or Kubernetes takes this instance out of
        rotation before it stops accepting."""
        server.set_ready(False)
        delay = self.config.shutdown_delay
        if delay > 0 and self.supervisor is None and not self.forced.is_set():
            # (Under a supervisor, the supervisor waits instead: see Supervisor._begin_stop.)
            error_logger.info("Not ready; shutting down in %gs (--shutdown-delay)", delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.forced.wait(), delay)
        error_logger.info("Shutting down")
        server.stop_accepting()
        for sock in socks:  # new connections are refused from now on
            close_listener(sock, self.config)
        server.shutdown_connections()
        deadline = asyncio.get_running_loop().time() + self.config.timeout_graceful_shutdown
        while server.connection_count or server.active_requests:
            if self.forced.is_set() or asyncio.get_running_loop().time() >= deadline:
                if not self.forced.is_set():
                    error_logger.warning(
                        "Graceful shutdown timed out after %gs: cancelling %d request(s)",
                        self.config.timeout_graceful_shutdown,
                        server.active_requests,
                    )
                server.cancel_all()
                server.close_all()
                await asyncio.sleep(0)  # let the cancelled tasks run their clean-up once
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.forced.wait(), 0.02)  # poll the engine's counters
        return FORCED_EXIT_STATUS if self.forced.is_set() else 0

    def _start_wsgi_threads(self, server: Any) -> None:
        """WSGI: the threads that run the app (--threads), each in Server._wsgi_work()."""
        if self.interface != "wsgi":
            return
        from coachwhip._wsgi import thread_name

        for index in range(self.config.threads):
            thread = threading.Thread(target=server._wsgi_work, name=thread_name(index))
            thread.daemon = True  # one stuck in the app must not keep the process alive
            thread.start()
            self.wsgi_threads.append(thread)

    def _stop_wsgi_threads(self, server: Any) -> None:
        """After the drain: idle threads return at once; a call still running had its
        connection closed, and gets a short moment to notice."""
        if not self.wsgi_threads:
            return
        server._wsgi_stop()
        for thread in self.wsgi_threads:
            thread.join(timeout=0.5)
        stuck = sum(1 for t in self.wsgi_threads if t.is_alive())
        if stuck:
            error_logger.warning("%d WSGI thread(s) still running the app at exit", stuck)

    def _heartbeat(self, server: Any) -> None:
        """Reports liveness from the event loop itself: a loop stuck in blocking code stops
        beating, and the supervisor replaces the worker (--timeout-worker-healthcheck)."""
        assert self.supervisor is not None
        stalled = server.wsgi_stalled if self.interface == "wsgi" else 0.0
        limit = self.config.timeout_worker_healthcheck  # 0: never
        if limit and stalled >= limit:
            # Every WSGI thread is stuck in the app while requests wait: stop beating, so the
            # supervisor replaces this worker as it would one whose event loop is stuck.
            error_logger.error(
                "All %d WSGI threads have been busy for %.0fs with requests waiting: no "
                "heartbeat, so this worker is replaced (--timeout-worker-healthcheck)",
                self.config.threads,
                stalled,
            )
            return
        self.supervisor.send(f"BEAT {server.requests_total}")
        if not self.stopping.is_set():
            interval = max(0.05, min(1.0, limit / 4)) if limit else 1.0
            asyncio.get_running_loop().call_later(interval, self._heartbeat, server)

    def _retire_for_max_requests(self) -> None:
        """Called by the engine when the request count reaches --max-requests (+ jitter): the
        supervisor starts a replacement and then stops this worker gracefully."""
        if self.supervisor is not None and not self.retire_asked:
            self.retire_asked = True
            self.supervisor.send(f"RETIRE max-requests ({self.max_requests} served)")

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.supervisor is not None:
            # The supervisor decides: Ctrl+C (and `kill -HUP -PGID`, or a terminal hang-up)
            # reaches the whole process group, and the supervisor turns each into SIGTERM
            # (graceful) or SIGQUIT (now) for the workers that should go.
            for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(ignored, signal.SIG_IGN)
            loop.add_signal_handler(signal.SIGTERM, self._on_signal, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGQUIT, self._force)
            loop.add_signal_handler(signal.SIGUSR1, self._mark_not_ready)
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        """SIGHUP in a single process: the TLS certificate is loaded again (when there is one);
        the app's code is not. Reloading code without failed requests needs a new process
        serving before the old one stops, which is what the supervisor's rolling restart
        does; a single process could only stop and start again, dropping what is in flight,
        and a mistake in the new code would leave nothing serving. So it says so, and serves
        on (SIGHUP's default action would have ended the process without a word)."""
        reloaded = self.tls is not None and self._reload_tls()
        error_logger.log(
            logging.INFO if reloaded else logging.WARNING,
            "SIGHUP: %sthe app's code is not reloaded by a single process; for rolling "
            "restarts on SIGHUP run coachwhip with --workers 2 or more (its supervisor "
            "starts new workers before the old ones stop)",
            "the TLS certificate was read again; " if reloaded else "",
        )

    def _reload_tls(self) -> bool:
        """SIGHUP in a single process with TLS: load the certificate files again; new
        connections get the new certificate, open ones keep theirs. A broken file is logged and
        the running certificate stays (certbot's deploy hook can send SIGHUP safely)."""
        try:
            context = tls.load(self.config, self.tls_secret)
        except ConfigError as exc:
            error_logger.error("SIGHUP ignored, still serving the old certificate: %s", exc)
            return False
        tls.announce(context)
        self.tls = context
        if self.engine is not None:
            self.engine.set_tls(context)
        return True

    def _mark_not_ready(self) -> None:
        """--shutdown-delay under a supervisor: /-/ready answers 503 from now on; the
        supervisor sends SIGTERM when the delay is over."""
        self.not_ready = True
        if self.engine is not None:
            self.engine.set_ready(False)

    def _force(self) -> None:
        self.forced.set()
        self.stopping.set()

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stopping.set()
            return
        if sig == signal.SIGINT or self.signals > 2:
            error_logger.warning("Forced exit: closing all connections now")
            self.forced.set()
            self.stopping.set()
