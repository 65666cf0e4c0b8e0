"""The measuring itself: per scenario, start every server, check and warm each up, then run
wrk (or tlsload, wsload, h2load) against them in alternation (A B C D, A B C D, ...) at each
concurrency; afterwards the memory of idle servers and of idle keep-alive connections, plain and
over TLS; idle WebSockets and idle HTTP/2 connections are scenarios of their own (run_ws_idle,
run_h2_idle). The WSGI scenarios (wsgi-*) run like the plain ones, with the WSGI servers; the
HTTP/2 ones (h2c-*, h2-*) with the servers that speak it, over HTTP/2 only.
The same machinery serves the main suite (servers on CPU 0, wrk on CPU 1) and the workers report
(both on CPUs 0 and 1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2setup
import idle
import load
import tlssetup
import wssetup
from scenarios import Scenario
from servers import SERVER_CPU, SPECS, Server, ServerError

WARMUP_CONNECTIONS = 64
PAUSE_S = 0.3  # between runs: lets the previous run's connections finish closing


@dataclass
class Plan:
    scenarios: list[Scenario]
    servers: list[str]
    concurrency: list[int]
    rounds: int
    duration_s: float
    warmup_s: float
    idle_connections: int
    bin_dir: Path
    log_dir: Path  # server logs and wrk scripts
    server_cpus: str = str(SERVER_CPU)  # taskset -c syntax
    client: load.Client = field(default_factory=load.Client)
    tls_files: tlssetup.TlsFiles | None = None  # the certificate, when a TLS scenario runs
    # Scenarios with connection counts of their own (WebSocket), instead of `concurrency`.
    scenario_concurrency: dict[str, list[int]] = field(default_factory=dict)

    def servers_for(self, scenario: Scenario) -> list[str]:
        return [n for n in self.servers if SPECS[n].serves(scenario.key, scenario.tls)]

    def concurrency_for(self, scenario: Scenario) -> list[int]:
        return self.scenario_concurrency.get(scenario.key, self.concurrency)

    @property
    def idle_kinds(self) -> list[bool]:
        """Which idle HTTP/1.1 measurements run (False: plain, True: over TLS): plain when a
        plain ASGI scenario runs or none at all (--scenarios none), over TLS when a TLS scenario
        runs. A run of WSGI scenarios only measures no idle connections (the measurement serves
        the ASGI hello app); HTTP/2 has its own (idle-h2c)."""
        if self.idle_connections <= 0:
            return []
        http = [s for s in self.scenarios if not s.ws and not s.wsgi and not s.h2]
        kinds = [False] if not self.scenarios or any(not s.tls for s in http) else []
        return kinds + ([True] if any(s.tls for s in http) else [])

    def idle_servers(self, over_tls: bool) -> list[str]:
        key = "idle-tls" if over_tls else "idle"
        return [n for n in self.servers if SPECS[n].serves(key, over_tls)]

    def runs(self) -> int:
        return sum(
            len(self.servers_for(s)) * len(self.concurrency_for(s)) * self.rounds
            for s in self.scenarios
            if not s.holds_idle
        )

    def estimate_s(self) -> float:
        """Rough wall time: runs, warm-ups, and about 3 s per scenario to start and stop; h2load
        adds its own warm-up (and about 0.5 s reading its log) to every run."""
        warmups = sum(len(self.servers_for(s)) for s in self.scenarios if not s.holds_idle)
        h2_runs = sum(
            len(self.servers_for(s)) * (len(self.concurrency_for(s)) * self.rounds + 1)
            for s in self.scenarios
            if s.client == "h2load"
        )
        idle_s = sum(
            (5 + self.idle_connections / (300 if kind else 1000)) * len(self.idle_servers(kind))
            for kind in self.idle_kinds
        )
        idle_s += sum(
            (5 + self.idle_connections / 1000) * len(self.servers_for(s))
            for s in self.scenarios
            if s.holds_idle and self.idle_connections > 0
        )
        return (
            self.runs() * (self.duration_s + PAUSE_S + 0.2)
            + warmups * (self.warmup_s + PAUSE_S + 0.2)
            + h2_runs * (h2setup.warmup_for(self.warmup_s) + 0.5)
            + 3 * len(self.scenarios)
            + idle_s
        )


@dataclass
class Results:
    runs: list[dict[str, Any]] = field(default_factory=list)
    idle: dict[str, dict[str, Any]] = field(default_factory=dict)
    idle_tls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # server -> what `curl -k` saw before its first TLS measurement (protocol, certificate)
    tls_checks: dict[str, dict[str, str]] = field(default_factory=dict)
    # idle WebSocket scenario -> server -> its memory with plan.idle_connections open
    idle_ws: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # server -> scenario -> what its 101 said in the WebSocket check (Server, extensions)
    ws_checks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # server -> its memory with plan.idle_connections idle HTTP/2 connections (idle-h2c)
    idle_h2: dict[str, dict[str, Any]] = field(default_factory=dict)
    # server -> "h2c" / "h2" -> what the HTTP/2 check saw (protocol, TLS, Server header)
    h2_checks: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # Servers left out of a scenario for lack of a feature (no WebSocket): not failures.
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False

    def fail(self, message: str) -> None:
        print(f"FAIL {message}", flush=True)
        self.failures.append(message)

    def skip(self, message: str) -> None:
        print(f"SKIP {message}", flush=True)
        self.skipped.append(message)


def _start(
    plan: Plan,
    names: list[str],
    app: str,
    tag: str,
    results: Results,
    scenario: Scenario | None = None,
    over_tls: bool = False,
) -> list[Server]:
    """Start the servers together, then wait for each; the ones that fail are recorded, the
    ones not installed here (optional peers) skipped."""
    over_tls = over_tls or (scenario is not None and scenario.tls)
    if over_tls and plan.tls_files is None:
        raise RuntimeError("a TLS scenario needs plan.tls_files (tlssetup.make_cert)")
    missing = {n: why for n in names if (why := SPECS[n].unavailable()) is not None}
    for n, why in missing.items():
        results.skip(f"{tag} {n}: {why}")
    names = [n for n in names if n not in missing]

    def extra(n: str) -> tuple[str, ...]:
        if scenario is None:
            return ()
        spec = SPECS[n]
        return (
            scenario.args_for(n)
            + (spec.ws_flags if scenario.ws else ())
            + (spec.wsgi_flags if scenario.wsgi else ())
        )

    started = [
        Server(
            SPECS[n],
            app,
            plan.bin_dir,
            plan.log_dir / f"{tag}-{n}.log",
            plan.server_cpus,
            extra=extra(n),
            tls_files=plan.tls_files if over_tls else None,
            h2=scenario is not None and bool(scenario.h2),
        )
        for n in names
    ]
    ready = []
    for server in started:
        try:
            took = server.wait_ready()
            print(f"    {server.name} ready on port {server.port} after {took:.1f} s", flush=True)
            ready.append(server)
        except ServerError as e:
            results.fail(str(e))
            server.stop()
    return ready


def _check_tls(server: Server, path: str, check: Any, results: Results) -> None:
    """`curl -k` must get the right answer over TLS, with the bench certificate."""
    got = tlssetup.curl_check(server.port, path)
    if got.status != 200 or not check(got.body):
        raise server.fail(f"curl -k https://...{path}: {got.status} {got.body[:60]!r}")
    if tlssetup.SUBJECT not in got.subject.replace(" ", ""):
        raise server.fail(
            f"curl -k saw certificate subject {got.subject!r}, not {tlssetup.SUBJECT}"
        )
    results.tls_checks[server.name] = {"curl": got.protocol, "subject": got.subject}


def _check_h2(server: Server, scenario: Scenario, results: Results) -> None:
    """One request over a fresh HTTP/2 connection (h2c with prior knowledge, or ALPN h2 over
    TLS with the bench certificate): the server must speak HTTP/2 and answer rightly."""
    body = b"x" * scenario.body_size
    got = h2setup.request(server.port, scenario.method, scenario.path, body, scenario.tls)
    if got.status != 200 or not scenario.check(got.body):
        raise server.fail(f"wrong answer over {got.protocol}: {got.status} {got.body[:60]!r}")
    if server.tls_files is not None and not h2setup.same_certificate(
        got.peer_cert, server.tls_files.cert
    ):
        raise server.fail("answered over TLS with another certificate than the bench one")
    results.h2_checks.setdefault(server.name, {})[got.protocol] = {
        "tls": got.tls,
        "server_header": got.server_header,
    }


def _check(server: Server, scenario: Scenario, results: Results, cpus: str) -> None:
    if scenario.h2:
        _check_h2(server, scenario, results)  # Server.request below speaks HTTP/2 too
    elif scenario.tls:
        _check_tls(server, scenario.path, scenario.check, results)
    body = b"x" * scenario.body_size
    status, answer = server.request(scenario.method, scenario.path, body)
    try:
        ok = status == 200 and scenario.check(answer)
    except ValueError:  # not JSON where JSON was expected
        ok = False
    if not ok:
        raise server.fail(
            f"wrong answer to {scenario.method} {scenario.path}: {status} {answer[:60]!r}"
        )
    if scenario.ws:
        # Raises NoWebSocket if the upgrade got plain HTTP, OSError if the echo was wrong.
        got = wssetup.check(scenario, server.port, cpus)
        results.ws_checks.setdefault(server.name, {})[scenario.key] = got


@dataclass
class Measurement:
    result: load.WrkResult
    peak_rss_kib: int  # whole process tree
    peak_worker_rss_kib: int  # largest single process
    cpu_s: float  # CPU time the server's processes used during the run
    worker_cpu_s: list[float]  # of each worker, the supervisor excluded (empty: no supervisor)

    def as_dict(self) -> dict[str, Any]:
        per_request = self.cpu_s / self.result.requests * 1e6 if self.result.requests else 0.0
        out = {
            **self.result.as_dict(),
            "peak_rss_kib": self.peak_rss_kib,
            "peak_worker_rss_kib": self.peak_worker_rss_kib,
            "cpu_s": round(self.cpu_s, 2),
            "cpu_us_per_request": round(per_request, 2),
        }
        if len(self.worker_cpu_s) > 1:
            out["worker_cpu_s"] = [round(c, 3) for c in self.worker_cpu_s]
            out["busiest_worker_share"] = busiest_share(self.worker_cpu_s)
        return out


def busiest_share(worker_cpu_s: list[float]) -> float:
    """The busiest worker's share of the CPU time all workers used: 1/N is a perfectly even
    split, 1.0 means one worker did everything. 0.0 when nothing was measured."""
    total = sum(worker_cpu_s)
    return round(max(worker_cpu_s) / total, 4) if total > 0 else 0.0


def _measure(
    plan: Plan,
    server: Server,
    scenario: Scenario,
    script: Path | None,
    connections: int,
    duration_s: float,
) -> Measurement:
    """One wrk run, with the server's peak RSS (sampled every 100 ms) and its CPU time, in
    total and per worker. `script`: wrk's Lua script, or the body h2load posts."""
    peak = [0, 0]

    def sample() -> None:
        tree, worker = server.rss_kib()
        peak[0], peak[1] = max(peak[0], tree), max(peak[1], worker)

    server.refresh_pids()
    if scenario.client == "h2load":
        return _measure_h2load(
            plan, server, scenario, script, connections, duration_s, sample, peak
        )
    assert script is not None
    argv = load.client_argv(scenario, script, server.port, connections, duration_s, plan.client)
    workers_before = server.worker_cpu_seconds()
    cpu_before = server.cpu_seconds()
    result = load.run_wrk(argv, duration_s, sample)
    cpu = server.cpu_seconds() - cpu_before
    workers = [
        max(0.0, after - before)  # a worker that died reads 0 now; _verdict reports it
        for before, after in zip(workers_before, server.worker_cpu_seconds(), strict=True)
    ]
    sample()
    time.sleep(PAUSE_S)
    return Measurement(result, peak[0], peak[1], cpu, workers)


