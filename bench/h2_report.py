"""The HTTP/2 part of a report (bench/run.py --scenarios h2): requests per second with
coachwhip's ratio to each peer and to nginx, p50/p99 from h2load's per-request log, CPU per
request and who was the limit (h2load's core against the server's), the memory of idle HTTP/2
connections, what each server negotiated, and the issue's targets."""

from __future__ import annotations

from typing import Any

from report import Summary, _label, _limit, _mib, _ms, _pct, _ratio, _rps, _table
from scenarios import BY_KEY, SCENARIOS, Scenario
from servers import SPECS

LIMIT = "nginx"  # answers by itself: no app
# The targets for the multiplexed hello (64 connections x 10 streams).
TARGET_VS_GRANIAN = 1.5
TARGET_VS_HYPERCORN = 5.0
# nginx 1.22's HTTP/2 defaults (its documentation); the others' are read from the installed
# packages at run time (h2setup.peer_settings).
NGINX_H2 = (
    "`http2_max_concurrent_streams 128`, `http2_chunk_size 8k`, `http2_body_preread_size 64k` "
    "(the initial stream window), `http2_recv_buffer_size 256k`"
)


def _value(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int) and v >= 1 << 20 and v % (1 << 20) == 0:
        return f"{v >> 20:,} MiB"
    if isinstance(v, int) and v >= 1024 and v % 1024 == 0:
        return f"{v >> 10:,} KiB"
    return f"{v}"


def header(meta: dict[str, Any]) -> list[str]:
    h2, plan = meta["h2"], meta["plan"]
    flags = h2.get("h2load_flags") or {}
    per = "; ".join(f"{k} `{f.replace('-c C', _conns(plan, k))}`" for k, f in flags.items())
    settings = h2.get("settings") or {}
    keys = [k for k in plan["scenarios"] if k in BY_KEY and BY_KEY[k].h2]
    over_tls = any(BY_KEY[k].tls for k in keys)
    # The servers that took part in an HTTP/2 scenario (nginx in the hello ones only).
    names = [n for n in plan["servers"] if any(SPECS[n].serves(k, BY_KEY[k].tls) for k in keys)]

    def described(name: str) -> str:
        given = settings.get(name) or {}
        return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in given.items()) or "?"

    how = {
        "coachwhip": lambda: f"coachwhip `--http auto` ({described('coachwhip')})",
        "granian": lambda: f"granian `--http 2` ({described('granian')})",
        "hypercorn": lambda: f"hypercorn ({described('hypercorn')})",
        "nginx": lambda: f"nginx {h2.get('nginx', '?')} ({NGINX_H2})",
    }
    tls = (
        f" Over TLS the certificate and TLS libraries are the TLS scenarios' "
        f"({h2.get('certificate', '?')}; {h2.get('openssl', '?')} for coachwhip, nginx and "
        f"h2load, {h2.get('python_ssl', '?')} for hypercorn, rustls for granian)."
        if over_tls
        else ""
    )
    return [
        f"- **HTTP/2 load:** h2load ({h2.get('h2load', '?')}, Debian's nghttp2-client), one "
        f"thread, pinned to CPU 1 like wrk: `h2load -t 1 -c C -m M -D {plan['duration_s']:g} "
        f"--warm-up-time {h2.get('h2load_warmup_s', '?'):g} --log-file FILE URL` ({per}). "
        f"http:// is h2c with prior knowledge (h2load's default), https:// h2 by ALPN; h2load "
        f"offers stream and connection windows of 2^30-1 and a 16 KiB frame size. In every run "
        f"h2load first warms up (connections made, requests sent, nothing counted), then counts "
        f"for the -D seconds; the server's CPU time and h2load's are taken over those seconds "
        f"only (h2load says when they start and end). req/s: requests answered 2xx/3xx in them. "
        f"h2load prints no percentiles: p50/p99 are computed from its per-request log (every "
        f"request of the measured phase, nearest rank), which it writes with a write(2) per "
        f"request (to tmpfs), a cost on its side. A run with any failed request (a reset "
        f"stream, a lost connection, a non-2xx/3xx answer) fails.",
        "- **HTTP/2 settings** (each server's defaults): "
        + "; ".join(how[n]() if n in how else n for n in names)
        + f".{tls} uvicorn has no HTTP/2 and takes no part.",
    ]


def _conns(plan: dict[str, Any], key: str) -> str:
    counts = plan.get("scenario_concurrency", {}).get(key, plan["concurrency"])
    return "-c " + "/".join(map(str, counts))


