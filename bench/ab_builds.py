"""A/B throughput of two coachwhip builds (or two flag sets) on scenario 1, alternating rounds.

    python3 bench/ab_builds.py --a PY_A [--a-flags '...'] --b PY_B [--b-flags '...']
                               [--rounds 5] [--duration 5] [--header 'Name: value']

Each round starts A then B (pinned to CPU 0, wrk on CPU 1, 64 connections, like the suite),
warms each up for 2 s, measures `duration` seconds with wrk, and stops it. Prints every round
and the medians, and B's median as a ratio of A's. Give each build its own venv; the flags are
added to `-m coachwhip apps.hello:app`. Needs wrk and taskset.
"""

from __future__ import annotations

import argparse
import re
import shlex
import socket
import statistics
import subprocess
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wrk(port: int, seconds: int, headers: list[str]) -> float:
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s"]
    for header in headers:
        argv += ["-H", header]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk run failed or saw errors:\n{out}")
    return float(match.group(1))


def one_round(python: str, flags: str, seconds: int, headers: list[str]) -> float:
    port = free_port()
    argv = ["taskset", "-c", "0", str(Path(python).absolute()), "-m", "coachwhip"]
    argv += ["apps.hello:app", "--port", str(port), "--no-access-log", "--lifespan", "off"]
    argv += ["--loop", "uvloop", *shlex.split(flags)]
    proc = subprocess.Popen(
        argv, cwd=BENCH_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"did not start: {' '.join(argv)}") from None
                time.sleep(0.05)  # polling the port until the server listens
        wrk(port, 2, headers)  # warm-up
        return wrk(port, seconds, headers)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="python of build A")
    parser.add_argument("--b", required=True, help="python of build B")
    parser.add_argument("--a-flags", default="")
    parser.add_argument("--b-flags", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    results: dict[str, list[float]] = {"A": [], "B": []}
    for round_ in range(1, args.rounds + 1):
        for name, python, flags in (("A", args.a, args.a_flags), ("B", args.b, args.b_flags)):
            rps = one_round(python, flags, args.duration, args.header)
            results[name].append(rps)
            print(f"round {round_} {name}: {rps:,.0f} req/s", flush=True)
    a, b = statistics.median(results["A"]), statistics.median(results["B"])
    print(f"median A {a:,.0f} req/s, B {b:,.0f} req/s, B/A {b / a:.3f}")


if __name__ == "__main__":
    main()
