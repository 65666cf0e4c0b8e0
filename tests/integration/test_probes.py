"""Health and readiness answered by the engine (issue 10 §3), and --shutdown-delay.

/-/health and /-/ready are answered in C++ without calling the app, each only when its flag is
given; everything else under /-/ (and any other method) still reaches the app.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request
from loadgen import Load

pytestmark = pytest.mark.timeout(60)

PROBES = ("--health", "--readiness")


def get(server: ServerProcess, path: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(server.url + path, timeout=timeout)


def test_health_and_ready_are_answered_by_the_engine(serve: Serve) -> None:
    server = serve("apps.probes:app", *PROBES)
    health, ready = get(server, "/-/health"), get(server, "/-/ready?verbose=1")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert health.headers["cache-control"] == "no-store"
    head = httpx.head(server.url + "/-/health")
    assert head.status_code == 200 and head.headers["content-length"] == "3"
    # Not ours: other paths, other methods, and a request with a body go to the app.
    assert get(server, "/-/other").text.startswith("app /-/other")
    assert httpx.post(server.url + "/-/health", content=b"x").text.startswith("app /-/health")
    # The app never saw the probes: no access line for them either.
    assert not any("/-/health" in line and "GET" in line for line in server.lines)


def test_probes_are_off_unless_asked_for(serve: Serve) -> None:
    server = serve("apps.probes:app")
    assert get(server, "/-/health").text.startswith("app /-/health")
    assert get(server, "/-/ready").text.startswith("app /-/ready")


def test_pipelined_probes_and_requests_keep_their_order(serve: Serve) -> None:
    server = serve("apps.probes:app", *PROBES)
    with RawConnection(server.host, server.port) as conn:
        conn.send(
            request("GET", "/-/health")
            + request("GET", "/one")
            + request("GET", "/-/ready")
            + request("GET", "/two", headers=["Connection: close"])
        )
        bodies = [conn.read_response().body for _ in range(4)]
        conn.read_to_eof(5)
    assert bodies[0] == b"ok\n" and bodies[1].startswith(b"app /one")
    assert bodies[2] == b"ready\n" and bodies[3].startswith(b"app /two")


def test_probes_bypass_the_concurrency_limit(serve: Serve) -> None:
    server = serve("apps.probes:app", *PROBES, "--limit-concurrency", "1")
    with RawConnection(server.host, server.port, timeout=10) as held:
        held.send(request("GET", "/sleep?s=2"))  # takes the only slot for 2 s
        poll(lambda: get(server, "/other").status_code == 503, 5, what="the slot to be taken")
        assert get(server, "/-/health").status_code == 200
        assert get(server, "/-/ready").status_code == 200
        assert held.read_response().body.startswith(b"app /sleep")


def test_a_worker_stuck_in_blocking_code_never_answers_health(serve: Serve, tmp_path: Path) -> None:
    server = serve("apps.probes:app", *PROBES)
    mark = tmp_path / "blocking"
    with RawConnection(server.host, server.port, timeout=10) as held:
        held.send(request("GET", f"/block?s=2&mark={mark}"))
        poll(mark.exists, 5, what="the app to block its event loop")
        with pytest.raises(httpx.TimeoutException):
            get(server, "/-/health", timeout=0.5)
        assert held.read_response().status == 200
    assert get(server, "/-/health").status_code == 200


def test_ready_is_503_while_the_app_starts_and_requests_wait(serve: Serve, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with socket.socket() as probe:  # a free port, known before the "Listening on" line
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve(
        "apps.probes:app",
        *PROBES,
        "--metrics",
        env={"COACHWHIP_TEST_GATE": str(gate)},
        port=port,
        ready=None,
    )
    server.host, server.port = "127.0.0.1", port
    ready = poll(lambda: _try_get(server, "/-/ready"), 15, what="the engine to answer")
    assert ready.status_code == 503 and ready.text == "not ready\n"
    assert _try_get(server, "/-/health").status_code == 200
    with RawConnection(server.host, server.port, timeout=20) as early:
        early.send(request("GET", "/early"))
        # The engine has taken the request (it counts as in flight) and holds it for the app.
        poll(
            lambda: "\ncoachwhip_requests_in_flight 1\n" in get(server, "/-/metrics").text,
            10,
            what="the early request to be held",
        )
        early.sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing answered while the app starts
            early.sock.recv(1)
        early.sock.settimeout(20)
        gate.touch()
        assert early.read_response().body.startswith(b"app /early")
    assert get(server, "/-/ready").status_code == 200


def _try_get(server: ServerProcess, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://{server.host}:{server.port}{path}", timeout=1)
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["single", "workers"])
def test_shutdown_delay_turns_ready_503_and_keeps_serving(
    serve: Serve, workers: tuple[str, ...]
) -> None:
    server = serve("apps.probes:app", *PROBES, "--shutdown-delay", "1.5", *workers)
    with Load(server.host, server.port, path="/ok", threads=4, mode="close") as load:
        load.wait_for(50)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        poll(lambda: get(server, "/-/ready").status_code == 503, 2, what="/-/ready to be 503")
        turned = time.monotonic() - signalled
        done = load.result.ok
        load.wait_for(done + 200)  # still serving new connections while not ready
        # here a load balancer would have taken the instance out of rotation
        result = load.stop()
    assert not result.failures, result.failures[:3]
    assert turned < 1.0
    assert server.wait_exit(15) == 0
    assert time.monotonic() - signalled >= 1.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--shutdown-delay", "-1"), "--shutdown-delay: must be at least 0"),
        (("--shutdown-delay", "soon"), "expected a number of seconds"),
        (("--health", "--readiness", "--metrics-bind", "nowhere"), "--metrics-bind: expected"),
    ],
)
def test_bad_probe_settings_are_usage_errors(
    serve: Serve, args: tuple[str, ...], message: str
) -> None:
    server = serve("apps.probes:app", *args, ready=None)
    assert server.wait_exit(10) == 2
    assert any(message in line for line in server.lines), server.lines[-3:]
