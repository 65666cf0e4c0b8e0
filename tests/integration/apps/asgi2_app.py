"""An ASGI 2 application ("double callable"): the class is built with the scope, and its instance
is awaited with (receive, send). `coachwhip apps.asgi2_app:App` must detect and serve it.

It answers every request with JSON: the interface, the method, path and query it saw, how many
body bytes it received, and whether its lifespan startup ran.
"""

from __future__ import annotations

import json
from typing import Any

STARTED: list[str] = []


class App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif self.scope["type"] == "http":
            await self.http(receive, send)
        else:
            raise RuntimeError(f"unsupported scope type {self.scope['type']!r}")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STARTED.append("startup")
                print("asgi2-app: lifespan startup", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, receive: Any, send: Any) -> None:
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.dumps(
            {
                "interface": "asgi2",
                "method": self.scope["method"],
                "path": self.scope["path"],
                "query": self.scope["query_string"].decode("latin-1"),
                "body_bytes": received,
                "lifespan_started": bool(STARTED),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


app = App
