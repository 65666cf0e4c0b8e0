"""An ASGI 3 app whose endpoints break HTTP and ASGI rules in ways apps/raw.py does not.

Used by tests/integration/test_abusive_clients.py (ATTACKS.md section G). Each endpoint records
what its send()/receive() calls did under `/events?id=X` (the exception a send() raised, the
message a late receive() got), so a test can tell "the server refused it" from "it went out".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[Any]]

EVENTS: dict[str, list[Any]] = {}


def record(key: str, value: Any) -> None:
    EVENTS.setdefault(key, []).append(value)


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def start(status: int, headers: list[tuple[Any, Any]] | None = None) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def checked(send: Send, message: Message, key: str) -> None:
    """send() that records the exception the server raises (then re-raises it)."""
    try:
        await send(message)
    except BaseException as exc:
        record(key, {"exc": type(exc).__name__, "msg": str(exc)})
        raise
    record(key, "sent")


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(200, [(b"content-type", b"text/plain"), (b"content-length", b"2")]))
    await send(body(b"ok"))


async def events(scope: Scope, receive: Receive, send: Send) -> None:
    data = json.dumps(EVENTS.get(query(scope).get("id", ""), [])).encode()
    await send(start(200, [(b"content-type", b"application/json")]))
    await send(body(data))


# --- a body where HTTP forbids one ------------------------------------------------------------


async def no_body_status_with_body(scope: Scope, receive: Receive, send: Send) -> None:
    """?status=204|304: a body on a status that never has one."""
    params = query(scope)
    key = params.get("id", "")
    await checked(send, start(int(params.get("status", "204"))), key)
    await checked(send, body(b"FORBIDDEN-BODY"), key)


async def body_on_head(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends a body whatever the method: for HEAD the server must drop it."""
    await send(start(200, [(b"content-type", b"text/plain")]))
    await send(body(b"HEAD-BODY-1", more=True))
    await send(body(b"HEAD-BODY-2"))


async def interim_status(scope: Scope, receive: Receive, send: Send) -> None:
    """?status=100|101|103: an informational status as the only (final) response."""
    params = query(scope)
    key = params.get("id", "")
    await checked(send, start(int(params.get("status", "103"))), key)
    await checked(send, body(b""), key)


async def odd_status(scope: Scope, receive: Receive, send: Send) -> None:
    """?status=N: a status outside 100-599 (RFC 9110 §15: invalid)."""
    params = query(scope)
    key = params.get("id", "")
    await checked(send, start(int(params.get("status", "999"))), key)
    await checked(send, body(b"odd"), key)


# --- bad response headers ---------------------------------------------------------------------

BAD_HEADERS: dict[str, tuple[Any, Any]] = {
    "str-value-non-latin1": (b"x-text", "caf\u20ac"),
    "str-name": ("x-text", b"v"),
    "name-space": (b"x bad", b"v"),
    "name-colon": (b"x:bad", b"v"),
    "name-empty": (b"", b"v"),
    "name-utf8": ("caf\u00e9".encode(), b"v"),
    "value-esc": (b"x-ansi", b"\x1b[31mred"),
    "value-del": (b"x-del", b"a\x7f"),
    "value-vt": (b"x-vt", b"a\x0bb"),
    "cl-letters": (b"content-length", b"abc"),
    "cl-negative": (b"content-length", b"-1"),
    "cl-list": (b"content-length", b"3, 3"),
    "cl-plus": (b"content-length", b"+3"),
}


