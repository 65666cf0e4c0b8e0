"""Default response headers: --header NAME:VALUE (uvicorn's flag), COACHWHIP_HEADER,
UVICORN_HEADERS, the config file's `header` key and run(headers=[(name, value), ...]).

End to end, on a real server: the fields go on every final response over HTTP/1.1 (httpx and a
raw socket, which sees their order: server, date, the operator's fields, then the app's), over
HTTP/2 (h2c with prior knowledge), on the WebSocket handshake (the 101, and the 200 of an
extended CONNECT), and on the engine's own answers (400, 413, 414, 431, the /-/ probes; as
uvicorn's httptools protocol does on its 400). uvicorn's semantics: the name is lower-cased,
split at the first ':'; a configured `server` replaces coachwhip's (even with
--no-server-header), a name the app sends too appears twice (the operator's first), except
`server`, where the app's wins (coachwhip's rule for its own server field). Refused, with one
line and exit status 2: no ':', an empty or invalid name, control characters or non-Latin-1 in
the value, and the fields the engine owns (framing, connection, upgrade, date, sec-websocket-*).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from coachwhip import compat, sources
from coachwhip.config import ConfigError
from conftest import Serve
from harness import HERE, RawConnection, ServerProcess, request, run_cli, server_env
from test_http2 import H2Client
from websockets.sync.client import connect

# An app that says what it was asked to: /server and /frame send their own server and
# x-frame-options fields; a WebSocket is accepted with a field of its own and echoes once.
APP = """
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"ws")]})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text")})
            await send({"type": "websocket.close", "code": 1000})
        return
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/server":
        headers.append((b"server", b"app"))
    if scope["path"] == "/frame":
        headers.append((b"x-frame-options", b"SAMEORIGIN"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})
"""
FLAGS = (
    "--header",
    "X-Frame-Options: DENY",
    "--header",
    "Cache-Control:no-cache, no-store",  # commas and spaces stay in the value
    "--header",
    "x-multi: a",
    "--header",
    "X-Multi:  b\t",  # OWS around the value is not part of it
)
EXPECTED = [
    ("x-frame-options", "DENY"),
    ("cache-control", "no-cache, no-store"),
    ("x-multi", "a"),
    ("x-multi", "b"),
]
OURS = {name for name, _ in EXPECTED}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hdrapp.py").write_text(APP)
    return tmp_path


def start(serve: Serve, app_dir: Path, *flags: str, **kw: Any) -> ServerProcess:
    return serve("hdrapp:app", "--lifespan", "off", *flags, cwd=app_dir, **kw)


def fields(response: httpx.Response) -> list[tuple[str, str]]:
    """The response's fields in order, names lower-cased (httpx keeps both)."""
    return [(name.lower(), value) for name, value in response.headers.multi_items()]


def raw_head(server: ServerProcess, data: bytes) -> list[str]:
    """The header lines of the first response to `data`, as sent, in order."""
    with RawConnection(server.host, server.port) as conn:
        conn.send(data)
        response = conn.read_response()
    head = response.raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return head.split("\r\n")


def ours_in(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in pairs if name in OURS]


