"""WSGI (PEP 3333) end to end: a real server serving apps/wsgi_app.py, driven by httpx and by
raw sockets whose bytes are parsed strictly (issue 15's contract, "PEP 3333 behaviour").

The app runs its correct routes inside wsgiref.validate.validator, so an environ or a stream that
breaks PEP 3333 shows up here as a 500; its /m/ routes each make one app mistake, and the server
must answer 500 (or close the connection once the head is out), log an ERROR naming the route,
never send a malformed byte, and go on serving.

WSGI_TEST_SERVER=gunicorn runs the same tests against gunicorn (gthread; sync for --threads 1)
from bench/.venv (`bench/.venv/bin/pip install gunicorn`; WSGI_TEST_GUNICORN_PYTHON names another
interpreter), to check the tests themselves. The tests and cases marked coachwhip-only say where
gunicorn differs from the contract (its own choices, and one departure from PEP 3333: it keeps
the first start_response's headers when exc_info replaces them); they are skipped only in that
mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Serve
from harness import (
    HEADER_LINE,
    HERE,
    READY_TIMEOUT,
    STATUS_LINE,
    IncompleteResponse,
    RawConnection,
    RawResponse,
    ServerProcess,
    poll,
    request,
    run_curl,
)
from tlscerts import Certs, client_context, fetch

APP = "apps.wsgi_app:app"
GUNICORN = os.environ.get("WSGI_TEST_SERVER", "coachwhip") == "gunicorn"
GUNICORN_PYTHON = os.environ.get(
    "WSGI_TEST_GUNICORN_PYTHON", str(HERE.parents[1] / "bench" / ".venv" / "bin" / "python")
)
LISTEN_RE = (
    r"Listening at: (https?)://([\d.]+):(\d+)"
    if GUNICORN
    else r"Listening on (https?)://([\d.]+):(\d+)"
)
EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
ERROR_RE = r"\bERROR\b"
TIMEOUT = 5.0
MIB = 1024 * 1024
SANITIZED = bool(os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD"))

Start = Callable[..., ServerProcess]


def coachwhip_only(why: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(GUNICORN, reason=f"coachwhip-only, gunicorn {why}")


# --- servers --------------------------------------------------------------------------------------


def gunicorn_argv(args: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """gunicorn's spelling of the coachwhip flags these tests use."""
    argv = ["-m", "gunicorn", "--bind", "127.0.0.1:0", "--no-control-socket", "--keep-alive", "5"]
    env: dict[str, str] = {}
    rest = iter(args)
    names = {
        "--threads": "--threads",
        "--workers": "--workers",
        "--timeout-graceful-shutdown": "--graceful-timeout",
        "--ssl-certfile": "--certfile",
        "--ssl-keyfile": "--keyfile",
    }
    for arg in rest:
        if arg in names:
            argv += [names[arg], next(rest)]
        elif arg == "--root-path":
            env["SCRIPT_NAME"] = next(rest)
        elif arg != "--no-access-log":
            raise ValueError(f"no gunicorn equivalent for {arg}")
    return [*argv, APP], env


def wait_listening(server: ServerProcess) -> ServerProcess:
    match = server.wait_for_line(LISTEN_RE, READY_TIMEOUT)
    server.host, server.port = match.group(2), int(match.group(3))
    if GUNICORN:
        server.wait_for_line(r"Booting worker", READY_TIMEOUT)
    return server


