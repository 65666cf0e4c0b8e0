"""The workers report (run.py --workers-report): coachwhip with one worker against two, the two
sharing one listening socket or each with its own SO_REUSEPORT socket, and two workers under
gunicorn's arbiter with coachwhip's worker class and with uvicorn's. Nothing is pinned to one
core here, so it is written apart from the main report: markdown, a small PNG chart, raw JSON.
The numbers come from the same runs and summary as the main suite (suite.py, report.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from report import (
    COLORS,
    Summary,
    _build,
    _label,
    _ratio,
    _rps,
    _table,
    scenario_table,
    summarise,
)
from scenarios import SCENARIOS, Scenario
from servers import SPECS

ONE, SHARED, REUSEPORT = "coachwhip", "coachwhip-w2", "coachwhip-w2-reuseport"
GUNICORN, GUNICORN_UVICORN = "gunicorn-coachwhip-w2", "gunicorn-uvicorn-w2"
# The ratio columns: (header, numerator, denominator), each shown when both servers ran.
RATIOS = (
    ("w2 ÷ w1", SHARED, ONE),
    ("reuseport ÷ shared", REUSEPORT, SHARED),
    ("gunicorn-coachwhip ÷ coachwhip-w2", GUNICORN, SHARED),
    ("gunicorn-coachwhip ÷ gunicorn-uvicorn", GUNICORN, GUNICORN_UVICORN),
)


def _balance(entry: dict[str, float] | None) -> str:
    """The busiest worker's median share, and its worst round when that one differs."""
    if entry is None or "busiest_share" not in entry:
        return "—"
    median, worst = entry["busiest_share"], entry["busiest_share_max"]
    return f"{median:.0%}" + (f" (worst {worst:.0%})" if round(worst, 2) > round(median, 2) else "")


def _multi(plan: dict[str, Any]) -> list[str]:
    """The servers of the plan that run several workers (they get a balance column)."""
    return [n for n in plan["servers"] if SPECS[n].workers > 1]


def markdown(meta: dict[str, Any], summary: Summary, failures: list[str]) -> str:
    plan = meta["plan"]
    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"]]
    out = _header(meta)
    if summary:
        out += _overview(summary, scenarios, plan)
        out += _details(summary, scenarios, plan)
    out += ["## Server command lines", ""]
    out += [f"- **{n}**: {SPECS[n].flags}" for n in plan["servers"]]
    out += [
        "- every one: `--backlog 2048`, keep-alive timeout 120 s, lifespan off.",
        "",
    ]
    if failures:
        out += ["## Failures", "", *(f"- {f}" for f in failures), ""]
    return "\n".join(out)


def _header(meta: dict[str, Any]) -> list[str]:
    env, plan, v = meta["environment"], meta["plan"], meta["environment"]["versions"]
    smoke = " (smoke run)" if plan["smoke"] else ""
    return [
        f"# coachwhip worker processes — {meta['date']}{smoke}",
        "",
        f"- **Machine:** {env['cpu']}; kernel {env['kernel']}; Python {env['python']}; "
        f"{env['wrk']}; load average at start {env['loadavg_at_start']:.2f}.",
        f"- **Server:** coachwhip {v['coachwhip']}{_build(env)} (uvloop {v['uvloop']}); FastAPI "
        f"{v['fastapi']} (Starlette {v['starlette']}, pydantic {v['pydantic']}).",
        f"- **Not pinned to one core.** Unlike the main report, the servers (`taskset -c "
        f"{plan['server_cpus']}`) and wrk (`taskset -c {plan['wrk_cpus']}`, "
        f"{plan['wrk_threads']} threads) share the machine's {plan['cpu_count']} CPUs: wrk "
        f"competes with the two workers for the same cores, so req/s measures the whole "
        f"machine, and two workers cannot double it. CPU µs per request is the server's own "
        f"cost and does not depend on that.",
        f"- **Method:** as in the main suite: per scenario the servers are started, checked "
        f"with one request and warmed up ({plan['warmup_s']:g} s at 64 connections), then they "
        f"take turns (A B C, A B C, ...) for {plan['rounds']} round(s) of "
        f"{plan['duration_s']:g} s at {', '.join(map(str, plan['concurrency']))} connections. "
        f"Figures are medians over rounds. RSS is the peak of VmRSS summed over the process "
        f"tree (the supervisor and its workers), sampled every 100 ms; CPU time is summed over "
        f"the tree too.",
        "- **Worker balance:** per run, each worker's user + system CPU time during the run "
        "(from `/proc/PID/stat`; the supervisor excluded) as a share of what the workers used "
        "together; the tables give the busiest worker's share, median over rounds: 50% is a "
        "perfectly even split, 100% means one worker did all the work.",
        f"- **Command:** `{meta['command']}` ({meta['elapsed_min']:.1f} min).",
        "",
    ]


