"""Scenario "json": GET answered with a 1 KiB JSON document.

The document is serialised once at import: the scenario measures how the server carries a
1 KiB body, not how fast `json.dumps` runs (that cost would be the same for every server)."""

from __future__ import annotations

import json
from typing import Any

from apps._lifespan import lifespan

SIZE = 1024


def _document() -> bytes:
    items = [
        {"id": i, "name": f"item-{i}", "price": i * 1.25, "tags": ["a", "b"]} for i in range(12)
    ]
    doc: dict[str, Any] = {"count": len(items), "items": items, "pad": ""}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    doc["pad"] = "x" * (SIZE - len(raw))
    raw = json.dumps(doc, separators=(",", ":")).encode()
    assert len(raw) == SIZE, len(raw)
    return raw


BODY = _document()
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % SIZE)],
}
END = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(END)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
