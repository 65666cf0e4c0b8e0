"""Load generation with wrk, bench/tlsload for a TLS handshake per request, or bench/wsload for
WebSocket round trips (pinned to CPU 1 in the main suite), and the server's memory sampled while
it runs."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tlssetup
import wssetup
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
    # CPU time (user + system) the load generator used during the run, from getrusage.
    client_cpu_s: float = 0.0
    # What else the client reported: tlsload's handshakes, resumed, tls, ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["client_cpu_s"] = round(self.client_cpu_s, 3)
        return {**out.pop("extra"), **out, "rps": round(self.rps, 1)}

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> WrkResult:
        known = {f.name for f in dataclasses.fields(cls)} - {"client_cpu_s", "extra"}
        extra = {k: v for k, v in fields.items() if k not in known}
        return cls(**{k: v for k, v in fields.items() if k in known}, extra=extra)


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
    scheme = "https" if scenario.tls else "http"
    return [*argv, f"{scheme}://127.0.0.1:{port}{scenario.path}"]


def tlsload_argv(
    scenario: Scenario, port: int, connections: int, duration_s: float, client: Client
) -> list[str]:
    """bench/tlsload: one thread (it runs one epoll loop), a new connection per request."""
    argv = ["taskset", "-c", client.cpus, str(tlssetup.TLSLOAD), "-c", str(connections)]
    argv += ["-d", f"{duration_s:g}", "--timeout", "10", "--sni", tlssetup.SNI]
    if scenario.resume:
        argv.append("--resume")
    return [*argv, f"https://127.0.0.1:{port}{scenario.path}"]


def client_argv(
    scenario: Scenario,
    script: Path,
    port: int,
    connections: int,
    duration_s: float,
    client: Client,
) -> list[str]:
    """The load generator's command line for this scenario: wrk, tlsload or wsload."""
    if scenario.client == "wsload":
        return wssetup.wsload_argv(scenario, port, connections, duration_s, client.cpus)
    if scenario.client == "tlsload":
        return tlsload_argv(scenario, port, connections, duration_s, client)
    return wrk_argv(scenario, script, port, connections, duration_s, client)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(argv: list[str], duration_s: float, sample: Callable[[], None]) -> WrkResult:
    """Run the load generator (wrk or tlsload), calling `sample()` every 100 ms until it exits;
    parse its BENCH_RESULT line. Its CPU time comes from the children's rusage, which grows
    when it is reaped (the servers, also our children, are reaped only when they stop)."""
    deadline = time.monotonic() + duration_s + 30
    cpu_before = _children_cpu_s()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise WrkError(f"wrk did not finish within {duration_s + 30:.0f} s: {' '.join(argv)}")
        sample()
        time.sleep(SAMPLE_EVERY_S)
    client_cpu = _children_cpu_s() - cpu_before
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = WrkResult.parse(json.loads(line.removeprefix("BENCH_RESULT ")))
            result.client_cpu_s = client_cpu
            return result
    name = Path(argv[3]).name if len(argv) > 3 else "wrk"
    raise WrkError(f"{name} exited {proc.returncode} without a result:\n{output.strip()}")
