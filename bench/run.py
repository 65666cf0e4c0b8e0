#!/usr/bin/env python3
"""Benchmark runner: coachwhip against uvicorn, granian and hypercorn, one worker each.

    python3 bench/run.py                   # full run -> bench/results/<date>.{md,png,json}
    python3 bench/run.py --workers-report  # coachwhip's 1 vs 2 workers, and 2 under gunicorn
                                           #   (coachwhip's and uvicorn's worker class), on
                                           #   both CPUs
                                           #   -> bench/results/<date>-workers.{md,png,json}
    python3 bench/run.py --smoke           # every scenario but TLS (and h2 over TLS) once,
                                           #   ~1 s each, then a tiny workers report; results
                                           #   in a temp dir
    python3 bench/run.py --scenarios tls   # the TLS scenarios (nginx joins as the limit)
                                           #   -> bench/results/<date>-tls.{md,png,json}
    python3 bench/run.py --scenarios ws    # the WebSocket scenarios (bench/wsload)
                                           #   -> bench/results/<date>-ws.{md,png,json}
    python3 bench/run.py --scenarios wsgi  # the WSGI scenarios (WSGI peers, coachwhip
                                           #   --interface wsgi) -> <date>-wsgi.{md,png,json}
    python3 bench/run.py --scenarios h2    # the HTTP/2 scenarios (h2load; h2c and h2 over
                                           #   TLS) -> bench/results/<date>-h2.{md,png,json}

The first run creates bench/.venv and installs the peers (see envsetup.py); later runs reuse it
and only rebuild coachwhip. Exits non-zero if a server fails to start or a run fails."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Standard library only at import time (this runs before bench/.venv exists); matplotlib is
# imported by report.chart() once the script has re-executed itself in the venv.
import envsetup
import h2setup
import load
import report
import suite
import tlssetup
import workers_report
import wssetup
from load import WRK_CPU
from scenarios import BY_KEY, DEFAULT_KEYS, GROUPS
from servers import MAIN_SERVERS, SERVER_CPU, SPECS, WORKERS_SERVERS, raise_nofile

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
# nginx takes part in the TLS scenarios and the HTTP/2 hello ones only (servers.TLS_ONLY,
# servers.NGINX_H2), uvicorn-wsproto and wsload-echo in the WebSocket ones
# (servers.MAIN_SERVERS); uvicorn in no HTTP/2 one (it has no HTTP/2).
WORKERS_SCENARIOS = ("hello", "fastapi")
WORKERS_CONCURRENCY = "64,256"
# The workers report leaves the scheduler free on both CPUs: two workers pinned to one core would
# measure nothing. wrk gets two threads so that it can use both cores as well: one thread would
# cap the load at what one core generates, below what two workers can serve.
BOTH_CPUS = f"{SERVER_CPU},{WRK_CPU}"
WORKERS_CLIENT = load.Client(cpus=BOTH_CPUS, threads=2)


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
        "1 round, 200 idle connections, then the same for the workers report; "
        "results in a temp dir",
    )
    p.add_argument(
        "--workers-report",
        action="store_true",
        help=f"run only the workers report: {', '.join(WORKERS_SERVERS)} (1 worker, 2 "
        f"workers sharing one socket, 2 workers with SO_REUSEPORT sockets, 2 workers under "
        f"gunicorn with coachwhip's and with uvicorn's worker class) on "
        f"{', '.join(WORKERS_SCENARIOS)} at {WORKERS_CONCURRENCY} connections. NOT pinned to "
        f"one core: servers and wrk (2 threads) both on CPUs {BOTH_CPUS}. Writes "
        f"<date>-workers.{{md,png,json}}",
    )
    p.add_argument("--duration", type=float, help=f"seconds per run ({DEFAULTS['duration']:g})")
    p.add_argument("--rounds", type=int, help=f"rounds per scenario ({DEFAULTS['rounds']})")
    p.add_argument("--warmup", type=float, help=f"warm-up seconds ({DEFAULTS['warmup']:g})")
    p.add_argument(
        "--concurrency",
        help=f"comma-separated ({DEFAULTS['concurrency']}; --workers-report: "
        f"{WORKERS_CONCURRENCY})",
    )
    p.add_argument(
        "--scenarios",
        help=f"comma-separated subset of {','.join(BY_KEY)}, or none (only the idle-memory "
        f"measurement); `tls` stands for {','.join(GROUPS['tls'])}, `ws` for "
        f"{','.join(GROUPS['ws'])}, `wsgi` for {','.join(GROUPS['wsgi'])}, `h2` for "
        f"{','.join(GROUPS['h2'])}. Default all but the TLS, WebSocket, WSGI and HTTP/2 ones "
        f"({','.join(DEFAULT_KEYS)}; --smoke adds the WebSocket ones and the HTTP/2 ones but "
        f"those over TLS), --workers-report: {','.join(WORKERS_SCENARIOS)}",
    )
    p.add_argument(
        "--servers",
        help=f"comma-separated subset of {','.join(SPECS)}; default "
        f"{','.join(MAIN_SERVERS)}, --workers-report: {','.join(WORKERS_SERVERS)}. With "
        f"--smoke alone, each part takes the listed servers it would run by default",
    )
    p.add_argument(
        "--idle-connections",
        type=int,
        help=f"idle keep-alive connections (and WebSockets in idle-ws*, HTTP/2 connections in "
        f"idle-h2c) to measure, main suite only; 0 skips ({DEFAULTS['idle_connections']})",
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
    # Without --concurrency the WebSocket scenarios keep their own connection counts.
    args.concurrency_given = args.concurrency is not None
    if args.concurrency is None and args.workers_report and not args.smoke:
        args.concurrency = WORKERS_CONCURRENCY
    for key, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not all(c.isdigit() and int(c) > 0 for c in args.concurrency.split(",")):
        p.error(f"--concurrency wants positive integers, got {args.concurrency!r}")
    if args.scenarios == "none":
        args.scenarios = ""
    if args.scenarios:
        keys = [k for x in args.scenarios.split(",") for k in GROUPS.get(x, (x,))]
        args.scenarios = ",".join(dict.fromkeys(keys))
    for name, allowed in (("scenarios", BY_KEY), ("servers", SPECS)):
        given = getattr(args, name)
        unknown = [x for x in (given or "").split(",") if x and x not in allowed]
        if unknown:
            p.error(f"unknown {name}: {', '.join(unknown)}")
    return args


@dataclass(frozen=True)
class Part:
    """One report of a run: the main suite, or the workers report."""

    workers: bool  # the workers report: both CPUs for everyone, <date>-workers.*
    scenarios: list[str]
    servers: list[str]

    @property
    def tls_only(self) -> bool:
        return bool(self.scenarios) and all(
            BY_KEY[k].tls and not BY_KEY[k].h2 for k in self.scenarios
        )

    @property
    def ws_only(self) -> bool:
        return bool(self.scenarios) and all(BY_KEY[k].ws for k in self.scenarios)

    @property
    def wsgi_only(self) -> bool:
        return bool(self.scenarios) and all(BY_KEY[k].wsgi for k in self.scenarios)

    @property
    def h2_only(self) -> bool:
        return bool(self.scenarios) and all(BY_KEY[k].h2 for k in self.scenarios)

    @property
    def stem_suffix(self) -> str:
        """<date>-workers.* for the workers report, <date>-tls.* (<date>-ws.*, <date>-wsgi.*,
        <date>-h2.*) for a run of TLS (WebSocket, WSGI, HTTP/2) scenarios only, so that it
        does not replace the day's main report."""
        if self.workers:
            return "-workers"
        if self.wsgi_only:
            return "-wsgi"
        if self.h2_only:
            return "-h2"
        return "-tls" if self.tls_only else "-ws" if self.ws_only else ""


