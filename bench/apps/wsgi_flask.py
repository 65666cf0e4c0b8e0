"""Scenario "wsgi-flask": the WSGI twin of apps/fastapi_items.py, a Flask route with an `int`
path parameter returning a small JSON object (routing, conversion and serialisation all run per
request)."""

from __future__ import annotations

from typing import Any

from flask import Flask

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def read_item(item_id: int) -> dict[str, Any]:
    return {"item_id": item_id, "name": "widget", "price": 9.99, "in_stock": True}