def launch(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """A ready server on APP, outside the serve fixture: the caller kills it."""
    if GUNICORN:
        argv, extra = gunicorn_argv(args)
        server = ServerProcess(
            APP, env={**(env or {}), **extra}, python_args=["-c", EXEC, GUNICORN_PYTHON, *argv]
        )
    else:
        server = ServerProcess(APP, "--interface", "wsgi", *args, env=env)
    try:
        return wait_listening(server)
    except BaseException:
        server.kill()
        raise


@pytest.fixture
def start(serve: Serve) -> Iterator[Start]:
    """Factory: start("--threads", "2", ...) -> a ready server on APP, killed at teardown."""
    started: list[ServerProcess] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        if GUNICORN:
            server = launch(*args, env=env)
            started.append(server)
            return server
        server = serve(APP, "--interface", "wsgi", *args, env=env, ready=None)
        return wait_listening(server)

    yield factory
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server with 8 threads, shared by the tests that need no flag of their own."""
    proc = launch("--threads", "8")
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def rooted() -> Iterator[ServerProcess]:
    proc = launch("--threads", "2", "--root-path", "/mount")
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(MIB + 4321)
    path = tmp_path_factory.mktemp("wsgi") / "served.bin"
    path.write_bytes(data)
    return path, data


# --- clients --------------------------------------------------------------------------------------


def exchange(server: ServerProcess, raw: bytes, follow: str = "/ok") -> RawResponse:
    """One request on a new connection. If the connection stays open, a second request on it
    must get a clean answer: no byte of the first response may be left in front of it."""
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(raw)
        response = conn.read_response()
        closing = (response.header("connection") or "").lower() == "close"
        if raw.split(b"\r\n", 1)[0].endswith(b" HTTP/1.1") and not (conn.eof or closing):
            conn.send(request("GET", follow))
            second = conn.read_response()
            assert (second.status, second.body) == (200, b"ok"), second.raw[:300]
        elif closing:
            assert conn.read_to_eof(TIMEOUT) == b"", "bytes after a response that said close"
        return response


def describe(server: ServerProcess, raw: bytes, follow: str = "/ok") -> dict[str, Any]:
    response = exchange(server, raw, follow)
    assert response.status == 200, (response.status, response.body[:2000])
    data = json.loads(response.body)
    assert isinstance(data, dict)
    return data


def environ_of(
    server: ServerProcess, target: str = "/env", headers: tuple[str, ...] = (), **kw: Any
) -> dict[str, Any]:
    follow = kw.pop("follow", "/ok")
    raw = request(kw.pop("method", "GET"), target, headers=headers, **kw)
    environ = describe(server, raw, follow)["environ"]
    assert isinstance(environ, dict)
    return environ


def events(server: ServerProcess, key: str) -> list[Any]:
    data = httpx.get(f"{server.url}/events", params={"id": key}, timeout=TIMEOUT).json()
    assert isinstance(data, list)
    return data


def wait_events(server: ServerProcess, key: str, count: int = 1) -> list[Any]:
    return poll(
        lambda: found if len(found := events(server, key)) >= count else None,
        TIMEOUT,
        interval=0.02,
        what=f"{count} event(s) for {key}",
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def assert_still_serving(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/ok", timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "ok")


def fetch_raw(server: ServerProcess, target: str) -> tuple[RawResponse | None, bytes]:
    """(the response, or None if the connection ended before a whole one), and every byte."""
    with RawConnection(server.host, server.port, timeout=8) as conn:
        conn.send(request("GET", target))
        try:
            response = conn.read_response()
        except IncompleteResponse:
            return None, bytes(conn.received)
        return response, bytes(conn.received)


def check_chunked_prefix(data: bytes) -> None:
    """`data` is chunked framing, possibly cut short, never wrong."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        if end < 0:
            assert re.fullmatch(rb"[0-9A-Fa-f]{0,16}", data[pos:]), f"bad chunk size {data[pos:]!r}"
            return
        size_text = data[pos:end]
        assert re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text), f"bad chunk size {size_text!r}"
        size = int(size_text, 16)
        pos = end + 2
        if size == 0:
            assert b"\r\n".startswith(data[pos:]), f"bytes after the last chunk: {data[pos:]!r}"
            return
        pos += size
        assert b"\r\n".startswith(data[pos : pos + 2]), "chunk data not followed by CRLF"
        pos += 2


def check_wire(raw: bytes) -> None:
    """`raw` (the bytes of one response, maybe cut short) holds nothing malformed."""
    if not raw:
        return
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"the connection ended inside a response head: {raw[:500]!r}"
    lines = head.split(b"\r\n")
    assert STATUS_LINE.fullmatch(lines[0]), f"bad status line {lines[0]!r}"
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        match = HEADER_LINE.fullmatch(line)
        assert match, f"bad header line {line!r} in {head!r}"
        fields.setdefault(match.group(1).lower(), []).append(match.group(2))
    assert b"x-injected" not in fields, f"a header was injected: {head!r}"
    te, cl = fields.get(b"transfer-encoding"), fields.get(b"content-length")
    assert not (te and cl), f"both transfer-encoding and content-length: {head!r}"
    if te:
        assert te == [b"chunked"], te
        check_chunked_prefix(body)
    elif cl:
        assert len(cl) == 1 and cl[0].isdigit(), cl
        assert len(body) <= int(cl[0]), f"{len(body)} body bytes after content-length {cl[0]!r}"


def upload_blocks(total: int, every: Callable[[], None] | None = None) -> Iterator[bytes]:
    block = bytes(range(256)) * 256  # 64 KiB
    sent = 0
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        sent += len(piece)
        if every is not None and sent % MIB < len(block):
            every()
        yield piece


def blocks_digest(total: int) -> str:
    digest = hashlib.sha256()
    for piece in upload_blocks(total):
        digest.update(piece)
    return digest.hexdigest()


def chunked(body: bytes, sizes: tuple[int, ...] = (1, 6, 3, 100)) -> bytes:
    out, pos, i = bytearray(), 0, 0
    while pos < len(body):
        piece = body[pos : pos + sizes[i % len(sizes)]]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos, i = pos + len(piece), i + 1
    return bytes(out + b"0\r\n\r\n")