def concurrency(plan: dict[str, Any], s: Scenario) -> list[int]:
    return list(plan.get("scenario_concurrency", {}).get(s.key, plan["concurrency"]))


def section(
    meta: dict[str, Any],
    summary: Summary,
    idle_h2: dict[str, dict[str, Any]],
    servers: list[str],
    runs: list[dict[str, Any]],
) -> list[str]:
    plan = meta["plan"]
    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"] and s.h2 == "load"]
    rows = [(s, c) for s in scenarios for c in concurrency(plan, s)]
    names = [n for n in servers if any((s.key, n, c) in summary for s, c in rows)]
    out: list[str] = []
    if rows and names:
        out += _throughput(summary, rows, names)
        out += _latency(summary, rows, names)
        out += _limits(summary, rows, names)
    out += _idle(idle_h2, [n for n in servers if n in idle_h2])
    out += _targets(summary, idle_h2, plan, rows)
    out += _checks(meta, runs, servers)
    return out


def _get(summary: Summary, s: Scenario, n: str, c: int, what: str) -> float | None:
    entry = summary.get((s.key, n, c))
    return None if entry is None else entry.get(what)


def _row_label(s: Scenario, c: int) -> str:
    return f"{_label(s)}, {c} conn."


def _throughput(summary: Summary, rows: list[tuple[Scenario, int]], names: list[str]) -> list[str]:
    peers = [n for n in names if n != "coachwhip"] if "coachwhip" in names else []
    table = [
        [_row_label(s, c)]
        + [_rps(_get(summary, s, n, c, "rps")) for n in names]
        + [
            _ratio(_get(summary, s, "coachwhip", c, "rps"), _get(summary, s, p, c, "rps"))
            for p in peers
        ]
        for s, c in rows
    ]
    return [
        "## HTTP/2: requests per second",
        "",
        *_table(["scenario", *names, *(f"cw ÷ {p}" for p in peers)], table),
        f"`{LIMIT}` answers `Hello, world!` by itself (`return 200`, no app): what HTTP/2 (and "
        "TLS) costs at the least on this machine, and how far h2load gets on its core.",
        "",
    ]


def _latency(summary: Summary, rows: list[tuple[Scenario, int]], names: list[str]) -> list[str]:
    table = [
        [_row_label(s, c)]
        + [_ms(_get(summary, s, n, c, "p50_ms")) for n in names]
        + [_ms(_get(summary, s, n, c, "p99_ms")) for n in names]
        for s, c in rows
    ]
    return [
        "## HTTP/2: latency (ms), p50 and p99",
        "",
        *_table(["scenario", *(f"p50 {n}" for n in names), *(f"p99 {n}" for n in names)], table),
        "Per request, from h2load's log: the request's start to the end of its response, "
        "medians over rounds.",
        "",
    ]


def _cpu(v: float | None) -> str:
    return "—" if not v else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def _limits(summary: Summary, rows: list[tuple[Scenario, int]], names: list[str]) -> list[str]:
    table = []
    for s, c in rows:
        cw = _get(summary, s, "coachwhip", c, "cpu_us")
        for n in names:
            e = summary.get((s.key, n, c))
            if e is None:
                continue
            server, client = e.get("server_busy"), e.get("client_busy")
            table.append(
                [
                    _row_label(s, c),
                    n,
                    _rps(e["rps"]),
                    _cpu(e.get("cpu_us")),
                    "" if n == "coachwhip" else _ratio(e.get("cpu_us"), cw),
                    _cpu(e.get("client_cpu_us")),
                    _pct(server),
                    _pct(client),
                    _mib(e.get("rss_mib")),
                    _limit(server, client),
                ]
            )
    out = ["## HTTP/2: CPU per request, and who was the limit", ""]
    out += _table(
        [
            "scenario",
            "server",
            "req/s",
            "server CPU µs/req",
            "CPU ÷ cw",
            "h2load CPU µs/req",
            "server core busy",
            "h2load core busy",
            "peak RSS MiB",
            "limit",
        ],
        table,
    )
    return [
        *out,
        "CPU µs per request: the server's user + system time (its process tree, from /proc) and "
        "h2load's (from /proc too), over the measured seconds, each divided by the requests. "
        "`CPU ÷ cw` above 1 means coachwhip needs less CPU per request. Core busy: CPU seconds "
        "per second of the run (100% = one core). A side at 90% or more is the limit; where "
        "only h2load's core is full, that server's req/s is a floor and CPU per request is the "
        "comparison that holds.",
        "",
    ]


