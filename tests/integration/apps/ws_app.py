"""A raw ASGI 3 application (no framework) for the WebSocket tests: one route per ASGI rule.

WebSocket routes (by path; `?id=X` names what a route records):
  /echo            accept, echo every message with its type; records the disconnect
  /shape           accept, answer each message with the sorted keys of the receive event (JSON)
  /scope...        accept (any path under /scope), send the scope as JSON text
  /scribble        accept, write into every mutable part of the scope, send it as JSON text
  /subprotocol     accept with ?pick=P (default: the first offered) and extra headers
  /close           accept, then close with ?code= and ?reason=; records the disconnect
  /deny-close      websocket.close before accept (HTTP 403)
  /deny-response   a denial response through websocket.http.response.start/body
  /raise-before    raise before accept              /raise-after   raise after accept
  /return-open     accept, return without closing   /return-before return before accept
  /send-before     websocket.send before accept (records what it raised, re-raises)
  /send-after      accept, wait for the disconnect, then send (records what it raised)
  /wait-before     take websocket.connect, never accept, record the next receive()
  /slow-receiver   accept, wait for gate ?id= (HTTP /open-gate), then count what arrives
  /stream          accept, send ?mib= MiB in 64 KiB binary messages (HTTP /progress tells)
HTTP routes: /events?id=X, /progress?id=X, /open-gate?id=X; any other path answers its scope as
JSON (what a WebSocket upgrade becomes under --ws none).

Side channel: every record() also prints one line `WSAPP {"id": ..., "event": ...}` (flushed),
so a test can wait for it in the server's output even when the server is shutting down.
Lifespan: startup puts {"token": "lifespan-token", "started": true} in the state.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

EVENTS: dict[str, list[Any]] = {}
PROGRESS: dict[str, dict[str, Any]] = {}
GATES: dict[str, asyncio.Event] = {}
CHUNK = 64 * 1024
MIB = 1024 * 1024


def record(key: str, value: Any) -> None:
    EVENTS.setdefault(key, []).append(value)
    line = json.dumps({"id": key, "event": value}, default=repr)
    sys.stdout.write(f"WSAPP {line}\n")
    sys.stdout.flush()


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def key_of(scope: Scope) -> str:
    return query(scope).get("id", scope["path"])


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


def as_text(value: Any) -> Any:
    """bytes -> latin-1 str (lossless); anything else is flagged so a test shows it."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None:
        return None
    return {"not_bytes": repr(value)}


def exc_info(exc: BaseException) -> dict[str, Any]:
    return {
        "exc": type(exc).__name__,
        "oserror": isinstance(exc, OSError),
        "runtime": isinstance(exc, RuntimeError),
        "msg": str(exc),
    }


def describe(scope: Scope) -> dict[str, Any]:
    client = scope.get("client")
    server = scope.get("server")
    state = scope.get("state")
    extensions = scope.get("extensions")
    return {
        "keys": sorted(scope),
        "type": scope.get("type"),
        "asgi": scope.get("asgi"),
        "http_version": scope.get("http_version"),
        "method": scope.get("method"),
        "scheme": scope.get("scheme"),
        "path": scope.get("path"),
        "raw_path": as_text(scope.get("raw_path")),
        "query_string": as_text(scope.get("query_string")),
        "root_path": scope.get("root_path"),
        "headers": [[as_text(n), as_text(v)] for n, v in scope.get("headers", [])],
        "client": list(client) if client is not None else None,
        "server": list(server) if server is not None else None,
        "subprotocols": scope.get("subprotocols"),
        "subprotocol_types": [type(p).__name__ for p in scope.get("subprotocols") or []],
        "state": dict(state) if isinstance(state, dict) else repr(state),
        "extensions": {k: repr(v) for k, v in extensions.items()}
        if isinstance(extensions, dict)
        else repr(extensions),
        "extension_values": {
            k: v if isinstance(v, dict) and not v else "non-empty"
            for k, v in (extensions or {}).items()
        },
    }


async def respond(
    send: Send,
    body: bytes,
    status: int = 200,
    content_type: bytes = b"text/plain; charset=utf-8",
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, payload: Any) -> None:
    await respond(send, json.dumps(payload).encode(), 200, b"application/json")


async def expect_connect(receive: Receive) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect", message


async def accept(send: Send, **extra: Any) -> None:
    await send({"type": "websocket.accept", **extra})


