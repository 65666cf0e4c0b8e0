"""A raw WSGI application (PEP 3333, no framework) for test_wsgi.py: one route per rule.

The correct routes run inside `wsgiref.validate.validator`, so an environ, a stream or a
start_response that breaks PEP 3333 turns into an AssertionError (a 500 the tests see). Outside
it run the deliberate mistakes (/m/...), /exc-after, and the routes whose returned iterable the
server may look at: the wsgi.file_wrapper routes (for sendfile) and /single (a list of one, whose
length a server may use) -- the validator wraps the iterable and would hide what it is.

Routes, by PATH_INFO (`?id=K` names what a route records):
  /ok                       200 "ok"
  /input?ops=OP,OP,...      apply each OP to wsgi.input, answer the results as JSON; OP is
                            read | read:-1 | read:none | read:N | readloop:N (read(N) until b"") |
                            readline | readline:N | readlines | readlines:HINT | iter
  /upload                   read wsgi.input in 64 KiB pieces: {"bytes", "sha256", "largest", ...}
  /gate-read?id=K           record "waiting", wait for /open-gate?id=K, then read the whole body
  /no-read                  answer at once, never touching wsgi.input
  /errors?id=K              write lines to wsgi.errors (write, writelines, a line in two writes)
  /write                    "one-" and "two-" through write(), then ["three"]
  /gen?n=N&size=S           a generator body of N chunks of S bytes, no Content-Length
  /length                   Content-Length set by the app, body in three pieces
  /status?s=STATUS          answer with that status line and a few headers of the app's own
  /head?cl=1                a generator body (with Content-Length when cl=1), for HEAD
  /closing?id=K&mode=ok     an iterable whose close() records "closed"
  /closing?id=K&mode=stream the same, 64 KiB chunks until the server stops asking (or 256 MiB)
  /exc-before               start_response, then start_response(..., exc_info) before any body
  /start-twice              a second start_response without exc_info: answers what it raised
  /sleep?s=S&id=K           sleep S seconds; prints `WSGIAPP sleeping K` when it starts, records
                            its thread's name and when it began and ended (time.time())
  /events?id=K              what the routes recorded under K (JSON list)
  /open-gate?id=K           release /gate-read?id=K
  anything else             the environ as JSON (see describe())
Outside the validator:
  /single                   a one-item list body, no Content-Length (the validator's wrapper would
                            hide from the server that it is a list of one)
  /file?path=P&id=K[&offset=O][&length=L]  wsgi.file_wrapper over a real file; records close()
  /bytesio?size=N&blksize=B&id=K           wsgi.file_wrapper over a BytesIO; records close()
  /exc-after?id=K           write() sends the head, then start_response(..., exc_info) must
                            re-raise: records what it raised
  /m/...                    one app mistake each (see MISTAKES)

Side channel: every record() also prints `WSGIAPP {"id": ..., "event": ...}` (flushed), so a
test can find it in the server's output even while the server shuts down.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import validator

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], Any]]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

EVENTS: dict[str, list[Any]] = {}
GATES: dict[str, threading.Event] = {}
LOCK = threading.Lock()
CHUNK = 64 * 1024
TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def record(key: str, value: Any) -> None:
    with LOCK:
        EVENTS.setdefault(key, []).append(value)
    line = json.dumps({"id": key, "event": value}, default=repr)
    sys.stdout.write(f"WSGIAPP {line}\n")
    sys.stdout.flush()


def query(environ: Environ) -> dict[str, str]:
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def gate(name: str) -> threading.Event:
    with LOCK:
        return GATES.setdefault(name, threading.Event())


def unwrap(stream: Any) -> Any:
    """The server's own wsgi.input / wsgi.errors under the validator's wrapper."""
    return getattr(stream, "input", getattr(stream, "errors", stream))


def as_text(value: Any) -> Any:
    """bytes -> latin-1 str (lossless); a list of bytes -> a list of str; else flagged."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, list):
        return [as_text(v) for v in value]
    return {"not_bytes": repr(value)}


def respond(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [*TEXT, ("Content-Length", str(len(body)))])
    return [body]


