"""The Autobahn|Testsuite cases (517, fuzzingclient mode) against a live WebSocket server.

kosoku runs the cases natively (no Python 2, no Docker) and writes Autobahn's own report
directory: `index.json` maps agent -> case id -> {behavior, behaviorClose, duration (ms),
remoteCloseCode, reportfile}, and each `<agent>_case_<id>.json` holds the whole case: its
description and expectation, the verdicts with their prose (`result`, `resultClose`), the
events received, the close codes, and a wire log (`RF` = a frame received from the server:
[[length, payload], opcode, fin, rsv, ...]). `index.html` is the same report for a human.

Verdicts: `behavior` is OK, NON-STRICT (a SHOULD missed), INFORMATIONAL (unspecified
behaviour), UNIMPLEMENTED (an optional feature, e.g. permessage-deflate for 12.* and 13.*),
FAILED or ERROR; `behaviorClose` is OK, INFORMATIONAL, FAILED, FAILED BY CLIENT, UNCLEAN or
WRONG CODE. A case passes when both are OK, NON-STRICT or INFORMATIONAL (kosoku's rule).

As a script, against a server already running (say `uvicorn --ws websockets --app-dir
tests/integration apps.ws_echo:app --port 8000`):

    .venv/bin/python tests/integration/autobahn.py --port 8000 [-i '9.*'] [-p 2] [-o DIR]

prints every case that is not OK, then the summary line; exits 1 if any case did not pass, 2 if
kosoku ended without a report (or ran out of --timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE_SIZE = 517
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
ALWAYS_COUNTED = ("UNIMPLEMENTED", "FAILED")  # in the summary line even when 0
OPCODES = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
SHOWN_FRAMES = 6  # frames of the server's to show for a case that did not pass


def case_key(case_id: str) -> tuple[int, ...]:
    """Numeric order: 1.2.10 after 1.2.9."""
    return tuple(int(part) for part in case_id.split("."))


@dataclass(frozen=True)
class Case:
    """One case's verdicts, what it tested, and what the server did (from its report file)."""

    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    description: str
    expectation: str
    result: str
    result_close: str
    remote_close_code: int | None
    remote_close_reason: str | None
    was_clean: bool
    not_clean_reason: str | None
    received: tuple[str, ...]  # the events kosoku matched against the expectation
    frames: tuple[str, ...]  # the server's frames, from the wire log (empty if not logged)
    rx_frame_stats: dict[str, int]

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING and self.behavior_close in PASSING

    @property
    def ok(self) -> bool:
        return self.behavior == "OK" and self.behavior_close == "OK"

    def server_did(self) -> str:
        """What the server sent and how the connection ended, in one paragraph."""
        if self.frames:
            sent = ", ".join(self.frames)
        else:
            counts = ", ".join(
                f"{n} {OPCODES.get(int(op), op)}" for op, n in sorted(self.rx_frame_stats.items())
            )
            sent = f"frames: {counts or 'none'}"
        close = (
            f"close {self.remote_close_code} {self.remote_close_reason or ''!r}"
            if self.remote_close_code is not None
            else "no close frame"
        )
        clean = "clean" if self.was_clean else "unclean"
        if self.not_clean_reason:
            clean += f" ({self.not_clean_reason})"
        return f"server sent {sent}; {close}; {clean}"

    def explain(self) -> str:
        """The case id, its verdicts and description, and why (for an assertion message)."""
        return (
            f"{self.case_id}: behavior={self.behavior} close={self.behavior_close} "
            f"({self.duration_ms} ms)\n"
            f"    case: {self.description}\n"
            f"    expected: {self.expectation}\n"
            f"    result: {self.result} / {self.result_close}\n"
            f"    received: {', '.join(self.received) or 'nothing'}\n"
            f"    {self.server_did()}"
        )


@dataclass
class Run:
    """A kosoku run: every case's result, keyed by case id in suite order."""

    agent: str
    cases: dict[str, Case]
    report_dir: Path
    wall_s: float | None = None

    def not_ok(self) -> list[Case]:
        return [case for case in self.cases.values() if not case.ok]

    def not_passed(self) -> list[Case]:
        return [case for case in self.cases.values() if not case.passed]

    def summary(self) -> str:
        """E.g. "505 OK of 517 (9 NON-STRICT, 3 INFORMATIONAL, 0 UNIMPLEMENTED, 0 FAILED);
        close: 514 OK, 3 INFORMATIONAL; agent hypercorn-h11; 415.7 s"."""
        behavior = Counter(case.behavior for case in self.cases.values())
        close = Counter(case.behavior_close for case in self.cases.values())
        shown = [name for name in BEHAVIORS[1:] if behavior[name] or name in ALWAYS_COUNTED]
        shown += sorted(name for name in behavior if name not in BEHAVIORS)
        rest = [f"{behavior[name]} {name}" for name in shown]
        closes = ", ".join(f"{n} {name}" for name, n in close.most_common())
        timing = f"; {self.wall_s:.1f} s" if self.wall_s is not None else ""
        return (
            f"{behavior['OK']} OK of {len(self.cases)} ({', '.join(rest)}); "
            f"close: {closes}; agent {self.agent}{timing}"
        )


# --- reading a report directory -------------------------------------------------------------


def _event(event: Sequence[Any]) -> str:
    """A `received` entry: ["message", payload, binary] / ["ping"|"pong", payload] / ..."""
    kind = str(event[0])
    if kind == "message":
        payload = str(event[1])
        what = "binary" if event[2] else "text"
        return f"{what} message {_clip(payload)} ({len(payload)} chars)"
    if kind in ("ping", "pong"):
        return f"{kind} {_clip(str(event[1]))}"
    return " ".join(str(part) for part in event)


def _frame(entry: Sequence[Any]) -> str:
    """A wire-log `RF` entry: ["RF", [length, payload], opcode, fin, rsv, masked, mask]."""
    (length, payload), opcode, fin, rsv = entry[1], entry[2], entry[3], entry[4]
    flags = ("" if fin else " fin=0") + (f" rsv={rsv}" if rsv else "")
    shown = "" if opcode == 8 else f" {_clip(str(payload))}"  # a close: its code/reason follow
    return f"{OPCODES.get(opcode, f'opcode {opcode}')}{flags} {length} B{shown}"


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_case(path: Path) -> Case:
    data = json.loads(path.read_text())
    frames = [_frame(entry) for entry in data.get("wirelog", []) if entry[0] == "RF"]
    if len(frames) > SHOWN_FRAMES:
        frames = [*frames[: SHOWN_FRAMES - 1], f"... {len(frames) - SHOWN_FRAMES} more", frames[-1]]
    return Case(
        case_id=data["id"],
        behavior=data["behavior"],
        behavior_close=data["behaviorClose"],
        duration_ms=int(data["duration"]),
        description=data["description"],
        expectation=data["expectation"],
        result=data["result"],
        result_close=data["resultClose"],
        remote_close_code=data["remoteCloseCode"],
        remote_close_reason=data["remoteCloseReason"],
        was_clean=bool(data["wasClean"]),
        not_clean_reason=data["wasNotCleanReason"],
        received=tuple(_event(event) for event in data["received"]),
        frames=tuple(frames),
        rx_frame_stats={str(k): int(v) for k, v in (data.get("rxFrameStats") or {}).items()},
    )


def read_report(report_dir: Path) -> Run:
    """Parse a kosoku (Autobahn-format) report directory."""
    index = json.loads((report_dir / "index.json").read_text())
    if len(index) != 1:
        raise ValueError(f"{report_dir}/index.json: expected one agent, got {sorted(index)}")
    agent, entries = next(iter(index.items()))
    cases = {
        case_id: read_case(report_dir / entries[case_id]["reportfile"])
        for case_id in sorted(entries, key=case_key)
    }
    return Run(agent=agent, cases=cases, report_dir=report_dir)


# --- running kosoku -------------------------------------------------------------------------


class KosokuError(AssertionError):
    """kosoku did not finish in time, or ended without writing a report."""


def kosoku_path() -> str:
    beside = Path(sys.executable).with_name("kosoku")  # the venv this Python runs from
    found = str(beside) if beside.exists() else shutil.which("kosoku")
    if found is None:
        raise KosokuError("kosoku is not installed (pip install kosoku; requirements-dev.txt)")
    return found


def run(
    host: str,
    port: int,
    report_dir: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    parallelism: int = 2,
    timeout: float = 600.0,
) -> Run:
    """Run the cases (all 517 unless `include`/`exclude` globs narrow them) against host:port.

    kosoku exits 1 when a case fails; that is a result, read from the report like any other.
    It writes its report only at the end, so a run cut by `timeout` says nothing per case: the
    error names the selection so it can be rerun in parts.
    """
    argv = [kosoku_path(), "-o", str(report_dir), "-p", str(parallelism)]
    argv += [arg for glob in include for arg in ("-i", glob)]
    argv += [arg for glob in exclude for arg in ("-x", glob)]
    argv.append(f"{host}:{port}")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise KosokuError(
            f"kosoku did not finish within {timeout:.0f} s ({' '.join(argv)}); "
            f"output: {output.decode('utf-8', 'replace')[-2000:]}"
        ) from None
    wall = time.monotonic() - started
    text = output.decode("utf-8", "replace")
    if proc.returncode not in (0, 1) or not (report_dir / "index.json").exists():
        raise KosokuError(f"kosoku exited {proc.returncode} without a report; output:\n{text}")
    result = read_report(report_dir)
    result.wall_s = wall
    return result


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="the server under test (needed unless --read)")
    globs = "a case id, or a glob with * only (9.*, 12.2.1*); repeatable"
    parser.add_argument("-i", "--include", action="append", default=[], metavar="GLOB", help=globs)
    parser.add_argument("-x", "--exclude", action="append", default=[], metavar="GLOB", help=globs)
    parser.add_argument("-p", "--parallelism", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds (default 900)")
    parser.add_argument("-o", "--outdir", type=Path, help="report directory (default: a temp dir)")
    parser.add_argument("--read", type=Path, metavar="DIR", help="only parse an existing report")
    args = parser.parse_args(argv)
    if args.read is not None:
        result = read_report(args.read)
    elif args.port is None:
        parser.error("--port is required (or --read DIR)")
    else:
        outdir = args.outdir or Path(tempfile.mkdtemp(prefix="autobahn-"))
        try:
            result = run(
                args.host,
                args.port,
                outdir,
                include=args.include,
                exclude=args.exclude,
                parallelism=args.parallelism,
                timeout=args.timeout,
            )
        except KosokuError as exc:
            print(exc, file=sys.stderr)
            return 2
    for case in result.not_ok():
        print(case.explain())
    print(result.summary())
    print(f"report: {result.report_dir / 'index.html'}")
    return 0 if not result.not_passed() else 1


if __name__ == "__main__":
    sys.exit(main())
