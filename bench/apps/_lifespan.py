"""A minimal ASGI lifespan handler, so servers that always run lifespan (granian, hypercorn)
find the protocol supported; uvicorn and coachwhip run the apps with lifespan off."""

from __future__ import annotations

from typing import Any


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
