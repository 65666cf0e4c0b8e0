"""Scenario "wsgi-upload": the WSGI twin of apps/upload.py. POST of a 16 KiB body; the app reads
`wsgi.input` whole (CONTENT_LENGTH bytes, as PEP 3333 allows every server to require) and
answers its length."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    received = 0
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:  # the client went away
            break
        received += len(chunk)
        remaining -= len(chunk)
    answer = str(received).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]
