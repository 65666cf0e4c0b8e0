"""A plain ASGI 3 application that exposes what the server hands it, and misbehaves on request.

Side channels: `/events?id=X` returns what endpoints recorded under id X (entered, disconnect,
the exception a `send()` raised, ...), `/progress?id=X` how many bytes `/big` has sent so far,
`/open-gate?id=X` releases an endpoint waiting on gate X. Nothing here sleeps for readiness:
tests poll these endpoints.
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
LIFESPAN_SCOPE: dict[str, Any] = {}
CHUNK = 64 * 1024
MIB = 1024 * 1024


def record(key: str, value: Any) -> None:
    EVENTS.setdefault(key, []).append(value)


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


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


async def read_body(receive: Receive) -> tuple[bytes, list[list[Any]]]:
    body = bytearray()
    messages: list[list[Any]] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            messages.append([message["type"], None])
            break
        chunk = message.get("body", b"")
        body += chunk
        more = bool(message.get("more_body", False))
        messages.append([len(chunk), more])
        if not more:
            break
    return bytes(body), messages


async def respond(
    send: Send,
    body: bytes,
    status: int = 200,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, payload: Any, status: int = 200) -> None:
    await respond(send, json.dumps(payload).encode(), status, b"application/json")


def describe(scope: Scope) -> dict[str, Any]:
    headers = list(scope.get("headers", []))
    client = scope.get("client")
    server = scope.get("server")
    state = scope.get("state")
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
        "headers": [[as_text(n), as_text(v)] for n, v in headers],
        "headers_container": type(scope.get("headers")).__name__,
        "client": list(client) if client is not None else None,
        "server": list(server) if server is not None else None,
        "state_type": type(state).__name__,
    }


# --- ordinary endpoints -------------------------------------------------------------------


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, b"ok")


async def scope_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    await read_body(receive)
    await respond_json(send, describe(scope))


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body, messages = await read_body(receive)
    extra = [(b"x-body-messages", str(len(messages)).encode())]
    await respond(send, body, content_type=b"application/octet-stream", headers=extra)


async def chunks(scope: Scope, receive: Receive, send: Send) -> None:
    _, messages = await read_body(receive)
    await respond_json(send, messages)


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    count = int(query(scope).get("n", "3"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for i in range(count):
        await send(
            {"type": "http.response.body", "body": f"chunk-{i}\n".encode(), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def head(scope: Scope, receive: Receive, send: Send) -> None:
    # Sends the body even for HEAD: suppressing it is the server's job.
    await respond(send, b"hello world")


async def big(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    total = int(params.get("mib", "200")) * MIB
    progress = PROGRESS.setdefault(params.get("id", "big"), {"sent": 0, "done": False})
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(total).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = b"x" * CHUNK
    sent = 0
    try:
        while sent < total:
            more = sent + CHUNK < total
            await send({"type": "http.response.body", "body": block, "more_body": more})
            sent += CHUNK
            progress["sent"] = sent
    except BaseException as exc:
        progress["error"] = type(exc).__name__
        progress["oserror"] = isinstance(exc, OSError)
        raise
    progress["done"] = True


async def progress(scope: Scope, receive: Receive, send: Send) -> None:
    await respond_json(
        send, PROGRESS.get(query(scope).get("id", "big"), {"sent": 0, "done": False})
    )


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    key = params.get("id", "slow")
    record(key, "entered")
    await asyncio.sleep(float(params.get("s", "0.5")))
    await respond(send, b"slow done")
    record(key, "finished")


async def hang(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "hang")
    record(key, "entered")
    try:
        await asyncio.Event().wait()
    except BaseException as exc:
        record(key, type(exc).__name__)
        raise


async def echo_recorded(scope: Scope, receive: Receive, send: Send) -> None:
    """/echo that records how its body ended (a length, or "http.disconnect") under ?id=."""
    body, messages = await read_body(receive)
    record(query(scope).get("id", "echo"), messages[-1][0] if messages else None)
    await respond(send, body, content_type=b"application/octet-stream")


async def noread(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, b"did not read")


async def gate_read(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "gate")
    record(key, "entered")
    await gate(key).wait()
    record(key, "receiving")
    size, messages, head = 0, 0, b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        head = head or chunk[:16]
        size += len(chunk)
        messages += 1
        if not message.get("more_body", False):
            break
    await respond_json(send, {"bytes": size, "messages": messages, "head": head.decode("latin-1")})


async def open_gate(scope: Scope, receive: Receive, send: Send) -> None:
    gate(query(scope).get("id", "gate")).set()
    await respond(send, b"opened")


async def wait_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "disc")
    await read_body(receive)
    record(key, "waiting")
    message = await receive()
    record(key, message["type"])


async def send_after_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "sad")
    await read_body(receive)
    record(key, "waiting")
    message = await receive()
    record(key, message["type"])
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})
    except BaseException as exc:
        record(
            key, {"exc": type(exc).__name__, "oserror": isinstance(exc, OSError), "msg": str(exc)}
        )
        raise
    record(key, {"exc": None})


async def events(scope: Scope, receive: Receive, send: Send) -> None:
    await respond_json(send, EVENTS.get(query(scope).get("id", ""), []))


async def state_show(scope: Scope, receive: Receive, send: Send) -> None:
    state = scope.get("state")
    if not isinstance(state, dict):
        await respond_json(send, {"missing": repr(state)})
        return
    await respond_json(
        send,
        {"keys": sorted(state), "started": state.get("started"), "shared": len(state["shared"])},
    )


async def state_mutate(scope: Scope, receive: Receive, send: Send) -> None:
    state = scope["state"]
    state["leak"] = "should not reach the next request"
    state["shared"].append(1)
    await respond_json(send, {"keys": sorted(state)})


async def lifespan_scope(scope: Scope, receive: Receive, send: Send) -> None:
    await respond_json(send, LIFESPAN_SCOPE)


async def close_me(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, b"closing", headers=[(b"connection", b"close")])


# --- endpoints that break the ASGI rules ----------------------------------------------------


async def checked_send(send: Send, message: Message, key: str) -> None:
    """send() that records the exception the server raises (then re-raises it)."""
    try:
        await send(message)
    except BaseException as exc:
        record(key, {"exc": type(exc).__name__, "msg": str(exc)})
        raise


async def error_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("cw-boom-before-start")


async def error_after_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("cw-boom-after-start")


async def error_no_response(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def error_start_twice(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked_send(send, {"type": "http.response.start", "status": 200, "headers": []}, key)
    await checked_send(send, {"type": "http.response.start", "status": 201, "headers": []}, key)


async def error_body_after_final(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"done"}, key)
    await checked_send(send, {"type": "http.response.body", "body": b"SMUGGLED"}, key)


async def error_str_body(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked_send(send, {"type": "http.response.start", "status": 200, "headers": []}, key)
    await checked_send(send, {"type": "http.response.body", "body": "a str, not bytes"}, key)


async def error_upper_header(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"X-Upper", b"1")]}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"upper"}, key)


BAD_BYTES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}


async def error_header_value(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    key = params.get("id", "")
    value = b"a" + BAD_BYTES[params.get("c", "crlf")] + b"x-injected: 1"
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-evil", value)]}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"evil"}, key)


async def error_body_too_long(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"abcdEXTRA"}, key)


async def error_body_too_short(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"abcd"}, key)


BAD_HEADER_LISTS: dict[str, Any] = {
    "str-name": [("x-name", b"1")],
    "int-value": [(b"x-value", 1)],
    "triple": [(b"x-a", b"1", b"2")],
    "not-pair": [b"x-a"],
    "not-iterable": 42,
}


async def error_header_shape(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    key = params.get("id", "")
    headers = BAD_HEADER_LISTS[params.get("k", "triple")]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    await checked_send(send, start, key)
    await checked_send(send, {"type": "http.response.body", "body": b"shape"}, key)


async def headers_mutated(scope: Scope, receive: Receive, send: Send) -> None:
    """Changes its header list after http.response.start: what was sent must not change."""
    headers = [(b"x-first", b"1"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    headers[0] = (b"x-first", b"changed")
    headers.append((b"x-late", b"1"))
    await send({"type": "http.response.body", "body": b"as sent"})


async def cookies(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")]
    await respond(send, b"cookies", headers=headers)


async def error_unknown_type(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked_send(send, {"type": "http.bogus"}, key)


ROUTES: dict[str, Handler] = {
    "/ok": ok,
    "/echo": echo,
    "/echo-recorded": echo_recorded,
    "/chunks": chunks,
    "/stream": stream,
    "/head": head,
    "/big": big,
    "/progress": progress,
    "/slow": slow,
    "/hang": hang,
    "/noread": noread,
    "/gate-read": gate_read,
    "/open-gate": open_gate,
    "/wait-disconnect": wait_disconnect,
    "/send-after-disconnect": send_after_disconnect,
    "/events": events,
    "/state": state_show,
    "/state/mutate": state_mutate,
    "/lifespan-scope": lifespan_scope,
    "/close-me": close_me,
    "/error/before-start": error_before_start,
    "/error/after-start": error_after_start,
    "/error/no-response": error_no_response,
    "/error/start-twice": error_start_twice,
    "/error/body-after-final": error_body_after_final,
    "/error/str-body": error_str_body,
    "/error/upper-header": error_upper_header,
    "/error/header-value": error_header_value,
    "/error/unknown-type": error_unknown_type,
    "/error/body-too-long": error_body_too_long,
    "/error/body-too-short": error_body_too_short,
    "/error/header-shape": error_header_shape,
    "/headers-mutated": headers_mutated,
    "/cookies": cookies,
}


def route(scope: Scope) -> Handler | None:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if path.startswith("/scope"):
        return scope_endpoint
    return ROUTES.get(path)


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    LIFESPAN_SCOPE.update(
        {
            "type": scope["type"],
            "asgi": scope.get("asgi"),
            "state_type": type(scope.get("state")).__name__,
        }
    )
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state = scope.get("state")
            if isinstance(state, dict):
                state["started"] = "yes-raw"
                state["shared"] = []
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("cw-raw: lifespan shutdown ran", flush=True)
            sys.stdout.flush()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    handler = route(scope)
    if handler is None:
        await respond(send, b"not found", status=404)
        return
    await handler(scope, receive, send)


class _Holder:
    """Lets a test name a dotted attribute: `apps.raw:holder.app`."""

    app = staticmethod(app)


holder = _Holder()
