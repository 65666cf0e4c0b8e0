"""The servers under test: their command lines, and a handle that starts one pinned to CPU 0,
waits until it answers, samples its memory and stops it."""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import procfs

BENCH_DIR = Path(__file__).resolve().parent
SERVER_CPU = 0
NOFILE = 65536  # servers and the idle-connection client both need > 10,000 descriptors
KEEP_ALIVE_S = 120  # so 10,000 idle connections stay open while they are measured
BACKLOG = 2048  # hypercorn's default (100) drops SYNs at 256 connections
GRANIAN_BACKPRESSURE = 16384


@dataclass(frozen=True)
class ServerSpec:
    """How to run one server: `argv(bin_dir, app, port)` builds the command line; `env` is added
    to the environment; `flags` is the one-line description that goes into the report;
    `only` restricts it to those scenarios (empty: all of them)."""

    name: str
    argv: Callable[[Path, str, int], list[str]]
    flags: str
    env: tuple[tuple[str, str], ...] = ()
    only: tuple[str, ...] = ()

    def runs_in(self, scenario: str) -> bool:
        return not self.only or scenario in self.only


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


SPECS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("coachwhip", _coachwhip, "--no-access-log --lifespan off --loop uvloop"),
        ServerSpec(
            "uvicorn",
            _uvicorn,
            "--workers 1 --loop uvloop --http httptools --no-access-log --lifespan off",
        ),
        # --runtime-threads 2 beat granian's default of 1 by 5-15% on the one core it is given
        # (bench/README.md, "The servers' settings"); granian-rt1 below keeps that re-checkable.
        ServerSpec(
            "granian",
            _granian(2),
            "--interface asgi --workers 1 --runtime-threads 2 --loop uvloop --http 1 "
            "--backpressure 16384",
        ),
        ServerSpec(
            "hypercorn", _hypercorn, "--workers 1 --worker-class uvloop (access log off by default)"
        ),
        ServerSpec(
            "coachwhip-ceiling",
            _coachwhip,
            "coachwhip with COACHWHIP_BENCH_CEILING=1: C++ answers, Python never runs",
            env=(("COACHWHIP_BENCH_CEILING", "1"),),
            only=("hello",),
        ),
        # Not run by default: granian with its default threading (--servers granian,granian-rt1).
        ServerSpec(
            "granian-rt1",
            _granian(1),
            "--interface asgi --workers 1 --runtime-threads 1 --loop uvloop --http 1 "
            "--backpressure 16384",
        ),
    )
}
PEERS = ("coachwhip", "uvicorn", "granian", "hypercorn")


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
    """One running server process (and its children), logging to `log_path`."""

    def __init__(self, spec: ServerSpec, app: str, bin_dir: Path, log_path: Path) -> None:
        self.spec = spec
        self.app = app
        self.port = free_port()
        self.log_path = log_path
        self.argv = ["taskset", "-c", str(SERVER_CPU), *spec.argv(bin_dir, app, self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COACHWHIP_", "GRANIAN_"))}
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
            self.pids = procfs.tree(self.proc.pid)
            return time.monotonic() - self.started
        raise self.fail(f"did not answer within {timeout_s:.0f} s")

    def request(
        self, method: str, path: str, body: bytes, timeout_s: float = 10.0
    ) -> tuple[int, bytes]:
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
