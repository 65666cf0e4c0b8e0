"""A FastAPI (so Starlette) application for the HTTP/2 tests: a JSON route, a streaming
response, an upload that is hashed as it streams in, and a server-sent events endpoint."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()

STREAM_LINES = 2000
SSE_EVENTS = 3


@app.get("/json")
async def json_route(request: Request, name: str = "world") -> dict[str, object]:
    return {"hello": name, "http_version": request.scope.get("http_version")}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(STREAM_LINES):
            yield f"line {i:05d} {'.' * 100}\n".encode()
            if i % 500 == 0:
                await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.get("/sse")
async def sse() -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        for i in range(SSE_EVENTS):
            yield f"event: tick\nid: {i}\ndata: tick {i}\n\n"
            await asyncio.sleep(0.05)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )
