"""WebSocket for the benchmarks: the build of bench/wsload/, its command lines, the check that a
server really speaks WebSocket (one echo, compared byte for byte), and the idle measurement, in
which wsload holds N open WebSockets while the runner reads the server's memory."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from scenarios import Scenario

BENCH_DIR = Path(__file__).resolve().parent
WSLOAD_DIR = BENCH_DIR / "wsload"
WSLOAD = WSLOAD_DIR / "wsload"
TIMEOUT_S = 10  # per handshake and per round trip
T = TypeVar("T")


class NoWebSocket(Exception):
    """The server answered the upgrade with a plain HTTP response: it has no WebSocket (or it is
    turned off). The scenario skips it instead of failing."""


def ensure_wsload() -> Path:
    """Build bench/wsload/wsload (bench/wsload/build.sh) if it is missing or older than its
    source; return its path."""
    source = WSLOAD_DIR / "wsload.cpp"
    if not WSLOAD.exists() or WSLOAD.stat().st_mtime < source.stat().st_mtime:
        print("==> building bench/wsload/wsload", flush=True)
        run = subprocess.run(["sh", str(WSLOAD_DIR / "build.sh")], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"bench/wsload/build.sh failed:\n{run.stdout}{run.stderr}")
    return WSLOAD


def wsload_argv(
    scenario: Scenario,
    port: int,
    connections: int,
    duration_s: float,
    cpus: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """wsload in the scenario's mode, pinned to `cpus` (one thread: one epoll loop)."""
    argv = ["taskset", "-c", cpus, str(WSLOAD), "--mode", scenario.ws, "-c", str(connections)]
    argv += ["-d", f"{duration_s:g}", "--timeout", str(TIMEOUT_S), "--size", str(scenario.ws_size)]
    if scenario.deflate:
        argv.append("--deflate")
    return [*argv, *extra, f"ws://127.0.0.1:{port}{scenario.path}"]


def parse(output: str, prefix: str = "BENCH_RESULT ") -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(prefix):
            return dict(json.loads(line.removeprefix(prefix)))
    raise OSError(f"wsload printed no {prefix.strip()} line:\n{output.strip()[-600:]}")


def check(scenario: Scenario, port: int, cpus: str) -> dict[str, Any]:
    """One connection and a few echoes of the scenario's message, compared byte for byte (idle
    scenarios: one echo, with permessage-deflate offered if the scenario does). Returns what
    the server's 101 said (`Server`, the extension it agreed to); raises NoWebSocket if the
    upgrade was answered with plain HTTP, OSError if anything else went wrong."""
    if scenario.ws == "idle":
        extra: tuple[str, ...] = ("--messages", "1", "--hold", "0.05")
    else:
        extra = ("--messages", "3")
    argv = wsload_argv(scenario, port, 1, TIMEOUT_S, cpus, extra)
    try:
        run = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S * 3
        )
    except subprocess.TimeoutExpired:
        raise OSError(f"the WebSocket check did not finish in {TIMEOUT_S * 3} s") from None
    out = run.stdout + run.stderr
    result = parse(out)
    if result.get("refused"):
        raise NoWebSocket(f"answered the upgrade with `{result.get('refused_line', '?')}`")
    echoed = result.get("requests", 0) if scenario.ws != "idle" else result.get("opened", 0)
    wanted = 3 if scenario.ws != "idle" else 1
    if echoed < wanted or result.get("status_errors") or result.get("failed"):
        raise OSError(f"WebSocket check failed ({result.get('last_error') or 'no echo'}): {out}")
    return {
        "server_header": result.get("ws_server", ""),
        "extensions": result.get("ws_extensions", ""),
        "fragmented": result.get("fragmented", 0),
        "compressed": result.get("compressed", 0),
    }


def hold_idle(
    scenario: Scenario,
    port: int,
    count: int,
    cpus: str,
    measure: Callable[[], T],
    timeout_s: float = 300,
) -> tuple[dict[str, Any], dict[str, Any], T]:
    """Open `count` WebSockets with wsload (each after one echo, permessage-deflate offered if
    the scenario says so), call `measure()` once all are open, then let them go. Returns
    (wsload's BENCH_READY, its BENCH_RESULT, what `measure` returned)."""
    argv = wsload_argv(scenario, port, count, 1, cpus, ("--parallel", "64", "--messages", "1"))
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                msg = f"wsload did not open {count:,} WebSockets in {timeout_s:.0f} s"
                raise OSError(msg) from None
            if line is None:
                raise OSError("wsload exited before it was ready:\n" + "".join(seen)[-600:])
            seen.append(line)
            if line.startswith("BENCH_READY "):
                break
        ready = parse(line, "BENCH_READY ")
        measured = measure()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # wsload lets go of its connections and reports
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    while (line := lines.get()) is not None:
        seen.append(line)
    return ready, parse("".join(seen)), measured
