"""Minimum data rates (issue 9, ATTACKS D): slow POST (R.U.D.Y.) and slow readers, with real
slow clients on real sockets, next to honest ones that must not be cut.

The defaults are 240 bytes/s after a 5 s grace (Kestrel's); the tests raise the rates and
shorten the grace so that each case takes a few seconds.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request

pytestmark = pytest.mark.timeout(60)

GRACE = ("--min-rate-grace", "1")


def events(server: ServerProcess, key: str) -> list[object]:
    data = json.loads(httpx.get(f"{server.url}/events?id={key}").text)
    assert isinstance(data, list)
    return data


def trickle_upload(
    server: ServerProcess, key: str, total: int, pieces: list[tuple[int, float]]
) -> tuple[bytes, float]:
    """POSTs `total` body bytes to /echo-recorded: each (n, pause) sends n bytes, then pauses.
    Returns what the server answered (up to its close) and when its first byte came."""
    sock = socket.create_connection((server.host, server.port), timeout=15)
    start = time.monotonic()
    head = request("POST", f"/echo-recorded?id={key}", headers=[f"Content-Length: {total}"])
    sock.sendall(head)
    answered_at = 0.0
    sock.settimeout(0)
    answer = b""
    try:
        for n, pause in pieces:
            try:
                sock.sendall(b"u" * n)
            except OSError:  # the server closed after its 408: the rest goes nowhere
                break
            end = time.monotonic() + pause
            while time.monotonic() < end:  # pacing the upload, and watching for an early answer
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                if data and not answer:
                    answered_at = time.monotonic() - start
                answer += data
                if not data:
                    return answer, answered_at
        sock.settimeout(15)
        while True:
            data = sock.recv(65536)
            if data and not answer:
                answered_at = time.monotonic() - start
            if not data:
                return answer, answered_at
            answer += data
    finally:
        sock.close()


def test_slow_post_gets_408_and_the_app_sees_a_disconnect(serve: Serve) -> None:
    server = serve("apps.raw:app", *GRACE, "--min-request-body-rate", "2000")
    # 20 bytes every 0.1 s: 200 bytes/s, a tenth of the minimum (and never 1 s silent, so the
    # body timeout alone would let it run for ever)
    answer, after = trickle_upload(server, "slow", 100_000, [(20, 0.1)] * 60)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert 1.0 <= after <= 3.0, f"408 after {after:.2f} s with a 1 s grace"
    assert poll(lambda: events(server, "slow"), 5, what="the app's read to end") == [
        "http.disconnect"
    ]


def test_slow_but_honest_upload_with_stalls_completes(serve: Serve) -> None:
    """A mobile-style upload: bursts at 20 kB/s with a 0.8 s stall, 2.5 kB/s on average over
    the whole time, above the minimum of 2 kB/s: never cut, however the stalls fall."""
    server = serve("apps.raw:app", *GRACE, "--min-request-body-rate", "2000")
    pieces = [(2000, 0.1)] * 5 + [(0, 0.8)] + [(2000, 0.1)] * 5 + [(0, 0.8)] + [(1000, 0.1)]
    total = sum(n for n, _ in pieces)
    answer, _ = trickle_upload(server, "honest", total, pieces)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert answer.endswith(b"u" * total)
    recorded = events(server, "honest")
    assert len(recorded) == 1 and isinstance(recorded[0], int), recorded  # not a disconnect


def test_concurrent_slow_posts_are_cut_while_others_are_served(serve: Serve) -> None:
    server = serve("apps.raw:app", *GRACE, "--min-request-body-rate", "2000", "--no-access-log")
    results: list[bytes] = []

    def attacker(i: int) -> None:
        results.append(trickle_upload(server, f"a{i}", 10_000_000, [(10, 0.1)] * 50)[0])

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for _ in range(10):  # meanwhile, ordinary requests go through
        assert httpx.post(f"{server.url}/echo", content=b"x" * 5000).status_code == 200
    for thread in threads:
        thread.join(20)
    assert len(results) == 20 and all(r.startswith(b"HTTP/1.1 408 ") for r in results)


def read_slowly(
    server: ServerProcess,
    path: str,
    rate: int,
    limit_s: float,
    rcvbuf: int = 4096,
    body: int | None = None,
) -> tuple[int, bool]:
    """GETs `path` and reads it at about `rate` bytes/s for at most `limit_s` seconds, or until
    the head and `body` bytes are in. Returns the body bytes read and whether the server ended
    the connection (reset or EOF) before that."""
    conn = RawConnection(server.host, server.port, timeout=10)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    conn.send(request("GET", path))
    received, start, cut = b"", time.monotonic(), False
    step = max(1, rate // 20)
    try:
        while time.monotonic() - start < limit_s:
            data = conn.sock.recv(step)
            if not data:
                cut = True
                break
            received += data
            head_end = received.find(b"\r\n\r\n")
            if body is not None and head_end >= 0 and len(received) >= head_end + 4 + body:
                break
            time.sleep(len(data) / rate)  # pacing the reader
    except ConnectionResetError:
        cut = True
    finally:
        conn.close()
    return len(received) - (received.find(b"\r\n\r\n") + 4), cut


def test_slow_reader_is_cut_off_and_the_app_send_raises(serve: Serve) -> None:
    server = serve("apps.raw:app", *GRACE, "--min-response-rate", "50000", "--no-access-log")
    got, cut = read_slowly(server, "/big?mib=64&id=slowread", rate=5000, limit_s=8)
    assert cut, f"a reader at 5 kB/s (minimum 50 kB/s) was never cut off; read {got} bytes"
    progress = poll(
        lambda: httpx.get(f"{server.url}/progress?id=slowread").json().get("error"),
        5,
        what="the app's send() to fail",
    )
    assert progress == "ClientDisconnected"


def test_reader_above_the_minimum_gets_the_whole_response(serve: Serve) -> None:
    server = serve("apps.raw:app", *GRACE, "--min-response-rate", "50000", "--no-access-log")
    total = 1024 * 1024
    got, cut = read_slowly(
        server, "/big?mib=1&id=fastread", rate=400_000, limit_s=20, rcvbuf=65536, body=total
    )
    assert not cut and got >= total, f"read {got} of {total} bytes, cut={cut}"


def test_rates_default_to_kestrels_and_zero_turns_them_off(serve: Serve) -> None:
    from coachwhip.config import Config

    assert (Config().min_request_body_rate, Config().min_response_rate) == (240, 240)
    assert Config().min_rate_grace == 5.0
    server = serve("apps.raw:app", *GRACE, env={"COACHWHIP_MIN_REQUEST_BODY_RATE": "0"})
    answer, _ = trickle_upload(server, "off", 60, [(1, 0.05)] * 60)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--min-request-body-rate", "-1"), "must be at least 0"),
        (("--min-response-rate", "fast"), "'fast': expected a whole number"),
        (("--min-rate-grace", "0"), "must be at least 0.001"),
    ],
)
def test_bad_rate_settings_are_usage_errors(
    serve: Serve, args: tuple[str, ...], message: str
) -> None:
    server = serve("apps.raw:app", *args, ready=None)
    assert server.wait_exit(10) == 2
    assert any(message in line for line in server.lines), server.lines[-3:]