def _measure_h2load(
    plan: Plan,
    server: Server,
    scenario: Scenario,
    body: Path | None,
    connections: int,
    duration_s: float,
    sample: Callable[[], None],
    peak: list[int],
) -> Measurement:
    """One h2load run: its own warm-up, then `duration_s` measured; the server's CPU time is
    taken over that main phase only (h2load says when it starts and ends). `sample()` keeps
    the server's peak RSS (tree, worker) in `peak`."""
    warmup_s = h2setup.warmup_for(plan.warmup_s)
    log = h2setup.log_path()
    argv = h2setup.h2load_argv(
        scenario, server.port, connections, duration_s, warmup_s, plan.client.cpus, log, body
    )
    marks: list[tuple[float, list[float]]] = []

    def mark() -> None:
        marks.append((server.cpu_seconds(), server.worker_cpu_seconds()))

    try:
        result = h2setup.run_h2load(argv, duration_s, warmup_s, sample, mark)
    finally:
        log.unlink(missing_ok=True)
    (cpu_start, workers_start), (cpu_end, workers_end) = marks
    workers = [
        max(0.0, after - before) for before, after in zip(workers_start, workers_end, strict=True)
    ]
    sample()
    time.sleep(PAUSE_S)
    return Measurement(result, peak[0], peak[1], cpu_end - cpu_start, workers)


