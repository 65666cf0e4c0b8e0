"""An ASGI app that records every HTTP request it is handed and says yes to everything.

It is the worst case for request-smuggling tests: it answers 200 to any method (CONNECT
included) and target, and `101 Switching Protocols` to any request carrying an `Upgrade`
header. Each request is appended, before anything is sent back, as one JSON line
{"method", "path", "raw_path", "query_string", "upgrade"} to the file named by the environment
variable RECORDER_FILE, so a test sees every request that reached the app, even after the
connection that carried it has gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RECORD_FILE = os.environ.get("RECORDER_FILE", "")


def record(entry: dict[str, Any]) -> None:
    if not RECORD_FILE:
        return
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(RECORD_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: a whole line, never torn
    finally:
        os.close(fd)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


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


async def switch_protocols(scope: Scope, send: Send, upgrade: bytes) -> None:
    """Answer 101, then as the query string says: `start-only` sends nothing more, `stream`
    sends tunnel bytes as a streamed body, `fallback` answers 200 instead if the server refuses
    the 101 (by raising from send()), anything else sends an empty final body."""
    mode = scope.get("query_string", b"")
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 101,
                "headers": [(b"connection", b"upgrade"), (b"upgrade", upgrade)],
            }
        )
        if mode == b"start-only":
            return
        if mode == b"stream":
            await send({"type": "http.response.body", "body": b"tunnel-bytes", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except RuntimeError:
        if mode != b"fallback":
            raise
        await respond(send, b"no upgrade after all\n")


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
    upgrade = header(scope, b"upgrade")
    raw_path = scope.get("raw_path")
    record(
        {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "raw_path": raw_path.decode("latin-1") if isinstance(raw_path, bytes) else None,
            "query_string": bytes(scope.get("query_string", b"")).decode("latin-1"),
            "upgrade": upgrade.decode("latin-1") if upgrade is not None else None,
        }
    )
    while True:  # drain the request body, if any
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    if upgrade is not None:
        await switch_protocols(scope, send, upgrade)
        return
    await respond(send, f"recorded {scope.get('method')} {scope.get('path')}\n".encode())
