"""The WebSocket part of a report (bench/run.py --scenarios ws): round trips per second with
coachwhip's ratio to each peer, latency, who was the limit (wsload's core against the server's),
the memory of idle WebSockets with and without permessage-deflate, and the issue's targets."""

from __future__ import annotations

from typing import Any

from report import Summary, _label, _limit, _mib, _ms, _pct, _ratio, _rps, _table
from scenarios import SCENARIOS, Scenario

LIMIT = "wsload-echo"  # bench/wsload --serve: no Python, no app
TARGET_CONNECTIONS = 64
# Issue 13, section 5.
TARGET_VS_UVICORN = 3.0
TARGET_VS_GRANIAN = 1.25
TARGET_IDLE_KIB = 4.0


def concurrency(plan: dict[str, Any], s: Scenario) -> list[int]:
    return list(plan.get("scenario_concurrency", {}).get(s.key, plan["concurrency"]))


def headline(plan: dict[str, Any], s: Scenario) -> int:
    counts = concurrency(plan, s)
    return TARGET_CONNECTIONS if TARGET_CONNECTIONS in counts else counts[-1]


def section(
    meta: dict[str, Any],
    summary: Summary,
    idle_ws: dict[str, dict[str, dict[str, Any]]],
    servers: list[str],
) -> list[str]:
    plan = meta["plan"]
    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"] and s.ws]
    load = [s for s in scenarios if s.ws != "idle"]
    rows = [(s, c) for s in load for c in concurrency(plan, s)]
    names = [n for n in servers if any((s.key, n, c) in summary for s, c in rows)]
    out: list[str] = []
    if rows and names:
        out += _throughput(summary, rows, names)
        out += _latency(summary, rows, names)
        out += _limits(summary, rows, names)
    out += _idle(idle_ws, [n for n in servers if any(n in v for v in idle_ws.values())])
    out += _targets(summary, idle_ws, plan)
    out += _checks(meta, servers)
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
        "## WebSocket: round trips per second",
        "",
        *_table(["scenario", *names, *(f"cw ÷ {p}" for p in peers)], table),
        "A round trip is one message sent and its whole echo received, checked byte for byte. "
        "In 12 each carries 1 MiB each way, so round trips per second are MiB/s each way. "
        f"`{LIMIT}` is bench/wsload's own C++ echo server (no Python, no app): what the load "
        "generator can do on its core.",
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
        "## WebSocket: round-trip latency (ms), p50 and p99",
        "",
        *_table(["scenario", *(f"p50 {n}" for n in names), *(f"p99 {n}" for n in names)], table),
        "From wsload's own per-round-trip timings (send to the echo's last byte), medians over "
        "rounds.",
        "",
    ]


def _cpu(v: float | None) -> str:
    return "—" if not v else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def _limits(summary: Summary, rows: list[tuple[Scenario, int]], names: list[str]) -> list[str]:
    table = []
    for s, c in rows:
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
                    _cpu(e.get("client_cpu_us")),
                    _pct(server),
                    _pct(client),
                    _limit(server, client),
                ]
            )
    out = ["## WebSocket: CPU per round trip, and who was the limit", ""]
    out += _table(
        [
            "scenario",
            "server",
            "round trips/s",
            "server CPU µs/rt",
            "wsload CPU µs/rt",
            "server core busy",
            "wsload core busy",
            "limit",
        ],
        table,
    )
    out += [
        "CPU µs per round trip: the server's user + system time (its process tree, from /proc) "
        "and wsload's (its rusage), each divided by the round trips. Core busy: CPU seconds per "
        "second of the run (100% = one core). A side at 90% or more is the limit; 'neither' "
        "means bound by latency (1 connection: one message in flight at a time).",
        "",
    ]
    return out + _headroom(summary, rows, names)


def _headroom(summary: Summary, rows: list[tuple[Scenario, int]], names: list[str]) -> list[str]:
    """The evidence that wsload is not the bottleneck, in words: what it did against its own
    echo server, against the best of the rest."""
    out = []
    for s, c in rows:
        limit = summary.get((s.key, LIMIT, c))
        others = [(n, summary.get((s.key, n, c))) for n in names if n != LIMIT]
        others = [(n, e) for n, e in others if e is not None]
        if limit is None or not others:
            continue
        best_name, best = max(others, key=lambda pair: pair[1]["rps"])
        out.append(
            f"- {_row_label(s, c)}: against `{LIMIT}` wsload made {_rps(limit['rps'])} round "
            f"trips/s with its core {_pct(limit.get('client_busy'))} busy "
            f"({_cpu(limit.get('client_cpu_us'))} µs each); the fastest server here, {best_name}, "
            f"got {_rps(best['rps'])}/s ({best['rps'] / limit['rps']:.0%} of that) with wsload's "
            f"core {_pct(best.get('client_busy'))} busy and its own "
            f"{_pct(best.get('server_busy'))}."
        )
    if not out:
        return []
    return ["**Is wsload the limit?**", "", *out, ""]


