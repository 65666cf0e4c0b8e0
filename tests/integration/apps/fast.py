"""A FastAPI application served end to end."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

TASKS_DONE: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "hello from fastapi startup"}
    print("cw-fast: lifespan shutdown ran", flush=True)


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class StoredItem(Item):
    id: int
    total: float


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, object]:
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items", status_code=201)
async def create_item(item: Item) -> StoredItem:
    return StoredItem(**item.model_dump(), id=42, total=round(item.price * 1.2, 2))


@app.get("/count")
async def count(n: int = 5) -> StreamingResponse:
    async def generate() -> AsyncIterator[bytes]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"line {i}\n".encode()

    return StreamingResponse(generate(), media_type="text/plain")


def _finish(name: str) -> None:
    TASKS_DONE.append(name)


@app.post("/tasks/{name}", status_code=202)
async def start_task(name: str, background: BackgroundTasks) -> dict[str, str]:
    background.add_task(_finish, name)
    return {"scheduled": name}


@app.get("/tasks")
async def tasks() -> list[str]:
    return TASKS_DONE


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    largest = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    return {"bytes": size, "sha256": digest.hexdigest(), "largest_chunk": largest}


@app.get("/state")
async def state(request: Request) -> dict[str, str]:
    return {"greeting": request.state.greeting}
