"""Raw-socket HTTP/1.1: pipelining, strict parsing, half-close, slow clients, backpressure."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from harness import IncompleteResponse, RawConnection, ServerProcess, poll, request

MIB = 1024 * 1024
PACE_S = 0.002  # pause between single bytes of a slow client (pacing, not a readiness wait)


def test_pipelined_requests_are_answered_in_order(raw_server: ServerProcess) -> None:
    batch = (
        request("GET", "/scope?n=1")
        + request("POST", "/echo", body=b"second")
        + request("GET", "/stream?n=2")
        + request("GET", "/slow?s=0.05&id=pipe")
        + request("GET", "/scope?n=5")
    )
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(batch)
        responses = [conn.read_response() for _ in range(5)]
    assert [r.status for r in responses] == [200] * 5
    assert json.loads(responses[0].body)["query_string"] == "n=1"
    assert responses[1].body == b"second"
    assert responses[2].body == b"chunk-0\nchunk-1\n"
    assert responses[3].body == b"slow done"
    assert json.loads(responses[4].body)["query_string"] == "n=5"


def test_pipelined_requests_with_a_slow_first_one_keep_their_order(
    raw_server: ServerProcess,
) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(
            request("GET", "/slow?s=0.3&id=pipe2")
            + request("GET", "/ok")
            + request("GET", "/scope?n=3")
        )
        bodies = [conn.read_response().body for _ in range(3)]
    assert bodies[0] == b"slow done"
    assert bodies[1] == b"ok"
    assert json.loads(bodies[2])["query_string"] == "n=3"


POST = b"POST /echo HTTP/1.1\r\nHost: x\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

MALFORMED_400 = {
    "bare-lf-everywhere": b"GET /ok HTTP/1.1\nHost: x\n\n",
    "bare-lf-after-header": b"GET /ok HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
    "bare-lf-after-request-line": b"GET /ok HTTP/1.1\nHost: x\r\n\r\n",
    "bare-cr-in-header": b"GET /ok HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
    "bare-lf-in-chunk-size": CHUNKED + b"5\nhello\r\n0\r\n\r\n",
    "bare-lf-after-chunk-data": CHUNKED + b"5\r\nhello\n0\r\n\r\n",
}

MALFORMED_4XX = {
    "obs-fold": b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: one\r\n  two\r\n\r\n",
    "space-before-colon": b"GET /ok HTTP/1.1\r\nHost : x\r\n\r\n",
    "tab-before-colon": b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n",
    "cl-and-te": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl-not-a-number": POST + b"Content-Length: abc\r\n\r\n",
    "cl-plus-sign": POST + b"Content-Length: +5\r\n\r\nhello",
    "cl-negative": POST + b"Content-Length: -1\r\n\r\n",
    "cl-hex": POST + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-two-values": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-empty": POST + b"Content-Length: \r\n\r\n",
    "cl-too-many-digits": POST + b"Content-Length: 999999999999999999999999\r\n\r\n",
    "bad-chunk-size": CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": CHUNKED + b"5\r\nhelloXX\r\n0\r\n\r\n",
    "version-1.32": b"GET /ok HTTP/1.32\r\nHost: x\r\n\r\n",
    "version-111": b"GET /ok HTTP/111\r\nHost: x\r\n\r\n",
    "version-name": b"GET /ok HTTX/1.1\r\nHost: x\r\n\r\n",
    "missing-host": b"GET /ok HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space-in-name": b"GET /ok HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
    "nul-in-value": b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "empty-name": b"GET /ok HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n",
    "header-before-first-line-space": b"GET /ok HTTP/1.1\r\n Host: x\r\n\r\n",
}

MALFORMED_TE = {  # RFC 9112 §6.1: 400, or 501 for a coding the server does not know
    "te-not-chunked-last": POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-identity-chunked": POST + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
    "te-unknown": POST + b"Transfer-Encoding: chunkedchunked\r\n\r\n0\r\n\r\n",
    "te-on-http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}
CLIENT_ERRORS = set(range(400, 500))


def assert_rejected_and_closed(server: ServerProcess, raw: bytes, allowed: set[int]) -> None:
    with RawConnection(server.host, server.port) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert response.status in allowed, f"status {response.status} for {raw!r}"
        assert conn.read_to_eof() == b"", "the connection stayed open after a rejected request"
    assert server.running()


@pytest.mark.parametrize("raw", list(MALFORMED_400.values()), ids=list(MALFORMED_400))
def test_bare_cr_or_lf_is_400_and_close(raw_server: ServerProcess, raw: bytes) -> None:
    assert_rejected_and_closed(raw_server, raw, {400})


@pytest.mark.parametrize("raw", list(MALFORMED_4XX.values()), ids=list(MALFORMED_4XX))
def test_malformed_request_is_4xx_and_close(raw_server: ServerProcess, raw: bytes) -> None:
    assert_rejected_and_closed(raw_server, raw, CLIENT_ERRORS)


@pytest.mark.parametrize("raw", list(MALFORMED_TE.values()), ids=list(MALFORMED_TE))
def test_bad_transfer_encoding_is_400_or_501_and_close(
    raw_server: ServerProcess, raw: bytes
) -> None:
    assert_rejected_and_closed(raw_server, raw, {400, 501})


def test_smuggling_attempt_never_yields_a_second_response(raw_server: ServerProcess) -> None:
    smuggled = request("GET", "/scope?smuggled=1")
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(smuggled) + 5).encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )  # fmt: skip
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(raw)
        first = conn.read_response()
        assert 400 <= first.status < 500
        assert conn.read_to_eof() == b""
    assert b"smuggled" not in conn.received


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_unread_body_is_never_parsed_as_a_request(raw_server: ServerProcess, chunked: bool) -> None:
    """The app ignores a body that looks like a request: the server skips it or closes."""
    inner = request("GET", "/scope?smuggled=1")
    if chunked:
        body = f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n"
        first = request("POST", "/noread", headers=["Transfer-Encoding: chunked"]) + body
    else:
        first = request("POST", "/noread", body=inner)
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(first + request("GET", "/scope?after=1"))
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"did not read")
        try:
            following = conn.read_response()
        except IncompleteResponse as exc:
            assert exc.partial == b""  # closing instead of skipping the body is fine
        else:
            assert json.loads(following.body)["query_string"] == "after=1"
    assert b"smuggled" not in conn.received


def test_valid_request_then_garbage(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(
            request("GET", "/ok") + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"
        )
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"ok")
        rest = conn.read_to_eof()
    if rest:  # an error response for the garbage is allowed, then the close
        assert rest.startswith(b"HTTP/1.1 400 "), rest[:100]
    assert raw_server.running()


def test_binary_garbage_gets_400_or_close(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(bytes(range(256)) + b"\r\n\r\n")
        rest = conn.read_to_eof()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 400 "), rest[:100]
    assert httpx.get(raw_server.url + "/ok", timeout=5).text == "ok"


def test_half_close_still_gets_the_full_response(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", "/slow?s=0.2&id=half"))
        conn.sock.shutdown(socket.SHUT_WR)
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"slow done")
        assert conn.read_to_eof() == b""


def test_half_close_after_a_post_body(raw_server: ServerProcess) -> None:
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("POST", "/echo", body=b"y" * 100_000))
        conn.sock.shutdown(socket.SHUT_WR)
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b"y" * 100_000


def test_slow_client_one_byte_at_a_time(raw_server: ServerProcess) -> None:
    raw = request("POST", "/scope/slow?x=1", headers=["X-Slow: yes"], body=b"abcde")
    with RawConnection(raw_server.host, raw_server.port) as conn:
        for byte in raw:
            conn.send(bytes([byte]))
            time.sleep(PACE_S)
        response = conn.read_response()
    assert response.status == 200
    scope = json.loads(response.body)
    assert (scope["method"], scope["path"], scope["query_string"]) == ("POST", "/scope/slow", "x=1")
    assert ["x-slow", "yes"] in scope["headers"]


def test_slow_chunked_body(raw_server: ServerProcess) -> None:
    body = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("POST", "/echo", headers=["Transfer-Encoding: chunked"]))
        for byte in body:
            conn.send(bytes([byte]))
            time.sleep(PACE_S)
        response = conn.read_response()
    assert response.body == b"abcde"


def test_unread_large_response_keeps_server_memory_bounded(raw_server: ServerProcess) -> None:
    total_mib = 200
    key = "bigdl"
    baseline = raw_server.rss_kib()
    with RawConnection(raw_server.host, raw_server.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        conn.send(request("GET", f"/big?mib={total_mib}&id={key}"))
        progress = progress_stalls(raw_server, key)
        assert not progress["done"], "the app sent 200 MiB to a client that reads nothing"
        assert progress["sent"] < 100 * MIB, (
            f"send() did not wait: {progress['sent']} bytes accepted"
        )
        growth_kib = raw_server.rss_kib() - baseline
        assert growth_kib < 64 * 1024, f"server RSS grew by {growth_kib} KiB"
        head = conn.read_head()
        assert head.status == 200
        assert head.header("content-length") == str(total_mib * MIB)
        assert conn.skip(total_mib * MIB, timeout=40) == total_mib * MIB
        conn.send(request("GET", "/ok"))  # connection still in sync
        assert conn.read_response().body == b"ok"
    assert raw_server.rss_kib() - baseline < 64 * 1024


def progress_stalls(server: ServerProcess, key: str) -> dict[str, int]:
    """Poll /progress until the byte count stops moving (backpressure engaged); bounded."""
    history: list[int] = []

    def stalled() -> dict[str, int] | None:
        data = httpx.get(f"{server.url}/progress", params={"id": key}, timeout=5).json()
        history.append(data["sent"])
        if data["done"] or (
            len(history) >= 10 and data["sent"] > 0 and len(set(history[-10:])) == 1
        ):
            return dict(data)
        return None

    return poll(stalled, 15, interval=0.02, what="the streaming app to block in send()")


def test_unread_request_body_is_not_buffered(raw_server: ServerProcess) -> None:
    key = "upload-gate"
    total = 64 * MIB
    baseline = raw_server.rss_kib()
    with RawConnection(raw_server.host, raw_server.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        conn.send(request("POST", f"/gate-read?id={key}", headers=[f"Content-Length: {total}"]))
        poll(lambda: "entered" in get_events(raw_server, key), 5, what="the app to start")
        sent = send_until_blocked(conn.sock, total)
        assert sent < total // 2, f"the server accepted {sent} body bytes the app never asked for"
        growth_kib = raw_server.rss_kib() - baseline
        assert growth_kib < 32 * 1024, f"server RSS grew by {growth_kib} KiB"
        assert (
            httpx.get(f"{raw_server.url}/open-gate", params={"id": key}, timeout=5).text == "opened"
        )
        conn.sock.setblocking(True)
        conn.sock.settimeout(30)
        block = b"z" * (256 * 1024)
        while sent < total:
            step = min(len(block), total - sent)
            conn.sock.sendall(block[:step])
            sent += step
        response = conn.read_response(timeout=30)
    assert response.status == 200
    assert json.loads(response.body)["bytes"] == total


def get_events(server: ServerProcess, key: str) -> list[object]:
    data = httpx.get(f"{server.url}/events", params={"id": key}, timeout=5).json()
    assert isinstance(data, list)
    return data


def send_until_blocked(sock: socket.socket, limit: int) -> int:
    """Send zeros without blocking until the kernel refuses more for 0.3 s in a row; bounded."""
    sock.setblocking(False)
    block = b"z" * (64 * 1024)
    sent = 0
    deadline = time.monotonic() + 10
    last_progress = time.monotonic()
    while sent < limit and time.monotonic() < deadline:
        try:
            sent += sock.send(block[: min(len(block), limit - sent)])
            last_progress = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - last_progress > 0.3:
                break
            time.sleep(0.01)
    return sent


def test_client_leaving_mid_body_gets_no_success(raw_server: ServerProcess) -> None:
    """A client that announces a body and stops early never gets a 200; the server carries on."""
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("POST", "/echo", headers=["Content-Length: 100"]) + b"only ten b")
        conn.sock.shutdown(socket.SHUT_WR)
        try:
            response = conn.read_response()
        except IncompleteResponse as exc:
            assert exc.partial == b""
        else:
            assert 400 <= response.status < 500, response.status
    assert httpx.get(raw_server.url + "/ok", timeout=5).text == "ok"