def parts(args: argparse.Namespace) -> list[Part]:
    """What to run: the main suite, the workers report (--workers-report), or both (--smoke,
    main suite first). --scenarios and --servers replace a part's defaults; when both parts
    run, they filter them instead, so that e.g. `--smoke --servers coachwhip,coachwhip-w2`
    runs coachwhip in both parts and coachwhip-w2 only in the workers report."""
    scn = None if args.scenarios is None else [x for x in args.scenarios.split(",") if x]
    srv = None if args.servers is None else [x for x in args.servers.split(",") if x]
    if args.workers_report:
        return [Part(True, scn or [*WORKERS_SCENARIOS], srv or [*WORKERS_SERVERS])]
    # A smoke run checks the WebSocket scenarios and the h2c ones too (a minute more each); the
    # full default run leaves them to `--scenarios ws` and `--scenarios h2`, which write reports
    # of their own. HTTP/2 over TLS stays out of it, as TLS does.
    smoke_extra = [*GROUPS["ws"], *(k for k in GROUPS["h2"] if not BY_KEY[k].tls)]
    defaults = [*DEFAULT_KEYS, *(smoke_extra if args.smoke else ())]
    main = Part(False, defaults if scn is None else scn, srv or [*MAIN_SERVERS])
    if not args.smoke:
        return [main]
    # Both parts. Multi-worker servers pinned to one core would say nothing: workers report only.
    main = Part(False, main.scenarios, [n for n in main.servers if SPECS[n].workers == 1])
    workers = Part(
        True,
        [k for k in WORKERS_SCENARIOS if scn is None or k in scn],
        [n for n in WORKERS_SERVERS if srv is None or n in srv],
    )
    return [x for x in (main, workers) if x.servers and (x.scenarios or not x.workers)]


