"""A raw ASGI WebSocket echo app, the peer the Autobahn cases expect at `/`.

It accepts every WebSocket, sends each message back as it came (text as text, bytes as bytes),
and returns on `websocket.disconnect`. Plain HTTP requests get a short 200; lifespan is
answered so the server starts with or without `--lifespan`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(send: Send) -> None:
    body = b"ws_echo: connect with a WebSocket client\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "websocket":
        # Inline, not in a helper coroutine: an idle connection then holds one coroutine frame,
        # as the benchmark's echo app does (test_websocket_hostile's idle budget counts it).
        message = await receive()
        assert message["type"] == "websocket.connect", message
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    else:
        await http(send)
