"""A Flask application served as WSGI end to end (tests/integration/test_wsgi_frameworks.py).

Routes: a path parameter and JSON, a JSON echo, error handlers (404, a custom exception, 500 from
abort() and from a crash), a stream whose chunks are released one at a time by the client
(`/stream` + `/release`), files from the directory named by WSGI_FLASK_FILES through send_file,
an upload read piece by piece from request.stream, and `/ok` and `/slow` that answer with the
worker's pid (for the load generator).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_from_directory, stream_with_context
from werkzeug.exceptions import HTTPException, InternalServerError

app = Flask(__name__)

FILES = Path(os.environ.get("WSGI_FLASK_FILES", os.path.dirname(__file__)))
READ_BLOCK = 64 * 1024
GATE_TIMEOUT = 10.0
# /stream?id=KEY waits on GATES[KEY] between chunks; /release?id=KEY lets one more chunk go.
GATES: dict[str, threading.Semaphore] = {}
GATES_LOCK = threading.Lock()


class TeapotError(Exception):
    pass


def gate(key: str) -> threading.Semaphore:
    with GATES_LOCK:
        return GATES.setdefault(key, threading.Semaphore(0))


@app.errorhandler(404)
def not_found(error: HTTPException) -> tuple[Response, int]:
    return jsonify(error="not found", path=request.path), 404


@app.errorhandler(TeapotError)
def teapot(error: TeapotError) -> tuple[Response, int]:
    return jsonify(error="teapot", detail=str(error)), 418


@app.errorhandler(500)
def internal(error: InternalServerError) -> tuple[Response, int]:
    original = error.original_exception
    return jsonify(
        error="internal",
        description=error.description,
        original=type(original).__name__ if original is not None else None,
    ), 500


@app.get("/")
def home() -> str:
    return "flask home"


@app.get("/users/<int:user_id>")
def user(user_id: int) -> Response:
    return jsonify(user_id=user_id, q=request.args.get("q"), tags=request.args.getlist("tag"))


@app.post("/echo")
def echo() -> tuple[Response, int]:
    payload = request.get_json()
    return jsonify(received=payload, content_type=request.content_type), 201


@app.get("/teapot")
def brew() -> str:
    raise TeapotError("short and stout")


@app.get("/abort")
def aborted() -> str:
    abort(500, description="aborted on purpose")


@app.get("/crash")
def crash() -> str:
    return str(1 // int(request.args.get("d", "0")))


@app.get("/stream")
def stream() -> Response:
    key = request.args["id"]
    count = int(request.args.get("n", "3"))

    def chunks() -> Iterator[str]:
        for i in range(count):
            if i and not gate(key).acquire(timeout=GATE_TIMEOUT):
                yield "gate timed out\n"
                return
            # request is only reachable here because of stream_with_context
            yield f"chunk {i} of {request.args['id']}\n"

    return Response(stream_with_context(chunks()), mimetype="text/plain")


@app.get("/release")
def release() -> str:
    gate(request.args["id"]).release()
    return "released"


@app.route("/files/<path:name>", methods=["GET", "HEAD"])
def files(name: str) -> Response:
    return send_from_directory(FILES, name)


@app.after_request
def tell_body_type(response: Response) -> Response:
    """Which iterable carries a /files/ body: the server's wsgi.file_wrapper or werkzeug's."""
    if request.path.startswith("/files/"):
        body = type(response.response)
        response.headers["X-Body-Type"] = f"{body.__module__}.{body.__qualname__}"
        response.headers["X-Has-File-Wrapper"] = str("wsgi.file_wrapper" in request.environ)
    return response


@app.post("/upload")
def upload() -> Response:
    digest = hashlib.sha256()
    total = largest = reads = 0
    stream = request.stream
    while chunk := stream.read(READ_BLOCK):
        digest.update(chunk)
        total += len(chunk)
        largest = max(largest, len(chunk))
        reads += 1
    return jsonify(
        bytes=total,
        sha256=digest.hexdigest(),
        largest_chunk=largest,
        reads=reads,
        content_length=request.content_length,
    )


@app.get("/ok")
def ok() -> str:
    return str(os.getpid())


@app.get("/slow")
def slow() -> str:
    time.sleep(float(request.args.get("s", "0.2")))
    return str(os.getpid())