def _verdict(server: Server, scenario: Scenario, result: load.WrkResult) -> str | None:
    if server.proc.poll() is not None:
        return f"exited with status {server.proc.returncode} during the run"
    if lost := server.lost_workers():
        return f"worker(s) {', '.join(map(str, lost))} exited during the run"
    if result.requests == 0:
        return "no request succeeded"
    if result.status_errors:
        return f"{result.status_errors} non-2xx/3xx responses"
    if scenario.resume and not result.extra.get("resumed"):
        return "no TLS session was resumed"
    if scenario.client == "h2load":
        if (protocol := result.extra.get("protocol")) != ("h2" if scenario.tls else "h2c"):
            return f"h2load spoke {protocol or 'nothing'!r}, not HTTP/2"
        if failed := result.extra.get("failed"):
            return (
                f"{failed} requests failed (h2load: {result.extra.get('errored', 0)} errored, "
                f"{result.timeouts} timed out, {result.status_errors} 4xx/5xx)"
            )
    return None


def run_scenario(plan: Plan, scenario: Scenario, results: Results) -> None:
    names = plan.servers_for(scenario)
    print(f"\n== {scenario.key}: {scenario.title} ({', '.join(names)})", flush=True)
    servers = _start(plan, names, scenario.app, scenario.key, results, scenario)
    script = (
        h2setup.write_body(scenario, plan.log_dir)
        if scenario.client == "h2load"
        else load.write_script(scenario, plan.log_dir)
    )
    # WebSocket and HTTP/2 scenarios warm up at their own highest connection count (64 x 1 MiB
    # in flight would be another scenario).
    own = scenario.ws or scenario.h2
    warm_connections = max(plan.concurrency_for(scenario)) if own else WARMUP_CONNECTIONS
    try:
        for server in list(servers):
            try:
                _check(server, scenario, results, plan.client.cpus)
                warm = _measure(plan, server, scenario, script, warm_connections, plan.warmup_s)
                if (why := _verdict(server, scenario, warm.result)) is not None:
                    raise server.fail(f"warm-up: {why}")
            except wssetup.NoWebSocket as e:
                results.skip(f"{scenario.key} {server.name}: {e}")
                servers.remove(server)
                server.stop()
            except (ServerError, load.WrkError, OSError) as e:
                results.fail(f"{scenario.key}: {e}")
                servers.remove(server)
                server.stop()
        for connections in plan.concurrency_for(scenario):
            for rnd in range(1, plan.rounds + 1):
                for server in list(servers):
                    _run_one(plan, server, scenario, script, connections, rnd, results, servers)
    finally:
        for server in servers:
            server.stop()


