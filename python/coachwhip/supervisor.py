"""The supervisor: owns the listening socket and runs the worker processes.

Each worker is a fresh interpreter (`python -m coachwhip._worker`) that inherits the listening
socket and imports the app itself, so a rolling restart (SIGHUP) serves freshly imported code.
By default all workers accept on the one shared socket: when a worker retires or dies,
connections waiting in the kernel's queue are taken by the others instead of being reset.

--reuse-port gives each worker slot its own SO_REUSEPORT socket, and the kernel spreads new
connections over the slots evenly. The supervisor keeps every slot's socket open, so a
replacement worker inherits the queue of the one it replaces (SIGHUP, recycling and respawns
lose nothing; connections wait in a dead worker's queue until its replacement takes them).
Only SIGTTOU closes a slot, and it loses nothing either: first the kernel is told to send new
connections to the other slots only (a classic BPF program on the SO_REUSEPORT group), the
worker on the slot keeps accepting until its queue is empty, and only then is it retired and
the slot closed.

Signals, as gunicorn users expect:
    SIGTERM, SIGINT   graceful stop (a second SIGINT: stop now, exit 130)
    SIGHUP            rolling restart, one worker at a time, the new one ready first
    SIGTTIN, SIGTTOU  one worker more / one fewer
    SIGQUIT           stop now

Workers are replaced, one at a time and new-before-old, when they ask (--max-requests), when
their memory exceeds --workers-max-rss, or on SIGHUP. A worker whose event loop stops sending
heartbeats for --timeout-worker-healthcheck seconds is killed and respawned. A worker that dies
is respawned with back-off; a worker that fails while starting, before any worker was ever
ready, stops the server with the reason instead of respawning in a loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any

from coachwhip import __version__, tls
from coachwhip.config import Config, ConfigError, bind_kind
from coachwhip.logs import error_logger
from coachwhip.reload import FileWatcher, WatchError
from coachwhip.server import FORCED_EXIT_STATUS, _raise_open_files_limit
from coachwhip.sockets import (
    BindError,
    accept_queue_length,
    close_listener,
    describe,
    open_listeners,
    open_metrics_listener,
    open_sibling,
    steer_reuseport,
    unsteer_reuseport,
)

TICK_S = 0.1
METRICS_SLOTS = 256  # worker processes alive at once, replacements included
# SIGTTOU with --reuse-port: after new connections are steered away from the slot that closes,
# its worker keeps accepting at least this long (handshakes begun before the switch complete
# into its queue within a round trip), and at most STEER_MAX_S while its queue is not empty.
STEER_MIN_S = 0.25
STEER_MAX_S = 3.0
RELOAD_DEBOUNCE_S = 0.2
RELOAD_KEY = object()  # selector key data of the file watcher
MAX_BOOT_FAILURES = 5
STARTUP_FAILED_STATUS = 3


@dataclasses.dataclass(eq=False)
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    pipe: int  # read end of the worker's report pipe
    slot: int  # which listening socket it serves (always 0 without --reuse-port)
    started: float
    last_beat: float
    buffer: bytes = b""
    ready: bool = False
    stopping: bool = False  # we told it to stop (SIGTERM/SIGQUIT/SIGKILL)
    kill_at: float | None = None  # SIGKILL if still alive then
    replace_reason: str | None = None  # it should be replaced (new one first)
    killed: bool = False  # we sent SIGKILL (stuck, or not stopping in time)
    metrics_slot: int | None = None  # its block in the shared metrics region
    fail_reason: str | None = None  # what it said when its startup failed

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers
        self.workers: list[WorkerProcess] = []
        self.selector = selectors.DefaultSelector()
        self.pending_signals: deque[int] = deque()
        self.stopping = False
        self.forced = False
        self.status = 0
        self.ever_ready = False
        self.announced = False
        self.boot_failures = 0
        self.next_spawn_at = 0.0
        self.next_rss_check = 0.0
        self.rolling: deque[WorkerProcess] = deque()  # waiting to be replaced, oldest first
        self.replacement: WorkerProcess | None = None  # started for the head of `rolling`
        self.watcher: FileWatcher | None = None
        self.reload_at: float | None = None  # debounce: reload when this time has come
        self.changed: set[str] = set()
        self.slots: dict[int, socket.socket] = {}  # --reuse-port: a socket per worker slot
        self.extra_socks: list[socket.socket] = []  # listeners beyond the first
        self.steered_at: float | None = None  # when new connections were steered (SIGTTOU)
        self.stop_at: float | None = None  # --shutdown-delay: when the graceful stop begins
        self.scale_pending = 0  # SIGTTIN workers not started yet (for the start reason)
        # --metrics: every worker counts into its own slot of this shared memory; any worker's
        # /-/metrics renders them all (see src/server/metrics.hpp).
        self.metrics: Any = None
        self.metrics_sock: socket.socket | None = None  # --metrics-bind, shared by the workers
        if config.metrics:
            from coachwhip import _core

            self.metrics = _core.MetricsRegion(METRICS_SLOTS)
        # TLS: the files are checked here, before any worker starts (and again on SIGHUP), and
        # every worker gets the same session-ticket secret (src/tls/context.hpp).
        self.tls_secret_fd: int | None = None
        if config.ssl_certfile is not None:
            tls.announce(tls.load(config))
            self.tls_secret_fd = tls.make_secret_fd()

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        error_logger.info("Started coachwhip %s supervisor (pid %d)", __version__, os.getpid())
        _raise_open_files_limit(self.config.max_connections)
        try:
            socks = open_listeners(self.config)
        except BindError as exc:
            error_logger.error("%s", exc)
            return 1
        # The first listener is the one --reuse-port gives each slot a copy of; the others
        # (several --bind, several systemd sockets) are shared by every worker.
        self.sock, self.extra_socks = socks[0], socks[1:]
        self.address = ", ".join(describe(sock, self.config.scheme) for sock in socks)
        self.slots[0] = self.sock
        if self.config.metrics_bind is not None:
            try:
                self.metrics_sock = open_metrics_listener(self.config.metrics_bind, 128)
            except BindError as exc:
                error_logger.error("%s", exc)
                return 1
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        if self.config.reload:
            try:
                self.watcher = FileWatcher(
                    self.config.reload_dir or [os.getcwd()],
                    self.config.reload_include or [],
                    self.config.reload_exclude or [],
                )
            except WatchError as exc:
                error_logger.error("--reload: %s", exc)
                return 1
            self.selector.register(self.watcher.fileno(), selectors.EVENT_READ, RELOAD_KEY)
            error_logger.info(
                "Watching for changes in %s", ", ".join(self.config.reload_dir or [os.getcwd()])
            )
        previous = self._install_signals(wake_w)
        try:
            while self.workers or not self.stopping:
                self._wait(wake_r)
                self._handle_signals()
                if self.stop_at is not None and time.monotonic() >= self.stop_at:
                    self.stop_at = None
                    self._stop(graceful=True)
                self._reap()
                self._check_workers()
                if not self.stopping:
                    self._reload_if_due()
                    self._maintain()
        finally:
            self._restore_signals(previous)
            self._close_slots(0)
            for sock in self.extra_socks:
                close_listener(sock, self.config)
            if self.metrics_sock is not None:
                self.metrics_sock.close()
            for path in [self.config.uds, *self._bound_paths()]:
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            if self.watcher is not None:
                self.watcher.close()
            for fd in (wake_r, wake_w):
                os.close(fd)
            if self.tls_secret_fd is not None:
                os.close(self.tls_secret_fd)
        error_logger.info("Finished supervisor process [%d]", os.getpid())
        return self.status

    def _wait(self, wake_r: int) -> None:
        for key, _ in self.selector.select(TICK_S):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            elif key.data is RELOAD_KEY:
                assert self.watcher is not None
                changes = self.watcher.read_changes()
                if changes:  # debounce: editors save in several steps
                    self.changed.update(changes)
                    self.reload_at = time.monotonic() + RELOAD_DEBOUNCE_S
            else:
                self._read_reports(key.data)

    # ------------------------------------------------------------------ workers

    def _spawn(self, why: str, slot: int, reason: str) -> WorkerProcess:
        sock = self._slot_socket(slot)
        settings = dataclasses.asdict(self.config)
        settings.update(fd=sock.fileno(), uds=None, bind=None, workers=1, reuse_port=False)
        if self.extra_socks:  # several listeners: the worker gets them all, as fds
            fds = [sock.fileno(), *(s.fileno() for s in self.extra_socks)]
            settings.update(fd=None, bind=[f"fd://{fd}" for fd in fds])
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        env = dict(os.environ)
        env["COACHWHIP_WORKER_CONFIG"] = json.dumps(settings)
        env["COACHWHIP_WORKER_PIPE"] = str(write_end)
        pass_fds = [sock.fileno(), write_end, *(s.fileno() for s in self.extra_socks)]
        metrics_slot = None
        if self.metrics is not None:
            used = {w.metrics_slot for w in self.workers}
            metrics_slot = min(set(range(METRICS_SLOTS)) - used, default=None)
            if metrics_slot is not None:
                env["COACHWHIP_WORKER_METRICS"] = f"{self.metrics.fd}:{metrics_slot}"
                pass_fds.append(self.metrics.fd)
            self.metrics.count_start(_core_reason("start", reason))
        if self.metrics_sock is not None:
            env["COACHWHIP_WORKER_METRICS_SOCKET"] = str(self.metrics_sock.fileno())
            pass_fds.append(self.metrics_sock.fileno())
        if self.tls_secret_fd is not None:
            env[tls.SECRET_ENV] = str(self.tls_secret_fd)
            pass_fds.append(self.tls_secret_fd)
        proc = subprocess.Popen(
            [sys.executable, "-m", "coachwhip._worker"],
            pass_fds=pass_fds,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(write_end)
        now = time.monotonic()
        worker = WorkerProcess(proc, read_end, slot, now, now, metrics_slot=metrics_slot)
        self.selector.register(read_end, selectors.EVENT_READ, worker)
        self.workers.append(worker)
        error_logger.info("Started worker [%d] (%s)", worker.pid, why)
        return worker

    def _slot_socket(self, slot: int) -> socket.socket:
        if slot not in self.slots:
            try:
                self.slots[slot] = open_sibling(self.sock, self.config.backlog)
            except BindError as exc:  # out of descriptors, say: share the first socket instead
                error_logger.error("--reuse-port: %s; this worker shares the first socket", exc)
                return self.sock
        return self.slots[slot]

    def _bound_paths(self) -> list[str]:
        """The Unix socket files --bind unix:PATH made (removed when the server stops)."""
        return [value for kind, value in map(bind_kind, self.config.bind or []) if kind == "unix"]

    def _free_slot(self) -> int:
        """The lowest slot no running worker serves (a stopping one may still: it leaves)."""
        if not self.config.reuse_port:
            return 0
        used = {w.slot for w in self.workers if not w.stopping}
        return min(set(range(len(used) + 1)) - used)

    def _close_slots(self, first: int) -> None:
        """Closes the sockets of slots >= `first` that no worker process holds any more."""
        held = {w.slot for w in self.workers}
        for slot in [s for s in self.slots if s >= first and (first == 0 or s not in held)]:
            sock = self.slots.pop(slot)
            queued = accept_queue_length(sock)
            if queued and first > 0:
                error_logger.warning(
                    "Closing the --reuse-port socket of slot %d resets %d queued connection(s)",
                    slot,
                    queued,
                )
            with contextlib.suppress(OSError):
                sock.close()
        if self.steered_at is not None and max(self.slots, default=0) < max(1, self.target):
            self.steered_at = None  # the closing slots are gone: the kernel's own choice again
            if self.slots:
                unsteer_reuseport(self.sock)

    def _read_reports(self, worker: WorkerProcess) -> None:
        try:
            data = os.read(worker.pipe, 4096)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(worker.pipe)
            return
        worker.buffer += data
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for raw in lines:
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            self._on_report(worker, kind, rest)

    def _on_report(self, worker: WorkerProcess, kind: str, rest: str) -> None:
        worker.last_beat = time.monotonic()
        if kind == "READY":
            worker.ready = True
            self.ever_ready = True
            self.boot_failures = 0
            error_logger.info("Worker [%d] ready", worker.pid)
            if worker is self.replacement:
                self._finish_replacement()
            self._announce()
        elif kind == "RETIRE":
            self._request_replacement(worker, rest)
        elif kind == "FAIL":
            worker.fail_reason = rest

    def _announce(self) -> None:
        ready = sum(1 for w in self.workers if w.ready and not w.stopping)
        if not self.announced and ready >= self.target:
            self.announced = True
            error_logger.info(
                "Listening on %s with %d workers (Press CTRL+C to quit)", self.address, ready
            )

    def _reap(self) -> None:
        for worker in [w for w in self.workers if w.proc.poll() is not None]:
            self.workers.remove(worker)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.pipe)
            os.close(worker.pipe)
            self._on_exit(worker, worker.proc.returncode)
            if self.metrics is not None and worker.metrics_slot is not None:
                self.metrics.fold(worker.metrics_slot)  # its counts stay, its slot is free
            if not self.stopping:  # SIGTTOU: the slot of a retired extra worker goes too
                self._close_slots(max(1, self.target))

    def _on_exit(self, worker: WorkerProcess, code: int) -> None:
        if self.metrics is not None:
            kind = (
                "killed"
                if worker.killed
                else "graceful"
                if worker.stopping
                else "crashed"
                if worker.ready
                else "failed_start"
            )
            self.metrics.count_exit(_core_reason("exit", kind))
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if worker in self.rolling:
            self.rolling.remove(worker)
        if worker.stopping:
            error_logger.info("Worker [%d] exited (%s)", worker.pid, how)
            return
        if worker.ready:
            error_logger.warning("Worker [%d] died unexpectedly (%s); respawning", worker.pid, how)
            return
        reason = worker.fail_reason or f"it exited with {how} before it was ready"
        error_logger.error("Worker [%d] failed to start: %s", worker.pid, reason)
        if worker is self.replacement:
            self.replacement = None
            if self.rolling:
                error_logger.error(
                    "Keeping the %d old worker(s): their replacement did not start",
                    len(self.rolling),
                )
                for old in self.rolling:
                    old.replace_reason = None
                self.rolling.clear()
            return
        self.boot_failures += 1
        if self.watcher is not None:
            # --reload: a syntax error in the file being edited is normal; wait for the next
            # change rather than retrying the same broken code or exiting.
            error_logger.error("Waiting for the next change before starting a worker again")
            self.next_spawn_at = float("inf")
            return
        if not self.ever_ready or self.boot_failures >= MAX_BOOT_FAILURES:
            error_logger.error("Stopping: workers cannot start (%s)", reason)
            self.status = STARTUP_FAILED_STATUS if code in (2, 3) or not code else 1
            self._stop(graceful=True)
            return
        delay = min(5.0, 0.1 * 2**self.boot_failures)
        self.next_spawn_at = time.monotonic() + delay

    # ------------------------------------------------------------------ health and recycling

    def _check_workers(self) -> None:
        now = time.monotonic()
        limit = self.config.timeout_worker_healthcheck
        for worker in self.workers:
            if worker.kill_at is not None and now >= worker.kill_at:
                error_logger.warning("Worker [%d] did not stop in time; killing it", worker.pid)
                worker.killed = True
                self._signal(worker, signal.SIGKILL)
                worker.kill_at = None
            elif limit and worker.ready and not worker.stopping and now - worker.last_beat > limit:
                error_logger.error(
                    "Worker [%d] is stuck: no heartbeat from its event loop for %.1f s "
                    "(--timeout-worker-healthcheck %g); killing and replacing it",
                    worker.pid,
                    now - worker.last_beat,
                    limit,
                )
                worker.stopping = True
                worker.killed = True
                self._signal(worker, signal.SIGKILL)
        if self.config.workers_max_rss and now >= self.next_rss_check:
            self.next_rss_check = now + 1.0
            for worker in self.workers:
                rss = _rss_mib(worker.pid)
                limit_mib = self.config.workers_max_rss
                if worker.ready and not worker.stopping and rss > limit_mib:
                    self._request_replacement(
                        worker, f"memory {rss:.0f} MiB > --workers-max-rss {limit_mib}"
                    )

    def _request_replacement(self, worker: WorkerProcess, reason: str) -> None:
        if worker.replace_reason is not None or worker.stopping:
            return
        worker.replace_reason = reason
        error_logger.info("Replacing worker [%d]: %s", worker.pid, reason)
        self.rolling.append(worker)

    def _reload_if_due(self) -> None:
        if self.reload_at is None or time.monotonic() < self.reload_at:
            return
        names = ", ".join(sorted(os.path.relpath(p) for p in self.changed)[:5])
        self.reload_at = None
        self.changed.clear()
        live = [w for w in self.workers if not w.stopping and w.replace_reason is None]
        error_logger.info("Reloading: changed %s", names)
        self.boot_failures = 0
        self.next_spawn_at = 0.0
        for worker in live:
            self._request_replacement(worker, "reload")

    def _maintain(self) -> None:
        live = [w for w in self.workers if not w.stopping]
        now = time.monotonic()
        if self.rolling and self.replacement is None:
            old = self.rolling[0]
            self.replacement = self._spawn(f"replacing [{old.pid}]", old.slot, "replace")
        elif len(live) - (self.replacement is not None) < self.target and now >= self.next_spawn_at:
            reason = "initial" if not self.announced else "respawn"
            if self.scale_pending:
                self.scale_pending -= 1
                reason = "scale"
            self._spawn(f"to reach {self.target} workers", self._free_slot(), reason)
        elif len(live) > self.target and not self.rolling and self.replacement is None:
            # The oldest goes; with --reuse-port the one in the highest slot, whose socket
            # then closes (the others keep theirs).
            extra = min(live, key=lambda w: (-w.slot, w.started))
            if not self._slot_drained(extra, now):
                return
            error_logger.info("Retiring worker [%d] (now %d workers)", extra.pid, self.target)
            self._retire(extra)

    def _slot_drained(self, extra: WorkerProcess, now: float) -> bool:
        """Whether `extra` may retire now. With --reuse-port its slot's socket closes after it,
        and closing a listening socket resets the connections in its queue: so new connections
        are steered to the slots that stay first, and `extra` serves what is queued for it."""
        closing = self.config.reuse_port and extra.slot >= self.target and extra.slot in self.slots
        if not closing:
            return True
        if self.steered_at is None:
            # The program picks by position in the kernel's group, which is slot order as long
            # as the slots are 0..n-1 and only the highest ever closed (see _close_slots).
            if sorted(self.slots) != list(range(len(self.slots))):
                return True
            try:
                steer_reuseport(self.sock, self.target)
            except OSError as exc:
                error_logger.warning(
                    "SIGTTOU: cannot steer new connections away from the closing socket (%s); "
                    "connections queued on it when it closes will be reset",
                    exc,
                )
                return True
            self.steered_at = now
        waited = now - self.steered_at
        queued = accept_queue_length(self.slots[extra.slot])
        return waited >= STEER_MIN_S and (queued == 0 or waited >= STEER_MAX_S)

    def _finish_replacement(self) -> None:
        self.replacement = None
        while self.rolling:
            old = self.rolling.popleft()
            if old in self.workers and not old.stopping:
                self._retire(old)
                return

    def _retire(self, worker: WorkerProcess) -> None:
        """Graceful stop of one worker: it finishes its requests; the others keep accepting."""
        worker.stopping = True
        # In --reload (development) an open stream must not hold up the new code: one second.
        grace = 1.0 if self.watcher is not None else self.config.timeout_graceful_shutdown + 5.0
        worker.kill_at = time.monotonic() + grace
        self._signal(worker, signal.SIGTERM)

    def _signal(self, worker: WorkerProcess, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    # ------------------------------------------------------------------ signals

    def _install_signals(self, wake_w: int) -> dict[int, object]:
        previous: dict[int, object] = {"wakeup": signal.set_wakeup_fd(wake_w)}
        for sig in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGTTIN,
            signal.SIGTTOU,
            signal.SIGQUIT,
            signal.SIGCHLD,
        ):
            previous[sig] = signal.signal(sig, lambda s, _f: self.pending_signals.append(s))
        return previous

    def _restore_signals(self, previous: dict[int, object]) -> None:
        signal.set_wakeup_fd(int(previous.pop("wakeup")))  # type: ignore[call-overload]
        for sig, handler in previous.items():
            signal.signal(int(sig), handler)  # type: ignore[arg-type]

    def _handle_signals(self) -> None:
        while self.pending_signals:
            sig = self.pending_signals.popleft()
            if sig in (signal.SIGTERM, signal.SIGINT):
                if (self.stopping or self.stop_at is not None) and sig == signal.SIGINT:
                    error_logger.warning("Forced exit: stopping the workers now")
                    self._stop(graceful=False)
                elif not self.stopping and self.stop_at is None:
                    self._begin_stop()
            elif sig == signal.SIGQUIT:
                self._stop(graceful=False)
            elif sig == signal.SIGHUP and not self.stopping:
                if not self._tls_reloadable():
                    continue
                olds = [w for w in self.workers if not w.stopping and w.replace_reason is None]
                error_logger.info("SIGHUP: rolling restart of %d worker(s)", len(olds))
                for worker in olds:
                    self._request_replacement(worker, "SIGHUP")
            elif sig == signal.SIGTTIN and not self.stopping:
                self.target += 1
                self.scale_pending += 1
                error_logger.info("SIGTTIN: now %d workers", self.target)
            elif sig == signal.SIGTTOU and not self.stopping:
                self.target = max(1, self.target - 1)
                error_logger.info("SIGTTOU: now %d workers", self.target)

    def _tls_reloadable(self) -> bool:
        """SIGHUP with TLS: the new workers will load the certificate files again. Check them
        first; if they are broken, the running workers keep serving the old certificate."""
        if self.config.ssl_certfile is None:
            return True
        try:
            tls.announce(tls.load(self.config))
        except ConfigError as exc:
            error_logger.error("SIGHUP ignored, the workers keep serving: %s", exc)
            return False
        return True

    def _begin_stop(self) -> None:
        """SIGTERM/SIGINT. With --shutdown-delay, the workers first report not ready (/-/ready
        503) and keep serving for that long; then the graceful stop."""
        delay = self.config.shutdown_delay
        if delay <= 0:
            self._stop(graceful=True)
            return
        error_logger.info("Not ready; shutting down in %gs (--shutdown-delay)", delay)
        self.stop_at = time.monotonic() + delay
        for worker in self.workers:
            if worker.ready and not worker.stopping:  # (its SIGUSR1 handler is installed)
                self._signal(worker, signal.SIGUSR1)

    def _stop(self, graceful: bool) -> None:
        if not self.stopping:
            error_logger.info("Shutting down %d worker(s)", len(self.workers))
        self.stopping = True
        if not graceful:
            self.forced = True
            self.status = self.status or FORCED_EXIT_STATUS
        # Our copies of the sockets go first: once the workers close theirs, new connections
        # are refused instead of waiting in a queue nobody serves.
        self._close_slots(0)
        self.rolling.clear()
        for worker in self.workers:
            if graceful and not worker.stopping:
                self._retire(worker)
            elif not graceful:
                worker.stopping = True
                worker.kill_at = time.monotonic() + 2.0
                self._signal(worker, signal.SIGQUIT)


def _core_reason(kind: str, name: str) -> int:
    """The index of a worker start or exit reason in the engine's metrics tables."""
    from coachwhip import _core

    table = _core.WORKER_START_REASONS if kind == "start" else _core.WORKER_EXIT_REASONS
    return table.index(name)


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
