"""Load generation with wrk (pinned to CPU 1 in the main suite), and the server's memory sampled
while it runs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from scenarios import Scenario

BENCH_DIR = Path(__file__).resolve().parent
WRK_CPU = 1
SAMPLE_EVERY_S = 0.1


@dataclass
class WrkResult:
    """What one wrk run measured (latencies in microseconds)."""

    requests: int
    duration_us: int
    bytes: int
    connect_errors: int
    read_errors: int
    write_errors: int
    status_errors: int  # non-2xx/3xx responses
    timeouts: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rps": round(self.rps, 1)}


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@dataclass(frozen=True)
class Client:
    """Where wrk runs (taskset -c syntax) and with how many threads. The main suite's default:
    one thread on CPU 1, since more threads on one core would only contend."""

    cpus: str = str(WRK_CPU)
    threads: int = 1


def write_script(scenario: Scenario, out_dir: Path) -> Path:
    """The scenario's request script (if any) followed by the reporting done() hook."""
    parts = [(BENCH_DIR / "lua" / scenario.lua).read_text()] if scenario.lua else []
    parts.append((BENCH_DIR / "lua" / "report.lua").read_text())
    path = out_dir / f"wrk-{scenario.key}.lua"
    path.write_text("\n".join(parts))
    return path


def wrk_argv(
    scenario: Scenario,
    script: Path,
    port: int,
    connections: int,
    duration_s: float,
    client: Client,
) -> list[str]:
    argv = [
        "taskset",
        "-c",
        client.cpus,
        "wrk",
        f"-t{min(client.threads, connections)}",  # wrk refuses more threads than connections
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    if scenario.close:
        argv += ["-H", "Connection: close"]
    return [*argv, f"http://127.0.0.1:{port}{scenario.path}"]


def run_wrk(argv: list[str], duration_s: float, sample: Callable[[], None]) -> WrkResult:
    """Run wrk, calling `sample()` every 100 ms until it exits; parse its BENCH_RESULT line."""
    deadline = time.monotonic() + duration_s + 30
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise WrkError(f"wrk did not finish within {duration_s + 30:.0f} s: {' '.join(argv)}")
        sample()
        time.sleep(SAMPLE_EVERY_S)
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            return WrkResult(**json.loads(line.removeprefix("BENCH_RESULT ")))
    raise WrkError(f"wrk exited {proc.returncode} without a result:\n{output.strip()}")
