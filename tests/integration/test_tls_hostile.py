"""Hostile clients on the TLS port (README "TLS", "Hostile clients"): a ClientHello trickled one
byte per 0.5 s, a silent client, plain HTTP, garbage, truncated handshakes, and a client that
completes the handshake, asks for a large response and never reads it. After each, the server
still serves ordinary TLS clients.
"""

from __future__ import annotations

import json
import os
import random
import resource
import select
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request
from tlscerts import (
    Certs,
    TlsConnection,
    client_context,
    client_hello,
    fetch,
    first_record_type,
    serve_tls,
    start_tls_server,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def patient(certs: Certs) -> Iterator[ServerProcess]:
    """A server whose handshake timeout (10 s) is far longer than any close these tests expect:
    a close within a few seconds is the server's answer to the bytes, not the timer."""
    server = start_tls_server(certs.ecdsa, "--timeout-tls-handshake", "10")
    yield server
    server.kill()


def still_serving(server: ServerProcess, certs: Certs) -> None:
    for version in ("1.2", "1.3"):
        answer = fetch(server, "/hello", client_context(certs, version=version))
        assert answer.status == 200 and answer.body == b"hello"


def closed_within(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Reads until the peer closes (EOF or reset); returns what came and when (s from now).
    Fails if the connection is still open after `timeout` s."""
    start = time.monotonic()
    received = b""
    sock.settimeout(timeout)
    try:
        while True:
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                raise AssertionError(f"still open after {timeout} s; received {received[:64]!r}")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s; received {received[:64]!r}") from None
    return received, time.monotonic() - start


# --- slow handshakes ----------------------------------------------------------------------------


def test_trickled_client_hello_is_closed_after_the_handshake_timeout(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--timeout-tls-handshake", "1")
    hello = client_hello("1.3")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.monotonic()
        closed_at = None
        for byte in hello:  # one byte per 0.5 s: ~120 s for the whole hello, if let through
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - start
                break
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                assert first_record_type(data) in ("none", "alert"), data[:32]
                if not data or first_record_type(data) == "alert":
                    closed_at = time.monotonic() - start
                    break
            if time.monotonic() - start > 10:
                break
    assert closed_at is not None, "the trickling client was never closed"
    assert 0.8 <= closed_at <= 4.0, f"closed after {closed_at:.2f} s with a 1 s handshake timeout"
    still_serving(server, certs)


def test_silent_client_is_closed_after_the_handshake_timeout(serve: Serve, certs: Certs):
    # with TCP_DEFER_ACCEPT (the default) the kernel hands a silent connection over after ~1 s
    server = serve_tls(serve, certs.ecdsa, "--timeout-tls-handshake", "1")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        received, after = closed_within(sock, 8)
    assert received == b"" or first_record_type(received) == "alert", received[:32]
    assert 0.8 <= after <= 5.0, f"closed after {after:.2f} s"
    still_serving(server, certs)


# --- plain HTTP on the TLS port ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        request("GET", "/hello", host="localhost"),
        request("POST", "/echo", host="localhost", body=b"x" * 1000),
        request("GET", "/hello", host="localhost", version="1.0"),
    ],
    ids=["get", "post-with-body", "http-1.0"],
)
def test_plain_http_gets_400_mentioning_https_and_close(
    patient: ServerProcess, certs: Certs, data: bytes
):
    with RawConnection(patient.host, patient.port, timeout=5) as conn:
        start = time.monotonic()
        conn.send(data)
        response = conn.read_response(timeout=5)
        assert response.status == 400
        assert b"https" in response.body.lower(), response.body
        assert conn.read_to_eof(timeout=5) == b""
        assert time.monotonic() - start < 5
    still_serving(patient, certs)


def test_partial_plain_http_line_is_closed_not_held(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--timeout-tls-handshake", "1")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET / HT")
        received, after = closed_within(sock, 8)
    assert received == b"" or received.startswith(b"HTTP/1.1 400 "), received[:64]
    assert after <= 5.0, f"closed after {after:.2f} s"
    still_serving(server, certs)


# --- garbage and truncated handshakes -----------------------------------------------------------

SSL2_BODY = (
    b"\x01\x00\x02"  # CLIENT-HELLO, version 2.0
    + b"\x00\x15\x00\x00\x00\x10"  # cipher specs: 21 bytes, no session id, 16-byte challenge
    + bytes.fromhex("0700c0 030080 010080 060040 040080 020080 050080")
    + bytes(range(16))
)
SSL2_HELLO = bytes([0x80 | (len(SSL2_BODY) >> 8), len(SSL2_BODY) & 0xFF]) + SSL2_BODY
GARBAGE = {
    "zeros": b"\x00" * 512,
    "random": b"\x00\xab" + random.Random(20261127).randbytes(4094),
    "absurd-record-length": b"\x16\x03\x01\xff\xff" + random.Random(1).randbytes(64),
    "application-data-first": b"\x17\x03\x03\x00\x20" + bytes(32),
    "server-hello-from-client": b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",
    # an SSL 2.0 ClientHello (version 0x0002, 7 cipher specs, 16-byte challenge)
    "ssl2-style-hello": SSL2_HELLO,
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_is_closed(patient: ServerProcess, certs: Certs, name: str):
    with socket.create_connection((patient.host, patient.port), timeout=5) as sock:
        try:
            sock.sendall(GARBAGE[name])
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still writing: fine
        received, after = closed_within(sock, 4)
    assert first_record_type(received) in ("none", "alert"), received[:32]
    assert after < 4
    still_serving(patient, certs)


@pytest.mark.parametrize("cut", ["header", "half", "all-but-one"])
def test_truncated_handshake_then_eof_is_closed(patient: ServerProcess, certs: Certs, cut: str):
    hello = client_hello("1.3")
    size = {"header": 5, "half": len(hello) // 2, "all-but-one": len(hello) - 1}[cut]
    with socket.create_connection((patient.host, patient.port), timeout=5) as sock:
        sock.sendall(hello[:size])
        sock.shutdown(socket.SHUT_WR)
        received, after = closed_within(sock, 4)
    assert first_record_type(received) in ("none", "alert"), received[:32]
    assert after < 4
    still_serving(patient, certs)


def test_many_hostile_connections_at_once_then_normal_service(patient: ServerProcess, certs: Certs):
    socks = []
    try:
        for i in range(40):
            sock = socket.create_connection((patient.host, patient.port), timeout=5)
            socks.append(sock)
            payload = list(GARBAGE.values())[i % len(GARBAGE)]
            sock.sendall(payload if i % 2 else client_hello("1.3")[: 10 + i])
        still_serving(patient, certs)  # while 40 bad connections are open
    finally:
        for sock in socks:
            sock.close()
    still_serving(patient, certs)


# --- a client that never reads --------------------------------------------------------------------


def progress(server: ServerProcess, certs: Certs, key: str) -> dict[str, object]:
    answer = fetch(server, f"/progress?id={key}", client_context(certs))
    state = json.loads(answer.body)
    assert isinstance(state, dict)
    return state


def test_client_that_never_reads_is_cut_by_timeout_write(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--timeout-write", "1")
    mib = 256
    conn = TlsConnection(server.host, server.port, client_context(certs), timeout=20)
    try:
        conn.send(request("GET", f"/big?mib={mib}&id=stuck", host="localhost"))
        sent_at = time.monotonic()
        poll(lambda: progress(server, certs, "stuck")["sent"], 5, what="the app to start sending")
        # the server keeps serving others while this response is stuck
        still_serving(server, certs)
        state = poll(
            lambda: (s := progress(server, certs, "stuck")).get("error") and s,
            10,
            0.05,
            what="the stuck response to be cut",
        )
        cut_after = time.monotonic() - sent_at
        assert not state["done"], state
        # cut by --timeout-write (1 s), before --min-response-rate's 5 s grace could apply
        assert cut_after < 4.5, f"cut {cut_after:.2f} s after the request"
        still_serving(server, certs)
        # the client's connection ends (reset or EOF) before the whole body arrived
        got = 0
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                conn.sock.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = conn.sock.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            else:
                raise AssertionError("the cut connection did not end")
        except TimeoutError:
            raise AssertionError(f"the cut connection did not end ({got} bytes read)") from None
        except OSError:  # a reset (ConnectionResetError, or SSLError on a broken record)
            pass
        assert got < mib * 1024 * 1024
    finally:
        conn.close()
    still_serving(server, certs)


IDLE_CONNECTIONS = 10_000


@pytest.mark.timeout(240)
def test_ten_thousand_idle_tls_connections_cost_under_16_kib_each(serve: Serve, certs: Certs):
    """Each connection makes a full handshake and one request, then stays open: the server keeps
    no record buffers for it (issue 12: at most 16 KiB per idle TLS connection in all)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= IDLE_CONNECTIONS + 500, f"RLIMIT_NOFILE hard limit {hard} is too low"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = serve_tls(serve, certs.ecdsa, "--no-access-log", "--timeout-keep-alive", "600")
    ctx = client_context(certs)
    ctx.set_alpn_protocols(["http/1.1"])
    idle: list[ssl.SSLSocket] = []
    warm: list[ssl.SSLSocket] = []
    try:
        warm = [one_request(server, ctx) for _ in range(50)]
        baseline = server.rss_kib()
        idle = [one_request(server, ctx) for _ in range(IDLE_CONNECTIONS)]
        after = server.rss_kib()
        per_connection = (after - baseline) * 1024 / IDLE_CONNECTIONS
        # The sanitizer run's allocator adds redzones and a quarantine to every allocation.
        limit = 64 * 1024 if os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD") else 16 * 1024
        assert per_connection <= limit, f"{per_connection:.0f} bytes per idle TLS connection"
        # and every one of them is still served
        for tls in (idle[0], idle[-1], warm[0]):
            tls.sendall(request("GET", "/hello", host="localhost"))
            assert read_answer(tls).endswith(b"hello")
    finally:
        for tls in idle + warm:
            tls.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def one_request(server: ServerProcess, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    tls = ctx.wrap_socket(
        socket.create_connection((server.host, server.port), timeout=10),
        server_hostname="localhost",
    )
    tls.sendall(request("GET", "/hello", host="localhost"))
    read_answer(tls)
    return tls


def read_answer(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while not (data.endswith(b"hello") and b"\r\n\r\n" in data):
        chunk = tls.recv(4096)
        assert chunk, data
        data += chunk
    return data