def _idle(idle_h2: dict[str, dict[str, Any]], servers: list[str]) -> list[str]:
    if not idle_h2 or not servers:
        return []
    count = next(iter(idle_h2.values()))["connections"]
    table = [
        [
            n,
            _mib(r["idle_rss_kib"] / 1024),
            _mib(r["idle_worker_rss_kib"] / 1024),
            _mib(r["loaded_rss_kib"] / 1024),
            f"{r['kib_per_connection']:.1f}",
            f"{r['open_seconds']:.1f}",
            str(r["closed"]),
        ]
        for n in servers
        if (r := idle_h2.get(n)) is not None
    ]
    return [
        f"## Memory per idle HTTP/2 connection ({count:,} h2c connections)",
        "",
        *_table(
            [
                "server",
                "idle RSS, tree (MiB)",
                "idle RSS, worker (MiB)",
                f"RSS with {count:,} idle (MiB)",
                "KiB per connection",
                "opened in (s)",
                "closed early",
            ],
            table,
        ),
        "Each connection (h2c, prior knowledge; Python's `h2` library in the runner, one after "
        "another) sent the preface and its SETTINGS, one GET, read the whole answer and "
        "acknowledged the server's SETTINGS, then stayed open; RSS (VmRSS summed over the "
        "server's process tree) 1 s after the last one opened, minus RSS at rest, divided by "
        "the count. 'Closed early': closed, or sent a GOAWAY, before the measurement ended.",
        "",
    ]


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _targets(
    summary: Summary,
    idle_h2: dict[str, dict[str, Any]],
    plan: dict[str, Any],
    rows: list[tuple[Scenario, int]],
) -> list[str]:
    lines = []
    for s, c in rows:
        cw = summary.get((s.key, "coachwhip", c))
        if cw is None:
            continue
        if s.key.endswith("-hello"):
            for peer, factor in (
                ("granian", TARGET_VS_GRANIAN),
                ("hypercorn", TARGET_VS_HYPERCORN),
            ):
                other = summary.get((s.key, peer, c))
                if other and other["rps"]:
                    ratio = cw["rps"] / other["rps"]
                    lines.append(
                        f"- {s.key} at {c} x {s.streams} ≥ {factor:g}x {peer}: {ratio:.2f}x "
                        f"({_rps(cw['rps'])} against {_rps(other['rps'])}): "
                        f"{_mark(ratio >= factor)}"
                    )
        granian = summary.get((s.key, "granian", c))
        if granian:
            ok = cw["p99_ms"] <= granian["p99_ms"]
            lines.append(
                f"- {s.key} p99 ≤ granian's: {_ms(cw['p99_ms'])} ms against "
                f"{_ms(granian['p99_ms'])} ms: {_mark(ok)}"
            )
    if (mine := idle_h2.get("coachwhip")) is not None:
        others = ", ".join(
            f"{n} {r['kib_per_connection']:.1f}" for n, r in idle_h2.items() if n != "coachwhip"
        )
        lines.append(
            f"- memory per idle HTTP/2 connection (reported, no target): "
            f"{mine['kib_per_connection']:.1f} KiB" + (f" ({others})" if others else "")
        )
    if not lines:
        return []
    return ["## HTTP/2: against the issue's targets", "", *lines, ""]


def _checks(meta: dict[str, Any], runs: list[dict[str, Any]], servers: list[str]) -> list[str]:
    checks = (meta.get("h2") or {}).get("checks") or {}
    out = []
    said = []
    for n in servers:
        by_proto = checks.get(n)
        if not by_proto:
            continue
        parts = []
        for proto, got in sorted(by_proto.items(), key=lambda kv: kv[0] != "h2c"):
            tls = f" ({got['tls']})" if got.get("tls") else ""
            parts.append(f"{proto}{tls}")
        header = next((g.get("server_header") for g in by_proto.values()), "") or "none"
        said.append(f"{n}: {', '.join(parts)}, `server: {header}`")
    if said:
        out += [
            "Checked before measuring, one request over a fresh connection (Python's `h2`; over "
            "TLS ALPN offering only h2, and the certificate compared with the bench one): "
            + "; ".join(said)
            + ".",
            "",
        ]
    negotiated = sorted(
        {
            (r["server"], r["tls"])
            for r in runs
            if r.get("tls") and r.get("protocol") == "h2" and r["server"] in servers
        },
        key=lambda pair: (servers.index(pair[0]), pair[1]),
    )
    if negotiated:
        out += [
            "h2load negotiated over TLS: " + "; ".join(f"{n} {how}" for n, how in negotiated) + ".",
            "",
        ]
    return out
