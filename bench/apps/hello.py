"""Scenario "hello" (and "close"): GET answered with the 13-byte text body "Hello, world!"."""

from __future__ import annotations

from typing import Any

from apps._lifespan import lifespan

BODY = b"Hello, world!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
END = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(END)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
