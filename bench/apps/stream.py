"""Scenario "stream": a 1 MiB response sent as 16 chunks of 64 KiB, with no content-length (so
every server frames it with chunked transfer encoding)."""

from __future__ import annotations

from typing import Any

from apps._lifespan import lifespan

CHUNK = b"x" * (64 * 1024)
CHUNKS = 16
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream")],
}
MORE = {"type": "http.response.body", "body": CHUNK, "more_body": True}
LAST = {"type": "http.response.body", "body": CHUNK, "more_body": False}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send(START)
    for _ in range(CHUNKS - 1):
        await send(MORE)
    await send(LAST)
