"""The plain ASGI app behind the HTTP/2 conformance suite (test_h2_conformance.py).

GET / answers 200 "hello" (text/plain); POST / reads the whole body and answers its length in
decimal; anything else answers 200 with an empty body. No framework, so that the server under
test is the only thing that can get a frame wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def respond(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if path == "/" and method in ("GET", "HEAD"):
        await respond(send, b"hello")
    elif path == "/" and method == "POST":
        body = await read_body(receive)
        if body is None:
            return
        await respond(send, str(len(body)).encode())
    else:
        await respond(send, b"")