def _idle(idle_ws: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> list[str]:
    if not idle_ws or not servers:
        return []
    plain, deflate = idle_ws.get("idle-ws", {}), idle_ws.get("idle-ws-deflate", {})
    count = next(iter(next(iter(idle_ws.values())).values()))["connections"]

    def kib(r: dict[str, Any] | None) -> str:
        return "—" if r is None else f"{r['kib_per_connection']:.1f}"

    def opened(r: dict[str, Any] | None) -> str:
        return "—" if r is None else f"{r['open_seconds']:.1f}"

    table = []
    for n in servers:
        p, d = plain.get(n), deflate.get(n)
        first = p or d
        assert first is not None
        agreed = "—" if d is None else (f"`{d['extensions']}`" if d["extensions"] else "no")
        table.append(
            [
                n,
                _mib(first["idle_rss_kib"] / 1024),
                kib(p),
                kib(d),
                agreed,
                "—" if d is None else ("yes" if d.get("compressed_echoes") else "no"),
                f"{opened(p)} / {opened(d)}",
                str(sum(r["closed"] for r in (p, d) if r is not None)),
            ]
        )
    return [
        f"## Memory per idle WebSocket ({count:,} connections)",
        "",
        *_table(
            [
                "server",
                "idle RSS, tree (MiB)",
                "KiB per WebSocket",
                "KiB per WebSocket, deflate offered",
                "deflate agreed (the server's answer)",
                "echo compressed",
                "opened in (s)",
                "closed early",
            ],
            table,
        ),
        "wsload opened the connections (64 handshakes in flight at a time), each exchanged one "
        "32-byte text echo and then stayed open; RSS (VmRSS summed over the server's process "
        "tree) 1 s after the last one opened, minus RSS at rest, divided by the count. With "
        "deflate, wsload offered `permessage-deflate; client_max_window_bits` as browsers do and "
        "sent its message uncompressed; 'echo compressed' says whether the server compressed its "
        "answer (RSV1), so that its compressor was used at least once.",
        "",
    ]


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _targets(
    summary: Summary, idle_ws: dict[str, dict[str, dict[str, Any]]], plan: dict[str, Any]
) -> list[str]:
    echo = next((s for s in SCENARIOS if s.key == "ws-echo"), None)
    lines = []
    if echo is not None and echo.key in plan["scenarios"]:
        c = headline(plan, echo)
        cw = summary.get((echo.key, "coachwhip", c))
        for peer, factor in (
            ("uvicorn", TARGET_VS_UVICORN),
            ("uvicorn-wsproto", TARGET_VS_UVICORN),
            ("granian", TARGET_VS_GRANIAN),
        ):
            other = summary.get((echo.key, peer, c))
            if cw and other:
                ratio = cw["rps"] / other["rps"]
                lines.append(
                    f"- ws-echo at {c} connections ≥ {factor:g}x {peer}: {ratio:.2f}x "
                    f"({_rps(cw['rps'])} against {_rps(other['rps'])}): {_mark(ratio >= factor)}"
                )
        granian = summary.get((echo.key, "granian", c))
        if cw and granian:
            ok = cw["p99_ms"] <= granian["p99_ms"]
            lines.append(
                f"- ws-echo p99 at {c} connections ≤ granian's: {_ms(cw['p99_ms'])} ms against "
                f"{_ms(granian['p99_ms'])} ms: {_mark(ok)}"
            )
    idle = idle_ws.get("idle-ws", {}).get("coachwhip")
    if idle is not None:
        v = idle["kib_per_connection"]
        lines.append(
            f"- an idle WebSocket without deflate ≤ {TARGET_IDLE_KIB:g} KiB: {v:.1f} KiB: "
            f"{_mark(v <= TARGET_IDLE_KIB)}"
        )
    if not lines:
        return []
    return ["## Against the issue's targets", "", *lines, ""]


def _checks(meta: dict[str, Any], servers: list[str]) -> list[str]:
    ws = meta.get("ws") or {}
    checks = ws.get("checks") or {}
    out = []
    if checks:
        said = []
        for n in servers:
            by_scenario = checks.get(n)
            if not by_scenario:
                continue
            any_check = next(iter(by_scenario.values()))
            header = any_check.get("server_header") or "none"
            agreed = by_scenario.get("idle-ws-deflate", {}).get("extensions")
            deflate = "" if agreed is None else f", to a deflate offer `{agreed or 'nothing'}`"
            said.append(f"{n} `Server: {header}`{deflate}")
        out += ["Each server's 101 in the check before measuring: " + "; ".join(said) + ".", ""]
    if ws.get("skipped"):
        out += [
            "Skipped (the upgrade was answered with plain HTTP: no WebSocket):",
            "",
            *(f"- {x}" for x in ws["skipped"]),
            "",
        ]
    return out