def bootstrap(argv: list[str], no_build: bool) -> None:
    """Outside bench/.venv: set it up, then re-run this script with its Python."""
    logs = BENCH_DIR / "logs"
    logs.mkdir(exist_ok=True)
    start = time.monotonic()
    envsetup.ensure(logs / "setup.log", build=not no_build)
    os.environ["BENCH_SETUP_SECONDS"] = f"{time.monotonic() - start:.1f}"
    python = str(envsetup.venv_python())
    os.execv(python, [python, str(Path(__file__).resolve()), *argv])


DEBIAN_PACKAGE = {"wrk": "wrk", "taskset": "util-linux", "lscpu": "util-linux"}
DEBIAN_PACKAGE |= {"openssl": "openssl", "curl": "curl", "nginx": "nginx-light", "g++": "g++"}
DEBIAN_PACKAGE |= {"h2load": "nghttp2-client"}


def preflight(todo: list[Part]) -> None:
    tools = ["wrk", "taskset", "lscpu"]
    if any(BY_KEY[k].tls and not BY_KEY[k].h2 for part in todo for k in part.scenarios):
        tools += ["openssl", "curl", "g++"]
    if any(BY_KEY[k].tls and BY_KEY[k].h2 for part in todo for k in part.scenarios):
        tools += [] if "openssl" in tools else ["openssl"]
    if any(BY_KEY[k].h2 for part in todo for k in part.scenarios):
        tools += ["h2load"]
    nginx = [k for part in todo if "nginx" in part.servers for k in part.scenarios]
    if any(SPECS["nginx"].serves(k, BY_KEY[k].tls) for k in nginx):
        tools += ["nginx"]
    if any(BY_KEY[k].ws for part in todo for k in part.scenarios):
        tools += [] if "g++" in tools else ["g++"]
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(
                f"bench: `{tool}` is not installed (Debian: apt-get install "
                f"{DEBIAN_PACKAGE[tool]}{' libssl-dev' if tool == 'g++' else ''})"
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
    todo = parts(args)
    preflight(todo)
    # Started in the background by a script, SIGINT may arrive ignored; SIGTERM would kill us
    # without stopping the servers. Both become exceptions that unwind through stop().
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    raise_nofile()
    loadavg = wait_quiet(args.wait_quiet)
    out, logs = output_dirs(args, datetime.datetime.now())
    status = 0
    for part in todo:
        results = run_part(part, args, argv, loadavg, out, logs)
        status = 1 if results.failures else status
        if results.interrupted:
            break
        loadavg = os.getloadavg()[0]  # the next part starts on a machine this one warmed up
    return status


def make_plan(part: Part, args: argparse.Namespace, logs: Path) -> suite.Plan:
    plan = suite.Plan(
        scenarios=[BY_KEY[k] for k in part.scenarios],
        servers=part.servers,
        concurrency=[int(c) for c in args.concurrency.split(",")],
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        idle_connections=args.idle_connections,
        bin_dir=envsetup.VENV / "bin",
        log_dir=logs,
    )
    if part.workers:
        # Its own log directory: the server logs are named <scenario>-<server>.log, and the
        # main suite's coachwhip on hello would otherwise share one with this part's.
        plan.log_dir = logs / "workers"
        plan.log_dir.mkdir(exist_ok=True)
        plan.server_cpus, plan.client, plan.idle_connections = BOTH_CPUS, WORKERS_CLIENT, 0
    if any(s.tls for s in plan.scenarios):
        # A fresh certificate per run, beside the logs; every server is given the same one.
        plan.tls_files = tlssetup.make_cert(plan.log_dir / "tls")
    if any(s.client == "tlsload" for s in plan.scenarios):
        tlssetup.ensure_tlsload()
    if any(s.client == "wsload" for s in plan.scenarios):
        wssetup.ensure_wsload()
    # WebSocket scenarios run at their own connection counts unless --concurrency was given;
    # a smoke run takes only the highest.
    for s in plan.scenarios:
        if s.concurrency and not args.concurrency_given:
            counts = list(s.concurrency)
            plan.scenario_concurrency[s.key] = counts[-1:] if args.smoke else counts
    return plan


def _announce_placement(plan: suite.Plan, workers: bool) -> None:
    if workers:
        print(
            f"\nbench: workers report. NOT pinned to one core: the servers (taskset -c "
            f"{plan.server_cpus}) and wrk (taskset -c {plan.client.cpus}, "
            f"{plan.client.threads} threads) share both CPUs, so wrk competes with the two "
            f"workers for them",
            flush=True,
        )
    else:
        print(
            f"bench: servers pinned to CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), wrk and this "
            f"runner to CPU {WRK_CPU} (taskset -c {WRK_CPU})",
            flush=True,
        )


def run_part(
    part: Part,
    args: argparse.Namespace,
    argv: list[str],
    loadavg: float,
    out: Path,
    logs: Path,
) -> suite.Results:
    """Measure one part, write its report, print its failures; return its results."""
    started = datetime.datetime.now()
    plan = make_plan(part, args, logs)
    # This process samples memory every 100 ms: beside wrk in the main suite, off the server's
    # core; in the workers report nothing is pinned, this process included.
    os.sched_setaffinity(0, {SERVER_CPU, WRK_CPU} if part.workers else {WRK_CPU})
    _announce_placement(plan, part.workers)
    estimate = plan.estimate_s()
    about = f"{estimate / 60:.0f} min" if estimate >= 90 else f"{estimate:.0f} s"
    print(
        f"bench: {plan.runs()} runs of {plan.duration_s:g} s, about {about}; load average "
        f"{loadavg:.2f}; logs in {plan.log_dir}",
        flush=True,
    )
    results = suite.Results()
    try:
        for scenario in plan.scenarios:
            if scenario.ws == "idle":
                suite.run_ws_idle(plan, scenario, results)
            elif scenario.h2 == "idle":
                suite.run_h2_idle(plan, scenario, results)
            else:
                suite.run_scenario(plan, scenario, results)
        for over_tls in plan.idle_kinds:
            suite.run_idle(plan, BY_KEY["hello"].app, results, over_tls)
    except (KeyboardInterrupt, SystemExit):  # the servers are stopped; keep what was measured
        results.interrupted = True
        results.fail("interrupted: the report holds only the runs before the interruption")
    _finish(part, plan, args, argv, started, loadavg, out, results)
    return results


def _finish(
    part: Part,
    plan: suite.Plan,
    args: argparse.Namespace,
    argv: list[str],
    started: datetime.datetime,
    loadavg: float,
    out: Path,
    results: suite.Results,
) -> None:
    elapsed = (datetime.datetime.now() - started).total_seconds()
    meta = {
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python3", "bench/run.py", *argv]),
        "elapsed_min": elapsed / 60,
        "setup_seconds": float(os.environ.get("BENCH_SETUP_SECONDS", "0")),
        "environment": report.environment(loadavg),
        "plan": {
            "report": "workers" if part.workers else "main",
            "smoke": args.smoke,
            "scenarios": [s.key for s in plan.scenarios],
            "servers": plan.servers,
            "concurrency": plan.concurrency,
            "scenario_concurrency": plan.scenario_concurrency,
            "rounds": plan.rounds,
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "idle_connections": plan.idle_connections,
            "server_cpus": plan.server_cpus,
            "wrk_cpus": plan.client.cpus,
            "wrk_threads": plan.client.threads,
            "cpu_count": os.cpu_count(),
        },
    }
    if any(s.tls and not s.h2 for s in plan.scenarios) and plan.tls_files is not None:
        meta["tls"] = {
            "certificate": tlssetup.describe_cert(plan.tls_files),
            "openssl": tlssetup.openssl_version(),
            "python_ssl": " ".join(ssl.OPENSSL_VERSION.split()[:2]),
            "nginx": tlssetup.nginx_version(),
            "checks": results.tls_checks,
        }
    if any(s.h2 for s in plan.scenarios):
        meta["h2"] = {
            "h2load": h2setup.h2load_version(),
            "h2load_warmup_s": h2setup.warmup_for(plan.warmup_s),
            "h2load_flags": {
                s.key: h2setup.flags_for(s) for s in plan.scenarios if s.client == "h2load"
            },
            "settings": h2setup.peer_settings(),
            "checks": results.h2_checks,
            "nginx": tlssetup.nginx_version(),
            "python_ssl": " ".join(ssl.OPENSSL_VERSION.split()[:2]),
            "openssl": tlssetup.openssl_version(),
        }
        if plan.tls_files is not None:
            meta["h2"]["certificate"] = tlssetup.describe_cert(plan.tls_files)
    if any(s.ws for s in plan.scenarios):
        meta["ws"] = {
            "client": "bench/wsload (C++20, one thread, epoll; g++ -O2)",
            "checks": results.ws_checks,
            "skipped": results.skipped,
        }
    stem = meta["date"] + part.stem_suffix
    if part.workers:
        path = workers_report.write(out, stem, meta, results.runs, results.failures)
    else:
        path = report.write(
            out,
            stem,
            meta,
            results.runs,
            results.idle,
            results.failures,
            results.idle_tls,
            results.idle_ws,
            results.idle_h2,
        )
    print(f"\nbench: {len(results.runs)} runs in {elapsed / 60:.1f} min; report {path}", flush=True)
    if results.skipped:
        print(f"bench: {len(results.skipped)} skipped:", *results.skipped, sep="\n  ")
    if results.failures:
        print(f"bench: {len(results.failures)} failure(s):", *results.failures, sep="\n  ")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
