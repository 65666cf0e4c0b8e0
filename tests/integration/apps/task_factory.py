"""App that installs an event-loop task factory during lifespan startup (as APM and context
libraries do) and reports whether each request runs in a task that factory made. /remove and
/install take the factory away and put it back while the server runs; /task describes the
request's task."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

MADE: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    task = asyncio.Task(coro, loop=loop, **kwargs)
    MADE.add(task)
    return task


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                asyncio.get_running_loop().set_task_factory(factory)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    task = asyncio.current_task()
    if scope["path"] == "/install":
        asyncio.get_running_loop().set_task_factory(factory)
        body = b"installed"
    elif scope["path"] == "/task":
        # What asyncio says about the request's own task (no factory installed).
        own_loop = task is not None and task.get_loop() is asyncio.get_running_loop()
        body = f"{type(task).__name__} {task.get_name() if task else None} {own_loop}".encode()
    elif scope["path"] == "/remove":
        asyncio.get_running_loop().set_task_factory(None)
        body = b"removed"
    else:
        body = b"factory" if task in MADE else b"plain" if isinstance(task, asyncio.Task) else b"?"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