def _overview(summary: Summary, scenarios: list[Scenario], plan: dict[str, Any]) -> list[str]:
    """One row per scenario and concurrency: req/s of each server, the two ratios, and the
    balance of each multi-worker server."""

    def get(scn: str, srv: str, c: int, what: str) -> float | None:
        entry = summary.get((scn, srv, c))
        return None if entry is None else entry.get(what)

    multi = _multi(plan)
    ratios = [r for r in RATIOS if r[1] in plan["servers"] and r[2] in plan["servers"]]
    rows = [
        [_label(s), str(c)]
        + [_rps(get(s.key, n, c, "rps")) for n in plan["servers"]]
        + [_ratio(get(s.key, a, c, "rps"), get(s.key, b, c, "rps")) for _, a, b in ratios]
        + [_balance(summary.get((s.key, n, c))) for n in multi]
        for s in scenarios
        for c in plan["concurrency"]
    ]
    header = [
        "scenario",
        "conns",
        *(f"{n} req/s" for n in plan["servers"]),
        *(title for title, _, _ in ratios),
        *(f"busiest worker, {n}" for n in multi),
    ]
    return [
        "## Requests per second and worker balance",
        "",
        *_table(header, rows),
        "; ".join(f"{title} is {a} ÷ {b}" for title, a, b in ratios)
        + ("; " if ratios else "")
        + "busiest worker: its share of the workers' CPU time (50% = even), median over rounds, "
        "and in brackets the worst round when it differs.",
        "",
    ]


def _details(summary: Summary, scenarios: list[Scenario], plan: dict[str, Any]) -> list[str]:
    out = ["## Every figure", ""]
    for s in scenarios:
        out += scenario_table(summary, s, plan, "busiest worker", lambda _n, _c, e: _balance(e))
    return out


def chart(summary: Summary, plan: dict[str, Any], path: Path, title: str) -> None:
    """Grouped bars: one group per scenario and concurrency, one bar per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    scenarios = [s for s in SCENARIOS if s.key in plan["scenarios"]]
    groups = [(s, c) for s in scenarios for c in plan["concurrency"]]
    servers = plan["servers"]
    width = 0.8 / len(servers)
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 1.5, 3.4))
    for i, name in enumerate(servers):
        xs = [g + (i - (len(servers) - 1) / 2) * width for g in range(len(groups))]
        values = [summary.get((s.key, name, c), {}).get("rps", 0.0) for s, c in groups]
        ax.bar(xs, values, width, label=name, color=COLORS.get(name, "#999"))
        for x, value in zip(xs, values, strict=True):
            if value:
                ax.annotate(
                    f"{value / 1000:.1f}k", (x, value), ha="center", va="bottom", fontsize=6
                )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{s.key}\n{c} conns" for s, c in groups], fontsize=8)
    ax.set_ylabel("requests/s", fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    ax.tick_params(axis="y", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(
    out_dir: Path,
    stem: str,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    failures: list[str],
) -> Path:
    """Write <stem>.json, <stem>.png (if anything was measured) and <stem>.md into `out_dir`;
    return the markdown path."""
    summary = summarise(runs)
    (out_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "failures": failures}, indent=1) + "\n"
    )
    md = markdown(meta, summary, failures)
    if summary:
        plan = meta["plan"]
        chart(
            summary,
            plan,
            out_dir / f"{stem}.png",
            f"coachwhip, 1 vs 2 workers (and under gunicorn), servers and wrk on CPUs "
            f"{plan['server_cpus']} "
            f"(median of {plan['rounds']}) — {meta['date']}",
        )
        md = md.replace(
            "## Requests per second",
            f"![requests per second]({stem}.png)\n\n## Requests per second",
            1,
        )
    path = out_dir / f"{stem}.md"
    path.write_text(md)
    return path
