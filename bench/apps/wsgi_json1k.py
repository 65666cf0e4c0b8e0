"""Scenario "wsgi-json": the WSGI twin of apps/json1k.py, GET answered with the same 1 KiB JSON
document, serialised once at import (the scenario measures how the server carries a 1 KiB body,
not `json.dumps`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from apps.json1k import BODY

STATUS = "200 OK"
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(STATUS, HEADERS)
    return [BODY]
