"""App for the health, readiness and shutdown-delay tests.

Its startup waits for a gate file (COACHWHIP_TEST_GATE) to appear, so a test can probe the
server while the app is still starting and then let it finish. GET /block blocks the event loop
itself for ?s= seconds, GET /sleep awaits that long; anything else answers "app <path> <pid>".
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        gate = os.environ.get("COACHWHIP_TEST_GATE")
        while gate and not Path(gate).exists():
            await asyncio.sleep(0.02)  # polling the gate file the test creates
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    query = parse_qs(scope["query_string"].decode())
    seconds = float(query.get("s", ["1"])[0])
    if scope["path"] == "/block":
        if "mark" in query:  # tells the test the event loop is about to block
            Path(query["mark"][0]).touch()
        time.sleep(seconds)
    elif scope["path"] == "/sleep":
        await asyncio.sleep(seconds)
    body = f"app {scope['path']} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
