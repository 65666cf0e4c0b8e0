"""coachwhip's engine under gunicorn: `gunicorn -k coachwhip.workers.CoachwhipWorker APP`.

Real gunicorn processes (gunicorn from PyPI, in requirements-dev.txt) on loopback: ASGI and
WSGI apps served; SIGHUP and SIGTERM under load (httpx clients, keep-alive and a new connection
per request) with zero failed requests; SIGTTIN/SIGTTOU; --max-requests recycling; the
--timeout heartbeat aborting a stuck worker; start failures that stop gunicorn instead of
respawning in a loop, and later ones retried with back-off; SIGUSR1 reopening the log files;
TLS; and the mapping of gunicorn's settings to coachwhip's (in process).
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from harness import HERE, ServerProcess, descendants, poll
from tlscerts import Certs

WORKER_CLASS = "coachwhip.workers.CoachwhipWorker"
LISTENING = r"Listening at: https?://([\d.]+):(\d+)"
SERVING = r"Serving with coachwhip's engine \(pid (\d+)"
ACCESS = r'127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200'


class Gunicorn(Protocol):
    def __call__(
        self, app: str, *args: str, workers: int = 1, env: dict[str, str] | None = None
    ) -> ServerProcess: ...


def start(
    app: str, *args: str, workers: int = 1, env: dict[str, str] | None = None, ready: bool = True
) -> ServerProcess:
    """`python -m gunicorn -k CoachwhipWorker -w WORKERS -b 127.0.0.1:0 ARGS APP`; with
    `ready`, returns once every worker said it serves."""
    argv = ["-m", "gunicorn", "-k", WORKER_CLASS, "-w", str(workers), "-b", "127.0.0.1:0"]
    # gunicorn 27's control socket is one path per user: tests running together would share it.
    argv += ["--no-control-socket", "--graceful-timeout", "10", *args, app]
    server = ServerProcess(app, env=env, cwd=HERE, python_args=argv)
    if ready:
        try:
            match = server.wait_for_line(LISTENING, 15)
            server.host, server.port = match.group(1), int(match.group(2))
            poll(lambda: len(serving(server)) >= workers, 15, what=f"{workers} workers serving")
        except BaseException:
            server.kill()
            raise
    return server


@pytest.fixture
def gunicorn() -> Iterator[Gunicorn]:
    started: list[ServerProcess] = []

    def factory(
        app: str, *args: str, workers: int = 1, env: dict[str, str] | None = None
    ) -> ServerProcess:
        server = start(app, *args, workers=workers, env=env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill()


def serving(server: ServerProcess, since: int = 0) -> list[int]:
    """Worker pids that said they serve, in order (from output line `since` on)."""
    with server._cond:
        lines = list(server.lines[since:])
    return [int(m.group(1)) for line in lines if (m := re.search(SERVING, line))]


def workers_alive(server: ServerProcess) -> set[int]:
    return set(descendants(server.pid))


def count(server: ServerProcess, text: str, since: int = 0) -> int:
    with server._cond:
        return sum(1 for line in server.lines[since:] if text in line)


# --- load -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: float
    pid: int | None = None  # the worker that answered 200
    error: str = ""  # what went wrong otherwise


@dataclass
class Load:
    """httpx clients sending GET `path` in a loop until stopped: `keepalive` threads each on
    one keep-alive connection (a new one only when the server closes it), `close` threads a
    new connection per request. No retries: every request is an outcome."""

    url: str
    keepalive: int = 2
    close: int = 1
    path: str = "/"
    outcomes: list[Outcome] = field(default_factory=list)
    stop_at_first_error: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(mode,), daemon=True)
            for mode in ["keepalive"] * self.keepalive + ["close"] * self.close
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)
        return self.outcomes

    def _run(self, mode: str) -> None:
        headers = {"connection": "close"} if mode == "close" else {}
        with httpx.Client(timeout=15, headers=headers) as client:
            while not self._stop.is_set():
                outcome = Outcome(time.monotonic())
                try:
                    response = client.get(self.url + self.path)
                    if response.status_code == 200:
                        outcome.pid = int(response.text)
                    else:
                        outcome.error = f"status {response.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    outcome.error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.error and self.stop_at_first_error:
                    return

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.pid is not None)

    def failures(self, before: float = float("inf")) -> list[str]:
        with self._lock:
            return [o.error for o in self.outcomes if o.error and o.sent < before]

    def pids(self) -> set[int]:
        with self._lock:
            return {o.pid for o in self.outcomes if o.pid is not None}

    def wait_for(self, more: int, timeout: float = 15.0) -> None:
        target = self.ok + more
        poll(lambda: self.ok >= target, timeout, what=f"{more} more requests answered")


def get(server: ServerProcess, path: str = "/") -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=10)


# --- serving ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "interface"),
    [("apps.workers:app", "asgi3"), ("apps.gunicorn_apps:wsgi", "wsgi")],
)
def test_serves_asgi_and_wsgi_apps(gunicorn: Gunicorn, app: str, interface: str) -> None:
    server = gunicorn(app, "--access-logfile", "-", "--threads", "4", workers=2)
    pids = set(serving(server))
    assert len(pids) == 2 and pids <= workers_alive(server)
    seen = set()
    for _ in range(20):
        response = get(server)
        assert response.status_code == 200
        assert response.headers["server"] == "coachwhip"
        seen.add(int(response.text))
    assert seen <= pids
    # coachwhip's lines go through gunicorn's handlers: gunicorn's format, its access log.
    assert server.find_line(rf"\[\d+\] \[INFO\] Interface: {interface} \(detected")
    server.wait_for_line(ACCESS, 5)
    threads = server.find_line(r"Interface: wsgi \(.*\), (\d+) threads")
    assert (threads is not None) == (interface == "wsgi")
    if interface == "wsgi":
        assert threads is not None and threads.group(1) == "4"  # gunicorn's --threads
        env = get(server, "/env").text
        assert "wsgi.multiprocess=True" in env and "SERVER_SOFTWARE=coachwhip" in env
    assert server.stop(signal.SIGTERM, 15) == 0


def test_the_h11_variant_runs_on_asyncios_loop(gunicorn: Gunicorn) -> None:
    """For the users of uvicorn's UvicornH11Worker: the same engine, asyncio's event loop."""
    argv = ["-k", "coachwhip.workers.CoachwhipH11Worker"]  # the later -k wins
    server = gunicorn("apps.workers:app", *argv)
    assert get(server).status_code == 200
    assert server.find_line(r"Started coachwhip .* asyncio loop\)")
    assert server.find_line(r"Using worker: coachwhip\.workers\.CoachwhipH11Worker")


def test_gunicorns_access_log_format_is_applied(gunicorn: Gunicorn) -> None:
    fmt = 'fmt %(h)s "%(r)s" %(s)s %(b)s %({x-tag}i)s %({content-type}o)s %(nope)s'
    server = gunicorn("apps.workers:app", "--access-logfile", "-", "--access-logformat", fmt)
    response = httpx.get(f"http://127.0.0.1:{server.port}/", headers={"x-tag": "t1"}, timeout=5)
    assert response.status_code == 200
    size = len(response.content)
    server.wait_for_line(
        rf'^fmt 127\.0\.0\.1 "GET / HTTP/1\.1" 200 {size} t1 text/plain(; charset=utf-8)? -$', 5
    )
    assert server.find_line(r"--access-log-format: no atom is named 'nope'")


def test_no_access_log_unless_configured(gunicorn: Gunicorn) -> None:
    server = gunicorn("apps.workers:app")
    assert get(server).status_code == 200
    assert server.no_line_within(ACCESS, 0.5)


def test_tls_from_gunicorns_settings(gunicorn: Gunicorn, certs: Certs) -> None:
    server = gunicorn(
        "apps.workers:app",
        "--certfile",
        str(certs.ecdsa.chain),
        "--keyfile",
        str(certs.ecdsa.key),
        workers=2,
    )
    with httpx.Client(verify=ssl.create_default_context(cafile=certs.ca), timeout=10) as client:
        for _ in range(4):
            response = client.get(f"https://localhost:{server.port}/")
            assert response.status_code == 200
            assert response.http_version == "HTTP/1.1"


# --- signals under load -------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("app", ["apps.workers:app", "apps.gunicorn_apps:wsgi"])
def test_sighup_under_load_loses_no_request(gunicorn: Gunicorn, app: str) -> None:
    server = gunicorn(app, "--threads", "4", workers=2)
    rounds = 5
    with Load(server.url) as load:
        load.wait_for(50)
        for _ in range(rounds):
            mark = server.mark()
            old = workers_alive(server)
            server.send_signal(signal.SIGHUP)
            poll(lambda m=mark: len(serving(server, m)) >= 2, 20, what="2 new workers serving")
            poll(lambda o=old: not o & workers_alive(server), 20, what="the old workers gone")
            load.wait_for(30)  # served by the new workers
        outcomes = load.stop()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(outcomes)} failed: {failures[:5]}"
    assert len(load.pids()) >= 2 * (rounds + 1) - 1, "every generation served"
    assert server.running()
    assert server.stop(signal.SIGTERM, 15) == 0


@pytest.mark.timeout(90)
def test_sigterm_under_load_finishes_requests_and_exits_cleanly(
    gunicorn: Gunicorn, tmp_path: Path
) -> None:
    server = gunicorn("apps.workers:app", workers=2)
    slow: list[httpx.Response | Exception] = []
    entered = tmp_path / "entered"

    def slow_request() -> None:
        try:
            slow.append(httpx.get(f"{server.url}/slow?s=1.5&mark={entered}", timeout=15))
        except httpx.HTTPError as exc:
            slow.append(exc)

    load = Load(server.url, keepalive=2, close=0, stop_at_first_error=True)
    with load:
        load.wait_for(50)
        threads = [threading.Thread(target=slow_request) for _ in range(4)]
        for thread in threads:
            thread.start()
        poll(
            lambda: entered.exists() and len(entered.read_text().split()) == 4,
            10,
            what="the slow requests in the app",
        )
        term = time.monotonic()
        server.send_signal(signal.SIGTERM)
        status = server.wait_exit(15)
        elapsed = time.monotonic() - term
        for thread in threads:
            thread.join(15)
        load.stop()
    assert status == 0
    assert elapsed < 8, f"exit took {elapsed:.1f} s"
    assert [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in slow] == [200] * 4
    failures = load.failures(before=term)
    assert not failures, f"requests sent before SIGTERM failed: {failures[:5]}"
    assert count(server, "Application shutdown complete") == 2
    assert count(server, "Worker exiting") == 2


@pytest.mark.timeout(90)
def test_ttin_ttou_change_the_worker_count(gunicorn: Gunicorn) -> None:
    server = gunicorn("apps.workers:app", workers=1)
    with Load(server.url, keepalive=1, close=1) as load:
        load.wait_for(20)
        first = set(serving(server))
        for _ in range(2):
            mark = server.mark()
            server.send_signal(signal.SIGTTIN)
            poll(lambda m=mark: len(serving(server, m)) == 1, 15, what="a worker more")
        poll(lambda: len(workers_alive(server)) == 3, 15, what="3 workers")
        load.wait_for(30)
        mark = server.mark()
        server.send_signal(signal.SIGTTOU)
        poll(lambda: len(workers_alive(server)) == 2, 15, what="2 workers")
        assert count(server, "Worker exiting", mark) == 1
        assert not first & workers_alive(server), "gunicorn stops the oldest worker"
        load.wait_for(30)
        outcomes = load.stop()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(outcomes)} failed: {failures[:5]}"
    assert server.stop(signal.SIGTERM, 15) == 0


@pytest.mark.timeout(90)
def test_max_requests_recycles_workers(gunicorn: Gunicorn) -> None:
    limit, jitter = 40, 10
    server = gunicorn(
        "apps.workers:app", "--max-requests", str(limit), "--max-requests-jitter", str(jitter)
    )
    with Load(server.url, keepalive=1, close=1) as load:
        poll(lambda: len(load.pids()) >= 4, 30, what="4 generations of workers")
        outcomes = load.stop()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(outcomes)} failed: {failures[:5]}"
    served: dict[int, int] = {}
    for outcome in outcomes:
        if outcome.pid is not None:
            served[outcome.pid] = served.get(outcome.pid, 0) + 1
    retired = [served[pid] for pid in serving(server)[:3]]  # the first three ran out
    assert all(limit <= n <= limit + jitter + 2 for n in retired), retired
    assert count(server, "Autorestarting worker: max-requests") >= 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("app", "args"),
    [
        pytest.param("apps.workers:app", (), id="asgi-event-loop"),
        pytest.param("apps.gunicorn_apps:wsgi", ("--threads", "1"), id="wsgi-threads"),
    ],
)
def test_timeout_aborts_a_stuck_worker(
    gunicorn: Gunicorn, app: str, args: tuple[str], tmp_path: Path
) -> None:
    server = gunicorn(app, "--timeout", "2", *args)
    entered = tmp_path / "entered"
    stuck = int(get(server).text)
    blocked: list[Any] = []

    def call(path: str) -> None:
        try:
            blocked.append(httpx.get(f"{server.url}{path}", timeout=20))
        except httpx.HTTPError as exc:
            blocked.append(exc)

    began = time.monotonic()
    callers = [threading.Thread(target=call, args=(f"/block?mark={entered}",))]
    callers[0].start()
    poll(entered.exists, 10, what="the blocking request in the app")
    if "wsgi" in app:  # the one thread is held, and a request waits for it
        callers.append(threading.Thread(target=call, args=("/",)))
        callers[-1].start()
    server.wait_for_line(rf"WORKER TIMEOUT \(pid:{stuck}\)", 15)
    poll(lambda: stuck not in workers_alive(server), 10, what="the stuck worker gone")
    poll(lambda: len(serving(server)) >= 2, 15, what="a new worker")
    fresh = int(get(server).text)
    assert fresh != stuck
    assert time.monotonic() - began < 15
    for thread in callers:
        thread.join(20)
    assert server.running()


# --- start failures ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("app", "workers", "status", "message"),
    [
        pytest.param(
            "apps.workers:failing_startup",
            4,
            3,
            "Worker failed to start: application startup failed: database is unreachable",
            id="lifespan-startup-failed",
        ),
        # gunicorn's own failures, which its arbiter reports. With more than one worker,
        # gunicorn 27.0.1 crashes when it reaps two such exits at once (status 1 and a
        # traceback, whatever the worker class), so one worker here.
        pytest.param(
            "apps.workers:nope", 1, 4, "Failed to find attribute 'nope'", id="no-attribute"
        ),
        pytest.param("apps.no_such_module:app", 1, 3, "No module named", id="no-module"),
    ],
)
def test_a_bad_app_stops_gunicorn_without_respawning(
    app: str, workers: int, status: int, message: str
) -> None:
    server = start(app, workers=workers, ready=False)
    try:
        assert server.wait_exit(20) == status
        server._reader.join(5)
        assert message in server.output
        assert count(server, "Booting worker") <= workers, "no respawn loop"
        if "startup" in message:
            assert count(server, "No worker has started yet: stopping gunicorn") == 1
            assert "Traceback" not in server.output
    finally:
        server.kill()


@pytest.mark.timeout(90)
def test_a_later_start_failure_is_retried_with_back_off(gunicorn: Gunicorn, tmp_path: Path) -> None:
    flag = tmp_path / "database-down"
    server = gunicorn("apps.gunicorn_apps:flaky", env={"GUNICORN_TEST_FAIL_FLAG": str(flag)})
    with Load(server.url, keepalive=1, close=0) as load:
        load.wait_for(10)
        flag.touch()
        mark = server.mark()
        server.send_signal(signal.SIGTTIN)
        server.wait_for_line(r"a new worker starts in 0\.5s", 15, since=mark)
        began = time.monotonic()
        server.wait_for_line(r"a new worker starts in 2s", 15, since=mark)
        took = time.monotonic() - began
        # Three failed starts, with waits of 0.5 and 1 s between them: no respawn loop.
        assert count(server, "Worker failed to start", mark) == 3
        assert took >= 1.5, f"the third failure came {took:.2f} s after the first"
        flag.unlink()
        poll(lambda: len(serving(server, mark)) >= 1, 15, what="the retried worker serving")
        load.wait_for(10)
        outcomes = load.stop()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(outcomes)} failed: {failures[:5]}"
    assert server.running()


# --- logs -----------------------------------------------------------------------------------------


def test_sigusr1_reopens_the_log_files(gunicorn: Gunicorn, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = gunicorn("apps.workers:app", "--access-logfile", str(log), workers=2)
    assert get(server).status_code == 200
    poll(lambda: log.exists() and '"GET / HTTP/1.1" 200' in log.read_text(), 5, what="a line")
    log.rename(tmp_path / "access.log.1")
    server.send_signal(signal.SIGUSR1)
    # The arbiter passes SIGUSR1 on to every worker; whichever serves the next request
    # writes to the new file.
    poll(lambda: log.exists(), 5, what="access.log reopened by the arbiter")
    old = tmp_path / "access.log.1"
    reopened: set[int] = set()  # the workers seen writing to the new file
    probes = iter(range(1000))

    def both_workers_reopened() -> bool:
        probe = f"GET /?probe={next(probes)} HTTP/1.1"
        pid = int(get(server, probe.split()[1]).text)
        poll(lambda: probe in log.read_text() + old.read_text(), 5, what="the probe's line")
        if probe in log.read_text():
            reopened.add(pid)
        return len(reopened) == 2

    poll(both_workers_reopened, 15, what="both workers writing to the new file")
    for _ in range(6):
        assert get(server, "/?after").status_code == 200
    poll(lambda: log.read_text().count("GET /?after HTTP/1.1") == 6, 5, what="the new file used")
    assert "after" not in old.read_text()


# --- settings -------------------------------------------------------------------------------------


def gunicorn_config(*argv: str) -> Any:
    from gunicorn.config import Config as GConfig

    cfg = GConfig()
    parsed = cfg.parser().parse_args([*argv, "app:app"])
    for key, value in vars(parsed).items():
        if value is not None and key in cfg.settings:
            cfg.set(key.lower(), value)
    return cfg


def test_gunicorn_settings_map_to_coachwhips() -> None:
    from coachwhip.workers import config_from_gunicorn

    defaults = config_from_gunicorn(gunicorn_config(), [7], 0, environ={})
    assert defaults.bind == ["fd://7"]
    assert defaults.timeout_keep_alive == 2.0  # gunicorn's default
    assert defaults.timeout_graceful_shutdown == 29.0
    assert defaults.timeout_worker_healthcheck == 30.0
    assert defaults.limit_request_line == 4094
    assert defaults.limit_request_header_size == 65536
    assert defaults.max_connections == 1000
    assert defaults.threads == 1
    assert defaults.http == "1"
    assert defaults.forwarded_allow_ips == "127.0.0.1,::1"
    assert not defaults.proxy_protocol and defaults.proxy_headers
    cfg = gunicorn_config(
        "--keep-alive", "65", "--graceful-timeout", "10", "--timeout", "7",
        "--limit-request-line", "0", "--limit-request-fields", "0",
        "--limit-request-field_size", "65536", "--worker-connections", "50",
        "--forwarded-allow-ips", "10.0.0.0/8", "--proxy-protocol", "v2",
        "--proxy-allow-from", "192.168.0.0/16", "--http-protocols", "h2,h1",
        "--threads", "6", "--root-path", "/api", "--asgi-lifespan", "off",
        "--http2-initial-window-size", "1048576",
    )  # fmt: skip
    config = config_from_gunicorn(cfg, [7, 8], 123, environ={"COACHWHIP_HEALTH": "1"})
    assert config.bind == ["fd://7", "fd://8"]
    assert (config.timeout_keep_alive, config.timeout_graceful_shutdown) == (65.0, 9.0)
    assert config.timeout_worker_healthcheck == 7.0
    assert (config.limit_request_line, config.limit_request_fields) == (8190, 32768)
    assert config.limit_request_header_size == 8190 + 65536
    assert config.max_connections == 50
    assert config.forwarded_allow_ips == "10.0.0.0/8,192.168.0.0/16"
    assert config.proxy_protocol and config.http == "auto"
    assert (config.threads, config.root_path, config.lifespan) == (6, "/api", "off")
    assert config.http2_initial_stream_window_size == 1048576
    assert config.max_requests == 123 and config.max_requests_jitter == 0
    assert config.health, "settings gunicorn has no flag for come from COACHWHIP_*"
    unlimited = config_from_gunicorn(
        gunicorn_config("--limit-request-field_size", "0"), [7], 0, environ={}
    )
    assert unlimited.limit_request_header_size == 1024 * 1024
    tls = config_from_gunicorn(
        gunicorn_config("--certfile", "c.pem", "--keyfile", "k.pem", "--cert-reqs", "2",
                        "--ca-certs", "ca.pem", "--ciphers", "ECDHE+AESGCM"),
        [7], 0, environ={},
    )  # fmt: skip
    assert (tls.ssl_certfile, tls.ssl_keyfile, tls.ssl_ca_certs) == ("c.pem", "k.pem", "ca.pem")
    assert (tls.ssl_cert_reqs, tls.ssl_ciphers) == (2, "ECDHE+AESGCM")
    metrics = config_from_gunicorn(gunicorn_config(), [7], 0, environ={"COACHWHIP_METRICS": "1"})
    assert not metrics.metrics and any("--metrics" in w for w in metrics.warnings)


def test_check_config_warns_about_what_the_worker_does_not_do() -> None:
    from coachwhip.workers import CoachwhipWorker, config_from_gunicorn

    warned: list[str] = []

    class Log:
        def warning(self, message: str, *args: object) -> None:
            warned.append(message % args)

    CoachwhipWorker.check_config(gunicorn_config(), Log())
    assert warned == []
    CoachwhipWorker.check_config(
        gunicorn_config("--access-logformat", "%(h)s", "--reuse-port", "--keep-alive", "0"), Log()
    )
    assert len(warned) == 2 and "--reuse-port" in warned[0] and "--keep-alive 0" in warned[1]
    config = config_from_gunicorn(gunicorn_config("--access-logformat", "%(h)s"), [7], 0, {})
    assert config.access_log_format == "%(h)s"
    assert config_from_gunicorn(gunicorn_config(), [7], 0, {}).access_log_format is None


def test_the_module_is_importable_without_side_effects_on_signals() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
    import coachwhip.workers  # noqa: F401

    assert before == {s: signal.getsignal(s) for s in before}
    assert os.environ.get("COACHWHIP_WORKER_TLS_SECRET") is None