async def bad_header(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    key = params.get("id", "")
    await checked(send, start(200, [BAD_HEADERS[params["h"]]]), key)
    await checked(send, body(b"bad"), key)


async def obs_text_header(scope: Scope, receive: Receive, send: Send) -> None:
    """Latin-1 bytes (obs-text) in a value are legal HTTP: sent as they are."""
    await send(start(200, [(b"x-latin", b"caf\xe9"), (b"content-length", b"5")]))
    await send(body(b"latin"))


async def two_content_lengths(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    headers = [(b"content-length", b"3"), (b"content-length", b"4")]
    await checked(send, start(200, headers), key)
    await checked(send, body(b"abc"), key)


async def app_transfer_encoding(scope: Scope, receive: Receive, send: Send) -> None:
    """The app claims chunked framing but sends one plain body: the server owns framing."""
    await send(start(200, [(b"transfer-encoding", b"chunked")]))
    await send(body(b"plain body"))


async def app_connection_keep_alive_on_close(scope: Scope, receive: Receive, send: Send) -> None:
    """The app says keep-alive and upgrade: connection management is the server's."""
    headers = [(b"connection", b"keep-alive, upgrade"), (b"upgrade", b"websocket")]
    await send(start(200, headers))
    await send(body(b"not upgraded"))


# --- broken call sequences --------------------------------------------------------------------


async def concurrent_sends(scope: Scope, receive: Receive, send: Send) -> None:
    """Two send() calls at once (a second while the first has not completed)."""
    key = query(scope).get("id", "")
    await send(start(200, [(b"content-type", b"text/plain")]))
    big = b"z" * (1024 * 1024)  # large enough that the first send has to wait
    results = await asyncio.gather(
        send(body(big, more=True)), send(body(b"second", more=True)), return_exceptions=True
    )
    record(key, [type(r).__name__ if isinstance(r, BaseException) else "ok" for r in results])
    await send(body(b""))


async def receive_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    """receive() once the response is complete: ASGI says http.disconnect, at once."""
    key = query(scope).get("id", "")
    await send(start(200, [(b"content-length", b"4")]))
    await send(body(b"done"))
    message = await asyncio.wait_for(receive(), 5)
    if message["type"] == "http.request":  # the (empty) body first, then the disconnect
        message = await asyncio.wait_for(receive(), 5)
    record(key, message["type"])


async def raise_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(200, [(b"content-length", b"4")]))
    await send(body(b"done"))
    raise RuntimeError("cw-hostile-after-complete-response")


async def return_value_after_response(scope: Scope, receive: Receive, send: Send) -> str:
    await send(start(200, [(b"content-length", b"4")]))
    await send(body(b"done"))
    return "cw-hostile-return-value"


async def body_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked(send, body(b"no head yet"), key)


async def start_without_status(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked(send, {"type": "http.response.start", "headers": []}, key)


async def status_as_string(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked(send, {"type": "http.response.start", "status": "200", "headers": []}, key)


async def headers_not_pairs(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked(send, start(200, [(b"a", b"b", b"c")]), key)


async def message_not_dict(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("id", "")
    await checked(send, ["http.response.start", 200], key)  # type: ignore[arg-type]


async def huge_header_count(scope: Scope, receive: Receive, send: Send) -> None:
    """Ten thousand response headers: sent (the server has no reason to refuse), intact."""
    headers = [(b"x-h", str(i).encode()) for i in range(10_000)]
    await send(start(200, [*headers, (b"content-length", b"4")]))
    await send(body(b"many"))


ROUTES: dict[str, Handler] = {
    "/ok": ok,
    "/events": events,
    "/no-body-status-with-body": no_body_status_with_body,
    "/body-on-head": body_on_head,
    "/interim-status": interim_status,
    "/odd-status": odd_status,
    "/bad-header": bad_header,
    "/obs-text-header": obs_text_header,
    "/two-content-lengths": two_content_lengths,
    "/app-transfer-encoding": app_transfer_encoding,
    "/app-connection-header": app_connection_keep_alive_on_close,
    "/concurrent-sends": concurrent_sends,
    "/receive-after-response": receive_after_response,
    "/raise-after-response": raise_after_response,
    "/return-value-after-response": return_value_after_response,
    "/body-before-start": body_before_start,
    "/start-without-status": start_without_status,
    "/status-as-string": status_as_string,
    "/headers-not-pairs": headers_not_pairs,
    "/message-not-dict": message_not_dict,
    "/huge-header-count": huge_header_count,
}


async def app(scope: Scope, receive: Receive, send: Send) -> Any:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    handler = ROUTES.get(scope["path"])
    if handler is None:
        await send(start(404, [(b"content-length", b"9")]))
        await send(body(b"not found"))
        return None
    return await handler(scope, receive, send)
