"""Scenario "fastapi": a FastAPI endpoint with a typed path parameter returning a small JSON
object (routing, validation and serialisation all run per request)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, Any]:
    return {"item_id": item_id, "name": "widget", "price": 9.99, "in_stock": True}
