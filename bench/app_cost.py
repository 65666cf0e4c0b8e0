"""What a scenario's app costs on its own: the app called directly, without a server or sockets.

    bench/.venv/bin/python bench/app_cost.py fastapi          # the scenario 5 app
    bench/.venv/bin/python bench/app_cost.py hello --calls 200000

Prints CPU microseconds per call, median of 5 rounds, for the app awaited inline and for the
app run in a Task per call (what every server here does per request). This is the floor under
any server's CPU per request in that scenario: bench/NOTES.md uses it to show how much of
scenario 5 is FastAPI's own work. Each call gets a fresh copy of a scope like the one servers
build, a receive() that returns the request body at once and a send() that does nothing. Runs
on uvloop (as every server in the suite does) and pins itself to CPU 0 like the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import BY_KEY

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def load_app(spec: str) -> App:
    module, _, attr = spec.partition(":")
    app: App = getattr(importlib.import_module(module), attr)
    return app


def scope_for(path: str, method: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def measure(app: App, scope: dict[str, Any], body: bytes, calls: int, task: bool) -> float:
    """CPU microseconds per call."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    loop = asyncio.get_running_loop()
    start = time.process_time()
    for _ in range(calls):
        call = app(dict(scope), receive, send)
        if task:
            await loop.create_task(call)
        else:
            await call
    return (time.process_time() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(BY_KEY))
    parser.add_argument("--calls", type=int, default=50_000, help="calls per round (50000)")
    args = parser.parse_args()
    scenario = BY_KEY[args.scenario]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    app = load_app(scenario.app)
    scope = scope_for(scenario.path, scenario.method)
    body = b"x" * scenario.body_size
    for label, task in (("inline", False), ("Task per call", True)):
        rounds = [uvloop.run(measure(app, scope, body, args.calls, task)) for _ in range(5)]
        print(
            f"{scenario.key}: {statistics.median(rounds):.1f} us CPU per call, {label} "
            f"(rounds: {', '.join(f'{r:.1f}' for r in rounds)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
