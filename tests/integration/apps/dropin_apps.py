"""Apps for test_dropin.py: factories right and wrong, an app that shows its environment and
context, and a module served gunicorn's way (no :ATTRIBUTE, so `application`)."""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SET_IN_LIFESPAN: contextvars.ContextVar[str] = contextvars.ContextVar(
    "cw_lifespan", default="unset"
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET /env/NAME: the variable's value (404 if unset); GET /context: what the lifespan set,
    as the request sees it; anything else: the request's path."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                SET_IN_LIFESPAN.set("set-by-lifespan")
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]  # the path includes root_path, as in uvicorn
    status, body = 200, path
    if path.startswith("/env/"):
        value = os.environ.get(path[5:])
        status, body = (404, "unset") if value is None else (200, value)
    elif path == "/context":
        body = SET_IN_LIFESPAN.get()
    elif path == "/scope":
        body = json.dumps({"root_path": scope.get("root_path", "")})
    payload = body.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


application = app  # gunicorn's default attribute


def create_app() -> Any:
    """A factory."""
    return app


async def create_async() -> Any:
    return app


def returns_none() -> None:
    return None


def needs_settings(settings: dict[str, Any]) -> Any:
    return app


def broken_factory() -> Any:
    raise ValueError("cw-broken-factory-marker")
