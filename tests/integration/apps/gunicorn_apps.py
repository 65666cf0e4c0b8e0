"""Apps for tests/integration/test_gunicorn_worker.py (coachwhip's engine under gunicorn).

Every response names the worker process that served it. `wsgi` is the WSGI twin of
apps.workers:app; `flaky` is an ASGI app whose lifespan startup fails while the file named by
$GUNICORN_TEST_FAIL_FLAG exists (a database that is down while a worker is replaced).
`?mark=FILE` appends the worker's pid to FILE as the request enters the app (a side channel:
the test sees the request is in the app without sleeping).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ["PATH_INFO"]
    if "mark" in params:
        with open(params["mark"], "a") as mark:
            mark.write(f"{os.getpid()}\n")
    if path == "/slow":
        time.sleep(float(params.get("s", "0.2")))
    elif path == "/block":  # holds a thread for good: with every thread held, no heartbeat
        time.sleep(float(params.get("s", "1000")))
    elif path == "/env":
        keys = ("wsgi.multiprocess", "wsgi.multithread", "SCRIPT_NAME", "SERVER_SOFTWARE")
        body = " ".join(f"{k}={environ.get(k)}" for k in keys).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def flaky(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        flag = os.environ.get("GUNICORN_TEST_FAIL_FLAG", "")
        if flag and os.path.exists(flag):
            await send({"type": "lifespan.startup.failed", "message": "database is down"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