class PeakRss:
    """The server's resident memory at the start and the highest sample since."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = server.rss_kib()
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, self.server.rss_kib())

    @property
    def growth_mib(self) -> float:
        self.sample()
        return (self.peak - self.baseline) / 1024


# --- environ --------------------------------------------------------------------------------------


def test_environ_has_every_key(server: ServerProcess):
    data = describe(server, request("GET", "/env/path?x=1"))
    env, types = data["environ"], data["types"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/env/path"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "test"
    for key in ("SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT"):
        assert types[key] == "str" and env[key], (key, env.get(key))
    assert (env["wsgi.version"], types["wsgi.version"]) == ([1, 0], "tuple")
    assert env["wsgi.url_scheme"] == "http"
    flags = ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated")
    assert {k: (env[k], types[k]) for k in flags} == {
        "wsgi.multithread": (True, "bool"),  # --threads 8
        "wsgi.multiprocess": (False, "bool"),
        "wsgi.run_once": (False, "bool"),
        "wsgi.input_terminated": (True, "bool"),
    }
    assert data["input_methods"] == ["__iter__", "read", "readline", "readlines"]
    assert data["errors_methods"] == ["flush", "write", "writelines"]
    assert data["file_wrapper_callable"] is True
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert key not in env, key


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/caf%C3%A9", "/caf\u00c3\u00a9"),  # UTF-8 bytes as latin-1 characters
        ("/%E9t%E9", "/\u00e9t\u00e9"),  # latin-1 bytes, not valid UTF-8
        ("/a%20b", "/a b"),
        ("/a%2Fb", "/a/b"),
        ("/%7Euser/x%25y", "/~user/x%y"),
        ("/a+b", "/a+b"),
        ("/plain/path/?q=%41", "/plain/path/"),
    ],
)
def test_path_info_is_percent_decoded_to_latin1(server: ServerProcess, target: str, path_info: str):
    assert environ_of(server, target)["PATH_INFO"] == path_info


@pytest.mark.parametrize(
    ("target", "query_string"),
    [
        ("/q?a=%20b&c=d+e", "a=%20b&c=d+e"),
        ("/q?caf%C3%A9=%E9&x", "caf%C3%A9=%E9&x"),
        ("/q?a=1?b=2", "a=1?b=2"),
        ("/q", ""),
        ("/q?", ""),
    ],
)
def test_query_string_is_raw(server: ServerProcess, target: str, query_string: str):
    assert environ_of(server, target)["QUERY_STRING"] == query_string


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(server: ServerProcess, method: str):
    assert environ_of(server, method=method)["REQUEST_METHOD"] == method


def test_content_type_and_length_have_no_http_prefix(server: ServerProcess):
    env = environ_of(
        server,
        method="POST",
        headers=("Content-Type: application/x-test; charset=latin-1",),
        body=b"hello",
    )
    assert env["CONTENT_TYPE"] == "application/x-test; charset=latin-1"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_chunked_request_has_no_content_length(server: ServerProcess):
    env = environ_of(
        server, method="POST", headers=("Transfer-Encoding: chunked",), body=chunked(b"hello")
    )
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_headers_become_http_keys_and_repeats_are_joined(server: ServerProcess):
    env = environ_of(
        server,
        headers=(
            "X-Custom-Header: custom value",
            "x-lower-case: v",
            "X-Multi: a",
            "X-Multi: b",
            "Accept: text/html",
            "Accept: text/plain;q=0.5",
            "X-Padded:   padded   ",
        ),
    )
    assert env["HTTP_X_CUSTOM_HEADER"] == "custom value"
    assert env["HTTP_X_LOWER_CASE"] == "v"
    assert env["HTTP_X_MULTI"] == "a,b"
    assert env["HTTP_ACCEPT"] == "text/html,text/plain;q=0.5"
    assert env["HTTP_X_PADDED"] == "padded"
    assert env["HTTP_HOST"] == "test"


def test_one_cookie_header_is_passed_as_is(server: ServerProcess):
    assert environ_of(server, headers=("Cookie: a=1; b=2",))["HTTP_COOKIE"] == "a=1; b=2"


@coachwhip_only("joins repeated Cookie fields with ',' like any other header")
def test_repeated_cookie_headers_are_joined_with_semicolons(server: ServerProcess):
    env = environ_of(server, headers=("Cookie: a=1", "Cookie: b=2; c=3"))
    assert env["HTTP_COOKIE"] == "a=1; b=2; c=3"


def test_header_names_with_underscores_are_dropped(server: ServerProcess):
    env = environ_of(
        server, headers=("X_Foo: smuggled", "X-Foo: real", "X_Only: 1", "Under_Score: x")
    )
    assert env["HTTP_X_FOO"] == "real"
    assert "HTTP_X_ONLY" not in env and "HTTP_UNDER_SCORE" not in env


@coachwhip_only("takes SERVER_NAME/SERVER_PORT from the listening socket, never from Host")
@pytest.mark.parametrize(
    ("host", "name", "port"),
    [("example.com:8080", "example.com", "8080"), ("example.com", "example.com", "80")],
)
def test_server_name_and_port_from_host(server: ServerProcess, host: str, name: str, port: str):
    env = environ_of(server, host=host)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)


def test_http10_without_host_gets_the_socket_address(server: ServerProcess):
    env = describe(server, b"GET /env HTTP/1.0\r\n\r\n")["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(server.port))


def test_remote_addr_and_port_are_the_client(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(request("GET", "/env"))
        response = conn.read_response()
        env = json.loads(response.body)["environ"]
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(conn.local_port))


def test_forwarded_proto_from_a_trusted_peer_sets_url_scheme(server: ServerProcess):
    assert environ_of(server, headers=("X-Forwarded-Proto: https",))["wsgi.url_scheme"] == "https"


@coachwhip_only("does not take REMOTE_ADDR from X-Forwarded-For")
def test_forwarded_for_from_a_trusted_peer_sets_remote_addr(server: ServerProcess):
    env = environ_of(server, headers=("X-Forwarded-For: 203.0.113.7",))
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_multithread_is_false_with_one_thread(start: Start):
    env = environ_of(start("--threads", "1"))
    assert (env["wsgi.multithread"], env["wsgi.multiprocess"]) == (False, False)


def test_multiprocess_is_true_with_two_workers(start: Start):
    env = environ_of(start("--workers", "2", "--threads", "4"))
    assert (env["wsgi.multithread"], env["wsgi.multiprocess"]) == (True, True)


@pytest.mark.parametrize(
    ("target", "path_info"),
    [("/mount/sub/x?y=1", "/sub/x"), ("/mount", ""), ("/mount/caf%C3%A9", "/caf\u00c3\u00a9")],
)
def test_script_name_is_the_root_path(rooted: ServerProcess, target: str, path_info: str):
    env = environ_of(rooted, target, follow="/mount/ok")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mount", path_info)


@coachwhip_only(
    "answers 500 when the path is not under SCRIPT_NAME, and strips it as a string prefix"
    " (/mountain -> PATH_INFO 'ain', which the validator refuses)"
)
@pytest.mark.parametrize("target", ["/elsewhere", "/mountain"])
def test_path_outside_the_root_path_is_kept_whole(rooted: ServerProcess, target: str):
    env = environ_of(rooted, target, follow="/mount/ok")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mount", target)


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[ServerProcess]:
    proc = launch("--threads", "2", *certs.ecdsa.args)
    yield proc
    proc.kill()


def tls_environ(server: ServerProcess, certs: Certs) -> dict[str, Any]:
    answer = fetch(server, "/env", client_context(certs))  # Host: localhost
    assert answer.status == 200, answer.body
    env = json.loads(answer.body)["environ"]
    assert isinstance(env, dict)
    return env


def test_url_scheme_is_https_over_tls(tls_server: ServerProcess, certs: Certs):
    assert tls_environ(tls_server, certs)["wsgi.url_scheme"] == "https"


@coachwhip_only("takes SERVER_NAME/SERVER_PORT from the listening socket, never from Host")
def test_server_port_defaults_to_443_over_tls(tls_server: ServerProcess, certs: Certs):
    env = tls_environ(tls_server, certs)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "443")


# --- wsgi.input -----------------------------------------------------------------------------------

BODY = b"first line\nsecond\n\nfourth, no newline"
LINES = ["first line\n", "second\n", "\n", "fourth, no newline"]
TEXT = BODY.decode()
INPUT_CASES = [
    ("read", [TEXT]),
    ("read:-1", [TEXT]),
    ("read:none", [TEXT]),
    ("read:5,read", [TEXT[:5], TEXT[5:]]),
    ("readloop:7", [[TEXT[i : i + 7] for i in range(0, len(TEXT), 7)] + [""]]),
    ("readline,readline,readline,readline,readline", [*LINES, ""]),
    ("readline:4,readline,readline:100,readline:0", ["firs", "t line\n", "second\n", ""]),
    ("readlines", [LINES]),
    ("iter", [LINES]),
    ("read:3,readlines", ["fir", ["st line\n", *LINES[1:]]]),
    ("readline,read:9,iter", [LINES[0], "second\n\nf", ["ourth, no newline"]]),
    ("read,read,read:10,readline,readlines", [TEXT, "", "", "", []]),
]


def input_results(server: ServerProcess, ops: str, body: bytes, *, framing: str) -> list[Any]:
    if framing == "chunked":
        raw = request("POST", f"/input?ops={ops}", headers=("Transfer-Encoding: chunked",))
        raw += chunked(body)
    else:
        raw = request("POST", f"/input?ops={ops}", headers=(f"Content-Length: {len(body)}",))
        raw += body
    results = describe(server, raw)["results"]
    assert isinstance(results, list)
    return results


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("ops", "expected"), INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_wsgi_input_reads(server: ServerProcess, framing: str, ops: str, expected: list[Any]):
    assert input_results(server, ops, BODY, framing=framing) == expected


def test_readlines_with_a_hint_gives_whole_lines(server: ServerProcess):
    first, rest = input_results(server, "readlines:5,read", BODY, framing="content-length")
    assert first and first == LINES[: len(first)], first  # PEP 3333: the hint may be ignored
    assert "".join(first) + rest == TEXT


@pytest.mark.parametrize("framing", ["content-length: 0", "no body"])
def test_empty_body_reads_empty(server: ServerProcess, framing: str):
    ops = "read,read:10,read:-1,readline,readline:5,readlines,iter"
    headers = ("Content-Length: 0",) if framing != "no body" else ()
    method = "POST" if framing != "no body" else "GET"
    results = describe(server, request(method, f"/input?ops={ops}", headers=headers))["results"]
    assert results == ["", "", "", "", "", [], []]


def test_input_stops_at_content_length_on_a_pipelined_connection(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(
            request("POST", "/input?ops=read:100,read:100", body=b"first")
            + request("POST", "/input?ops=read", body=b"second body")
        )
        assert json.loads(conn.read_response().body)["results"] == ["first", ""]
        assert json.loads(conn.read_response().body)["results"] == ["second body"]


def test_chunked_upload_through_httpx(server: ServerProcess):
    total = 3 * MIB + 17
    response = httpx.post(f"{server.url}/upload", content=upload_blocks(total), timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["bytes"], data["sha256"]) == (total, blocks_digest(total))
    assert data["largest"] <= 64 * 1024


def test_100_continue_then_the_body(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(
            request(
                "POST", "/input?ops=read", headers=("Expect: 100-continue", "Content-Length: 5")
            )
        )
        interim = conn.read_response()
        assert interim.status == 100, interim
        conn.send(b"hello")
        final = conn.read_response()
        assert final.status == 200
        assert json.loads(final.body)["results"] == ["hello"]


def test_curl_upload_gets_100_continue_and_is_read_whole(
    server: ServerProcess, data_file: tuple[Path, bytes]
):
    path, data = data_file
    done = run_curl(
        "-v",
        "-H",
        "Expect: 100-continue",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        f"@{path}",
        f"{server.url}/upload",
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"< HTTP/1.1 100 Continue" in done.stderr, done.stderr.decode(errors="replace")
    answer = json.loads(done.stdout)
    assert (answer["bytes"], answer["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def no_bytes_within(conn: RawConnection, seconds: float) -> bool:
    if conn.buf:
        return False
    readable, _, _ = select.select([conn.sock], [], [], seconds)
    return not readable


@coachwhip_only("sends 100 Continue as soon as it has read the head, before the app runs")
def test_100_continue_waits_until_the_app_reads(server: ServerProcess):
    key = unique("gate")
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        headers = ("Expect: 100-continue", "Content-Length: 5")
        conn.send(request("POST", f"/gate-read?id={key}", headers=headers))
        wait_events(server, key)  # the app runs, and has not read yet
        assert no_bytes_within(conn, 0.3), "an answer came before the app read the body"
        httpx.get(f"{server.url}/open-gate", params={"id": key}, timeout=TIMEOUT)
        assert conn.read_response().status == 100
        conn.send(b"hello")
        final = conn.read_response()
        assert (final.status, final.body) == (200, b"read hello")


@coachwhip_only("sends 100 Continue as soon as it has read the head, before the app runs")
def test_no_100_continue_when_the_app_does_not_read(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        headers = ("Expect: 100-continue", "Content-Length: 5")
        conn.send(request("POST", "/no-read", headers=headers))
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"not read")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_100mb_upload_read_in_64k_pieces_keeps_memory_flat(start: Start, framing: str):
    upload_server = start("--threads", "2", "--no-access-log")
    url = f"{upload_server.url}/upload"
    warm = httpx.post(url, content=upload_blocks(2 * MIB), timeout=30)  # first-request allocations
    assert warm.status_code == 200
    total = 100 * 1000 * 1000
    rss = PeakRss(upload_server)
    headers = {"content-length": str(total)} if framing == "content-length" else {}
    response = httpx.post(
        url, content=upload_blocks(total, every=rss.sample), headers=headers, timeout=45
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["bytes"], data["sha256"]) == (total, blocks_digest(total))
    assert data["largest"] <= 64 * 1024 and data["reads"] >= total // (64 * 1024)
    bound = 40 + (48 if SANITIZED else 0)  # ASan: its quarantine, an allocator that keeps memory
    assert rss.growth_mib < bound, f"the server grew {rss.growth_mib:.0f} MiB over 100 MB"


# --- wsgi.errors ----------------------------------------------------------------------------------


def test_wsgi_errors_lines_reach_the_log(server: ServerProcess):
    key = unique("err")
    assert httpx.get(f"{server.url}/errors", params={"id": key}, timeout=TIMEOUT).text == "written"
    for suffix in ("write", "lines-1", "lines-2", "part-a/part-b"):
        server.wait_for_line(rf"wsgi-errors-{key}-{re.escape(suffix)}$", TIMEOUT)


@coachwhip_only("copies wsgi.errors to stderr as written, with no level")
def test_wsgi_errors_lines_are_logged_at_error(server: ServerProcess):
    key = unique("err")
    since = server.mark()
    assert httpx.get(f"{server.url}/errors", params={"id": key}, timeout=TIMEOUT).text == "written"
    for suffix in ("write", "lines-1", "lines-2", "part-a/part-b"):
        server.wait_for_line(rf"{ERROR_RE}.*wsgi-errors-{key}-{re.escape(suffix)}$", TIMEOUT, since)


# --- the response ---------------------------------------------------------------------------------


def test_write_then_the_iterable(server: ServerProcess):
    response = exchange(server, request("GET", "/write"))
    assert (response.status, response.body) == (200, b"one-two-three")


def test_generator_body_is_chunked_on_http11(server: ServerProcess):
    response = exchange(server, request("GET", "/gen?n=5&size=10"))
    assert response.status == 200
    assert response.chunked and response.header("content-length") is None
    assert response.body == b"".join(bytes([65 + i]) * 10 for i in range(5))


def test_generator_body_is_close_delimited_on_http10(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(request("GET", "/gen?n=4&size=1000", version="1.0"))
        response = conn.read_response()  # reads to EOF: fails if the server does not close
        assert response.header("transfer-encoding") is None
        assert response.header("content-length") is None
        assert response.body == b"".join(bytes([65 + i]) * 1000 for i in range(4))
        assert conn.eof


def test_status_code_and_headers_are_the_apps(server: ServerProcess):
    response = exchange(server, request("GET", "/status?s=299+Custom+Reason"))
    assert response.status == 299
    assert response.header("x-app-header") == "kept as given"
    assert response.header_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.body == b"status 299 Custom Reason"


@pytest.mark.parametrize("status", ["299 Custom Reason", "200 Fine Thanks", "404 Nowhere"])
def test_reason_phrase_is_the_apps(server: ServerProcess, status: str):
    """PEP 3333: status is "a Status-Code and a Reason-Phrase"; the server sends both."""
    response = exchange(server, request("GET", f"/status?s={status.replace(' ', '+')}"))
    assert f"{response.status} {response.reason}" == status


def test_app_content_length_is_used(server: ServerProcess):
    response = exchange(server, request("GET", "/length"))
    assert response.header("content-length") == "21" and not response.chunked
    assert response.body == b"hello, content-length"


@coachwhip_only("sends a one-item body without Content-Length chunked")
def test_single_chunk_body_gets_a_content_length(server: ServerProcess):
    response = exchange(server, request("GET", "/single"))
    assert response.header("content-length") == "16" and not response.chunked
    assert response.body == b"one single chunk"


@pytest.mark.parametrize(
    "cl",
    ["0", "1", "1&empty=1"],
    ids=["no-content-length", "content-length", "content-length-no-body"],
)
def test_head_sends_no_body(server: ServerProcess, cl: str):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(request("HEAD", f"/head?cl={cl}"))
        response = conn.read_response(head=True)
        assert response.status == 200
        assert response.header("content-length") in (None, "20")
        if (response.header("connection") or "").lower() == "close":
            assert conn.read_to_eof(TIMEOUT) == b"", "body bytes after a HEAD response"
            return
        # nothing of the body may sit in front of the next response
        conn.send(request("GET", "/ok"))
        follow = conn.read_response()
        assert (follow.status, follow.body) == (200, b"ok")


def test_close_is_called_after_success(server: ServerProcess):
    key = unique("close-ok")
    response = exchange(server, request("GET", f"/closing?id={key}&mode=ok"))
    assert (response.status, response.body) == (200, b"c" * 30)
    assert wait_events(server, key) == [{"closed": 3}]
    time.sleep(0.2)  # a second close() would come right after the first
    assert events(server, key) == [{"closed": 3}]


def test_close_is_called_after_an_exception_in_iteration(server: ServerProcess):
    key = unique("close-raise")
    _, raw = fetch_raw(server, f"/m/raise-in-iteration?id={key}")
    check_wire(raw)
    assert wait_events(server, key) == [{"closed": 2}]
    assert_still_serving(server)


def test_close_is_called_when_the_client_goes_away(server: ServerProcess):
    key = unique("close-gone")
    conn = RawConnection(server.host, server.port, timeout=TIMEOUT)
    conn.send(request("GET", f"/closing?id={key}&mode=stream"))
    assert conn.read_head().status == 200
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # a reset, with the response far from done
    found = poll(
        lambda: next((e for e in events(server, key) if "closed" in e), None),
        10,
        interval=0.05,
        what="close() after the client left",
    )
    assert found["closed"] < 4096, found
    assert not any("exhausted" in e for e in events(server, key))
    assert_still_serving(server)


def test_exc_info_before_the_head_replaces_the_status(server: ServerProcess):
    response = exchange(server, request("GET", "/exc-before"))
    assert (response.status, response.body) == (500, b"replaced")
    assert response.header("x-replaced") == "yes"


@coachwhip_only("adds the second call's headers to the first's (PEP 3333: replace them)")
def test_exc_info_before_the_head_replaces_the_headers(server: ServerProcess):
    response = exchange(server, request("GET", "/exc-before"))
    assert response.status == 500
    assert response.header("x-first") is None, response.headers


def test_exc_info_after_the_head_is_reraised(server: ServerProcess):
    key = unique("exc-after")
    response, raw = fetch_raw(server, f"/exc-after?id={key}")
    check_wire(raw)
    assert response is None, "the response should have been cut"
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"partial " in raw and b"did not re-raise" not in raw
    assert wait_events(server, key) == [{"raised": "ValueError", "same": True}]
    assert_still_serving(server)


def test_second_start_response_without_exc_info_raises(server: ServerProcess):
    response = exchange(server, request("GET", "/start-twice"))
    assert response.status == 200
    assert response.body.startswith(b"second call raised: ")
    assert response.body != b"second call raised: nothing"


# --- wsgi.file_wrapper ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "part"),
    [("", slice(None)), ("&length=1000", slice(0, 1000)), ("&offset=100", slice(100, None))],
    ids=["whole", "content-length", "from-position"],
)
def test_file_wrapper_sends_a_real_file(
    server: ServerProcess, data_file: tuple[Path, bytes], extra: str, part: slice
):
    path, data = data_file
    key = unique("file")
    response = exchange(server, request("GET", f"/file?path={path}&id={key}{extra}"))
    assert response.status == 200
    assert response.body == data[part]
    assert wait_events(server, key) == ["file closed"]


def test_file_wrapper_over_bytesio(server: ServerProcess):
    key = unique("bytesio")
    response = exchange(server, request("GET", f"/bytesio?size=1000&blksize=3&id={key}"))
    assert (response.status, response.body) == (200, bytes(i % 251 for i in range(1000)))
    assert wait_events(server, key) == ["bytesio closed"]


# --- app mistakes ---------------------------------------------------------------------------------

HOPS = (
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-Authenticate",
    "Proxy-Authorization",
)
DROPS_HOPS = "drops hop-by-hop headers silently and answers 200"
SILENT = "logs nothing when the body and Content-Length disagree"
NO_PATH = "logs 'Error handling request' with no path once the head is out (none in the traceback)"
# (target, expected, why gunicorn's response differs, why gunicorn's log differs).
# expected: "500" a whole 500 response; "cut" a 200 head, then the connection closes before the
# response is whole; "500-or-cut" either; "cut-at-length" a 200 whose body is the first
# Content-Length bytes; "500-or-cut-at-length" either of those; "any" whatever, as long as it is
# well formed.
MISTAKES: list[tuple[str, str, str | None, str | None]] = [
    ("/m/no-start-response", "500", None, None),
    ("/m/status-int", "500", None, None),
    ("/m/status-bytes", "500", None, None),
    ("/m/status-no-code", "500", None, None),
    ("/m/status-four-digits", "500", None, None),
    ("/m/header-name-bytes", "500", None, None),
    ("/m/header-value-int", "500", None, None),
    ("/m/header-value-bytes", "500", None, None),
    *[(f"/m/hop?name={hop}", "500", DROPS_HOPS, DROPS_HOPS) for hop in HOPS],
    ("/m/header-crlf", "500", None, None),
    ("/m/header-lf", "500", None, None),
    ("/m/header-cr", "500", None, None),
    ("/m/header-name-lf", "500", None, None),
    (
        "/m/yield-str-first",
        "500",
        "sends the head before it checks the first item's type, then closes",
        NO_PATH,
    ),
    ("/m/yield-str-later", "cut", None, NO_PATH),
    ("/m/body-longer", "cut-at-length", None, SILENT),
    ("/m/body-longer-at-once", "500-or-cut-at-length", None, SILENT),
    ("/m/body-shorter", "cut", None, SILENT),
    ("/m/raise-before-start", "500", None, None),
    ("/m/raise-after-start", "500", None, None),
    ("/m/raise-in-first-next", "500", None, None),
    ("/m/raise-in-iteration", "500-or-cut", None, None),
    ("/m/raise-in-close", "any", None, None),
    ("/m/coroutine", "500", None, None),
]


def case_id(target: str) -> str:
    return target.removeprefix("/m/").replace("?name=", "-")


def mistake_params(*, log: bool) -> list[Any]:
    params = []
    for target, expected, response_differs, log_differs in MISTAKES:
        why = log_differs if log else response_differs
        marks = [coachwhip_only(why)] if why else []
        values = (target,) if log else (target, expected)
        params.append(pytest.param(*values, marks=marks, id=case_id(target)))
    return params


@pytest.mark.parametrize(("target", "expected"), mistake_params(log=False))
def test_app_mistake_gives_a_500_or_a_cut_never_a_malformed_response(
    server: ServerProcess, target: str, expected: str
):
    response, raw = fetch_raw(server, target)
    check_wire(raw)
    whole_500 = response is not None and response.status == 500
    cut_200 = response is None and raw.startswith(b"HTTP/1.1 200 ")
    if expected == "500":
        assert whole_500, raw[:500]
    elif expected == "cut":
        assert cut_200, raw[:500]
    elif expected == "500-or-cut":
        assert whole_500 or cut_200, raw[:500]
    elif expected == "cut-at-length":
        assert response is not None and (response.status, response.body) == (200, b"01234"), raw
    elif expected == "500-or-cut-at-length":
        assert response is not None, raw
        assert whole_500 or (response.status, response.body) == (200, b"01234"), raw
    if whole_500:
        assert response is not None and b"Traceback" not in response.body
    assert_still_serving(server)


def route_pattern(target: str) -> str:
    """The route's path or its handler's name, one of which the log must show."""
    path = target.split("?", 1)[0]
    handler = "m_" + path.removeprefix("/m/").replace("-", "_")
    return rf"{re.escape(path)}(?![\w-])|\b{handler}\b"


@pytest.mark.parametrize("target", mistake_params(log=True))
def test_app_mistake_is_logged_as_an_error_naming_the_route(server: ServerProcess, target: str):
    since = server.mark()
    fetch_raw(server, target)
    server.wait_for_line(ERROR_RE, TIMEOUT, since)
    poll(
        lambda: server.find_line(route_pattern(target), since, skip_access=True),
        TIMEOUT,
        what=f"the log to name {target}",
    )


@coachwhip_only("words the error its own way")
def test_coroutine_error_names_the_asgi_interface(server: ServerProcess):
    since = server.mark()
    response, _ = fetch_raw(server, "/m/coroutine")
    assert response is not None and response.status == 500
    server.wait_for_line(
        r"returned a coroutine\b.*\bit is an ASGI app\b.*\buse --interface asgi3\b", TIMEOUT, since
    )


@coachwhip_only("keeps the connection until its keep-alive timeout (5 s here)")
def test_body_shorter_than_content_length_closes_the_connection_at_once(server: ServerProcess):
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(request("GET", "/m/body-shorter"))
        head = conn.read_head()
        assert head.status == 200
        rest = conn.read_to_eof(2.5)  # TimeoutError if the connection stays open
        assert rest == b"012", rest


def test_body_longer_than_content_length_is_cut_and_the_connection_stays_usable(
    server: ServerProcess,
):
    # PEP 3333: the server stops iterating once Content-Length bytes went out. What went out is
    # a complete, well-formed response, so the connection may carry the next one.
    with RawConnection(server.host, server.port, timeout=TIMEOUT) as conn:
        conn.send(request("GET", "/m/body-longer"))
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"01234")
        conn.send(request("GET", "/ok"))
        second = conn.read_response()
        assert (second.status, second.body) == (200, b"ok")


# --- threads, limits, shutdown --------------------------------------------------------------------


def concurrent_gets(server: ServerProcess, targets: list[str]) -> list[httpx.Response | None]:
    """GETs `targets` at once, each on its own connection; the responses, in order."""
    results: list[httpx.Response | None] = [None] * len(targets)
    barrier = threading.Barrier(len(targets))

    def one(index: int) -> None:
        with httpx.Client(timeout=10) as client:
            barrier.wait(5)
            results[index] = client.get(f"{server.url}{targets[index]}")

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(15)
    return results


def test_two_threads_serve_four_slow_requests_two_at_a_time(start: Start):
    threaded = start("--threads", "2")
    assert_still_serving(threaded)
    keys = [unique("t") for _ in range(4)]
    began = time.monotonic()
    results = concurrent_gets(threaded, [f"/sleep?s=0.5&id={key}" for key in keys])
    elapsed = time.monotonic() - began
    assert [r.status_code if r else None for r in results] == [200] * 4
    # two at a time: ~1.0 s; one at a time would be 2.0 s, four at a time 0.5 s
    if not 0.9 <= elapsed < 1.75:
        calls = [events(threaded, key) for key in keys]
        first = min(call[0]["began"] for call in calls if call)
        seen = [
            f"{c['thread']} {c['began'] - first:.2f}-{c['ended'] - first:.2f} s"
            for call in calls
            for c in call
        ]
        raise AssertionError(f"four 0.5 s requests on two threads took {elapsed:.2f} s: {seen}")


@coachwhip_only("has no --limit-concurrency (extra requests wait for a thread)")
def test_limit_concurrency_answers_503_past_the_limit(start: Start):
    limited = start("--threads", "4", "--limit-concurrency", "2")
    keys = [unique("slow") for _ in range(2)]
    conns = [RawConnection(limited.host, limited.port, timeout=10) for _ in keys]
    try:
        for conn, key in zip(conns, keys, strict=True):
            since = limited.mark()
            conn.send(request("GET", f"/sleep?s=1.5&id={key}"))
            limited.wait_for_line(rf"WSGIAPP sleeping {key}$", TIMEOUT, since)
        began = time.monotonic()
        for _ in range(2):
            extra = httpx.get(f"{limited.url}/ok", timeout=TIMEOUT)
            assert extra.status_code == 503, (extra.status_code, extra.text)
        assert time.monotonic() - began < 1.0, "the 503s should not wait for a thread"
        for conn in conns:
            response = conn.read_response()
            assert (response.status, response.body) == (200, b"slept")
    finally:
        for conn in conns:
            conn.close()
    assert_still_serving(limited)


def test_sigterm_lets_a_running_request_finish(start: Start):
    stopping = start("--threads", "2")
    key = unique("term")
    with RawConnection(stopping.host, stopping.port, timeout=15) as conn:
        since = stopping.mark()
        conn.send(request("GET", f"/sleep?s=1.5&id={key}"))
        stopping.wait_for_line(rf"WSGIAPP sleeping {key}$", TIMEOUT, since)
        stopping.send_signal(signal.SIGTERM)
        response = conn.read_response(timeout=10)
        assert (response.status, response.body) == (200, b"slept")
    assert stopping.wait_exit(15) == 0


def test_sigterm_does_not_wait_past_the_graceful_timeout(start: Start):
    stopping = start("--threads", "2", "--timeout-graceful-shutdown", "1")
    key = unique("term-late")
    with RawConnection(stopping.host, stopping.port, timeout=15) as conn:
        since = stopping.mark()
        conn.send(request("GET", f"/sleep?s=8&id={key}"))
        stopping.wait_for_line(rf"WSGIAPP sleeping {key}$", TIMEOUT, since)
        began = time.monotonic()
        stopping.send_signal(signal.SIGTERM)
        stopping.wait_exit(6)  # the app's thread still sleeps: the process must not wait for it
        assert time.monotonic() - began < 5, "the server waited for the app past its timeout"
        try:
            conn.read_response(timeout=2)
        except (IncompleteResponse, TimeoutError):
            pass  # cut: expected
        else:
            raise AssertionError("a whole response came from a request still sleeping")


# --- the log of the shared server -----------------------------------------------------------------


@coachwhip_only("prints no Interface line")
def test_startup_line_names_the_interface_and_threads(server: ServerProcess):
    assert server.find_line(r"INFO: +Interface: wsgi \(--interface wsgi\), 8 threads$"), (
        server.output
    )


def test_validator_saw_every_iterable_closed(server: ServerProcess):
    """Last on purpose: wsgiref's validator complains on stderr about an iterable never closed."""
    assert_still_serving(server)
    assert server.find_line(r"garbage collected without being closed|WSGIWarning") is None, (
        server.output
    )
