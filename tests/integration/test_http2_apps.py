"""Framework apps over HTTP/2 (README "HTTP/2": ASGI and WSGI apps see the same thing over both
protocols), with real clients: httpx (HTTP/1.1, h2c by prior knowledge, h2 over TLS by ALPN), the
`h2` library (test_http2.H2Client) and headless Chromium.

- The Starlette and FastAPI checks of test_starlette_fastapi.py, imported and run as they are
  against apps/star.py and apps/fast.py, over h2c and over h2; every response they get must be
  HTTP/2 (a client event hook records each response's version). The two that are HTTP/1.1-bound
  (a chunked streaming response, concurrent clients) have HTTP/2 versions here.
- apps/h2_parity.py: one site written twice, in Starlette and in FastAPI (multipart and raw
  uploads, server-sent events released one at a time, cookies, redirects, HEAD, exception
  handlers and 500s, an exception in the middle of a stream, background tasks), and one set of
  checks run against both over HTTP/1.1, h2c and h2: the same tests pass over each protocol.
- WSGI over HTTP/2 (`--interface wsgi`): apps/wsgi_app.py (environ, a POST body, generator and
  write() bodies, wsgi.file_wrapper of a real file) and apps/wsgi_flask.py (routing, JSON, a
  stream released chunk by chunk, send_file), over h2c and h2.
- The demo app (demo/app.py) over HTTPS in headless Chromium, through the DevTools protocol as
  test_websocket_browser.py drives it: the page's navigation entry says `h2`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_starlette_fastapi as h1_checks
import websockets.asyncio.client
from conftest import Serve
from harness import HERE, ServerProcess, poll
from test_http2 import H2Client
from test_websocket_browser import DevTools, page_script
from test_websocket_browser import browser as browser  # the fixtures, reused
from test_websocket_browser import browser_url as browser_url
from tlscerts import Certs, client_context, wait_https

pytestmark = pytest.mark.timeout(60)

REPO = HERE.parents[1]
TIMEOUT = 20.0
MIB = 1024 * 1024
TRANSPORTS = ("http1", "h2c", "h2")
H2_TRANSPORTS = ("h2c", "h2")
VERSION = {"http1": "HTTP/1.1", "h2c": "HTTP/2", "h2": "HTTP/2"}
ASGI_VERSION = {"http1": "1.1", "h2c": "2", "h2": "2"}
ACCESS_PORT_RE = r'INFO:\s+127\.0\.0\.1:(\d+) - "GET {path} HTTP/2" 200'


# --- servers and clients -----------------------------------------------------------------------


class Pool:
    """Servers shared by the module's tests, started on first use: one per (app, TLS, flags)."""

    def __init__(self, certs: Certs) -> None:
        self.certs = certs
        self.servers: dict[tuple[Any, ...], ServerProcess] = {}

    def get(
        self, app: str, tls: bool, *args: str, env: dict[str, str] | None = None
    ) -> ServerProcess:
        key = (app, tls, args, tuple(sorted((env or {}).items())))
        if key not in self.servers:
            leaf = self.certs.ecdsa.args if tls else ()
            server = ServerProcess(app, *leaf, *args, env=env)
            try:
                wait_https(server)
            except BaseException:
                server.kill()
                raise
            self.servers[key] = server
        return self.servers[key]

    def kill(self) -> None:
        for server in self.servers.values():
            server.kill()


@pytest.fixture(scope="module")
def pool(certs: Certs) -> Iterator[Pool]:
    servers = Pool(certs)
    yield servers
    servers.kill()


def base_url(server: ServerProcess, transport: str) -> str:
    """Over TLS the name the certificate is for; on a plain port the address."""
    return f"https://localhost:{server.port}" if transport == "h2" else server.url