def ours_besides_no_store(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The engine's answers carry `cache-control: no-store` of their own (after ours)."""
    assert ("cache-control", "no-store") in pairs
    mine = ours_in(pairs)
    mine.remove(("cache-control", "no-store"))
    return mine


# --- HTTP/1.1 -------------------------------------------------------------------------------


def test_http1_every_response_carries_them_after_server_and_date(
    serve: Serve, app_dir: Path
) -> None:
    server = start(serve, app_dir, *FLAGS)
    response = httpx.get(server.url + "/", timeout=5)
    assert response.text == "ok"
    assert ours_in(fields(response)) == EXPECTED
    lines = raw_head(server, request("GET", "/"))
    assert lines[0] == "HTTP/1.1 200 OK"
    assert lines[1] == "server: coachwhip"
    assert lines[2].startswith("date: ")
    assert lines[3:7] == [
        "x-frame-options: DENY",
        "cache-control: no-cache, no-store",
        "x-multi: a",
        "x-multi: b",
    ]
    assert lines[7] == "content-type: text/plain"  # then the app's own


def test_a_name_the_app_sends_too_appears_twice_the_operators_first(
    serve: Serve, app_dir: Path
) -> None:
    server = start(serve, app_dir, *FLAGS)
    response = httpx.get(server.url + "/frame", timeout=5)
    assert response.headers.get_list("x-frame-options") == ["DENY", "SAMEORIGIN"]


def test_head_and_keep_alive_responses_carry_them_too(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS)
    with httpx.Client(timeout=5) as client:
        for method in ("GET", "HEAD", "GET"):
            response = client.request(method, server.url + "/")
            assert ours_in(fields(response)) == EXPECTED, method


# --- HTTP/2 ---------------------------------------------------------------------------------


def test_http2_prior_knowledge(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS, "--header", "Server: edge")
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        response = client.get(server.url + "/")
        assert response.http_version == "HTTP/2"
        assert ours_in(fields(response)) == EXPECTED
        assert response.headers.get_list("server") == ["edge"]
        # The app's server wins over the configured one, as over HTTP/1.1.
        response = client.get(server.url + "/server")
        assert response.headers.get_list("server") == ["app"]
        response = client.get(server.url + "/frame")
        assert response.headers.get_list("x-frame-options") == ["DENY", "SAMEORIGIN"]


# --- the WebSocket handshake ----------------------------------------------------------------


def test_websocket_101_carries_them(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS)
    with connect(f"ws://{server.host}:{server.port}/ws", open_timeout=5) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        assert ws.response is not None
        assert ws.response.status_code == 101
        headers = [(k.lower(), v) for k, v in ws.response.headers.raw_items()]
    assert ours_in(headers) == EXPECTED
    assert ("x-app", "ws") in headers
    assert [v for k, v in headers if k == "server"] == ["coachwhip"]


def test_websocket_over_http2_200_carries_them(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS)
    with H2Client(server) as client:
        sid = client.request(
            "/ws",
            method="CONNECT",
            headers=[(":protocol", "websocket"), ("sec-websocket-version", "13")],
            end=False,
        )
        stream = client.streams[sid]
        client.wait(lambda: stream.headers or stream.done, 5, "the CONNECT response")
    assert stream.status == 200
    assert ours_in(stream.headers) == EXPECTED
    assert ("x-app", "ws") in stream.headers


# --- the engine's own answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
        (request("POST", "/", headers=["Content-Length: 100"]), 413),
        (request("GET", "/" + "a" * 300), 414),
        (request("GET", "/", headers=["X-Big: " + "b" * 3000]), 431),
    ],
    ids=["400", "413", "414", "431"],
)
def test_engine_errors_carry_them(serve: Serve, app_dir: Path, data: bytes, status: int) -> None:
    server = start(
        serve,
        app_dir,
        *FLAGS,
        "--limit-request-body",
        "10",
        "--limit-request-line",
        "200",
        "--limit-request-header-size",
        "2048",
    )
    lines = raw_head(server, data)
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert lines[1] == "server: coachwhip" and lines[2].startswith("date: ")
    assert lines[3:7] == [f"{name}: {value}" for name, value in EXPECTED]
    assert "connection: close" in lines


def test_probes_carry_them_over_both_protocols(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS, "--health")
    response = httpx.get(server.url + "/-/health", timeout=5)
    assert response.status_code == 200
    assert ours_besides_no_store(fields(response)) == EXPECTED
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        response = client.get(server.url + "/-/health")
    assert response.http_version == "HTTP/2" and response.status_code == 200
    assert ours_besides_no_store(fields(response)) == EXPECTED


def test_http2_engine_answer_carries_them(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, *FLAGS, "--http2-max-headers-size", "1024")
    with H2Client(server) as client:
        stream = client.fetch("/", headers=[("x-big", "b" * 2000)])
    assert stream.status == 431
    assert ours_besides_no_store(stream.headers) == EXPECTED


# --- server and date ------------------------------------------------------------------------


