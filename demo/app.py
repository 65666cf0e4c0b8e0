"""coachwhip's demo app: plain ASGI, no framework needed.

    coachwhip demo.app:app        (or: bash scripts/demo)

Routes: /            a greeting
        /echo        echoes the request body (POST) and headers as JSON
        /stream      a streamed (chunked) response, five lines
        /health      "ok"
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

HTML = b"""<!doctype html><title>coachwhip</title>
<h1>coachwhip is serving this page</h1>
<p>An ASGI server with a C++ engine. Try <a href="/stream">/stream</a> or
<code>curl -d hello http://127.0.0.1:8000/echo</code>.</p>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        await respond(send, 200, json.dumps(payload, indent=2).encode(), b"application/json")
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        for i in range(5):
            await send(
                {"type": "http.response.body", "body": f"line {i}\n".encode(), "more_body": True}
            )
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/health":
        await respond(send, 200, b"ok\n", b"text/plain")
    elif path == "/":
        await respond(send, 200, HTML, b"text/html; charset=utf-8")
    else:
        await respond(send, 404, b"not found\n", b"text/plain")


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})
