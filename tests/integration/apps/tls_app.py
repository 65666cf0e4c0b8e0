"""ASGI app for the TLS tests.

- `/tls`: JSON of what the server put in the scope about TLS: scheme, the whole
  `extensions["tls"]` dict (with each value's Python type, since JSON would hide a tuple or a
  bytes value), the worker's pid.
- `/hello`: a plain "hello" (with the pid in `x-pid`).
- `/big?mib=N&id=X`: streams N MiB in 64 KiB chunks; `/progress?id=X` says how far it got and
  which exception its `send()` raised, if any.
- `/echo`: answers the SHA-256 and length of the request body.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CHUNK = 64 * 1024
PROGRESS: dict[str, dict[str, Any]] = {}


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return {"unexpected": repr(value)}


async def respond(
    send: Send, body: bytes, content_type: bytes = b"text/plain", status: int = 200
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-pid", str(os.getpid()).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def tls_info(scope: Scope) -> dict[str, Any]:
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, dict) else None
    return {
        "scheme": scope.get("scheme"),
        "http_version": scope.get("http_version"),
        "extensions_type": type(extensions).__name__,
        "extension_names": sorted(extensions) if isinstance(extensions, dict) else None,
        "tls": jsonable(tls),
        "tls_types": {k: type(v).__name__ for k, v in tls.items()} if isinstance(tls, dict) else {},
        "chain_item_types": sorted(
            {type(c).__name__ for c in (tls or {}).get("client_cert_chain") or []}
        ),
        "pid": os.getpid(),
    }


async def big(scope: Scope, send: Send) -> None:
    params = query(scope)
    total = int(params.get("mib", "64")) * 1024 * 1024
    progress = PROGRESS.setdefault(params.get("id", "big"), {"sent": 0, "done": False})
    headers = [(b"content-type", b"application/octet-stream")]
    if params.get("length", "1") == "1":
        headers.append((b"content-length", str(total).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = bytes(range(256)) * (CHUNK // 256)
    try:
        while progress["sent"] < total:
            more = progress["sent"] + CHUNK < total
            await send({"type": "http.response.body", "body": block, "more_body": more})
            progress["sent"] += CHUNK
    except BaseException as exc:
        progress["error"] = type(exc).__name__
        raise
    progress["done"] = True


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http", scope["type"]
    path = scope["path"]
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if path == "/tls":
        await respond(send, json.dumps(await tls_info(scope)).encode(), b"application/json")
    elif path == "/hello":
        await respond(send, b"hello")
    elif path == "/big":
        await big(scope, send)
    elif path == "/progress":
        state = PROGRESS.get(query(scope).get("id", "big"), {"sent": 0, "done": False})
        await respond(send, json.dumps(state).encode(), b"application/json")
    elif path == "/echo":
        answer = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        await respond(send, json.dumps(answer).encode(), b"application/json")
    else:
        await respond(send, b"not found", status=404)