def _run_one(
    plan: Plan,
    server: Server,
    scenario: Scenario,
    script: Path | None,
    connections: int,
    rnd: int,
    results: Results,
    servers: list[Server],
) -> None:
    try:
        m = _measure(plan, server, scenario, script, connections, plan.duration_s)
    except load.WrkError as e:
        results.fail(f"{scenario.key} c={connections} {server.name}: {e}")
        return
    key = {"scenario": scenario.key, "server": server.name, "connections": connections}
    results.runs.append({**key, "round": rnd, **m.as_dict()})
    result = m.result
    errors = f" socket errors {result.socket_errors}" if result.socket_errors else ""
    if scenario.client == "wsload":
        busy = result.client_cpu_s / (result.duration_us / 1e6) if result.duration_us else 0.0
        mib = f"  {result.extra.get('mib_per_s', 0):,.0f} MiB/s" if scenario.ws == "large" else ""
        errors = f"{mib}  client cpu {busy:.0%}{errors}"
    elif scenario.client == "tlsload":
        hs = result.extra.get("handshakes") or 0
        resumed = (
            f" resumed {result.extra.get('resumed', 0) / hs:.0%}" if scenario.resume and hs else ""
        )
        errors = (
            f"  client cpu {result.client_cpu_s / (result.duration_us / 1e6):.0%}{resumed}{errors}"
        )
    elif scenario.client == "h2load":
        busy = result.client_cpu_s / (result.duration_us / 1e6) if result.duration_us else 0.0
        failed = result.extra.get("failed", 0)
        errors = f"  h2load cpu {busy:.0%}{f' failed {failed}' if failed else ''}{errors}"
    busiest = (
        f"  busiest worker {busiest_share(m.worker_cpu_s):.0%}" if len(m.worker_cpu_s) > 1 else ""
    )
    print(
        f"    c={connections:<3} round {rnd} {server.name:<22} {result.rps:>9,.0f} req/s  "
        f"p50 {result.p50_us / 1000:6.2f} ms  p99 {result.p99_us / 1000:6.2f} ms  "
        f"rss {m.peak_rss_kib / 1024:6.1f} MiB  cpu {m.as_dict()['cpu_us_per_request']:5.1f} "
        f"us/req{busiest}{errors}",
        flush=True,
    )
    if (why := _verdict(server, scenario, result)) is not None:
        results.fail(f"{scenario.key} c={connections} {server.name}: {why} (log {server.log_path})")
        if server.proc.poll() is not None:
            servers.remove(server)


