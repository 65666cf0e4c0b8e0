"""What asyncio charges per request for the two ways a server can run request handlers.

    bench/.venv/bin/python bench/task_cost.py

- "Task per request": a new Task for a coroutine that returns at once (created, registered in
  asyncio's task set, stepped once by the loop, freed). What coachwhip and uvicorn do.
- "Future wake-up per request": a long-lived Task per connection waiting on a Future, woken
  with set_result for each request, running it in a fresh contextvars.Context.

Prints CPU microseconds per request on uvloop, pinned to CPU 0. bench/NOTES.md uses it to show
that a Task per connection would not be cheaper than a Task per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import time

import uvloop

REQUESTS = 200_000
BATCH = 1_000  # requests started per loop iteration, as a busy server's I/O phase does


async def noop() -> None:
    return None


async def task_per_request() -> float:
    loop = asyncio.get_running_loop()
    start = time.process_time()
    for _ in range(REQUESTS // BATCH):
        for _ in range(BATCH):
            asyncio.Task(noop(), loop=loop, name="request")
        await asyncio.sleep(0)  # the loop steps the new tasks
        await asyncio.sleep(0)
    return (time.process_time() - start) / REQUESTS * 1e6


async def wakeup_per_request() -> float:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[contextvars.Context | None]] = []

    async def connection() -> None:
        while True:
            fut: asyncio.Future[contextvars.Context | None] = loop.create_future()
            waiting.append(fut)
            ctx = await fut
            if ctx is None:
                return
            ctx.run(noop().close)  # the handler would run here, in the request's context

    tasks = [asyncio.Task(connection(), loop=loop) for _ in range(BATCH)]
    await asyncio.sleep(0)
    start = time.process_time()
    for _ in range(REQUESTS // BATCH):
        ready, waiting[:] = list(waiting), []
        for fut in ready:
            fut.set_result(contextvars.copy_context())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    elapsed = (time.process_time() - start) / REQUESTS * 1e6
    for fut in waiting:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    return elapsed


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    for _ in range(3):
        per_task = uvloop.run(task_per_request())
        per_wakeup = uvloop.run(wakeup_per_request())
        print(f"Task per request: {per_task:.2f} us; Future wake-up: {per_wakeup:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
