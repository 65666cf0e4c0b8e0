"""SIGTERM / SIGINT: stop accepting, finish requests in flight (bounded), close idle connections."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
from conftest import Serve
from harness import (
    IncompleteResponse,
    RawConnection,
    ServerProcess,
    connection_refused,
    poll,
    request,
)


def events(server: ServerProcess, key: str) -> list[object]:
    data = httpx.get(f"{server.url}/events", params={"id": key}, timeout=5).json()
    assert isinstance(data, list)
    return data


class InFlight:
    """A request sent on a raw connection; its response is read in a thread."""

    def __init__(self, server: ServerProcess, target: str) -> None:
        self.conn = RawConnection(server.host, server.port, timeout=60)
        self.conn.send(request("GET", target))
        self.result: object = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.result = self.conn.read_response(timeout=60)
        except (IncompleteResponse, OSError) as exc:
            self.result = exc

    def join(self, timeout: float) -> object:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request in flight neither finished nor was closed"
        self.conn.close()
        return self.result


def test_sigterm_lets_the_request_in_flight_finish(serve: Serve) -> None:
    server = serve("apps.raw:app")
    key = uuid.uuid4().hex
    flight = InFlight(server, f"/slow?s=2&id={key}")
    poll(lambda: "entered" in events(server, key), 5, what="the slow request to start")
    server.send_signal(signal.SIGTERM)
    poll(
        lambda: connection_refused(server.host, server.port),
        1.5,
        what="new connections to be refused",
    )
    assert server.running(), "the server exited with a request in flight"
    result = flight.join(10)
    assert not isinstance(result, Exception), f"the request in flight failed: {result!r}"
    assert getattr(result, "status", None) == 200
    assert getattr(result, "body", None) == b"slow done"
    assert server.wait_exit(10) == 0
    assert server.find_line(r"cw-raw: lifespan shutdown ran"), server.output


def test_sigterm_with_nothing_in_flight_exits_promptly(serve: Serve) -> None:
    server = serve("apps.raw:app")
    start = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - start < 3


def test_idle_keep_alive_connection_is_closed_at_shutdown(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-keep-alive", "60")
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().body == b"ok"
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert conn.read_to_eof(timeout=5) == b""
        assert time.monotonic() - start < 3
    assert server.wait_exit(10) == 0


def test_graceful_timeout_bounds_a_request_that_never_finishes(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-graceful-shutdown", "1")
    key = uuid.uuid4().hex
    flight = InFlight(server, f"/hang?id={key}")
    poll(lambda: "entered" in events(server, key), 5, what="the hanging request to start")
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    code = server.wait_exit(10)
    elapsed = time.monotonic() - start
    assert code == 0, server.output
    assert 0.7 <= elapsed <= 5, f"exited {elapsed:.2f} s after SIGTERM with a 1 s graceful timeout"
    result = flight.join(5)
    assert (
        isinstance(result, IncompleteResponse | OSError) or getattr(result, "status", 0) >= 500
    ), result


def test_graceful_timeout_from_env(serve: Serve) -> None:
    server = serve("apps.raw:app", env={"COACHWHIP_TIMEOUT_GRACEFUL_SHUTDOWN": "1"})
    key = uuid.uuid4().hex
    flight = InFlight(server, f"/hang?id={key}")
    poll(lambda: "entered" in events(server, key), 5, what="the hanging request to start")
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert time.monotonic() - start <= 5
    flight.join(5)


def test_second_sigint_exits_immediately(serve: Serve) -> None:
    server = serve("apps.raw:app")  # graceful timeout: the 30 s default
    key = uuid.uuid4().hex
    flight = InFlight(server, f"/hang?id={key}")
    poll(lambda: "entered" in events(server, key), 5, what="the hanging request to start")
    server.send_signal(signal.SIGINT)
    poll(
        lambda: connection_refused(server.host, server.port),
        2,
        what="the first SIGINT to stop accepting",
    )
    assert server.running(), "one SIGINT with a request in flight must wait for it"
    start = time.monotonic()
    server.send_signal(signal.SIGINT)
    server.wait_exit(5)
    assert time.monotonic() - start < 3
    assert server.proc.returncode != -signal.SIGKILL
    flight.join(5)


def test_requests_during_shutdown_on_a_kept_alive_connection(serve: Serve) -> None:
    """After SIGTERM a keep-alive connection gets the response in flight, then is closed."""
    server = serve("apps.raw:app")
    key = uuid.uuid4().hex
    with RawConnection(server.host, server.port, timeout=10) as conn:
        conn.send(request("GET", f"/slow?s=0.8&id={key}"))
        poll(lambda: "entered" in events(server, key), 5, what="the slow request to start")
        server.send_signal(signal.SIGTERM)
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"slow done")
        assert (response.header("connection") or "close").lower() == "close"
        assert conn.read_to_eof(timeout=5) == b""
    assert server.wait_exit(10) == 0