def run_ws_idle(plan: Plan, scenario: Scenario, results: Results) -> None:
    """Idle RSS after start, then the RSS cost of `plan.idle_connections` open WebSockets held
    by wsload, each after one echo (with permessage-deflate offered, if the scenario does)."""
    count = plan.idle_connections
    if count <= 0:
        return
    names = plan.servers_for(scenario)
    store = results.idle_ws.setdefault(scenario.key, {})
    offer = ", permessage-deflate offered" if scenario.deflate else ""
    print(
        f"\n== {scenario.key}: server RSS at rest, then with {count:,} idle WebSockets{offer}",
        flush=True,
    )
    for name in names:
        for server in _start(plan, [name], scenario.app, scenario.key, results, scenario):
            try:
                _check(server, scenario, results, plan.client.cpus)
                store[name] = r = _ws_idle_one(plan, server, scenario, count)
                print(
                    f"    {name:<16} idle {r['idle_rss_kib'] / 1024:6.1f} MiB, with {count:,} "
                    f"WebSockets {r['loaded_rss_kib'] / 1024:6.1f} MiB = "
                    f"{r['kib_per_connection']:.1f} KiB each, opened in {r['open_seconds']:.1f} s"
                    f" ({r['closed']} closed early; extensions: {r['extensions'] or 'none'})",
                    flush=True,
                )
            except wssetup.NoWebSocket as e:
                results.skip(f"{scenario.key} {name}: {e}")
            except (OSError, ServerError) as e:
                results.fail(f"{scenario.key} {name}: {e}")
            finally:
                server.stop()


def _ws_idle_one(plan: Plan, server: Server, scenario: Scenario, count: int) -> dict[str, Any]:
    time.sleep(1.0)
    server.refresh_pids()
    idle_tree, idle_worker = server.rss_kib()

    def measure() -> tuple[int, int]:
        time.sleep(1.0)
        server.refresh_pids()
        return server.rss_kib()

    ready, done, (tree, worker) = wssetup.hold_idle(
        scenario, server.port, count, plan.client.cpus, measure
    )
    if ready["opened"] < count:
        raise OSError(
            f"opened only {ready['opened']:,} of {count:,} WebSockets "
            f"({ready.get('last_error') or '?'}; log {server.log_path})"
        )
    return {
        "idle_rss_kib": idle_tree,
        "idle_worker_rss_kib": idle_worker,
        "loaded_rss_kib": tree,
        "loaded_worker_rss_kib": worker,
        "connections": count,
        "closed": done.get("closed", 0),
        "open_seconds": ready["open_seconds"],
        "extensions": ready.get("ws_extensions", ""),
        "compressed_echoes": ready.get("compressed", 0),
        "client_cpu_s": done.get("client_self_cpu_s", 0.0),
        "kib_per_connection": round((tree - idle_tree) / count, 2),
    }