def client_for(
    server: ServerProcess,
    transport: str,
    certs: Certs,
    versions: list[str] | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """httpx over `transport`: "http1", "h2c" (prior knowledge) or "h2" (TLS, ALPN); every
    response's http_version is appended to `versions`."""
    seen = versions if versions is not None else []
    hooks = {"response": [lambda response: seen.append(response.http_version)]}
    tls: dict[str, Any] = {}
    if transport == "h2":
        tls = {"verify": client_context(certs, alpn=["h2", "http/1.1"])}
    return httpx.Client(
        http1=transport != "h2c",
        http2=transport != "http1",
        base_url=base_url(server, transport),
        trust_env=False,
        timeout=TIMEOUT,
        event_hooks=hooks,
        **tls,
        **kwargs,
    )


def h2_stream_ports(server: ServerProcess, path: str) -> list[int]:
    """The client ports of the access-log lines for `GET path` answered 200 over HTTP/2."""
    pattern = re.compile(ACCESS_PORT_RE.format(path=re.escape(path)))
    return [int(m.group(1)) for line in list(server.lines) if (m := pattern.search(line))]


# --- the checks of test_starlette_fastapi.py, over HTTP/2 ---------------------------------------

STAR_CHECKS = [
    h1_checks.test_starlette_routing,
    h1_checks.test_starlette_path_and_query_params,
    h1_checks.test_starlette_path_converter_mismatch_is_404,
    h1_checks.test_starlette_json_round_trip,
    h1_checks.test_starlette_method_not_allowed,
    h1_checks.test_starlette_background_task,  # its job name is fixed: one run per server
    h1_checks.test_starlette_lifespan_state,
    h1_checks.test_starlette_mount,
    h1_checks.test_starlette_404,
]
FAST_CHECKS = [
    h1_checks.test_fastapi_path_and_query_params,
    h1_checks.test_fastapi_validation_error_is_422,
    h1_checks.test_fastapi_pydantic_json_in_and_out,
    h1_checks.test_fastapi_invalid_json_body_is_422,
    h1_checks.test_fastapi_streaming_response,
    h1_checks.test_fastapi_background_task,
    h1_checks.test_fastapi_lifespan_state,
    h1_checks.test_fastapi_openapi_and_404,
    h1_checks.test_fastapi_small_upload,
]


def check_id(check: Callable[..., None]) -> str:
    return check.__name__.removeprefix("test_")


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
@pytest.mark.parametrize("check", STAR_CHECKS + FAST_CHECKS, ids=check_id)
def test_framework_check_over_http2(
    pool: Pool, certs: Certs, check: Callable[[httpx.Client], None], transport: str
) -> None:
    app = "apps.star:app" if check in STAR_CHECKS else "apps.fast:app"
    server = pool.get(app, transport == "h2")
    versions: list[str] = []
    with client_for(server, transport, certs, versions) as client:
        check(client)
    assert versions, "the check made no request"
    assert set(versions) == {"HTTP/2"}, versions


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_starlette_streaming_response_over_http2(pool: Pool, certs: Certs, transport: str) -> None:
    """test_starlette_streaming_response without its HTTP/1.1 framing: no transfer-encoding (a
    connection-specific field, RFC 9113 §8.2.2) and no content-length, the body in DATA frames."""
    server = pool.get("apps.star:app", transport == "h2")
    with client_for(server, transport, certs) as client:
        with client.stream("GET", "/numbers", params={"n": 100}) as response:
            assert response.http_version == "HTTP/2"
            assert response.status_code == 200
            assert "transfer-encoding" not in response.headers
            assert "content-length" not in response.headers
            lines = [line for line in response.iter_lines() if line]
    assert lines == [str(i) for i in range(100)]


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_fastapi_concurrent_streams_on_one_connection(
    pool: Pool, certs: Certs, transport: str
) -> None:
    """test_fastapi_concurrent_clients over HTTP/2: 8 threads share one client, so 40 requests
    are streams multiplexed on one connection (the access log shows one client port)."""
    server = pool.get("apps.fast:app", transport == "h2")
    tag = os.urandom(3).hex()
    with client_for(server, transport, certs) as client:
        assert client.get("/state").http_version == "HTTP/2"  # the connection, made once

        def one(i: int) -> dict[str, object]:
            response = client.get(f"/items/{i}", params={"q": f"{tag}{i}"})
            assert response.http_version == "HTTP/2"
            result = response.json()
            assert isinstance(result, dict)
            return result

        with concurrent.futures.ThreadPoolExecutor(8) as executor:
            results = list(executor.map(one, range(40)))
    assert results == [{"item_id": i, "q": f"{tag}{i}", "limit": 10} for i in range(40)]

    def logged() -> list[int] | None:
        ports = [p for i in range(40) for p in h2_stream_ports(server, f"/items/{i}?q={tag}{i}")]
        return ports if len(ports) == 40 else None

    ports = poll(logged, 5, what="40 access-log lines")
    assert len(set(ports)) == 1, ports


def test_frameworks_shut_down_cleanly_after_http2(serve: Serve, certs: Certs) -> None:
    """test_frameworks_shut_down_cleanly, after HTTP/2 traffic: exit 0, lifespan shutdown ran."""
    star = wait_https(serve("apps.star:app", *certs.ecdsa.args, ready=None))
    fast = wait_https(serve("apps.fast:app", ready=None))
    with client_for(star, "h2", certs) as client:
        response = client.get("/state")
        assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    with client_for(fast, "h2c", certs) as client:
        response = client.get("/state")
        assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    assert star.stop() == 0
    assert fast.stop() == 0
    assert star.find_line(r"cw-star: lifespan shutdown ran"), star.output
    assert fast.find_line(r"cw-fast: lifespan shutdown ran"), fast.output


# --- one site in Starlette and in FastAPI, the same checks over HTTP/1.1, h2c and h2 --------------


@dataclass
class Site:
    server: ServerProcess
    transport: str
    framework: str
    certs: Certs
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def version(self) -> str:
        return VERSION[self.transport]

    @property
    def base(self) -> str:
        return base_url(self.server, self.transport)

    @property
    def authority(self) -> str:
        return self.base.split("://", 1)[1]

    def client(self, **kwargs: Any) -> httpx.Client:
        client = client_for(self.server, self.transport, self.certs, **kwargs)
        self.clients.append(client)
        return client


@pytest.fixture(
    params=[(f, t) for f in ("starlette", "fastapi") for t in TRANSPORTS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def site(request: pytest.FixtureRequest, pool: Pool, certs: Certs) -> Iterator[Site]:
    framework, transport = request.param
    app = "apps.h2_parity:star" if framework == "starlette" else "apps.h2_parity:fast"
    made = Site(pool.get(app, transport == "h2"), transport, framework, certs)
    yield made
    for client in made.clients:
        client.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_json_route_sees_the_protocol_scheme_and_authority(site: Site) -> None:
    response = site.client().get("/json", params={"name": "café ✓"})
    assert response.http_version == site.version
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "hello": "café ✓",
        "http_version": ASGI_VERSION[site.transport],
        "scheme": "https" if site.transport == "h2" else "http",
        "host": site.authority,  # over HTTP/2, from :authority
    }


def test_multipart_upload_of_files_and_fields(site: Site) -> None:
    big = os.urandom(3 * MIB + 17)
    small = "the second file ✓\n".encode()
    response = site.client().post(
        "/multipart",
        data={"note": "a note ✓", "other": "2"},
        files=[
            ("files", ("big.bin", big, "application/octet-stream")),
            ("extra", ("small.txt", small, "text/plain")),
        ],
    )
    assert response.http_version == site.version
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fields": {"note": "a note ✓", "other": "2"},
        "files": [
            {
                "field": "files",
                "filename": "big.bin",
                "content_type": "application/octet-stream",
                "bytes": len(big),
                "sha256": sha256(big),
            },
            {
                "field": "extra",
                "filename": "small.txt",
                "content_type": "text/plain",
                "bytes": len(small),
                "sha256": sha256(small),
            },
        ],
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fastapi_multipart_without_a_required_field_is_422(
    pool: Pool, certs: Certs, transport: str
) -> None:
    server = pool.get("apps.h2_parity:fast", transport == "h2")
    with client_for(server, transport, certs) as client:
        response = client.post("/multipart", data={"other": "2"}, files={"files": b"x"})
        assert response.http_version == VERSION[transport]
        assert response.status_code == 422
        assert [e["loc"] for e in response.json()["detail"]] == [["body", "note"]]
        response = client.get("/not-found")
        assert response.http_version == VERSION[transport]
        assert (response.status_code, response.json()) == (404, {"detail": "nothing here"})


def test_large_raw_upload_with_a_length(site: Site) -> None:
    payload = os.urandom(12 * MIB + 5)
    response = site.client().post("/upload", content=payload)
    assert response.http_version == site.version
    data = response.json()
    assert (data["bytes"], data["sha256"]) == (len(payload), sha256(payload))
    assert data["chunks"] > 1  # the app read it as a stream, not as one piece


def test_raw_upload_of_unknown_length(site: Site) -> None:
    """A body from a generator: chunked over HTTP/1.1, DATA frames with no content-length over
    HTTP/2."""
    pieces = [os.urandom(64 * 1024) for _ in range(64)]

    def body() -> Iterator[bytes]:
        yield from pieces

    response = site.client().post("/upload", content=body())
    assert response.http_version == site.version
    whole = b"".join(pieces)
    data = response.json()
    assert (data["bytes"], data["sha256"]) == (len(whole), sha256(whole))


def read_event(lines: Iterator[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                return event
            continue
        name, _, value = line.partition(": ")
        event[name] = value
    raise AssertionError(f"the event stream ended; partial event: {event}")


def test_server_sent_events_arrive_one_at_a_time(site: Site) -> None:
    """Each event after the first is only made once the client has read the one before and
    released the next (a POST on the same client: over HTTP/2 another stream of the connection),
    so an event held back in a buffer anywhere would stall the stream."""
    key = f"sse-{os.urandom(4).hex()}"
    client = site.client()
    events = []
    with client.stream("GET", "/sse", params={"id": key, "n": 5}) as response:
        assert response.http_version == site.version
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        for i in range(5):
            if i:
                released = client.post("/release", params={"id": key})
                assert (released.http_version, released.text) == (site.version, "released")
            events.append(read_event(lines))
        assert list(lines) == []  # and then the stream ends
    assert events == [
        {"event": "tick", "id": str(i), "data": f"tick {i} of {key}"} for i in range(5)
    ]


def test_several_cookies_are_set_and_read_back(site: Site) -> None:
    client = site.client()
    response = client.get("/cookies/set")
    assert response.http_version == site.version
    assert sorted(response.headers.get_list("set-cookie")) == [
        "flavour=oatmeal; Path=/; SameSite=lax",
        "session=abc123; HttpOnly; Path=/; SameSite=lax",
        "theme=dark; Max-Age=3600; Path=/; SameSite=lax",
    ]
    assert dict(client.cookies) == {"flavour": "oatmeal", "session": "abc123", "theme": "dark"}
    echoed = client.get("/cookies/read")
    assert echoed.http_version == site.version
    assert echoed.json()["cookies"] == {"flavour": "oatmeal", "session": "abc123", "theme": "dark"}
    # Cookies in separate fields: over HTTP/2 they arrive as one, joined with "; " (RFC 9113
    # §8.2.3); over HTTP/1.1 the fields are passed as they came.
    split = site.client().get(
        "/cookies/read", headers=[("cookie", "a=1"), ("cookie", "b=2; c=3"), ("cookie", "d=4")]
    )
    assert split.http_version == site.version
    assert split.json()["cookies"] == {"a": "1", "b": "2", "c": "3", "d": "4"}
    fields = ["a=1; b=2; c=3; d=4"] if site.transport != "http1" else ["a=1", "b=2; c=3", "d=4"]
    assert split.json()["cookie_fields"] == fields


@pytest.mark.parametrize("code", [302, 303, 307])
def test_redirect_to_an_absolute_url_is_followed(site: Site, code: int) -> None:
    """The app builds the Location from the request (url_for): scheme and :authority."""
    response = site.client(follow_redirects=True).get("/redirect", params={"code": code})
    target = f"{site.base}/target?from=redirect"
    assert [r.status_code for r in response.history] == [code]
    assert response.history[0].headers["location"] == target
    assert [r.http_version for r in (*response.history, response)] == [site.version] * 2
    assert response.json() == {"method": "GET", "from": "redirect", "url": target}


def test_head_has_the_headers_of_get_and_no_body(site: Site) -> None:
    client = site.client()
    got = client.get("/doc")
    head = client.head("/doc")
    assert (got.http_version, head.http_version) == (site.version, site.version)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]
    assert got.text.startswith("document line 0\n") and got.text.endswith("document line 199\n")
    assert head.content == b""


def test_exception_handler_and_500_then_the_connection_serves_on(site: Site) -> None:
    client = site.client()
    mark = site.server.mark()
    teapot = client.get("/teapot")
    assert teapot.http_version == site.version
    assert (teapot.status_code, teapot.json()) == (
        418,
        {"error": "teapot", "detail": "short and stout"},
    )
    crash = client.get("/crash")
    assert crash.http_version == site.version
    assert (crash.status_code, crash.text) == (500, "Internal Server Error")
    site.server.wait_for_line(r"RuntimeError: crash on purpose", TIMEOUT, since=mark)
    after = client.get("/json")
    assert (after.http_version, after.status_code) == (site.version, 200)


def test_exception_in_the_middle_of_a_stream_is_not_a_clean_end(site: Site) -> None:
    """The app raises after three lines: the client must see an error (HTTP/1.1: the connection
    closes before the last chunk; HTTP/2: RST_STREAM), never a complete response."""
    client = site.client()
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError) as raised:
        with client.stream("GET", "/stream-then-crash") as response:
            assert response.http_version == site.version
            assert response.status_code == 200
            received.extend(response.iter_lines())
    assert received in ([], ["line 0"], ["line 0", "line 1"], ["line 0", "line 1", "line 2"])
    if site.transport != "http1":
        reset = str(raised.value)  # "<StreamReset stream_id:N, error_code:E, remote_reset:True>"
        assert "StreamReset" in reset and "remote_reset:True" in reset, reset
    after = client.get("/json")  # over HTTP/2 the connection survives the reset stream
    assert (after.http_version, after.status_code) == (site.version, 200)


def test_background_task_runs_after_the_response(site: Site) -> None:
    client = site.client()
    name = f"job-{site.framework}-{site.transport}-{os.urandom(3).hex()}"
    response = client.post(f"/background/{name}")
    assert response.http_version == site.version
    assert (response.status_code, response.json()) == (200, {"scheduled": name})
    poll(lambda: name in client.get("/background-done").json(), 5, what="the background task")


# --- WSGI over HTTP/2 ----------------------------------------------------------------------------

WSGI_APP = "apps.wsgi_app:app"
FLASK_APP = "apps.wsgi_flask:app"


@pytest.fixture(scope="module")
def wsgi_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = tmp_path_factory.mktemp("h2-wsgi-files")
    (files / "blob.bin").write_bytes(os.urandom(4 * MIB + 321))
    return files


def wsgi_server(pool: Pool, transport: str) -> ServerProcess:
    return pool.get(WSGI_APP, transport == "h2", "--interface", "wsgi", "--threads", "4")


def flask_server(pool: Pool, transport: str, files: Path) -> ServerProcess:
    env = {"WSGI_FLASK_FILES": str(files)}
    return pool.get(FLASK_APP, transport == "h2", "--interface", "wsgi", env=env)


def h2_client(server: ServerProcess, transport: str, certs: Certs) -> H2Client:
    tls: ssl.SSLContext | None = None
    if transport == "h2":
        tls = client_context(certs, alpn=["h2"])
    return H2Client(server, tls=tls, timeout=TIMEOUT)


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_wsgi_environ_over_http2(pool: Pool, certs: Certs, transport: str) -> None:
    server = wsgi_server(pool, transport)
    with client_for(server, transport, certs) as client:
        response = client.get("/env/x%20y", params={"a": "1", "b": "two"})
    assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    environ = response.json()["environ"]
    tls = transport == "h2"
    expected = {
        "SERVER_PROTOCOL": "HTTP/2",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/env/x y",
        "QUERY_STRING": "a=1&b=two",
        "HTTP_HOST": base_url(server, transport).split("://")[1],
        "SERVER_NAME": "localhost" if tls else "127.0.0.1",
        "SERVER_PORT": str(server.port),
        "wsgi.url_scheme": "https" if tls else "http",
    }
    assert {key: environ.get(key) for key in expected} == expected
    # what httpx sent, with :authority as HTTP_HOST; no pseudo-header, no connection field
    http_keys = sorted(key for key in environ if key.startswith("HTTP_"))
    assert http_keys == ["HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "HTTP_HOST", "HTTP_USER_AGENT"]


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_wsgi_http_host_comes_from_authority(pool: Pool, certs: Certs, transport: str) -> None:
    """A request with :authority and no host field (as HTTP/2 clients send it): the app sees the
    authority as HTTP_HOST, and SERVER_NAME/SERVER_PORT from it."""
    server = wsgi_server(pool, transport)
    with h2_client(server, transport, certs) as client:
        answer = client.fetch("/env", authority="app.example:8443", timeout=TIMEOUT)
    assert answer.status == 200 and answer.ended, answer
    environ = json.loads(bytes(answer.data))["environ"]
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "app.example:8443",
        "app.example",
        "8443",
    )
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_wsgi_request_headers_over_http2(pool: Pool, certs: Certs, transport: str) -> None:
    """The PEP 3333 header rules of test_wsgi.py over HTTP/2: content-type and content-length
    without the HTTP_ prefix, repeated fields joined with ",", cookie crumbs (RFC 9113 §8.2.3)
    joined with "; ", a body without content-length gives no CONTENT_LENGTH."""
    server = wsgi_server(pool, transport)
    headers = [
        ("content-type", "application/x-test; charset=latin-1"),
        ("content-length", "5"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("cookie", "a=1"),
        ("cookie", "b=2; c=3"),
    ]
    with h2_client(server, transport, certs) as client:
        sized = client.fetch("/env", method="POST", headers=headers, body=b"hello")
        unsized = client.fetch("/env", method="POST", body=b"hello")
    assert (sized.status, unsized.status) == (200, 200), (sized, unsized)
    environ = json.loads(bytes(sized.data))["environ"]
    expected = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-test; charset=latin-1",
        "CONTENT_LENGTH": "5",
        "HTTP_X_MULTI": "a,b",
        "HTTP_COOKIE": "a=1; b=2; c=3",
        "HTTP_HOST": f"localhost:{server.port}",
    }
    assert {key: environ.get(key) for key in expected} == expected
    assert sorted(k for k in environ if k.startswith("HTTP_")) == sorted(
        k for k in expected if k.startswith("HTTP_")
    )
    assert "CONTENT_LENGTH" not in json.loads(bytes(unsized.data))["environ"]


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_wsgi_post_body_streamed_and_written_responses(
    pool: Pool, certs: Certs, transport: str
) -> None:
    server = wsgi_server(pool, transport)
    payload = os.urandom(5 * MIB + 3)
    with client_for(server, transport, certs) as client:
        uploaded = client.post("/upload", content=payload)
        assert uploaded.http_version == "HTTP/2"
        data = uploaded.json()
        assert (data["bytes"], data["sha256"]) == (len(payload), sha256(payload))
        with client.stream("GET", "/gen", params={"n": 200, "size": 1000}) as streamed:
            assert streamed.http_version == "HTTP/2"
            assert "transfer-encoding" not in streamed.headers
            assert "content-length" not in streamed.headers
            body = streamed.read()
        assert body == b"".join(bytes([65 + i % 26]) * 1000 for i in range(200))
        written = client.get("/write")
        assert (written.http_version, written.text) == ("HTTP/2", "one-two-three")
        status = client.get("/status", params={"s": "299 Custom Reason"})
        assert (status.http_version, status.status_code) == ("HTTP/2", 299)
        assert status.headers["x-app-header"] == "kept as given"
        assert status.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
        head = client.head("/head", params={"cl": "1"})
        assert (head.http_version, head.status_code, head.content) == ("HTTP/2", 200, b"")
        assert head.headers["content-length"] == str(len(b"head body never sent"))


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_wsgi_file_wrapper_sends_a_file_intact(
    pool: Pool, certs: Certs, wsgi_files: Path, transport: str
) -> None:
    server = wsgi_server(pool, transport)
    blob = wsgi_files / "blob.bin"
    key = f"file-{os.urandom(4).hex()}"
    with client_for(server, transport, certs) as client:
        response = client.get("/file", params={"path": str(blob), "id": key})
        assert (response.http_version, response.status_code) == ("HTTP/2", 200)
        assert len(response.content) == blob.stat().st_size
        assert sha256(response.content) == sha256(blob.read_bytes())
        closed = poll(
            lambda: client.get("/events", params={"id": key}).json() or None,
            5,
            what="the file's close()",
        )
    assert closed == ["file closed"]


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_flask_routing_json_and_errors_over_http2(
    pool: Pool, certs: Certs, wsgi_files: Path, transport: str
) -> None:
    server = flask_server(pool, transport, wsgi_files)
    with client_for(server, transport, certs) as client:
        home = client.get("/")
        assert (home.http_version, home.status_code, home.text) == ("HTTP/2", 200, "flask home")
        user = client.get("/users/42", params=[("q", "café"), ("tag", "a"), ("tag", "b")])
        assert user.http_version == "HTTP/2"
        assert user.json() == {"user_id": 42, "q": "café", "tags": ["a", "b"]}
        payload = {"name": "lamp ✓", "values": [1, 2.5, None]}
        echoed = client.post("/echo", json=payload)
        assert (echoed.http_version, echoed.status_code) == ("HTTP/2", 201)
        assert echoed.json() == {"received": payload, "content_type": "application/json"}
        missing = client.get("/nowhere")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "not found", "path": "/nowhere"},
        )
        teapot = client.get("/teapot")
        assert (teapot.status_code, teapot.json()["error"]) == (418, "teapot")
        crash = client.get("/crash")
        assert (crash.http_version, crash.status_code) == ("HTTP/2", 500)
        assert crash.json()["original"] == "ZeroDivisionError"
        upload = os.urandom(3 * MIB)
        data = client.post("/upload", content=upload).json()
        assert (data["bytes"], data["sha256"]) == (len(upload), sha256(upload))


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_flask_stream_released_chunk_by_chunk_over_http2(
    pool: Pool, certs: Certs, wsgi_files: Path, transport: str
) -> None:
    """Each chunk after the first waits for /release, sent on the same connection as another
    stream while the streamed one is open: the chunk before must have arrived unbuffered."""
    server = flask_server(pool, transport, wsgi_files)
    key = f"stream-{os.urandom(4).hex()}"
    with client_for(server, transport, certs) as client:
        with client.stream("GET", "/stream", params={"id": key, "n": 4}) as response:
            assert (response.http_version, response.status_code) == ("HTTP/2", 200)
            lines = response.iter_lines()
            got = [next(lines)]
            for _ in range(3):
                assert client.get("/release", params={"id": key}).text == "released"
                got.append(next(lines))
            assert list(lines) == []
    assert got == [f"chunk {i} of {key}" for i in range(4)]


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_flask_send_file_over_http2(
    pool: Pool, certs: Certs, wsgi_files: Path, transport: str
) -> None:
    server = flask_server(pool, transport, wsgi_files)
    blob = (wsgi_files / "blob.bin").read_bytes()
    with client_for(server, transport, certs) as client:
        response = client.get("/files/blob.bin")
        assert (response.http_version, response.status_code) == ("HTTP/2", 200)
        assert response.headers["content-length"] == str(len(blob))
        assert sha256(response.content) == sha256(blob)
        # the server's wsgi.file_wrapper carried it, not werkzeug's fallback
        assert response.headers["x-has-file-wrapper"] == "True"
        assert response.headers["x-body-type"] != "werkzeug.wsgi.FileWrapper"
        head = client.head("/files/blob.bin")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(blob))