def respond_json(start_response: StartResponse, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return f"<{type(value).__name__}>"


def describe(environ: Environ) -> dict[str, Any]:
    wsgi_input = unwrap(environ["wsgi.input"])
    errors = unwrap(environ["wsgi.errors"])
    return {
        "environ": {key: jsonable(value) for key, value in environ.items()},
        "types": {key: type(value).__name__ for key, value in environ.items()},
        "input_methods": sorted(
            m for m in ("read", "readline", "readlines", "__iter__") if hasattr(wsgi_input, m)
        ),
        "errors_methods": sorted(m for m in ("write", "writelines", "flush") if hasattr(errors, m)),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
    }


# --- correct routes (inside the validator) --------------------------------------------------------


def ok(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return respond(start_response, b"ok")


def input_op(stream: Any, op: str) -> Any:
    name, _, arg = op.partition(":")
    if name == "read":
        if not arg:
            return as_text(stream.read())
        return as_text(stream.read(None if arg == "none" else int(arg)))
    if name == "readloop":
        parts: list[Any] = []
        for _ in range(100_000):
            part = stream.read(int(arg))
            parts.append(as_text(part))
            if not part:
                break
        return parts
    if name == "readline":
        return as_text(stream.readline(int(arg)) if arg else stream.readline())
    if name == "readlines":
        return as_text(stream.readlines(int(arg)) if arg else stream.readlines())
    if name == "iter":
        return as_text(list(stream))
    raise ValueError(f"unknown op {op!r}")


def input_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    # the server's own stream: the validator's wrapper refuses read() without a size
    stream = unwrap(environ["wsgi.input"])
    ops = [op for op in query(environ).get("ops", "read").split(",") if op]
    results = [input_op(stream, op) for op in ops]
    return respond_json(start_response, {"results": results})


def upload(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = largest = reads = 0
    while True:
        piece = stream.read(CHUNK)
        if not piece:
            break
        reads += 1
        total += len(piece)
        largest = max(largest, len(piece))
        digest.update(piece)
    payload = {"bytes": total, "sha256": digest.hexdigest(), "largest": largest, "reads": reads}
    return respond_json(start_response, payload)


def gate_read(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    key = query(environ).get("id", "gate")
    record(key, "waiting")
    opened = gate(key).wait(10)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    record(key, {"opened": opened, "read": len(body)})
    return respond(start_response, b"read " + body)


def open_gate(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    gate(query(environ).get("id", "gate")).set()
    return respond(start_response, b"opened")


def no_read(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return respond(start_response, b"not read")


def errors_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    key = query(environ).get("id", "errors")
    errors = environ["wsgi.errors"]
    errors.write(f"wsgi-errors-{key}-write\n")
    errors.writelines([f"wsgi-errors-{key}-lines-1\n", f"wsgi-errors-{key}-lines-2\n"])
    errors.write(f"wsgi-errors-{key}-part-a/")
    errors.write("part-b\n")
    errors.flush()
    return respond(start_response, b"written")


def write_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", TEXT)
    write(b"one-")
    write(b"two-")
    return [b"three"]


def gen_route(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    params = query(environ)
    count, size = int(params.get("n", "5")), int(params.get("size", "10"))
    start_response("200 OK", TEXT)
    for i in range(count):
        yield bytes([65 + i % 26]) * size


def single(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", TEXT)
    return [b"one single chunk"]


def length_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    pieces = [b"hello", b", ", b"content-length"]
    start_response("200 OK", [*TEXT, ("Content-Length", str(sum(map(len, pieces))))])
    return pieces


def status_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    status = query(environ).get("s", "299 Custom Reason")
    start_response(
        status,
        [
            *TEXT,
            ("X-App-Header", "kept as given"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
        ],
    )
    return [b"status ", status.encode("latin-1")]


def head_route(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    pieces = [b"head ", b"body ", b"never sent"]
    headers = list(TEXT)
    if query(environ).get("cl") == "1":
        headers.append(("Content-Length", str(sum(map(len, pieces)))))
    start_response("200 OK", headers)
    if query(environ).get("empty") == "1" and environ["REQUEST_METHOD"] == "HEAD":
        return  # as Flask/werkzeug answer HEAD: the GET's Content-Length, no body at all
    yield from pieces


class ClosingBody:
    """An iterable (not a list, not a generator) whose close() is recorded under `key`."""

    def __init__(self, key: str, chunks: int, size: int, fail_at: int | None = None) -> None:
        self.key, self.chunks, self.size, self.fail_at = key, chunks, size, fail_at
        self.sent = 0

    def __iter__(self) -> ClosingBody:
        return self

    def __next__(self) -> bytes:
        if self.fail_at is not None and self.sent == self.fail_at:
            raise RuntimeError(f"failure in iteration of /m/raise-in-iteration ({self.key})")
        if self.sent >= self.chunks:
            if self.chunks > 1000:
                record(self.key, {"exhausted": self.sent})
            raise StopIteration
        self.sent += 1
        return b"c" * self.size

    def close(self) -> None:
        record(self.key, {"closed": self.sent})


def closing(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    key = params.get("id", "closing")
    start_response("200 OK", TEXT)
    if params.get("mode") == "stream":
        return ClosingBody(key, 4096, CHUNK)  # 256 MiB at most
    return ClosingBody(key, 3, 10)


def exc_before(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-First", "yes")])
    try:
        raise ValueError("failure after start_response in /exc-before")
    except ValueError:
        start_response("500 Internal Server Error", [*TEXT, ("X-Replaced", "yes")], sys.exc_info())
    return [b"replaced"]


def start_twice(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", TEXT)
    try:
        start_response("201 Created", TEXT)
    except Exception as exc:
        outcome = type(exc).__name__
    else:
        outcome = "nothing"
    return [f"second call raised: {outcome}".encode()]


def sleep_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    key = params.get("id", "sleep")
    sys.stdout.write(f"WSGIAPP sleeping {key}\n")
    sys.stdout.flush()
    began = time.time()
    time.sleep(float(params.get("s", "0.5")))
    record(key, {"thread": threading.current_thread().name, "began": began, "ended": time.time()})
    return respond(start_response, b"slept")


def events(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    key = query(environ).get("id", "")
    with LOCK:
        found = list(EVENTS.get(key, []))
    return respond_json(start_response, found)


def environ_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return respond_json(start_response, describe(environ))


CHECKED: dict[str, App] = {
    "/ok": ok,
    "/input": input_route,
    "/upload": upload,
    "/gate-read": gate_read,
    "/open-gate": open_gate,
    "/no-read": no_read,
    "/errors": errors_route,
    "/write": write_route,
    "/gen": gen_route,
    "/length": length_route,
    "/status": status_route,
    "/head": head_route,
    "/closing": closing,
    "/exc-before": exc_before,
    "/start-twice": start_twice,
    "/sleep": sleep_route,
    "/events": events,
}


def checked_dispatch(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return CHECKED.get(environ.get("PATH_INFO", ""), environ_route)(environ, start_response)


checked_app = validator(checked_dispatch)


# --- outside the validator: file wrappers, exc_info after the head --------------------------------


class RecordingFile(io.FileIO):
    """A real file (it has a fileno, so a server may sendfile it) whose close() is recorded."""

    key = ""

    def close(self) -> None:
        if not self.closed:
            record(self.key, "file closed")
        super().close()


class RecordingBytesIO(io.BytesIO):
    key = ""

    def close(self) -> None:
        if not self.closed:
            record(self.key, "bytesio closed")
        super().close()


def file_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    handle = RecordingFile(params["path"], "rb")
    handle.key = params.get("id", "file")
    handle.seek(int(params.get("offset", "0")))
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in params:
        headers.append(("Content-Length", params["length"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](handle, 8192)


def bytesio_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    size = int(params.get("size", "1000"))
    handle = RecordingBytesIO(bytes(i % 251 for i in range(size)))
    handle.key = params.get("id", "bytesio")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle, int(params.get("blksize", "8192")))


def exc_after(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    key = query(environ).get("id", "exc-after")
    write = start_response("200 OK", TEXT)
    write(b"partial ")  # the head has gone out (or is on its way): it can no longer change
    try:
        raise ValueError("failure after the head in /exc-after")
    except ValueError as exc:
        try:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        except BaseException as reraised:
            record(key, {"raised": type(reraised).__name__, "same": reraised is exc})
            raise
        record(key, {"raised": None})
    return [b"start_response did not re-raise"]


# --- app mistakes (outside the validator) ---------------------------------------------------------


def m_no_start_response(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return [b"no start_response"]


def m_status_int(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response(200, TEXT)
    return [b"status int"]


def m_status_bytes(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response(b"200 OK", TEXT)
    return [b"status bytes"]


def m_status_no_code(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("OK", TEXT)
    return [b"status without a code"]


def m_status_four_digits(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("2000 OK", TEXT)
    return [b"status 2000"]


def m_header_name_bytes(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, (b"X-Bytes-Name", "v")])
    return [b"header name bytes"]


def m_header_value_int(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Int-Value", 5)])
    return [b"header value int"]


def m_header_value_bytes(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Bytes-Value", b"v")])
    return [b"header value bytes"]


def m_hop(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    name = query(environ).get("name", "Connection")
    value = {"Connection": "close", "Transfer-Encoding": "chunked", "Upgrade": "h2c"}.get(name, "x")
    start_response("200 OK", [*TEXT, (name, value)])
    return [b"hop-by-hop header"]


def m_header_crlf(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Split", "a\r\nX-Injected: yes")])
    return [b"crlf in a value"]


def m_header_lf(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Split", "a\nX-Injected: yes")])
    return [b"lf in a value"]


def m_header_cr(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Split", "a\rX-Injected: yes")])
    return [b"cr in a value"]


def m_header_name_lf(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("X-Split\nX-Injected", "yes")])
    return [b"lf in a name"]


def m_yield_str_first(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
    start_response("200 OK", TEXT)
    return ["a str, not bytes"]


def m_yield_str_later(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
    write = start_response("200 OK", TEXT)
    write(b"sent through write() ")  # the head is out
    return ["then a str, not bytes"]


def m_body_longer(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    write(b"012")  # the head is out
    return [b"3456789"]


def m_body_longer_at_once(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    write(b"0123456789")  # PEP 3333: the server may raise here, before anything is sent
    return []


def m_body_shorter(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [*TEXT, ("Content-Length", "10")])
    write(b"012")
    return []


def m_raise_before_start(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("failure before start_response in /m/raise-before-start")


def m_raise_after_start(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", TEXT)
    raise RuntimeError("failure after start_response in /m/raise-after-start")


def m_raise_in_first_next(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", TEXT)
    raise RuntimeError("failure in the first next() of /m/raise-in-first-next")
    yield b"never"  # a generator


def m_raise_in_iteration(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    key = query(environ).get("id", "raise-in-iteration")
    start_response("200 OK", TEXT)
    return ClosingBody(key, 5, 10, fail_at=2)


class FailingClose:
    def __init__(self, key: str) -> None:
        self.key = key
        self.chunks = [b"complete ", b"body"]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        record(self.key, "close raising")
        raise RuntimeError("failure in close() of /m/raise-in-close")


def m_raise_in_close(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT, ("Content-Length", "13")])
    return FailingClose(query(environ).get("id", "raise-in-close"))


async def asgi_like(scope: Any, receive: Any, send: Any = None) -> None:
    raise AssertionError("an ASGI coroutine must never be awaited by a WSGI server")


def m_coroutine(environ: Environ, start_response: StartResponse) -> Any:
    return asgi_like(environ, start_response)


MISTAKES: dict[str, App] = {
    "/m/no-start-response": m_no_start_response,
    "/m/status-int": m_status_int,
    "/m/status-bytes": m_status_bytes,
    "/m/status-no-code": m_status_no_code,
    "/m/status-four-digits": m_status_four_digits,
    "/m/header-name-bytes": m_header_name_bytes,
    "/m/header-value-int": m_header_value_int,
    "/m/header-value-bytes": m_header_value_bytes,
    "/m/hop": m_hop,
    "/m/header-crlf": m_header_crlf,
    "/m/header-lf": m_header_lf,
    "/m/header-cr": m_header_cr,
    "/m/header-name-lf": m_header_name_lf,
    "/m/yield-str-first": m_yield_str_first,
    "/m/yield-str-later": m_yield_str_later,
    "/m/body-longer": m_body_longer,
    "/m/body-longer-at-once": m_body_longer_at_once,
    "/m/body-shorter": m_body_shorter,
    "/m/raise-before-start": m_raise_before_start,
    "/m/raise-after-start": m_raise_after_start,
    "/m/raise-in-first-next": m_raise_in_first_next,
    "/m/raise-in-iteration": m_raise_in_iteration,
    "/m/raise-in-close": m_raise_in_close,
    "/m/coroutine": m_coroutine,
}
UNCHECKED: dict[str, App] = {
    "/single": single,
    "/file": file_route,
    "/bytesio": bytesio_route,
    "/exc-after": exc_after,
    **MISTAKES,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    handler = UNCHECKED.get(environ.get("PATH_INFO", ""))
    if handler is not None:
        return handler(environ, start_response)
    return checked_app(environ, start_response)
