"""A plain ASGI 3 application for the HTTP/2 tests (test_http2.py, test_http2_hostile.py).

- `/hello`: "hello".
- `/scope...`: the scope as JSON (headers as [name, value] latin-1 pairs, the extension names), and
  how many body bytes the request had.
- `/echo`: the length and SHA-256 of the request body.
- `/trailers`: two body chunks, then response trailers (the `http.response.trailers` extension,
  when the server advertises it): `x-sha256` of the body and `x-parts`.
- `/stream?id=X&mib=N&chunk=K&length=0|1`: N MiB (default 1024) in K KiB chunks (default 16);
  `/progress?id=X` says how far it got, whether it finished, and what its send() raised.
- `/hold?id=X`: never calls receive(); waits until `/open?id=X` (or 30 s), then answers.
- `/slow?chunks=N&pause=S`: N lines, S seconds apart.
- `/hit?id=X`: counts its calls under X (`/count?id=X` answers {"count": n}), reads its body,
  answers "hit". The hostile tests send their attacks here and check that the app never ran.

Nothing here sleeps for readiness: tests poll /progress and /count.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MIB = 1024 * 1024
PROGRESS: dict[str, dict[str, Any]] = {}
COUNTS: dict[str, int] = {}
GATES: dict[str, asyncio.Event] = {}


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


async def read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(body)


async def respond(
    send: Send, body: bytes, status: int = 200, content_type: bytes = b"text/plain"
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, value: Any) -> None:
    await respond(send, json.dumps(value).encode(), content_type=b"application/json")


def text(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else {"not_bytes": repr(value)}


def scope_info(scope: Scope, body: bytes) -> dict[str, Any]:
    extensions = scope.get("extensions") or {}
    return {
        "type": scope["type"],
        "http_version": scope.get("http_version"),
        "scheme": scope.get("scheme"),
        "method": scope.get("method"),
        "path": scope.get("path"),
        "raw_path": text(scope.get("raw_path")),
        "query_string": text(scope.get("query_string")),
        "root_path": scope.get("root_path"),
        "headers": [[text(n), text(v)] for n, v in scope.get("headers", [])],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "extensions": sorted(extensions),
        "body_bytes": len(body),
    }


async def stream(scope: Scope, send: Send) -> None:
    params = query(scope)
    total = int(params.get("mib", "1024")) * MIB
    chunk = int(params.get("chunk", "16")) * 1024
    progress = PROGRESS.setdefault(params.get("id", "stream"), {"sent": 0, "done": False})
    headers = [(b"content-type", b"application/octet-stream")]
    if params.get("length", "1") == "1":
        headers.append((b"content-length", str(total).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = bytes(range(256)) * (chunk // 256)
    try:
        while progress["sent"] < total:
            piece = block[: total - progress["sent"]]
            more = progress["sent"] + len(piece) < total
            await send({"type": "http.response.body", "body": piece, "more_body": more})
            progress["sent"] += len(piece)
    except BaseException as exc:
        progress["error"] = type(exc).__name__
        raise
    progress["done"] = True


async def trailers(scope: Scope, send: Send) -> None:
    parts = [b"first part, ", b"second part"]
    advertised = "http.response.trailers" in (scope.get("extensions") or {})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
            "trailers": advertised,
        }
    )
    for i, part in enumerate(parts):
        more = i < len(parts) - 1
        await send({"type": "http.response.body", "body": part, "more_body": more})
    if advertised:
        digest = hashlib.sha256(b"".join(parts)).hexdigest().encode()
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-sha256", digest), (b"x-parts", str(len(parts)).encode())],
                "more_trailers": False,
            }
        )


async def slow(scope: Scope, send: Send) -> None:
    params = query(scope)
    chunks = int(params.get("chunks", "10"))
    pause = float(params.get("pause", "0.2"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(chunks):
        if i:
            await asyncio.sleep(pause)
        await send(
            {"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b""})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    path = scope["path"]
    params = query(scope)
    if path == "/hit":
        key = params.get("id", "hit")
        COUNTS[key] = COUNTS.get(key, 0) + 1
        await read_body(receive)
        await respond(send, b"hit")
    elif path == "/count":
        await respond_json(send, {"count": COUNTS.get(params.get("id", "hit"), 0)})
    elif path == "/hold":
        key = params.get("id", "hold")
        PROGRESS[key] = {"entered": True}
        try:
            await asyncio.wait_for(gate(key).wait(), 30)
        except asyncio.TimeoutError:
            pass
        await respond(send, b"released")
    elif path == "/open":
        gate(params.get("id", "hold")).set()
        await respond(send, b"opened")
    elif path == "/stream":
        await stream(scope, send)
    elif path == "/progress":
        await respond_json(send, PROGRESS.get(params.get("id", "stream"), {}))
    elif path == "/slow":
        await slow(scope, send)
    elif path == "/trailers":
        await read_body(receive)
        await trailers(scope, send)
    else:
        body = await read_body(receive)
        if path == "/hello":
            await respond(send, b"hello")
        elif path.startswith("/scope"):
            await respond_json(send, scope_info(scope, body))
        elif path == "/echo":
            await respond_json(
                send, {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            )
        else:
            await respond(send, b"not found", status=404)