def run_h2_idle(plan: Plan, scenario: Scenario, results: Results) -> None:
    """Idle RSS after start, then the RSS cost of `plan.idle_connections` idle HTTP/2 (h2c)
    connections, each after the preface, the SETTINGS exchange and one GET."""
    count = plan.idle_connections
    if count <= 0:
        return
    print(
        f"\n== {scenario.key}: server RSS at rest, then with {count:,} idle HTTP/2 connections",
        flush=True,
    )
    for name in plan.servers_for(scenario):
        for server in _start(plan, [name], scenario.app, scenario.key, results, scenario):
            try:
                _check(server, scenario, results, plan.client.cpus)
                results.idle_h2[name] = r = _h2_idle_one(server, count)
                print(
                    f"    {name:<10} idle {r['idle_rss_kib'] / 1024:6.1f} MiB, with {count:,} "
                    f"HTTP/2 connections {r['loaded_rss_kib'] / 1024:6.1f} MiB = "
                    f"{r['kib_per_connection']:.1f} KiB each, opened in {r['open_seconds']:.1f} s"
                    f" ({r['closed']} closed early)",
                    flush=True,
                )
            except (OSError, ServerError) as e:
                results.fail(f"{scenario.key} {name}: {e}")
            finally:
                server.stop()


def _h2_idle_one(server: Server, count: int) -> dict[str, Any]:
    time.sleep(1.0)
    server.refresh_pids()
    idle_tree, idle_worker = server.rss_kib()
    start = time.monotonic()
    held = h2setup.open_idle(server.port, count, timeout_s=120)
    try:
        opened_s = time.monotonic() - start
        time.sleep(1.0)
        server.refresh_pids()
        tree, worker = server.rss_kib()
        closed = h2setup.count_closed(held)
    finally:
        h2setup.close_all(held)
    return {
        "idle_rss_kib": idle_tree,
        "idle_worker_rss_kib": idle_worker,
        "loaded_rss_kib": tree,
        "loaded_worker_rss_kib": worker,
        "connections": count,
        "closed": closed,
        "open_seconds": round(opened_s, 2),
        "kib_per_connection": round((tree - idle_tree) / count, 2),
    }


def run_idle(plan: Plan, hello_app: str, results: Results, over_tls: bool = False) -> None:
    """Idle RSS after start, then the RSS cost of `plan.idle_connections` idle connections
    (over TLS: each after a full handshake)."""
    count = plan.idle_connections
    names = plan.idle_servers(over_tls)
    kind = "TLS keep-alive" if over_tls else "keep-alive"
    tag = "idle-tls" if over_tls else "idle"
    store = results.idle_tls if over_tls else results.idle
    print(
        f"\n== {tag}: server RSS at rest, then with {count:,} idle {kind} connections",
        flush=True,
    )
    for name in names:
        for server in _start(plan, [name], hello_app, tag, results, over_tls=over_tls):
            try:
                if over_tls:
                    _check_tls(server, "/", lambda body: body == b"Hello, world!", results)
                store[name] = _idle_one(server, count, over_tls)
                r = store[name]
                print(
                    f"    {name:<10} idle {r['idle_rss_kib'] / 1024:6.1f} MiB, with {count:,} "
                    f"connections {r['loaded_rss_kib'] / 1024:6.1f} MiB = "
                    f"{r['kib_per_connection']:.1f} KiB each ({r['closed']} closed early)",
                    flush=True,
                )
            except (OSError, ServerError) as e:
                results.fail(f"{tag} {name}: {e}")
            finally:
                server.stop()


def _idle_one(server: Server, count: int, over_tls: bool = False) -> dict[str, Any]:
    time.sleep(1.0)
    server.refresh_pids()
    idle_tree, idle_worker = server.rss_kib()
    start = time.monotonic()
    socks = idle.open_idle(server.port, count, timeout_s=300 if over_tls else 120, tls=over_tls)
    try:
        opened_s = time.monotonic() - start
        time.sleep(1.0)
        server.refresh_pids()
        tree, worker = server.rss_kib()
        closed = idle.count_closed(socks)
    finally:
        idle.close_all(socks)
    return {
        "idle_rss_kib": idle_tree,
        "idle_worker_rss_kib": idle_worker,
        "loaded_rss_kib": tree,
        "loaded_worker_rss_kib": worker,
        "connections": count,
        "closed": closed,
        "open_seconds": round(opened_s, 2),
        "kib_per_connection": round((tree - idle_tree) / count, 2),
    }