def test_server_replaces_coachwhips_and_the_apps_wins(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir, "--header", "Server: edge/1.0", "--header", "x-a: 1")
    response = httpx.get(server.url + "/", timeout=5)
    assert response.headers.get_list("server") == ["edge/1.0"]
    assert response.headers.get_list("x-a") == ["1"]
    assert raw_head(server, request("GET", "/"))[1] == "server: edge/1.0"
    assert httpx.get(server.url + "/server", timeout=5).headers.get_list("server") == ["app"]
    lines = raw_head(server, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
    assert lines[0].startswith("HTTP/1.1 400 ") and lines[1] == "server: edge/1.0"


def test_a_configured_server_is_sent_even_with_no_server_header(
    serve: Serve, app_dir: Path
) -> None:
    # uvicorn: --no-server-header drops its own server field, not the one --header gives.
    server = start(serve, app_dir, "--no-server-header", "--header", "server: edge")
    assert httpx.get(server.url + "/", timeout=5).headers.get_list("server") == ["edge"]
    plain = start(serve, app_dir, "--no-server-header", "--no-date-header", "--header", "x-a: 1")
    response = httpx.get(plain.url + "/", timeout=5)
    assert "server" not in response.headers and "date" not in response.headers
    assert response.headers.get_list("x-a") == ["1"]


# --- the other sources: variables, the config file, run() -----------------------------------


def test_coachwhip_header_variable_one_per_line(serve: Serve, app_dir: Path) -> None:
    env = {"COACHWHIP_HEADER": "X-Frame-Options: DENY\nCache-Control: no-cache, no-store\n"}
    server = start(serve, app_dir, "--workers", "2", env=env)  # the supervisor passes them on
    response = httpx.get(server.url + "/", timeout=5)
    assert ours_in(fields(response)) == EXPECTED[:2]


def test_uvicorn_headers_variable_splits_on_whitespace_as_click_does(
    serve: Serve, app_dir: Path
) -> None:
    server = start(serve, app_dir, env={"UVICORN_HEADERS": "X-Frame-Options:DENY x-multi:a"})
    response = httpx.get(server.url + "/", timeout=5)
    assert ours_in(fields(response)) == [("x-frame-options", "DENY"), ("x-multi", "a")]


def test_flag_wins_over_variable(serve: Serve, app_dir: Path) -> None:
    server = start(
        serve, app_dir, "--header", "x-multi: a", env={"COACHWHIP_HEADER": "X-Frame-Options: x"}
    )
    response = httpx.get(server.url + "/", timeout=5)
    assert ours_in(fields(response)) == [("x-multi", "a")]


def test_config_file_key(serve: Serve, app_dir: Path) -> None:
    config = app_dir / "cw.toml"
    config.write_text('header = ["X-Frame-Options: DENY", "Cache-Control: no-cache, no-store"]\n')
    server = start(serve, app_dir, "-c", str(config))
    assert ours_in(fields(httpx.get(server.url + "/", timeout=5))) == EXPECTED[:2]
    (app_dir / "pyproject.toml").write_text('[tool.coachwhip]\nheader = "x-multi: a"\n')
    server = start(serve, app_dir)
    assert ours_in(fields(httpx.get(server.url + "/", timeout=5))) == [("x-multi", "a")]


def test_run_headers_keyword(app_dir: Path) -> None:
    script = (
        "import coachwhip\n"
        "coachwhip.run('hdrapp:app', port=0, lifespan='off', headers=[('X-Frame-Options', "
        "'DENY'), ['Cache-Control', 'no-cache, no-store'], ('Server', 'edge')])\n"
    )
    server = ServerProcess("", python_args=["-c", script], cwd=app_dir)
    try:
        server.wait_ready()
        response = httpx.get(server.url + "/", timeout=5)
        assert ours_in(fields(response)) == EXPECTED[:2]
        assert response.headers.get_list("server") == ["edge"]
    finally:
        server.kill()


# --- refused, with one line -----------------------------------------------------------------

EXAMPLE = "e.g. --header 'X-Frame-Options: DENY'"
TOKEN = "use letters, digits and !#$%&'*+-.^_`|~ only, no spaces (RFC 9110 §5.1)"
CONNECTION = (
    "is about the connection, which coachwhip manages (and HTTP/2 forbids the field); drop it "
    "(--timeout-keep-alive sets how long idle connections stay open)"
)
FRAMING = "coachwhip frames each response itself (content-length or chunked); drop it"
REFUSED = [
    ("X-Frame-Options", f"expected NAME:VALUE, with a ':' after the name; {EXAMPLE}"),
    (": DENY", f"the name before ':' is empty; expected NAME:VALUE, {EXAMPLE}"),
    (" \t: DENY", f"the name before ':' is empty; expected NAME:VALUE, {EXAMPLE}"),
    ("X Frame: DENY", f"'X Frame' is not a valid field name: {TOKEN}"),
    ("x(y): 1", f"'x(y)' is not a valid field name: {TOKEN}"),
    (
        "x-a: 1\r\nx-evil: 2",
        "the value contains the control character '\\r'; a field value is one line of text "
        "(tabs allowed)",
    ),
    (
        "x-a: 1\x7f",  # (a NUL cannot be passed in argv: the engine's test has it)
        "the value contains the control character '\\x7f'; a field value is one line of text "
        "(tabs allowed)",
    ),
    (
        "x-a: café €",
        "the value contains '€', which is not Latin-1 (the bytes HTTP fields carry); "
        "percent-encode it or write it in ASCII",
    ),
    ("Content-Length: 5", FRAMING),
    ("transfer-encoding: chunked", FRAMING),
    ("Connection: close", f"connection {CONNECTION}"),
    ("keep-alive: timeout=5", f"keep-alive {CONNECTION}"),
    ("proxy-connection: close", f"proxy-connection {CONNECTION}"),
    ("Upgrade: h2c", "coachwhip answers protocol upgrades (WebSocket, h2c) itself; drop it"),
    ("TE: trailers", "te is a request field; drop it"),
    (
        "Trailer: x-sum",
        "trailer announces the trailer fields of one response; set it in the app, on the "
        "responses that send trailers",
    ),
    (
        "Date: Thu, 01 Jan 1970 00:00:00 GMT",
        "coachwhip writes the current date on every response; drop it (--no-date-header leaves "
        "it out)",
    ),
    (
        "Sec-WebSocket-Protocol: chat",
        "coachwhip answers the WebSocket handshake itself; drop it (the app names its "
        "subprotocol in websocket.accept)",
    ),
    ("Server:  ", "server needs a value; --no-server-header sends no server field"),
]


@pytest.mark.parametrize(("item", "message"), REFUSED, ids=[item for item, _ in REFUSED])
def test_refused_on_the_command_line(item: str, message: str) -> None:
    result = run_cli("--port", "0", "--header", "x-ok: 1", "--header", item, "hdrapp:app")
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [f"coachwhip: error: --header {item!r}: {message}"]
    assert result.stdout == ""


def test_server_twice_is_refused() -> None:
    result = run_cli("--port", "0", "--header", "server: a", "--header", "Server: b", "x:app")
    assert result.returncode == 2
    assert result.stderr_lines == [
        "coachwhip: error: --header: server is given twice ('server: a', 'Server: b'); keep one"
    ]


def test_refusals_name_their_source(tmp_path: Path) -> None:
    result = run_cli("--port", "0", "x:app", env={"COACHWHIP_HEADER": "x-a: 1\nDate: x"})
    assert result.returncode == 2
    assert result.stderr_lines == [
        "coachwhip: error: COACHWHIP_HEADER 'Date: x': coachwhip writes the current date on "
        "every response; drop it (--no-date-header leaves it out)"
    ]
    result = run_cli("--port", "0", "x:app", env={"UVICORN_HEADERS": "X-Frame-Options: DENY"})
    assert result.returncode == 2  # click splits it: 'X-Frame-Options:' and 'DENY'
    assert result.stderr_lines == [
        f"coachwhip: error: UVICORN_HEADERS 'DENY': expected NAME:VALUE, with a ':' after the "
        f"name; {EXAMPLE}"
    ]
    config = tmp_path / "cw.toml"
    config.write_text('header = ["x a: 1"]\n')
    result = run_cli("--port", "0", "-c", str(config), "x:app")
    assert result.returncode == 2
    assert result.stderr_lines == [
        f"coachwhip: error: {config}: header 'x a: 1': 'x a' is not a valid field name: {TOKEN}"
    ]
    with pytest.raises(ConfigError) as raised:
        sources.load(compat.from_keywords({"headers": [("x a", "1")]})[0], environ={})
    assert str(raised.value) == f"headers 'x a:1': 'x a' is not a valid field name: {TOKEN}"
    with pytest.raises(ConfigError) as raised:
        compat.from_keywords({"headers": [("a:b", "1")]})
    assert str(raised.value) == "headers ('a:b', '1'): 'a:b' is not a valid field name (no ':')"
    with pytest.raises(ConfigError) as raised:
        compat.from_keywords({"headers": [("x-a",)]})
    assert str(raised.value) == (
        "headers: expected (name, value) pairs of str, e.g. [('X-Frame-Options', 'DENY')], "
        "got ('x-a',)"
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("date", "x")], "headers[0] ('date', 'x'): the server writes the current date on "),
        ([("x-a", "1"), ("x a", "1")], "headers[1] ('x a', '1'): header name is not a token"),
        ([("x-a", "1\n")], "headers[0] ('x-a', '1\\n'): header value contains CR, LF, NUL"),
        ([("x-a", "€")], "headers[0]: expected a (name, value) pair of Latin-1 str, got"),
        (["x-a: 1"], "headers[0]: expected a (name, value) pair of Latin-1 str, got 'x-a: 1'"),
        ([("server", "a"), ("server", "b")], "headers[1] ('server', 'b'): server is given twice"),
    ],
)
def test_the_engine_checks_them_again(headers: list[Any], message: str) -> None:
    """_core.Server's own check, for callers that skip coachwhip.config. In a subprocess with
    the servers' environment, so that the sanitizer run checks it too (and the test process
    never loads the sanitized extension, which needs its runtime preloaded)."""
    script = f"""
import asyncio
import coachwhip._core as core
loop = asyncio.new_event_loop()
try:
    core.Server(lambda *a: None, loop, lambda exc: None, headers={headers!r})
except ValueError as exc:
    print(exc)
finally:
    loop.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=HERE,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(message), done.stdout


def test_no_headers_leave_responses_as_they_were(serve: Serve, app_dir: Path) -> None:
    server = start(serve, app_dir)
    lines = raw_head(server, request("GET", "/"))
    assert lines[1] == "server: coachwhip" and lines[2].startswith("date: ")
    assert lines[3:] == ["content-type: text/plain", "content-length: 2"]
