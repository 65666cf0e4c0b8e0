"""The results: the environment stamp, a markdown report, a PNG chart and the raw JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from envsetup import BUILD_INFO
from scenarios import BY_KEY, SCENARIOS, Scenario
from servers import SPECS

HEADLINE_CONNECTIONS = 64
VERSIONED = (
    "coachwhip",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "hypercorn",
    "fastapi",
    "starlette",
    "pydantic",
    "websockets",
    "wsproto",
    "h2",
    "gunicorn",
    "uvicorn-worker",
    "pyuwsgi",
    "bjoern",
    "fastwsgi",
    "flask",
    "werkzeug",
)
COLORS = {
    "coachwhip": "#d1495b",
    "coachwhip-ceiling": "#f0a6b0",
    "uvicorn": "#00798c",
    "granian": "#edae49",
    "hypercorn": "#66a182",
    "granian-rt1": "#8d96a3",
    "coachwhip-w2": "#8f2d56",
    "coachwhip-w2-reuseport": "#2e4057",
    "nginx": "#6c757d",
    "uvicorn-wsproto": "#5fb3c2",
    "uvicorn-sansio": "#004f5c",
    "wsload-echo": "#6c757d",
    "gunicorn": "#3d6b35",
    "gunicorn-gthread": "#7fb069",
    "gunicorn-coachwhip-w2": "#e07a5f",
    "gunicorn-uvicorn-w2": "#3d9bb0",
    "granian-wsgi": "#edae49",
    "granian-wsgi-rt1": "#8d96a3",
    "uwsgi": "#30638e",
    "bjoern": "#8f5a9e",
    "fastwsgi": "#b08968",
}
HATCH = {"coachwhip-ceiling": "///"}

# (scenario, server, connections) -> medians over rounds
Summary = dict[tuple[str, str, int], dict[str, float]]


def _lscpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", platform.processor()).strip()
    hyper = fields.get("Hypervisor vendor", "").strip()
    return f"{model}, {os.cpu_count()} cores" + (f" ({hyper} guest)" if hyper else "")


def environment(loadavg_at_start: float) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    build = BUILD_INFO.read_text() if BUILD_INFO.exists() else "{}"
    return {
        "coachwhip_build": json.loads(build),
        "cpu": _lscpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": " ".join(wrk.split()[:2]),
        "versions": versions,
        "loadavg_at_start": loadavg_at_start,
    }


# ------------------------------------------------------------------------ summarising


def summarise(runs: list[dict[str, Any]]) -> Summary:
    """Per (scenario, server, connections): medians over rounds; RSS is the peak over rounds.
    Servers with several workers also get `busiest_share`, the median over rounds of the
    busiest worker's share of the workers' CPU time, and `busiest_share_max`, its worst round
    (an uneven split can come and go between rounds; the median alone would hide it)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["server"], r["connections"]), []).append(r)
    summary = {key: _medians(rs) for key, rs in groups.items()}
    for key, rs in groups.items():
        summary[key].update(_busy(rs))
    for key, rs in groups.items():
        shares = [r["busiest_worker_share"] for r in rs if "busiest_worker_share" in r]
        if shares:
            summary[key]["busiest_share"] = statistics.median(shares)
            summary[key]["busiest_share_max"] = max(shares)
    return summary


def _medians(rs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "rps": statistics.median(r["rps"] for r in rs),
        "rps_min": min(r["rps"] for r in rs),
        "rps_max": max(r["rps"] for r in rs),
        "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
        "rss_mib": max(r["peak_rss_kib"] for r in rs) / 1024,
        "cpu_us": statistics.median(r.get("cpu_us_per_request", 0.0) for r in rs),
        "socket_errors": sum(
            r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] for r in rs
        ),
        "rounds": len(rs),
    }


