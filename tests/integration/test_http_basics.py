"""HTTP/1.1 seen through real clients (httpx, curl), and raw sockets where framing matters."""

from __future__ import annotations

import email.utils
import json
import select
import socket
import time

import httpx
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request, run_curl


def events(server: ServerProcess, key: str) -> list[object]:
    data = httpx.get(f"{server.url}/events", params={"id": key}, timeout=5).json()
    assert isinstance(data, list)
    return data


# --- httpx ----------------------------------------------------------------------------------------


def test_get_and_post(raw_server: ServerProcess) -> None:
    with httpx.Client(base_url=raw_server.url, timeout=5) as client:
        got = client.get("/ok")
        posted = client.post("/echo", content=b"payload \x00\xff bytes")
    assert (got.status_code, got.text) == (200, "ok")
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.headers["content-length"] == "2"
    assert posted.status_code == 200
    assert posted.content == b"payload \x00\xff bytes"


def test_request_bodies_larger_than_the_buffer_never_stall(raw_server: ServerProcess) -> None:
    """Bodies bigger than the 64 KiB read buffer, each on a new connection: none may hang."""
    body = bytes(range(256)) * 1024  # 256 KiB
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=raw_server.url, timeout=3, limits=fresh) as client:
        for i in range(300):
            try:
                response = client.post("/echo", content=body)
            except httpx.TimeoutException:
                raise AssertionError(f"upload {i} of 300 stalled: no response in 3 s") from None
            assert response.content == body


def test_unknown_path_is_the_apps_404(raw_server: ServerProcess) -> None:
    response = httpx.get(raw_server.url + "/no/such/thing", timeout=5)
    assert (response.status_code, response.text) == (404, "not found")


def test_keep_alive_reuses_one_connection(raw_server: ServerProcess) -> None:
    with httpx.Client(base_url=raw_server.url, timeout=5) as client:
        ports = {client.get("/scope").json()["client"][1] for _ in range(5)}
        assert client.post("/echo", content=b"x" * 1000).content == b"x" * 1000
        ports.add(client.get("/scope").json()["client"][1])
    assert len(ports) == 1, f"the server saw several client ports: {ports}"


def test_server_and_date_headers(raw_server: ServerProcess) -> None:
    response = httpx.get(raw_server.url + "/ok", timeout=5)
    assert response.headers["server"] == "coachwhip"
    assert len(response.headers.get_list("server")) == 1
    parsed = email.utils.parsedate_to_datetime(response.headers["date"])
    assert response.headers["date"].endswith(" GMT")
    assert abs(parsed.timestamp() - time.time()) < 5


def test_app_server_header_is_not_duplicated(serve: Serve) -> None:
    server = serve("apps.star:app")
    response = httpx.get(server.url + "/", timeout=5)
    assert response.headers.get_list("server") == ["coachwhip"]
    assert len(response.headers.get_list("date")) == 1


# --- curl -----------------------------------------------------------------------------------------


def test_repeated_set_cookie_headers_are_kept_apart(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/cookies"))
        response = conn.read_response()
    assert response.header_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_curl_get_and_post(raw_server: ServerProcess) -> None:
    got = run_curl("-i", raw_server.url + "/ok")
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(b"HTTP/1.1 200 ")
    assert got.stdout.endswith(b"\r\n\r\nok")
    posted = run_curl("--data-binary", "hello from curl", raw_server.url + "/echo")
    assert posted.stdout == b"hello from curl"


def test_curl_reuses_the_connection(raw_server: ServerProcess) -> None:
    done = run_curl(
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects}\n",
        raw_server.url + "/ok",
        raw_server.url + "/scope",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"1", b"0"], done.stdout


def test_curl_head(raw_server: ServerProcess) -> None:
    done = run_curl("-I", raw_server.url + "/head")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 11\r\n" in done.stdout.lower()
    assert done.stdout.endswith(b"\r\n\r\n")


