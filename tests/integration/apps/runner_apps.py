"""Apps that exercise the engine's request runner (src/bridge/asgi/runner.hpp): what it must
accept besides a plain coroutine, how it fails, and what asyncio and anyio see of it."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Generator
from typing import Any

import anyio


async def _reply(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


class AwaitableApp:
    """Returns an awaitable that is not a coroutine (an object with __await__)."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return _Awaitable(_reply(send, b"awaitable"))


class _Awaitable:
    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def __await__(self) -> Generator[Any, None, Any]:
        return self.coro.__await__()


awaitable_app = AwaitableApp()


def sync_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain function: returns None, which cannot be awaited."""


def raising_call_app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    """Raises when called, before any awaitable exists."""
    raise ValueError("raised while being called")


async def introspect_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports what asyncio, inspect and anyio see of the task running the request."""
    task = asyncio.current_task()
    assert task is not None
    coro = task.get_coro()
    facts = [
        inspect.getcoroutinestate(coro),
        str(asyncio.iscoroutine(coro)),
        "repr-ok" if "Task" in repr(task) else "repr-bad",
    ]
    # anyio's cancel scopes inspect the host task's coroutine; a timeout must still work.
    with anyio.move_on_after(0.01) as scope_:
        await anyio.sleep(1)
    facts.append(f"cancelled={scope_.cancelled_caught}")
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 0)
    facts.append("taskgroup-ok")
    await _reply(send, " ".join(facts).encode())


async def return_value_app(scope: dict[str, Any], receive: Any, send: Any) -> int:
    await _reply(send, b"ok")
    return 42


class _NoThrowIterator:
    """An __await__ iterator with no throw(): it waits on a future that is never resolved, and
    has the running task cancelled meanwhile (as the server does at its shutdown deadline)."""

    def __iter__(self) -> _NoThrowIterator:
        return self

    def __next__(self) -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.call_soon(task.cancel)
        future = loop.create_future()
        future._asyncio_future_blocking = True  # what `yield from future` would have set
        return future


class _NoThrowAwaitable:
    def __await__(self) -> Any:
        return _NoThrowIterator()


def no_throw_app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    """Returns an awaitable whose iterator has no throw(); its task is then cancelled."""
    return _NoThrowAwaitable()


# --- the eager first step (asgi::step_eagerly): the app starts inside its Task at once ----------

REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
TASKS: list[asyncio.Task[Any]] = []  # the task of every request of eager_app, in order


async def eager_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Checks that the task and the context of the first step are the ones of the later steps,
    through both kinds of suspension (a bare yield and a future), and reports how the previous
    request's task ended."""
    previous = TASKS[-1] if TASKS else None
    ended = "none"
    if previous is not None:
        ended = f"done={previous.done()} cancelled={previous.cancelled()}"
        if previous.done() and not previous.cancelled():
            ended += f" exception={previous.exception()!r}"
    task = asyncio.current_task()
    assert task is not None
    TASKS.append(task)
    inherited = REQUEST_VAR.get()
    REQUEST_VAR.set("mine")
    await asyncio.sleep(0)  # a bare yield: the Task steps again
    same_after_yield = asyncio.current_task() is task and REQUEST_VAR.get() == "mine"
    await asyncio.sleep(0.001)  # a future: the Task waits on it
    same_after_future = asyncio.current_task() is task and REQUEST_VAR.get() == "mine"
    facts = [f"inherited={inherited}", f"{same_after_yield} {same_after_future}", ended]
    await _reply(send, " | ".join(facts).encode())


async def self_cancel_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Cancels its own task in its first step, then waits: the CancelledError must arrive at
    that wait, as asyncio delivers it to a task that cancelled itself while running."""
    task = asyncio.current_task()
    assert task is not None
    waited_on: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task.cancel()
    try:
        await waited_on
    except asyncio.CancelledError:
        task.uncancel()
        # asyncio cancels the future a cancelled task waits on; so must the eager first step.
        await _reply(send, f"caught, future cancelled={waited_on.cancelled()}".encode())
        return
    await _reply(send, b"not cancelled")


async def raise_cancelled_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises CancelledError in its first step, before any await; reports on the next request
    whether the previous one's task ended cancelled."""
    if scope["path"] == "/report":
        previous = TASKS[-1]
        await _reply(send, f"cancelled={previous.cancelled()}".encode())
        return
    task = asyncio.current_task()
    assert task is not None
    TASKS.append(task)
    raise asyncio.CancelledError


async def poll_disconnect_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starlette's Request.is_disconnected(), several times: receive() inside an already
    cancelled anyio scope, so a receive() that has to wait is cancelled at once. The next
    receive() must work (it used to find the cancelled one still registered)."""
    from starlette.requests import Request

    request = Request(scope, receive)
    answers = [await request.is_disconnected() for _ in range(4)]
    await _reply(send, " ".join(str(a) for a in answers).encode())


async def thread_send_app(scope: dict, receive: Callable, send: Callable) -> None:
    """Calls send() and receive() from a worker thread, as asgiref's async_to_sync does, and
    awaits what they return on the loop: nothing may happen until it is awaited."""
    import asyncio
    import inspect

    loop = asyncio.get_running_loop()
    if scope["type"] == "websocket":
        first = await loop.run_in_executor(None, receive)
        connect = await first
        accept = await loop.run_in_executor(None, send, {"type": "websocket.accept"})
        await accept
        message = await (await loop.run_in_executor(None, receive))
        await send({"type": "websocket.send", "text": f"{connect['type']} {message['text']}"})
        await send({"type": "websocket.close"})
        return
    pending = await loop.run_in_executor(
        None, send, {"type": "http.response.start", "status": 200, "headers": []}
    )
    deferred = inspect.iscoroutine(pending)
    await pending
    body = f"deferred={deferred}".encode()
    await send({"type": "http.response.body", "body": body})


async def channels_style_app(scope: dict, receive: Callable, send: Callable) -> None:
    """The real thing: a sync function sending through asgiref's async_to_sync."""
    from asgiref.sync import async_to_sync, sync_to_async

    def respond() -> None:
        async_to_sync(send)({"type": "http.response.start", "status": 200, "headers": []})
        async_to_sync(send)({"type": "http.response.body", "body": b"from a thread"})

    await sync_to_async(respond)()
