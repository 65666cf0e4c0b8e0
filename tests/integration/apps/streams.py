"""ASGI apps for the access-log and shutdown tests: long-lived and cut-short responses, tasks
left running, the coroutine marks on receive()/send().

Routes of `app`:
  /ok                  200 "ok" (content-type text/plain, x-served-by: streams)
  /sleep?s=S           waits S seconds, then 200
  /stream?chunks=N     N chunks of 64 KiB (octet-stream, chunked), one per 20 ms; N=0: forever
  /sse                 Server-Sent Events until the app hears http.disconnect (it listens, as
                       sse-starlette does), then returns without ending the response
  /sse-deaf            Server-Sent Events forever, never calling receive()
  /fail-after-head     head and one chunk, then raises
  /spawn               starts a task that never ends by itself (fire and forget), then 200
  /marks               what asyncio, inspect and asgiref say of receive and send (JSON)
Every route prints what it saw as `EVENT <route> <what>` lines on stdout: the tests read them
from the server's output. `lifespan` startup starts a task that runs until cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CHUNK = b"x" * (64 * 1024)
TASKS: set[asyncio.Task[None]] = set()


def event(route: str, what: str) -> None:
    print(f"EVENT {route} {what}", flush=True)


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"))
    return {k: v[-1] for k, v in parsed.items()}


async def start(send: Send, status: int = 200, ctype: bytes = b"text/plain") -> None:
    headers = [(b"content-type", ctype), (b"x-served-by", b"streams")]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def ticker(name: str) -> None:
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        event(name, "cleaned-up")


async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            event("stubborn", "ignored-cancel")


async def sse(scope: Scope, receive: Receive, send: Send) -> None:
    await start(send, ctype=b"text/event-stream")
    stop = asyncio.Event()

    async def listen() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        event("sse", "disconnect")
        stop.set()

    listener = asyncio.ensure_future(listen())
    n = 0
    while not stop.is_set():
        await send({"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True})
        n += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
    await listener
    event("sse", "returned")


async def sse_deaf(scope: Scope, receive: Receive, send: Send) -> None:
    await start(send, ctype=b"text/event-stream")
    n = 0
    try:
        while True:
            await send(
                {"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True}
            )
            n += 1
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        event("sse-deaf", "cancelled")
        raise


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    chunks = int(query(scope).get("chunks", "0"))
    await start(send, ctype=b"application/octet-stream")
    n = 0
    try:
        while chunks == 0 or n < chunks:
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            n += 1
            await asyncio.sleep(0.02)
    except OSError as exc:  # the client left: ClientDisconnected (ASGI 2.4: an OSError)
        event("stream", f"send-raised-{type(exc).__name__}")
        raise
    await send({"type": "http.response.body", "body": b""})
    event("stream", f"complete-{n}")


def marks(receive: Receive, send: Send) -> dict[str, Any]:
    from asgiref.sync import async_to_sync

    result: dict[str, Any] = {
        "asyncio_receive": asyncio.iscoroutinefunction(receive),
        "asyncio_send": asyncio.iscoroutinefunction(send),
        "inspect_send": inspect.iscoroutinefunction(send),
        "python": list(sys.version_info[:2]),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async_to_sync(send)
    result["asgiref_warnings"] = [str(w.message) for w in caught]
    return result


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                task = asyncio.ensure_future(ticker("lifespan-task"))
                TASKS.add(task)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/ok":
        await start(send)
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/sleep":
        event("sleep", "entered")
        await asyncio.sleep(float(query(scope).get("s", "1")))
        await start(send)
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/stream":
        await stream(scope, receive, send)
    elif path == "/sse":
        await sse(scope, receive, send)
    elif path == "/sse-deaf":
        await sse_deaf(scope, receive, send)
    elif path == "/fail-after-head":
        await start(send)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("failed after the head")
    elif path == "/spawn":
        task = asyncio.ensure_future(ticker("request-task"))
        TASKS.add(task)
        await start(send)
        await send({"type": "http.response.body", "body": b"spawned"})
    elif path == "/stubborn":
        task = asyncio.ensure_future(stubborn())
        TASKS.add(task)
        await start(send)
        await send({"type": "http.response.body", "body": b"stubborn"})
    elif path == "/marks":
        box: dict[str, Any] = {}
        # asgiref's async_to_sync must be made outside the event loop's thread.
        thread = threading.Thread(target=lambda: box.update(marks(receive, send)))
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        await start(send, ctype=b"application/json")
        await send({"type": "http.response.body", "body": json.dumps(box).encode()})
    else:
        await start(send, 404)
        await send({"type": "http.response.body", "body": b"not found"})


async def starlette_sse_stream() -> Any:
    n = 0
    while True:
        yield f"data: {n}\n\n"
        n += 1
        await asyncio.sleep(0.05)


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def events(request: Any) -> Any:
        return StreamingResponse(starlette_sse_stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/events", events)])


starlette_app = _starlette_app()