async def until_disconnect(receive: Receive, key: str) -> Message:
    """Receives (dropping messages) until websocket.disconnect; records it."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(key, disconnect_event(message))
            return message


def disconnect_event(message: Message) -> dict[str, Any]:
    return {"type": message["type"], "code": message.get("code"), "reason": message.get("reason")}


# --- WebSocket routes ----------------------------------------------------------------------------


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    await expect_connect(receive)
    await accept(send)
    record(key, "accepted")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(key, disconnect_event(message))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def ws_shape(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await accept(send)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        shape = {k: type(v).__name__ for k, v in message.items()}
        await send({"type": "websocket.send", "text": json.dumps(shape, sort_keys=True)})


async def ws_scope(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await accept(send)
    await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
    await until_disconnect(receive, key_of(scope))


async def ws_scribble(scope: Scope, receive: Receive, send: Send) -> None:
    """What an app may do to its own scope, none of which another connection may see."""
    await expect_connect(receive)
    await accept(send)
    scope["asgi"]["version"] = "scribbled"
    scope["extensions"]["scribbled"] = {}
    scope["extensions"]["websocket.http.response"]["scribbled"] = True
    scope["subprotocols"].append("scribbled")
    scope["headers"].append((b"x-scribbled", b"1"))
    scope["headers"][0] = (b"host", b"scribbled")
    scope["state"]["scribbled"] = True
    for i in range(20):  # more keys than the scope's spare room
        scope[f"scribbled-{i}"] = i
    await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
    await until_disconnect(receive, key_of(scope))


async def ws_subprotocol(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    params = query(scope)
    offered = scope.get("subprotocols") or []
    pick = params.get("pick", offered[0] if offered else None)
    extra: dict[str, Any] = {"headers": [(b"x-ws-extra", b"yes"), (b"set-cookie", b"ws=1; Path=/")]}
    if pick is not None:
        extra["subprotocol"] = pick
    await expect_connect(receive)
    try:
        await accept(send, **extra)
    except BaseException as exc:
        record(key, exc_info(exc))
        raise
    record(key, {"accepted": pick})
    await send({"type": "websocket.send", "text": f"chose {pick}"})
    await until_disconnect(receive, key)


async def ws_close(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    params = query(scope)
    await expect_connect(receive)
    await accept(send)
    await send(
        {
            "type": "websocket.close",
            "code": int(params.get("code", "1000")),
            "reason": params.get("reason", ""),
        }
    )
    record(key, "closed")
    await until_disconnect(receive, key)


async def ws_deny_close(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await send({"type": "websocket.close"})
    record(key_of(scope), "denied")


async def ws_deny_response(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 418,
            "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"teapot")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"websocket for you"})
    record(key_of(scope), "denied")


async def ws_raise_before(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    record(key_of(scope), "raising")
    raise RuntimeError("cw-ws-boom-before-accept")


async def ws_raise_after(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await accept(send)
    record(key_of(scope), "raising")
    raise RuntimeError("cw-ws-boom-after-accept")


async def ws_return_open(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    await accept(send)
    await send({"type": "websocket.send", "text": "bye"})
    record(key_of(scope), "returning")


async def ws_return_before(scope: Scope, receive: Receive, send: Send) -> None:
    await expect_connect(receive)
    record(key_of(scope), "returning")


async def ws_send_before(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    await expect_connect(receive)
    try:
        await send({"type": "websocket.send", "text": "too early"})
    except BaseException as exc:
        record(key, exc_info(exc))
        raise
    record(key, {"exc": None})


async def ws_send_after(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    await expect_connect(receive)
    await accept(send)
    await until_disconnect(receive, key)
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except BaseException as exc:
        record(key, exc_info(exc))
        return  # handled: the app ends normally
    record(key, {"exc": None})


async def ws_wait_before(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    await expect_connect(receive)
    record(key, "connected")
    message = await receive()
    record(key, disconnect_event(message))


async def ws_slow_receiver(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    await expect_connect(receive)
    await accept(send)
    record(key, "waiting")
    await gate(key).wait()
    count = size = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
        data = message.get("bytes") or message.get("text") or b""
        count += 1
        size += len(data)
        if data in (b"done", "done"):
            await send({"type": "websocket.send", "text": json.dumps([count, size])})
    record(key, {"count": count, "bytes": size})


async def ws_stream(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    key = key_of(scope)
    total = int(params.get("mib", "1")) * MIB
    state = PROGRESS.setdefault(key, {"sent": 0, "done": False})
    await expect_connect(receive)
    await accept(send)
    block = b"\x5a" * CHUNK
    try:
        while state["sent"] < total:
            await send({"type": "websocket.send", "bytes": block})
            state["sent"] += CHUNK
        await send({"type": "websocket.send", "text": "end"})
    except BaseException as exc:
        state["error"] = type(exc).__name__
        raise
    state["done"] = True
    await until_disconnect(receive, key)


async def ws_sink(scope: Scope, receive: Receive, send: Send) -> None:
    """Receives and counts (bytes received in PROGRESS) until the client closes."""
    key = key_of(scope)
    state = PROGRESS.setdefault(key, {"received": 0, "done": False})
    await expect_connect(receive)
    await accept(send)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            state["done"] = True
            record(key, disconnect_event(message))
            return
        state["received"] += len(message.get("bytes") or b"")


# The app mistakes /mistake?kind= makes after (or instead of) its accept: each message must be
# refused with an exception that says what is wrong, and the connection must go on.
MISTAKES: dict[str, tuple[bool, Message]] = {
    "accept-owned-header": (
        False,
        {"type": "websocket.accept", "headers": [(b"sec-websocket-accept", b"x")]},
    ),
    "send-both": (True, {"type": "websocket.send", "bytes": b"b", "text": "t"}),
    "send-neither": (True, {"type": "websocket.send"}),
    "send-text-bytes": (True, {"type": "websocket.send", "text": b"not str"}),
    "close-1005": (True, {"type": "websocket.close", "code": 1005}),
    "close-reason-bytes": (True, {"type": "websocket.close", "reason": b"not str"}),
    "unknown-type": (True, {"type": "websocket.nonsense"}),
}


async def ws_mistake(scope: Scope, receive: Receive, send: Send) -> None:
    key = key_of(scope)
    accepted, message = MISTAKES[query(scope)["kind"]]
    await expect_connect(receive)
    if accepted:
        await accept(send)
    try:
        await send(message)
    except Exception as exc:
        record(key, exc_info(exc))
    else:
        record(key, {"exc": None})
    if not accepted:
        await accept(send)  # the refused accept sent nothing: a valid one still works
    await send({"type": "websocket.send", "text": "still open"})
    await until_disconnect(receive, key)


WS_ROUTES: dict[str, Handler] = {
    "/echo": ws_echo,
    "/shape": ws_shape,
    "/scribble": ws_scribble,
    "/subprotocol": ws_subprotocol,
    "/close": ws_close,
    "/deny-close": ws_deny_close,
    "/deny-response": ws_deny_response,
    "/raise-before": ws_raise_before,
    "/raise-after": ws_raise_after,
    "/return-open": ws_return_open,
    "/return-before": ws_return_before,
    "/send-before": ws_send_before,
    "/send-after": ws_send_after,
    "/wait-before": ws_wait_before,
    "/slow-receiver": ws_slow_receiver,
    "/stream": ws_stream,
    "/sink": ws_sink,
    "/mistake": ws_mistake,
}


# --- HTTP routes (side channels) -----------------------------------------------------------------


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    params = query(scope)
    key = params.get("id", "")
    if path == "/events":
        await respond_json(send, EVENTS.get(key, []))
    elif path == "/progress":
        await respond_json(send, PROGRESS.get(key, {"sent": 0, "done": False}))
    elif path == "/open-gate":
        gate(key).set()
        await respond(send, b"opened")
    else:  # what an upgrade request is under --ws none: an ordinary request, answered here
        while (await receive()).get("more_body", False):
            pass
        record(key or path, {"http": scope.get("method")})
        await respond_json(send, describe(scope))


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state = scope.get("state")
            if isinstance(state, dict):
                state["token"] = "lifespan-token"
                state["started"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "http":
        await http_app(scope, receive, send)
    elif kind == "websocket":
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        record(key_of(scope), "scope")  # the app was called: refused handshakes must never log it
        if path.startswith("/scope"):
            handler: Handler = ws_scope
        else:
            handler = WS_ROUTES.get(path, ws_echo)
        await handler(scope, receive, send)
    else:
        raise RuntimeError(f"unknown scope type {kind!r}")
