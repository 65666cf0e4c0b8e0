"""Apps that exercise the engine's request runner (src/bridge/asgi/runner.hpp): what it must
accept besides a plain coroutine, how it fails, and what asyncio and anyio see of it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
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
