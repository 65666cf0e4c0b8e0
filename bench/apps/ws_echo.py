"""Scenarios "ws-echo", "ws-large" and "idle-ws": a WebSocket echo. Every WebSocket is
accepted and each message sent back as it came (text as text, bytes as bytes) until the client
goes. A plain GET gets the hello body, which is what the runner's readiness check asks for."""

from __future__ import annotations

from typing import Any

from apps._lifespan import lifespan
from apps.hello import END, START

ACCEPT = {"type": "websocket.accept"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await receive()  # websocket.connect
        await send(ACCEPT)
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":  # websocket.disconnect
                return
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif kind == "http":
        await send(START)
        await send(END)
    elif kind == "lifespan":
        await lifespan(receive, send)
