#!/usr/bin/env python3
"""Benchmark runner: coachwhip against uvicorn, granian and hypercorn, one worker each.

    python3 bench/run.py            # full run -> bench/results/<date>.{md,png,json}
    python3 bench/run.py --smoke    # every scenario once, ~1 s each, results in a temp dir

The first run creates bench/.venv and installs the peers (see envsetup.py); later runs reuse it
and only rebuild coachwhip. Exits non-zero if a server fails to start or a run fails."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

# Standard library only at import time (this runs before bench/.venv exists); matplotlib is
# imported by report.chart() once the script has re-executed itself in the venv.
import envsetup
import report
import suite
from load import WRK_CPU
from scenarios import BY_KEY
from servers import PEERS, SERVER_CPU, SPECS, raise_nofile

BENCH_DIR = Path(__file__).resolve().parent
DEFAULTS = {
    "duration": 5.0,
    "rounds": 3,
    "warmup": 3.0,
    "concurrency": "1,64,256",
    "idle_connections": 10_000,
}
QUIET_LOAD = 0.5
SMOKE = {"duration": 1.0, "rounds": 1, "warmup": 0.5, "concurrency": "64", "idle_connections": 200}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check that the suite works: 1 s runs at 64 connections, "
        "1 round, 200 idle connections; results in a temp dir",
    )
    p.add_argument("--duration", type=float, help=f"seconds per run ({DEFAULTS['duration']:g})")
    p.add_argument("--rounds", type=int, help=f"rounds per scenario ({DEFAULTS['rounds']})")
    p.add_argument("--warmup", type=float, help=f"warm-up seconds ({DEFAULTS['warmup']:g})")
    p.add_argument("--concurrency", help=f"comma-separated ({DEFAULTS['concurrency']})")
    p.add_argument(
        "--scenarios",
        default=",".join(BY_KEY),
        help=f"comma-separated subset of {','.join(BY_KEY)}, or none (only the "
        f"idle-memory measurement)",
    )
    p.add_argument(
        "--servers",
        default=",".join([*PEERS, "coachwhip-ceiling"]),
        help=f"comma-separated subset of {','.join(SPECS)}",
    )
    p.add_argument(
        "--idle-connections",
        type=int,
        help=f"idle keep-alive connections to measure; 0 skips ({DEFAULTS['idle_connections']})",
    )
    p.add_argument(
        "--out", type=Path, help="output directory (bench/results, or a temp dir with --smoke)"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help=f"first wait up to SECONDS for the load average to drop below "
        f"{QUIET_LOAD} (polled every 30 s)",
    )
    p.add_argument(
        "--no-build",
        action="store_true",
        help="use the coachwhip already installed in bench/.venv (no rebuild)",
    )
    args = p.parse_args(argv)
    for key, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not all(c.isdigit() and int(c) > 0 for c in args.concurrency.split(",")):
        p.error(f"--concurrency wants positive integers, got {args.concurrency!r}")
    if args.scenarios == "none":
        args.scenarios = ""
    for name, allowed in (("scenarios", BY_KEY), ("servers", SPECS)):
        unknown = [x for x in getattr(args, name).split(",") if x and x not in allowed]
        if unknown:
            p.error(f"unknown {name}: {', '.join(unknown)}")
    return args


def bootstrap(argv: list[str], no_build: bool) -> None:
    """Outside bench/.venv: set it up, then re-run this script with its Python."""
    logs = BENCH_DIR / "logs"
    logs.mkdir(exist_ok=True)
    start = time.monotonic()
    envsetup.ensure(logs / "setup.log", build=not no_build)
    os.environ["BENCH_SETUP_SECONDS"] = f"{time.monotonic() - start:.1f}"
    python = str(envsetup.venv_python())
    os.execv(python, [python, str(Path(__file__).resolve()), *argv])


def preflight() -> None:
    for tool in ("wrk", "taskset", "lscpu"):
        if shutil.which(tool) is None:
            sys.exit(
                f"bench: `{tool}` is not installed (Debian: apt-get install "
                f"{'wrk' if tool == 'wrk' else 'util-linux'})"
            )
    if not {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"bench: needs CPUs {SERVER_CPU} and {WRK_CPU} (server on one, wrk on the other)")


def wait_quiet(limit_s: float, threshold: float = QUIET_LOAD) -> float:
    """Wait (polling every 30 s, at most `limit_s`) for the 1-minute load average to drop below
    `threshold`; return the load average when measuring starts."""
    deadline = time.monotonic() + limit_s
    while (load := os.getloadavg()[0]) >= threshold and time.monotonic() < deadline:
        print(
            f"bench: load average {load:.2f} >= {threshold}; waiting for a quiet machine",
            flush=True,
        )
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
    if load >= threshold:
        print(
            f"bench: WARNING: load average {load:.2f}: other work will skew the numbers", flush=True
        )
    return load


def output_dirs(args: argparse.Namespace, started: datetime.datetime) -> tuple[Path, Path]:
    """(results, logs): --out and its logs/; with --smoke a temp dir; else bench/results, with
    the logs in bench/logs/<time> out of git."""
    if args.out is not None:
        out, logs = args.out, args.out / "logs"
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="coachwhip-bench-smoke-"))
        logs = out / "logs"
    else:
        out, logs = BENCH_DIR / "results", BENCH_DIR / "logs" / started.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out, logs


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not envsetup.in_venv():
        bootstrap(argv, args.no_build)
    preflight()
    # Started in the background by a script, SIGINT may arrive ignored; SIGTERM would kill us
    # without stopping the servers. Both become exceptions that unwind through stop().
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    os.sched_setaffinity(0, {WRK_CPU})  # this process samples memory beside wrk, not on CPU 0
    raise_nofile()
    loadavg = wait_quiet(args.wait_quiet)
    started = datetime.datetime.now()
    out, logs = output_dirs(args, started)
    plan = suite.Plan(
        scenarios=[BY_KEY[k] for k in args.scenarios.split(",") if k],
        servers=args.servers.split(","),
        concurrency=[int(c) for c in args.concurrency.split(",")],
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        idle_connections=args.idle_connections,
        bin_dir=envsetup.VENV / "bin",
        log_dir=logs,
    )
    print(
        f"bench: servers pinned to CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), wrk and this "
        f"runner to CPU {WRK_CPU} (taskset -c {WRK_CPU})",
        flush=True,
    )
    print(
        f"bench: {plan.runs()} runs of {plan.duration_s:g} s, about "
        f"{plan.estimate_s() / 60:.0f} min; load average {loadavg:.2f}; "
        f"logs in {logs}",
        flush=True,
    )
    results = suite.Results()
    try:
        for scenario in plan.scenarios:
            suite.run_scenario(plan, scenario, results)
        if plan.idle_connections > 0:
            suite.run_idle(plan, BY_KEY["hello"].app, results)
    except (KeyboardInterrupt, SystemExit):  # the servers are stopped; keep what was measured
        results.fail("interrupted: the report holds only the runs before the interruption")
    return _finish(plan, args, argv, started, loadavg, out, results)


def _finish(
    plan: suite.Plan,
    args: argparse.Namespace,
    argv: list[str],
    started: datetime.datetime,
    loadavg: float,
    out: Path,
    results: suite.Results,
) -> int:
    elapsed = (datetime.datetime.now() - started).total_seconds()
    meta = {
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python3", "bench/run.py", *argv]),
        "elapsed_min": elapsed / 60,
        "setup_seconds": float(os.environ.get("BENCH_SETUP_SECONDS", "0")),
        "environment": report.environment(loadavg),
        "plan": {
            "smoke": args.smoke,
            "scenarios": [s.key for s in plan.scenarios],
            "servers": plan.servers,
            "concurrency": plan.concurrency,
            "rounds": plan.rounds,
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "idle_connections": plan.idle_connections,
        },
    }
    path = report.write(out, meta["date"], meta, results.runs, results.idle, results.failures)
    print(f"\nbench: {len(results.runs)} runs in {elapsed / 60:.1f} min; report {path}", flush=True)
    if results.failures:
        print(f"bench: {len(results.failures)} failure(s):", *results.failures, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