def test_curl_expect_100_continue(raw_server: ServerProcess) -> None:
    start = time.monotonic()
    done = run_curl(
        "-v",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "5",
        "--data-binary",
        "continued body",
        raw_server.url + "/echo",
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert b"HTTP/1.1 100 Continue" in done.stderr, done.stderr.decode(errors="replace")
    assert done.stdout == b"continued body"
    assert elapsed < 4, "curl waited for its expect100 timeout instead of a 100 Continue"


def test_curl_chunked_upload(raw_server: ServerProcess) -> None:
    done = run_curl(
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "chunked upload",
        raw_server.url + "/echo",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"chunked upload"


def test_curl_http10(raw_server: ServerProcess) -> None:
    done = run_curl("-0", "-i", raw_server.url + "/stream?n=2")
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == b"chunk-0\nchunk-1\n"


# --- HTTP/1.0, HEAD, chunked, Connection: close (raw sockets) -------------------------------------


def test_http10_closes_after_the_response(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(b"GET /scope HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert json.loads(response.body)["http_version"] == "1.0"
        assert conn.read_to_eof() == b""


def test_http10_keep_alive_keeps_the_connection(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"ok")
        assert (first.header("connection") or "").lower() == "keep-alive"
        conn.send(b"GET /ok HTTP/1.0\r\n\r\n")
        second = conn.read_response()
        assert (second.status, second.body) == (200, b"ok")
        assert conn.read_to_eof() == b""


def test_http10_streaming_response_is_close_delimited(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(b"GET /stream?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.header("transfer-encoding") is None
        assert response.body == b"chunk-0\nchunk-1\nchunk-2\n"
        assert conn.eof


def test_head_has_content_length_but_no_body(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("HEAD", "/head") + request("GET", "/ok"))
        head = conn.read_response(head=True)
        assert head.status == 200
        assert head.header("content-length") == "11"
        following = (
            conn.read_response()
        )  # body bytes after the HEAD response would corrupt this one
        assert (following.status, following.body) == (200, b"ok")


def test_head_of_a_streaming_response_has_no_body(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("HEAD", "/stream?n=3") + request("GET", "/ok"))
        head = conn.read_response(head=True)
        assert head.status == 200
        following = conn.read_response()
        assert (following.status, following.body) == (200, b"ok")


def test_chunked_response_without_content_length(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/stream?n=3"))
        response = conn.read_response()
        assert response.status == 200
        assert response.header("transfer-encoding") == "chunked"
        assert response.header("content-length") is None
        assert response.chunked
        assert response.body == b"chunk-0\nchunk-1\nchunk-2\n"
        assert response.raw.endswith(b"0\r\n\r\n")
        conn.send(request("GET", "/ok"))  # still usable afterwards
        assert conn.read_response().body == b"ok"


def test_chunked_request_with_trailers_is_dechunked(raw_server: ServerProcess) -> None:
    body = b"5\r\nhello\r\n7\r\n, world\r\n1\r\n!\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("POST", "/echo", headers=["Transfer-Encoding: chunked"]) + body)
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"hello, world!")
        conn.send(request("GET", "/ok"))  # the trailers were consumed, not left in the stream
        assert conn.read_response().body == b"ok"


def test_connection_close_from_the_client(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/ok", headers=["Connection: close"]))
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"ok")
        assert (response.header("connection") or "").lower() == "close"
        assert conn.read_to_eof() == b""


def test_connection_close_from_the_app(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/close-me"))
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"closing")
        assert conn.read_to_eof() == b""


def test_nothing_after_connection_close_is_processed(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/ok", headers=["Connection: close"]) + request("GET", "/scope"))
        assert conn.read_response().body == b"ok"
        assert conn.read_to_eof() == b""


# --- Expect: 100-continue (raw sockets) -----------------------------------------------------------


def test_100_continue_is_sent_only_when_the_app_receives(raw_server: ServerProcess) -> None:
    key = "expect-gate"
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(
            request(
                "POST",
                f"/gate-read?id={key}",
                headers=["Expect: 100-continue", "Content-Length: 9"],
            )
        )
        poll(lambda: "entered" in events(raw_server, key), 5, what="the app to start")
        readable, _, _ = select.select([conn.sock], [], [], 0.2)
        assert readable == [], (
            f"server answered before the app called receive(): {conn.sock.recv(200)!r}"
        )
        assert (
            httpx.get(f"{raw_server.url}/open-gate", params={"id": key}, timeout=5).text == "opened"
        )
        interim = conn.read_response()
        assert (interim.status, interim.version) == (100, "1.1")
        conn.send(b"late body")
        final = conn.read_response()
        assert final.status == 200
        assert json.loads(final.body) == {"bytes": 9, "messages": 1, "head": "late body"}


def test_no_100_continue_when_the_app_never_reads(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("POST", "/noread", headers=["Expect: 100-continue", "Content-Length: 5"]))
        response = conn.read_response()
        assert response.status == 200, "the first response must be the final one, not 100 Continue"
        assert response.body == b"did not read"
        assert b"100 Continue" not in conn.received


# --- keep-alive timeout ---------------------------------------------------------------------------


def test_idle_keep_alive_connection_is_closed_after_the_timeout(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-keep-alive", "1")
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().body == b"ok"
        start = time.monotonic()
        assert conn.read_to_eof(timeout=5) == b""
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed <= 3.0, f"closed after {elapsed:.2f} s, expected about 1 s"


def test_busy_connection_is_not_closed_by_the_keep_alive_timer(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-keep-alive", "1")
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/slow?s=1.6&id=ka"))
        response = conn.read_response(timeout=5)
        assert (response.status, response.body) == (200, b"slow done")


def test_keep_alive_default_keeps_idle_connection_open_briefly(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().body == b"ok"
        readable, _, _ = select.select([conn.sock], [], [], 0.5)
        assert readable == [], (
            "connection closed (or data sent) while idle for less than the 5 s default"
        )
        conn.send(request("GET", "/ok"))
        assert conn.read_response().body == b"ok"


def test_many_sequential_connections(raw_server: ServerProcess) -> None:
    for i in range(50):
        with socket.create_connection((raw_server.host, raw_server.port), timeout=5) as sock:
            sock.sendall(request("GET", f"/scope?i={i}", headers=["Connection: close"]))
            data = bytearray()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        assert f'"query_string": "i={i}"'.encode() in data
