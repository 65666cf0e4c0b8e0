"""Small ASGI apps for the lifespan protocol and for `--factory`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

FAIL_MESSAGE = "database unreachable: cw-startup-failed-7731"
RAISE_MESSAGE = "cw-startup-raised-5519"


async def _reply(send: Send, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _shutdown(receive: Receive, send: Send, line: str) -> None:
    message = await receive()
    if message["type"] == "lifespan.shutdown":
        print(line, flush=True)
        await send({"type": "lifespan.shutdown.complete"})


async def state_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Startup stores a value in the lifespan state; requests report what they see."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        scope["state"]["greeting"] = "hello from startup"
        await send({"type": "lifespan.startup.complete"})
        await _shutdown(receive, send, "cw-lifespan: shutdown ran")
        return
    await _reply(send, {"state": scope.get("state"), "lifespan": "ran"})


async def failing_startup(scope: Scope, receive: Receive, send: Send) -> None:
    """Reports lifespan.startup.failed with a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": FAIL_MESSAGE})
        return
    await _reply(send, {"served": True, "state": scope.get("state")})


async def raising_startup(scope: Scope, receive: Receive, send: Send) -> None:
    """Raises on lifespan.startup (after receiving it)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError(RAISE_MESSAGE)
    await _reply(send, {"served": True})


async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that does not speak lifespan: raises on the scope type, as the spec advises."""
    if scope["type"] != "http":
        raise ValueError(f"cw-no-lifespan: unsupported scope type {scope['type']!r}")
    await _reply(send, {"served": True})


def create_app() -> App:
    """Factory for `--factory`: returns a fresh app each call."""

    async def made(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await _shutdown(receive, send, "cw-factory: shutdown ran")
            return
        await _reply(send, {"made_by": "factory"})

    return made
