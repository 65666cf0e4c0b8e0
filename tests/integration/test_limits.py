"""Limits and timeouts (README "Limits and timeouts"), each against a live server."""

from __future__ import annotations

import socket
import time

import httpx
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request


def status_then_eof(server: ServerProcess, data: bytes, timeout: float = 5.0) -> int:
    """Sends `data`, reads one response, and checks that the server then closes."""
    with RawConnection(server.host, server.port, timeout=timeout) as conn:
        conn.send(data)
        response = conn.read_response()
        assert response.header("connection") == "close"
        conn.read_to_eof(timeout)
        return response.status


def test_request_line_over_the_limit_is_414(serve: Serve) -> None:
    server = serve("apps.raw:app", "--limit-request-line", "100")
    assert status_then_eof(server, request("GET", "/" + "a" * 150)) == 414
    assert httpx.get(server.url + "/ok?" + "b" * 60).status_code == 200


def test_too_many_fields_or_too_large_head_is_431(serve: Serve) -> None:
    server = serve(
        "apps.raw:app",
        "--limit-request-fields",
        "8",
        "--limit-request-header-size",
        "1000",
        "--limit-request-line",
        "500",
    )
    eight_more = [f"X-{i}: y" for i in range(8)]  # plus Host: nine fields
    assert status_then_eof(server, request("GET", "/ok", headers=eight_more)) == 431
    assert status_then_eof(server, request("GET", "/ok", headers=["X-Big: " + "z" * 1000])) == 431
    # httpx sends five fields of its own: seven in all, within the limit of eight.
    assert httpx.get(server.url + "/ok", headers={"x-a": "1", "x-b": "2"}).status_code == 200


def test_body_over_the_limit_is_413_for_both_framings(serve: Serve) -> None:
    server = serve("apps.raw:app", "--limit-request-body", "10")
    assert status_then_eof(server, request("POST", "/echo", body=b"x" * 11)) == 413
    chunked = request("POST", "/echo", headers=["Transfer-Encoding: chunked"]) + (
        b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
    )
    assert status_then_eof(server, chunked) == 413
    response = httpx.post(server.url + "/echo", content=b"y" * 10)
    assert response.status_code == 200


def test_requests_beyond_the_concurrency_limit_get_503(serve: Serve) -> None:
    server = serve("apps.raw:app", "--limit-concurrency", "1")
    with RawConnection(server.host, server.port) as held:
        held.send(request("GET", "/slow?s=1.5&id=busy"))
        # Every other request is refused while the slow one holds the only slot...
        poll(lambda: httpx.get(server.url + "/ok").status_code == 503, 1.0, what="a 503")
        refused = httpx.get(server.url + "/ok")
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close"
        # ...the slow one itself completes normally...
        assert held.read_response(timeout=5).body == b"slow done"
    # ...and the slot is free again afterwards.
    assert httpx.get(server.url + "/ok").status_code == 200


def test_connection_limit_queues_connections_instead_of_refusing(serve: Serve) -> None:
    server = serve("apps.raw:app", "--max-connections", "2")
    first = RawConnection(server.host, server.port)
    second = RawConnection(server.host, server.port)
    first.send(request("GET", "/ok"))
    second.send(request("GET", "/ok"))
    assert first.read_response().status == 200
    assert second.read_response().status == 200
    third = RawConnection(server.host, server.port, timeout=0.5)  # the kernel accepts it...
    third.send(request("GET", "/ok"))
    try:
        third.read_response(timeout=0.5)
        raise AssertionError("a third connection was served beyond --max-connections 2")
    except TimeoutError:
        pass
    first.close()  # ...and it is served as soon as a slot frees up
    assert third.read_response(timeout=5).status == 200
    second.close()
    third.close()


def test_slowloris_head_gets_408_on_time(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-request-header", "0.6")
    with RawConnection(server.host, server.port, timeout=5) as conn:
        start = time.monotonic()
        data = request("GET", "/ok", headers=["X-Slow: " + "s" * 50])
        answered = b""
        for byte in data[:-4]:  # one byte every 50 ms, never finishing the head
            conn.send(bytes([byte]))
            conn.sock.settimeout(0.05)
            try:
                answered = conn.sock.recv(4096)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - start
    assert answered.startswith(b"HTTP/1.1 408 "), answered[:100]
    assert 0.5 < elapsed < 3.0, f"408 after {elapsed:.2f} s with a 0.6 s deadline"


def test_stalled_body_gets_408(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-request-body", "0.5")
    with RawConnection(server.host, server.port, timeout=5) as conn:
        conn.send(request("POST", "/echo", headers=["Content-Length: 100"]) + b"only a bit")
        start = time.monotonic()
        response = conn.read_response(timeout=5)
        elapsed = time.monotonic() - start
    assert response.status == 408
    assert elapsed < 3.0


def test_client_that_stops_reading_is_cut_off_by_the_write_timeout(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-write", "0.5", "--no-access-log")
    with RawConnection(server.host, server.port, timeout=5) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.send(request("GET", "/big?mib=200&id=stalled"))
        # Never read: the app's send() must fail with an OSError once the timeout closes us.
        progress = poll(
            lambda: fetch_progress(server, "stalled").get("error"), 10, what="send() failing"
        )
    assert progress == "ClientDisconnected"
    assert fetch_progress(server, "stalled")["oserror"] is True
    assert fetch_progress(server, "stalled")["sent"] < 100 * 1024 * 1024


def test_limits_come_from_environment_variables_too(serve: Serve) -> None:
    server = serve("apps.raw:app", env={"COACHWHIP_LIMIT_REQUEST_BODY": "5"})
    assert status_then_eof(server, request("POST", "/echo", body=b"123456")) == 413


def test_inconsistent_limits_are_a_usage_error(serve: Serve) -> None:
    server = serve(
        "apps.raw:app",
        "--limit-request-line",
        "5000",
        "--limit-request-header-size",
        "1000",
        port=0,
        ready=None,
    )
    assert server.wait_exit(10) == 2
    assert "--limit-request-line (5000) cannot be larger than" in server.output


def fetch_progress(server: ServerProcess, key: str) -> dict[str, object]:
    data = httpx.get(f"{server.url}/progress?id={key}").json()
    assert isinstance(data, dict)
    return data


def test_access_log_never_carries_control_bytes_or_ansi_escapes(serve: Serve) -> None:
    """The access line shows the raw (still percent-encoded) target, and the parser admits only
    visible ASCII there, so a request cannot write an ANSI escape or a fake line into the log."""
    server = serve("apps.raw:app")
    since = server.mark()
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/ok?x=%1b[31mred%0d%0aINFO:%20fake"))
        assert conn.read_response().status == 200
    logged = r'"GET /ok\?x=%1b\[31mred%0d%0aINFO:%20fake HTTP/1.1" 200'
    line = server.wait_for_line(logged, 5, since)
    assert "\x1b" not in line.string
    assert status_then_eof(server, b"GET /\x1b[31m HTTP/1.1\r\nHost: a\r\n\r\n") == 400
    assert all("\x1b" not in text for text in server.lines)