def _busy(rs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians of how busy the server and the load generator kept their cores (CPU seconds per
    second of the run: 1.0 is one core fully used) and, from tlsload, the share of handshakes
    that resumed a session. Absent from runs recorded before these were measured."""
    out: dict[str, float] = {}
    runs = [r for r in rs if r.get("duration_us")]
    if runs and all("client_cpu_s" in r for r in runs):
        out["client_busy"] = statistics.median(
            r["client_cpu_s"] / r["duration_us"] * 1e6 for r in runs
        )
        served = [r for r in runs if r.get("requests")]
        if served:
            out["client_cpu_us"] = statistics.median(
                r["client_cpu_s"] / r["requests"] * 1e6 for r in served
            )
    if runs and all("mib_per_s" in r for r in runs):
        out["mib_per_s"] = statistics.median(r["mib_per_s"] for r in runs)
    if runs:
        out["server_busy"] = statistics.median(r["cpu_s"] / r["duration_us"] * 1e6 for r in runs)
    shares = [r["resumed"] / r["handshakes"] for r in rs if r.get("handshakes")]
    if shares:
        out["resumed_share"] = statistics.median(shares)
    return out


def headline_connections(plan: dict[str, Any]) -> int:
    return (
        HEADLINE_CONNECTIONS
        if HEADLINE_CONNECTIONS in plan["concurrency"]
        else plan["concurrency"][0]
    )


def scenario_concurrency(plan: dict[str, Any], s: Scenario) -> list[int]:
    """The connection counts a scenario ran at: its own (WebSocket), or the plan's."""
    return list(plan.get("scenario_concurrency", {}).get(s.key, plan["concurrency"]))


def headline_for(plan: dict[str, Any], s: Scenario) -> int:
    counts = scenario_concurrency(plan, s)
    if s.key in plan.get("scenario_concurrency", {}):
        return HEADLINE_CONNECTIONS if HEADLINE_CONNECTIONS in counts else counts[-1]
    return headline_connections(plan)


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["--:"] * (len(header) - 1)
    return [_row(header), _row(align), *(_row(r) for r in rows), ""]


def _label(s: Scenario) -> str:
    return f"{SCENARIOS.index(s) + 1}. {s.title}"


def _rps(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _ms(v: float | None) -> str:
    return "—" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}x"


# ------------------------------------------------------------------------ markdown


def markdown(
    meta: dict[str, Any],
    summary: Summary,
    idle: dict[str, dict[str, Any]],
    failures: list[str],
    idle_tls: dict[str, dict[str, Any]] | None = None,
    runs: list[dict[str, Any]] | None = None,
    idle_ws: dict[str, dict[str, dict[str, Any]]] | None = None,
    idle_h2: dict[str, dict[str, Any]] | None = None,
) -> str:
    plan = meta["plan"]
    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"]]
    plain = [s for s in scenarios if not s.tls and not s.ws and not s.h2]
    over_tls = [s for s in scenarios if s.tls and not s.h2]
    over_ws = [s for s in scenarios if s.ws]
    over_h2 = [s for s in scenarios if s.h2]
    # Servers that ran at all (nginx joins the TLS and HTTP/2 hello scenarios only), the
    # ceiling apart.
    ran = {n for (_, n, _) in summary} | set(idle) | set(idle_tls or {}) | set(idle_h2 or {})
    ran |= {n for by_server in (idle_ws or {}).values() for n in by_server}
    servers = [s for s in plan["servers"] if s != "coachwhip-ceiling" and s in ran]
    plain_servers = [n for n in servers if any(SPECS[n].runs_in(s.key) for s in plain)]
    peers = [s for s in servers if s != "coachwhip"]
    out = _header(meta)
    if summary and plain:
        c = headline_connections(plan)
        out += _headline(summary, plain, plain_servers, [p for p in peers if p in plain_servers], c)
    wsgi = [s for s in plain if s.wsgi]
    if summary and wsgi:
        out += _wsgi_p99(summary, wsgi, [p for p in peers if p in plain_servers], plan)
    out += _ceiling(summary, plan)
    out += _idle_section(idle, [n for n in servers if n in idle])
    if summary and over_tls:
        out += _tls_section(
            meta, runs or [], summary, over_tls, servers, headline_connections(plan)
        )
    out += _idle_section(idle_tls or {}, [n for n in servers if n in (idle_tls or {})], tls=True)
    if over_ws:
        import ws_report  # imports this module

        out += ws_report.section(meta, summary, idle_ws or {}, servers)
    if over_h2:
        import h2_report  # imports this module

        out += h2_report.section(meta, summary, idle_h2 or {}, servers, runs or [])
    if summary:
        out += _details(summary, [s for s in scenarios if not s.holds_idle], plan, peers)
    out += _notes(plan, failures, ran)
    return "\n".join(out)


def _build(env: dict[str, Any]) -> str:
    build = env.get("coachwhip_build") or {}
    if not build:
        return ""
    dirty = " with uncommitted changes" if build.get("uncommitted_changes") else ""
    return f" (built from {build['commit']}{dirty})"


def _header(meta: dict[str, Any]) -> list[str]:
    env, plan, v = meta["environment"], meta["plan"], meta["environment"]["versions"]
    own = plan.get("scenario_concurrency") or {}
    if plan["scenarios"] and all(BY_KEY[k].h2 for k in plan["scenarios"]):
        # An HTTP/2 run: h2load, at each scenario's own connections and streams.
        client, warm = "h2load", "at the scenario's connections and streams"
        counts = "each scenario's own connections and streams (below)"
    elif plan["scenarios"] and all(k in own for k in plan["scenarios"] if not BY_KEY[k].holds_idle):
        # Every scenario ran at connection counts of its own (a WebSocket run).
        client, warm = "bench/wsload", "at the scenario's highest count"
        counts = "each scenario's own connection counts (below)"
    else:
        client, warm = "wrk", "at 64 connections"
        counts = ", ".join(map(str, plan["concurrency"])) + " connection(s)"
    return [
        f"# coachwhip benchmarks — {meta['date']}" + (" (smoke run)" if plan["smoke"] else ""),
        "",
        f"- **Machine:** {env['cpu']}; kernel {env['kernel']}; Python {env['python']}; "
        f"{env['wrk']}; load average at start {env['loadavg_at_start']:.2f}.",
        f"- **Servers:** coachwhip {v['coachwhip']}{_build(env)}, uvicorn {v['uvicorn']} (uvloop "
        f"{v['uvloop']}, httptools {v['httptools']}), granian {v['granian']}, hypercorn "
        f"{v['hypercorn']}; FastAPI {v['fastapi']} (Starlette {v['starlette']}, pydantic "
        f"{v['pydantic']}).",
        f"- **Method:** one worker per server, pinned to CPU 0 with `taskset -c 0`; {client} "
        f"(one thread) pinned to CPU 1. Per scenario every server is started, checked with "
        f"one request and warmed up ({plan['warmup_s']:g} s {warm}), then the "
        f"servers take turns (A B C D, A B C D, ...) for {plan['rounds']} round(s) of "
        f"{plan['duration_s']:g} s at {counts}. "
        f"Figures are medians over rounds; RSS is the peak of VmRSS summed "
        f"over the server's process tree, sampled every 100 ms.",
        f"- **Command:** `{meta['command']}` ({meta['elapsed_min']:.1f} min).",
        *_tls_header(meta),
        *_ws_header(meta),
        *_wsgi_header(meta),
        *_h2_header(meta),
        "",
    ]


def _h2_header(meta: dict[str, Any]) -> list[str]:
    if not meta.get("h2"):
        return []
    import h2_report  # imports this module

    return h2_report.header(meta)


def _wsgi_header(meta: dict[str, Any]) -> list[str]:
    if not any(BY_KEY[k].wsgi for k in meta["plan"]["scenarios"] if k in BY_KEY):
        return []
    v = meta["environment"]["versions"]
    return [
        f"- **WSGI:** gunicorn {v.get('gunicorn', '?')} (sync, and gthread), granian "
        f"{v.get('granian', '?')} (`--interface wsgi`), uWSGI {v.get('pyuwsgi', '?')} "
        f"(pyuwsgi), bjoern {v.get('bjoern', '?')}, fastwsgi {v.get('fastwsgi', '?')}; Flask "
        f"{v.get('flask', '?')} (Werkzeug {v.get('werkzeug', '?')}). One worker each; 8 Python "
        f"threads where a server has them (coachwhip `--interface wsgi --threads 8`, gunicorn "
        f"gthread `--threads 8`, granian `--blocking-threads 8`, uWSGI `--threads 8`); "
        f"gunicorn sync, bjoern and fastwsgi run the app on one thread. gunicorn sync and uWSGI "
        f"(`--http-socket`) close the connection after each response."
        + (
            f" Scenario 19 (the 10 MiB file) ran at "
            f"{', '.join(map(str, scenario_concurrency(meta['plan'], BY_KEY['wsgi-file'])))} "
            f"connection(s)."
            if "wsgi-file" in meta["plan"]["scenarios"]
            else ""
        ),
    ]


def _ws_header(meta: dict[str, Any]) -> list[str]:
    if not meta.get("ws"):
        return []
    v, plan = meta["environment"]["versions"], meta["plan"]
    own = plan.get("scenario_concurrency") or {}
    counts = "; ".join(f"{k} at {', '.join(map(str, c))}" for k, c in own.items())
    return [
        f"- **WebSocket:** websockets {v.get('websockets', '?')} and wsproto "
        f"{v.get('wsproto', '?')} (uvicorn's two implementations; hypercorn uses wsproto, granian "
        f"its own in Rust). The load generator is bench/wsload (C++20, one thread, epoll): "
        f"connections are opened first, then each sends a message, waits for the whole echo, "
        f"checks it and sends the next. Connections: {counts or 'as above'}. No extension is "
        f"offered in the echo scenarios, so every server echoes uncompressed frames.",
        *_busy_machine(meta),
    ]


def _busy_machine(meta: dict[str, Any]) -> list[str]:
    load = meta["environment"]["loadavg_at_start"]
    if load < 1.0:
        return []
    return [
        f"- **A busy machine:** the load average was {load:.2f} at the start: other processes "
        f"shared both CPUs with the servers and the load generator, so neither side's core is "
        f"near full below and every figure is lower than on a quiet machine. The servers took "
        f"turns, so each met the same conditions, but see the spread column (max - min over "
        f"rounds, relative to the median) before trusting a ratio.",
    ]


def _tls_header(meta: dict[str, Any]) -> list[str]:
    t = meta.get("tls")
    if not t:
        return []
    return [
        f"- **TLS:** every server gets the same certificate, made at bench time with "
        f"`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256` ({t['certificate']}). "
        f"Libraries: {t['openssl']} (Debian's libssl) for coachwhip, nginx {t['nginx']}, wrk "
        f"and tlsload; {t.get('python_ssl', '?')} in Python's ssl for uvicorn and hypercorn; "
        f"rustls in granian. Keep-alive over TLS is measured with wrk "
        f"(https); a connection per request with bench/tlsload (one thread, epoll, OpenSSL, "
        f"pinned like wrk): connect, handshake, one GET with `Connection: close`, the whole "
        f"answer, close; with resumption each connection offers the session its predecessor "
        f"on the same slot received. There req/s is connections (handshakes) per second and "
        f"the latency runs from connect() to the answer's last byte.",
    ]


def _headline(
    summary: Summary, scenarios: list[Scenario], servers: list[str], peers: list[str], c: int
) -> list[str]:
    def get(scn: str, srv: str, what: str) -> float | None:
        entry = summary.get((scn, srv, c))
        return None if entry is None else entry[what]

    rows = [
        [_label(s)]
        + [_rps(get(s.key, n, "rps")) for n in servers]
        + [_ratio(get(s.key, "coachwhip", "rps"), get(s.key, p, "rps")) for p in peers]
        for s in scenarios
    ]
    out = [f"## Requests per second at {c} connections", ""]
    out += _table(["scenario", *servers, *(f"cw ÷ {p}" for p in peers)], rows)
    rows = [
        [_label(s)]
        + [_ms(get(s.key, n, "p99_ms")) for n in servers]
        + [_mib(get(s.key, n, "rss_mib")) for n in servers]
        for s in scenarios
    ]
    out += [f"## p99 latency (ms) and peak RSS (MiB) at {c} connections", ""]
    return out + _table(
        ["scenario", *(f"p99 {n}" for n in servers), *(f"RSS {n}" for n in servers)], rows
    )


def _wsgi_p99(
    summary: Summary, scenarios: list[Scenario], peers: list[str], plan: dict[str, Any]
) -> list[str]:
    """The WSGI scenarios' p99 as coachwhip's divided by each peer's (at most 1: coachwhip's
    tail is no longer); req/s ratios are in the main table above."""

    def p99(scn: Scenario, srv: str) -> float | None:
        entry = summary.get((scn.key, srv, headline_for(plan, scn)))
        return None if entry is None else entry["p99_ms"]

    names = [p for p in peers if any(p99(s, p) is not None for s in scenarios)]
    rows = [
        [_label(s), _ms(p99(s, "coachwhip"))]
        + [_ratio(p99(s, "coachwhip"), p99(s, p)) for p in names]
        for s in scenarios
    ]
    c = headline_connections(plan)
    out = [f"## WSGI: p99 latency at {c} connections, coachwhip's ÷ each peer's", ""]
    out += _table(["scenario", "p99 coachwhip (ms)", *(f"cw ÷ {p}" for p in names)], rows)
    return [*out, "At most 1.00x: coachwhip's p99 is no longer than that peer's.", ""]


def _mib(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _ceiling(summary: Summary, plan: dict[str, Any]) -> list[str]:
    """Scenario 1 with and without Python, by throughput and by the server's CPU time per
    request (which, unlike req/s, does not depend on whether wrk's one core keeps up)."""
    rows = []
    for c in plan["concurrency"]:
        ceiling = summary.get(("hello", "coachwhip-ceiling", c))
        bridged = summary.get(("hello", "coachwhip", c))
        if not ceiling or not bridged:
            continue
        share = 1 - ceiling["cpu_us"] / bridged["cpu_us"] if bridged["cpu_us"] else 0.0
        rows.append(
            [
                str(c),
                _rps(ceiling["rps"]),
                _rps(bridged["rps"]),
                f"{ceiling['cpu_us']:.1f}",
                f"{bridged['cpu_us']:.1f}",
                f"{share:.0%}",
            ]
        )
    if not rows:
        return []
    return [
        "## The ceiling: the same engine without Python",
        "",
        "`coachwhip-ceiling` is coachwhip with `COACHWHIP_BENCH_CEILING=1`: the engine answers "
        "scenario 1 from C++ and Python never runs. The server's CPU time per request (user + "
        "system, from /proc) shows what share of the cost is the Python side: the ASGI bridge, "
        "the event loop and the app. Unlike req/s, it does not depend on whether wrk's single "
        "core keeps up.",
        "",
        *_table(
            [
                "conns",
                "ceiling req/s",
                "coachwhip req/s",
                "ceiling CPU µs/req",
                "coachwhip CPU µs/req",
                "Python's share",
            ],
            rows,
        ),
    ]


def _idle_section(
    idle: dict[str, dict[str, Any]], servers: list[str], tls: bool = False
) -> list[str]:
    if not idle:
        return []
    count = next(iter(idle.values()))["connections"]
    rows = []
    for n in servers:
        r = idle.get(n)
        if r is None:
            continue
        rows.append(
            [
                n,
                _mib(r["idle_rss_kib"] / 1024),
                _mib(r["idle_worker_rss_kib"] / 1024),
                _mib(r["loaded_rss_kib"] / 1024),
                f"{r['kib_per_connection']:.1f}",
                str(r["closed"]),
            ]
        )
    what = "idle TLS connection" if tls else "idle connection"
    return [
        f"## Memory at rest and per {what} ({count:,} connections)",
        "",
        *_table(
            [
                "server",
                "idle RSS, tree (MiB)",
                "idle RSS, worker (MiB)",
                f"RSS with {count:,} idle (MiB)",
                "KiB per connection",
                "closed early",
            ],
            rows,
        ),
        (
            "Each connection made a full TLS handshake (TLS 1.3, no session offered), "
            if tls
            else "Each connection "
        )
        + "sent one GET, read the answer and stayed open; RSS measured 1 s "
        "after the last one opened. The tree includes granian's and hypercorn's "
        + ("supervisor process (and nginx's master); " if tls else "supervisor process; ")
        + "the worker column is the largest single process.",
        "",
    ]


BUSY = 0.9  # a core this busy (CPU seconds per second) is taken as the limit


def _limit(server: float | None, client: float | None) -> str:
    """Which side's core was full: the server's, the load generator's, both, or neither
    (latency-bound, or the machine was busy with something else)."""
    if server is None or client is None:
        return "—"
    full = [name for name, v in (("server", server), ("load generator", client)) if v >= BUSY]
    return " and ".join(full) if full else "neither"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _tls_section(
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    summary: Summary,
    scenarios: list[Scenario],
    servers: list[str],
    c: int,
) -> list[str]:
    """The TLS scenarios side by side: throughput with coachwhip's ratios, p99 and the server's
    CPU per request, and who was the limit (how busy each side kept its core)."""

    def get(scn: str, srv: str, what: str) -> float | None:
        entry = summary.get((scn, srv, c))
        return None if entry is None else entry.get(what)

    names = [n for n in servers if any((s.key, n, c) in summary for s in scenarios)]
    peers = [n for n in names if n != "coachwhip"]
    rows = [
        [_label(s)]
        + [_rps(get(s.key, n, "rps")) for n in names]
        + [_ratio(get(s.key, "coachwhip", "rps"), get(s.key, p, "rps")) for p in peers]
        for s in scenarios
    ]
    out = [f"## TLS: requests per second at {c} connections", ""]
    out += _table(["scenario", *names, *(f"cw ÷ {p}" for p in peers)], rows)
    out += [
        "In 9 and 10 a request is a new TCP connection with its TLS handshake, so req/s is "
        "handshakes per second.",
        "",
    ]

    def cpu(scn: str, srv: str) -> str:
        v = get(scn, srv, "cpu_us")
        return "—" if not v else f"{v:.0f}"

    rows = [
        [_label(s)]
        + [_ms(get(s.key, n, "p99_ms")) for n in names]
        + [cpu(s.key, n) for n in names]
        + [_ratio(get(s.key, p, "cpu_us"), get(s.key, "coachwhip", "cpu_us")) for p in peers]
        for s in scenarios
    ]
    out += [f"## TLS: p99 latency (ms) and server CPU µs per request at {c} connections", ""]
    out += _table(
        [
            "scenario",
            *(f"p99 {n}" for n in names),
            *(f"CPU µs {n}" for n in names),
            *(f"{p} CPU ÷ cw" for p in peers),
        ],
        rows,
    )
    out += [
        "CPU µs per request is the server's user + system time over the requests served: it "
        "does not depend on whether the load generator kept up. `peer CPU ÷ cw` above 1 means "
        "coachwhip needs less CPU per request (per handshake in 9 and 10).",
        "",
    ]
    rows = []
    for s in scenarios:
        for n in names:
            e = summary.get((s.key, n, c))
            if e is None:
                continue
            server, client = e.get("server_busy"), e.get("client_busy")
            limit = _limit(server, client)
            rows.append(
                [
                    _label(s),
                    n,
                    _pct(server),
                    _pct(client),
                    _pct(e.get("resumed_share")) if s.resume else "",
                    limit,
                ]
            )
    out += [f"## TLS: who was the limit at {c} connections", ""]
    out += _table(
        ["scenario", "server", "server core busy", "client core busy", "resumed", "limit"],
        rows,
    )
    out += [
        "Core busy: CPU seconds per second of the run (100% = one core), medians over rounds; "
        "the server's summed over its process tree, the client's (wrk or tlsload) from its "
        f"rusage; the limit is the side at {BUSY:.0%} or more (neither: bound by latency, or "
        "the machine was busy with other work). Where only the load "
        "generator's core is full, the req/s shown is a floor for that server, and CPU µs per "
        "request is the fair comparison.",
        "",
    ]
    checks = (meta.get("tls") or {}).get("checks") or {}
    if checks:
        out += [
            "Checked with `curl -k` before measuring: "
            + "; ".join(f"{n} {checks[n]['curl']}" for n in names if n in checks)
            + ".",
            "",
        ]
    keys = {s.key for s in scenarios}
    negotiated = sorted(
        {
            (r["server"], r["tls"])
            for r in runs
            if r.get("tls") and r["server"] in names and r["scenario"] in keys
        },
        key=lambda pair: (names.index(pair[0]), pair[1]),
    )
    if negotiated:
        out += [
            "tlsload negotiated: "
            + "; ".join(f"{n} {how}" for n, how in negotiated)
            + " (the most frequent per run).",
            "",
        ]
    return out


def scenario_table(
    summary: Summary,
    s: Scenario,
    plan: dict[str, Any],
    last_header: str,
    last_cell: Callable[[str, int, dict[str, Any]], str],
) -> list[str]:
    """Every figure of one scenario, a row per concurrency and server; the column before
    'socket errors' is the report's own (`last_cell(server, conns, entry)`)."""
    rows = []
    for conns in scenario_concurrency(plan, s):
        for n in plan["servers"]:
            e = summary.get((s.key, n, conns))
            if e is None:
                continue
            spread = (e["rps_max"] - e["rps_min"]) / e["rps"] if e["rps"] else 0.0
            rows.append(
                [
                    str(conns),
                    n,
                    _rps(e["rps"]),
                    f"{spread:.0%}",
                    _ms(e["p50_ms"]),
                    _ms(e["p99_ms"]),
                    _mib(e["rss_mib"]),
                    f"{e['cpu_us']:.1f}" if e["cpu_us"] else "—",
                    last_cell(n, conns, e),
                    str(int(e["socket_errors"]) or ""),
                ]
            )
    header = ["conns", "server", "req/s", "spread", "p50 ms", "p99 ms", "peak RSS MiB"]
    if s.ws:
        header[2] = "round trips/s"
    header += ["CPU µs/req", last_header, "socket errors"]
    return [f"**{_label(s)}**", "", *_table(header, rows)]


def _details(
    summary: Summary, scenarios: list[Scenario], plan: dict[str, Any], peers: list[str]
) -> list[str]:
    out = ["<details><summary>Every scenario at every concurrency</summary>", ""]
    for s in scenarios:

        def ratio(n: str, conns: int, e: dict[str, Any], s: Scenario = s) -> str:
            if n == "coachwhip" or n not in peers:
                return ""
            cw = summary.get((s.key, "coachwhip", conns))
            return _ratio(cw["rps"] if cw else None, e["rps"])

        out += scenario_table(summary, s, plan, "cw ÷ server", ratio)
    return [*out, "</details>", ""]


def _notes(plan: dict[str, Any], failures: list[str], ran: set[str] | None = None) -> list[str]:
    out = ["## Server command lines", ""]
    out += [f"- **{n}**: {SPECS[n].flags}" for n in plan["servers"] if ran is None or n in ran]
    if any(BY_KEY[k].ws for k in plan["scenarios"] if k in BY_KEY):
        out += [
            "- in the WebSocket scenarios: uvicorn `--ws websockets`, uvicorn-wsproto `--ws "
            "wsproto`; everything else each server's defaults (uvicorn and coachwhip: 16 MiB "
            "message limit, pings every 20 s, permessage-deflate on; hypercorn: 16 MiB, no "
            "pings; granian: no permessage-deflate).",
        ]
    if any(BY_KEY[k].h2 for k in plan["scenarios"] if k in BY_KEY):
        out += [
            "- over HTTP/2: coachwhip as above (its default `--http auto` serves h2c with prior "
            "knowledge and offers h2 by ALPN), granian `--http 2` (HTTP/2 only), hypercorn as "
            "above (h2c with prior knowledge and ALPN h2 by default), nginx `listen ... http2` "
            "(h2c only) and `listen ... ssl http2`; over TLS the TLS flags below. uvicorn has "
            "no HTTP/2 and takes no part.",
        ]
    if any(k.startswith(("tls", "h2-")) for k in plan["scenarios"]):
        out += [
            "- over TLS: coachwhip and uvicorn `--ssl-certfile --ssl-keyfile`, granian "
            "`--ssl-certificate --ssl-keyfile`, hypercorn `--certfile --keyfile`, nginx "
            "`ssl_certificate`/`ssl_certificate_key`; otherwise each server's TLS defaults "
            "(all negotiate TLS 1.3 with these clients).",
        ]
    out += [
        "- every server: `--backlog 2048` and a keep-alive timeout of 120 s (granian: header "
        "read timeout 60 s, its maximum) so that idle connections survive their "
        "measurement; uvicorn and coachwhip run with lifespan off, granian and hypercorn "
        "always run it (the apps answer it).",
        "- granian's `--backpressure` defaults to backlog ÷ workers and caps open "
        "connections, idle ones included: with the default the 2,049th idle connection is "
        "never served, hence 16384.",
        "- hypercorn closes a keep-alive connection after 1,000 requests (its default "
        "`keep_alive_max_requests`); wrk reconnects, which costs it a little.",
    ]
    if any(BY_KEY[k].h2 for k in plan["scenarios"] if k in BY_KEY):
        out += [
            "- over HTTP/2 hypercorn sends a GOAWAY once a connection has served those 1,000 "
            "requests, and h2load does not reconnect an HTTP/2 client: a run in which it "
            "happens shows refused streams as failed requests (and fails). At hypercorn's rates "
            "here (under 100 requests per connection per second) a run of h2load's warm-up plus "
            "the measured seconds stays below it.",
        ]
    out += [""]
    if failures:
        out += ["## Failures", "", *(f"- {f}" for f in failures), ""]
    return out


# ------------------------------------------------------------------------ chart


def chart(summary: Summary, plan: dict[str, Any], path: Path, title: str) -> bool:
    """One panel per scenario, each with its own linear scale (a 1 MiB stream and a 13-byte
    answer differ thirtyfold in req/s), bars per server at the headline concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    c = headline_connections(plan)
    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"] and not s.holds_idle]
    if not scenarios:
        return False
    cols = min(3, len(scenarios))
    rows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows + 0.6), squeeze=False)
    kilo = FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")
    for ax, s in zip(axes.flat, scenarios, strict=False):
        at = headline_for(plan, s)
        names = [n for n in plan["servers"] if (s.key, n, at) in summary]
        values = [summary[(s.key, n, at)]["rps"] for n in names]
        bars = ax.bar(
            range(len(names)),
            values,
            color=[COLORS.get(n, "#999") for n in names],
            hatch=[HATCH.get(n, "") for n in names],
            edgecolor="white",
            linewidth=0,
        )
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(
                f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        own = s.key in plan.get("scenario_concurrency", {})
        ax.set_title(s.short + (f", {at} conn." if at != c or own else ""), fontsize=9)
        ax.set_xticks([])
        ax.yaxis.set_major_formatter(kilo)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(0, max(values, default=1) * 1.15)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(
            "round trips/s" if all(s.ws for s in scenarios) else "requests/s", fontsize=8
        )
    shown = {
        n
        for s in scenarios
        for (k, n, conns) in summary
        if k == s.key and conns == headline_for(plan, s)
    }
    handles = [
        Patch(facecolor=COLORS.get(n, "#999"), hatch=HATCH.get(n, ""), edgecolor="white", label=n)
        for n in plan["servers"]
        if n in shown  # nginx is in the default list, but only TLS scenarios have it
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(
    out_dir: Path,
    stem: str,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    idle: dict[str, dict[str, Any]],
    failures: list[str],
    idle_tls: dict[str, dict[str, Any]] | None = None,
    idle_ws: dict[str, dict[str, dict[str, Any]]] | None = None,
    idle_h2: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write <stem>.json, <stem>.png and <stem>.md into `out_dir`; return the markdown path."""
    summary = summarise(runs)
    data = {"meta": meta, "runs": runs, "idle": idle, "failures": failures}
    if idle_tls:
        data["idle_tls"] = idle_tls
    if idle_ws:
        data["idle_ws"] = idle_ws
    if idle_h2:
        data["idle_h2"] = idle_h2
    (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    plan = meta["plan"]
    ws_only = bool(plan["scenarios"]) and all(BY_KEY[k].ws for k in plan["scenarios"])
    h2_only = bool(plan["scenarios"]) and all(BY_KEY[k].h2 for k in plan["scenarios"])
    what = (
        "WebSocket round trips/s"
        if ws_only
        else "HTTP/2 requests/s (h2load)"
        if h2_only
        else f"Requests/s at {headline_connections(plan)} connections"
    )
    drawn = bool(plan["scenarios"]) and chart(
        summary,
        plan,
        out_dir / f"{stem}.png",
        f"{what}, one worker on one core (median of {plan['rounds']}) — {meta['date']}",
    )
    md = markdown(meta, summary, idle, failures, idle_tls, runs, idle_ws, idle_h2)
    alt = (
        "WebSocket round trips per second"
        if ws_only
        else "HTTP/2 requests per second"
        if h2_only
        else "requests per second at 64 connections"
    )
    if drawn:
        # Before the first throughput table: the main one, or the TLS (WebSocket) one in a
        # TLS-only (WebSocket-only) run.
        headings = (
            "## Requests per second",
            "## TLS: requests per second",
            "## WebSocket: round trips per second",
            "## HTTP/2: requests per second",
        )
        heading = next((h for h in headings if h in md), "")
        if heading:
            md = md.replace(
                heading,
                f"![{alt}]({stem}.png)\n\n{heading}",
                1,
            )
    path = out_dir / f"{stem}.md"
    path.write_text(md)
    return path


def main(argv: list[str]) -> int:
    """Rewrite the markdown and the chart from a results JSON (after a change to this file or
    to workers_report.py)."""
    if len(argv) != 1:
        print("usage: bench/.venv/bin/python bench/report.py RESULTS.json", file=sys.stderr)
        return 2
    source = Path(argv[0])
    data = json.loads(source.read_text())
    if data["meta"]["plan"].get("report") == "workers":
        import workers_report  # imports this module; only needed here

        path = workers_report.write(
            source.parent, source.stem, data["meta"], data["runs"], data["failures"]
        )
    else:
        path = write(
            source.parent,
            source.stem,
            data["meta"],
            data["runs"],
            data["idle"],
            data["failures"],
            data.get("idle_tls"),
            data.get("idle_ws"),
            data.get("idle_h2"),
        )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
