"""Scenario "wsgi-hello": the WSGI twin of apps/hello.py, GET answered with the 13-byte text body
"Hello, world!" (with a Content-Length, as a list of one bytes object)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, world!"
STATUS = "200 OK"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(STATUS, HEADERS)
    return [BODY]
