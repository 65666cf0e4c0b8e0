"""App for the process-model tests: every response names the worker process that served it.
`?mark=FILE` appends the worker's pid to FILE as the request enters the app (a side channel:
the test sees the request is in the app without sleeping)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import parse_qs

HOG: list[bytes] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    params = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if "mark" in params:
        with open(params["mark"], "a") as mark:
            mark.write(f"{os.getpid()}\n")
    if path == "/slow":
        await asyncio.sleep(float(params.get("s", "0.2")))
    elif path == "/block":  # blocks the event loop itself: only the heartbeat can notice
        time.sleep(float(params.get("s", "1000")))
    elif path == "/hog":  # keeps memory, so --workers-max-rss has something to see
        HOG.append(b"h" * int(float(params.get("mib", "64")) * 1024 * 1024))
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database is unreachable"})