# --- the demo page in a real browser over HTTPS ------------------------------------------------


class RecordingDevTools(DevTools):
    """DevTools that also keeps every event's parameters."""

    def __init__(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__(ws)

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message:
                future = self.replies.pop(message["id"])
                if "error" in message:
                    future.set_exception(AssertionError(f"DevTools error: {message['error']}"))
                else:
                    future.set_result(message.get("result", {}))
            else:
                self.messages.append(message)
                self.events.append((message.get("sessionId"), message["method"]))
                self.event_seen.set()

    async def open_page_recorded(self, url: str) -> str:
        """open_page, with the Network domain on from the start (its events recorded)."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        session = str(attached["sessionId"])
        await self.call("Network.enable", session)
        await self.call("Page.enable", session)
        await self.call("Page.navigate", session, url=url)
        await self.wait_event(session, "Page.loadEventFired")
        return session

    def response_for(self, session: str, url: str) -> dict[str, Any]:
        for message in self.messages:
            params = message.get("params", {})
            if (
                message.get("sessionId") == session
                and message["method"] == "Network.responseReceived"
                and params["response"]["url"] == url
            ):
                return dict(params["response"])
        raise AssertionError(f"no Network.responseReceived for {url}")


@contextlib.asynccontextmanager
async def recording_devtools(url: str) -> AsyncIterator[RecordingDevTools]:
    async with websockets.asyncio.client.connect(
        url, open_timeout=TIMEOUT, max_size=None, proxy=None
    ) as ws:
        tools = RecordingDevTools(ws)
        try:
            yield tools
        finally:
            tools.reader.cancel()


NEXT_HOP = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
HEADING = "document.querySelector('h1').textContent"
SAID = "hello over h2 ✓"


def test_browser_loads_the_demo_over_https_with_h2(
    serve: Serve, certs: Certs, browser_url: str
) -> None:
    """Headless Chromium loads the demo's pages (demo/app.py, unchanged) over HTTPS; the
    navigation entry's nextHopProtocol (read through the DevTools protocol) must be "h2", and
    the chat page's WebSocket (wss:) must still work from an h2 page.

    The browser does not trust the test root CA: for this test only it is told to ignore
    certificate errors (DevTools Security.setIgnoreCertificateErrors, what the
    --ignore-certificate-errors flag does), and the test then checks that the certificate the
    page came with is the test leaf, issued by the test intermediate CA."""
    demo = wait_https(serve("demo.app:app", *certs.ecdsa.args, cwd=REPO, ready=None))
    origin = f"https://localhost:{demo.port}"

    async def scenario() -> dict[str, Any]:
        async with recording_devtools(browser_url) as tools:
            await tools.call("Security.setIgnoreCertificateErrors", ignore=True)
            home = await tools.open_page_recorded(f"{origin}/")
            chat = await tools.open_page_recorded(f"{origin}/chat")
            return {
                "home_protocol": await tools.evaluate(home, NEXT_HOP),
                "home_heading": await tools.evaluate(home, HEADING),
                "home_response": tools.response_for(home, f"{origin}/"),
                "chat_protocol": await tools.evaluate(chat, NEXT_HOP),
                "chat": await tools.evaluate(chat, page_script(SAID, SAID)),
            }

    result = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert result["home_protocol"] == "h2", result
    assert result["chat_protocol"] == "h2", result
    assert result["home_heading"] == "coachwhip is serving this page"
    response = result["home_response"]
    assert (response["status"], response["protocol"]) == (200, "h2"), response
    security = response["securityDetails"]
    assert security["subjectName"] == "localhost", security
    assert security["issuer"] == "coachwhip test intermediate CA", security
    assert security["protocol"] == "TLS 1.3", security
    assert result["chat"]["status"] == "connected", result["chat"]
    assert result["chat"]["lines"][-1].endswith(f": {SAID}"), result["chat"]
    demo.wait_for_line(r'"GET / HTTP/2" 200', TIMEOUT)
    demo.wait_for_line(r'"GET /chat HTTP/2" 200', TIMEOUT)
