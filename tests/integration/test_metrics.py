"""/-/metrics (issue 10 §3): Prometheus text answered by the engine, checked with
prometheus_client's own parser against the traffic each test sent; summed over every worker in
one scrape; on its own listener with --metrics-bind.
"""

from __future__ import annotations

import signal
import socket
import threading

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, poll, request
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url + "/-/metrics", timeout=5)
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_of(samples: Samples, method: str, status: str) -> float:
    return value(samples, "coachwhip_requests_total", method=method, status=status)


def test_counts_match_the_traffic(serve: Serve) -> None:
    server = serve("apps.raw:app", "--metrics", "--limit-request-body", "10")
    before = scrape(server.url)
    for _ in range(5):
        assert httpx.get(server.url + "/ok").status_code == 200
    for _ in range(2):
        assert httpx.post(server.url + "/echo", content=b"abc").status_code == 200
    assert httpx.post(server.url + "/echo", content=b"x" * 20).status_code == 413
    with RawConnection(server.host, server.port) as conn:  # malformed: 400
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n")
        assert conn.read_response().status == 400
    after = scrape(server.url)
    assert requests_of(after, "GET", "2xx") - requests_of(before, "GET", "2xx") == 5
    assert requests_of(after, "POST", "2xx") == 2
    assert value(after, "coachwhip_refused_total", reason="body_too_large") == 1
    assert value(after, "coachwhip_refused_total", reason="bad_request") == 1
    assert value(after, "coachwhip_request_duration_seconds_count") >= 7
    bucket_inf = value(after, "coachwhip_request_duration_seconds_bucket", le="+Inf")
    assert bucket_inf == value(after, "coachwhip_request_duration_seconds_count")
    assert value(after, "coachwhip_connections_accepted_total") >= 10
    assert value(after, "coachwhip_received_bytes_total") > value(
        before, "coachwhip_received_bytes_total"
    )
    assert value(after, "coachwhip_sent_bytes_total") > 0
    # The scrape itself is not a request the app saw.
    assert requests_of(after, "GET", "2xx") == requests_of(scrape(server.url), "GET", "2xx")


def test_in_flight_and_open_connections_are_gauges(serve: Serve) -> None:
    server = serve("apps.raw:app", "--metrics")
    slow = threading.Thread(target=lambda: httpx.get(server.url + "/slow?s=1.5", timeout=10))
    slow.start()
    poll(
        lambda: value(scrape(server.url), "coachwhip_requests_in_flight") == 1,
        5,
        what="one request in flight",
    )
    assert value(scrape(server.url), "coachwhip_connections_open") >= 2  # slow + the scrape
    slow.join()
    poll(
        lambda: value(scrape(server.url), "coachwhip_requests_in_flight") == 0,
        5,
        what="nothing in flight",
    )


def test_concurrency_refusals_are_counted(serve: Serve) -> None:
    server = serve("apps.raw:app", "--metrics", "--limit-concurrency", "1")
    held = RawConnection(server.host, server.port)
    held.send(request("GET", "/hang?id=c"))
    poll(lambda: httpx.get(server.url + "/ok").status_code == 503, 5, what="a 503")
    assert value(scrape(server.url), "coachwhip_refused_total", reason="concurrency") >= 1
    held.close()


def test_one_scrape_sees_every_worker_and_survives_restarts(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--metrics", "--no-access-log")
    served: set[str] = set()
    for _ in range(200):  # fresh connections: both workers get some
        served.add(httpx.get(server.url + "/ok", headers={"connection": "close"}).text)
    assert len(served) == 2
    for _ in range(4):  # whichever worker answers the scrape, it reports both
        samples = scrape(server.url)
        assert requests_of(samples, "GET", "2xx") >= 200
        assert value(samples, "coachwhip_workers") == 2
        assert value(samples, "coachwhip_worker_starts_total", reason="initial") == 2
    server.send_signal(signal.SIGHUP)
    poll(
        lambda: sum("exited (status 0)" in line for line in server.lines) >= 2,
        20,
        what="both workers rolled",
    )
    samples = poll(
        lambda: (
            (s := scrape(server.url))
            and value(s, "coachwhip_worker_exits_total", reason="graceful") == 2
            and s
        ),
        10,
        what="the exits to be counted",
    )
    assert requests_of(samples, "GET", "2xx") >= 200  # the old workers' counts are kept
    assert value(samples, "coachwhip_worker_starts_total", reason="replace") == 2
    assert value(samples, "coachwhip_workers") == 2


def test_metrics_bind_serves_metrics_apart_from_the_app(serve: Serve) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve("apps.raw:app", "--metrics-bind", f"127.0.0.1:{port}")
    assert httpx.get(server.url + "/ok").status_code == 200
    public = httpx.get(server.url + "/-/metrics")
    assert "coachwhip_requests_total" not in public.text  # the app's port does not expose it
    samples = scrape(f"http://127.0.0.1:{port}")
    assert requests_of(samples, "GET", "2xx") >= 1
    other = httpx.get(f"http://127.0.0.1:{port}/ok")
    assert other.status_code == 404


def test_metrics_bind_with_workers(serve: Serve) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve("apps.workers:app", "--workers", "2", "--metrics-bind", f"127.0.0.1:{port}")
    for _ in range(50):
        httpx.get(server.url + "/ok", headers={"connection": "close"})
    assert requests_of(scrape(f"http://127.0.0.1:{port}"), "GET", "2xx") >= 50


@pytest.mark.parametrize("spec", ["9100", "host:port", "::1:9100", "1.2.3.4:70000"])
def test_bad_metrics_bind_is_a_usage_error(serve: Serve, spec: str) -> None:
    server = serve("apps.raw:app", "--metrics-bind", spec, ready=None)
    assert server.wait_exit(10) == 2
    assert any("--metrics-bind: expected HOST:PORT" in line for line in server.lines), server.lines


def test_scrapes_under_load_never_fail(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--metrics", "--no-access-log")
    stop = threading.Event()
    errors: list[str] = []

    def load() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                if client.get(server.url + "/ok").status_code != 200:
                    errors.append("status")

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    totals = [requests_of(scrape(server.url), "GET", "2xx") for _ in range(30)]
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    # Each scrape may come from either worker; the sums never go backwards by more than the
    # other worker's in-flight lag, and end above where they started.
    assert totals[-1] > totals[0]


def test_websockets_are_counted_while_open(serve: Serve) -> None:
    from websockets.sync.client import connect

    server = serve("apps.ws_app:app", "--metrics")
    ws_url = server.url.replace("http", "ws", 1) + "/echo"
    sockets = [connect(ws_url) for _ in range(3)]
    try:
        for ws in sockets:  # each is open on the server side once it echoes
            ws.send("x")
            assert ws.recv(timeout=10) == "x"
        samples = scrape(server.url)
        assert value(samples, "coachwhip_websockets_open") == 3
        assert value(samples, "coachwhip_websockets_total") == 3
        # The 101 counts as a GET request answered 1xx; the scrape's own GET is not counted.
        assert requests_of(samples, "GET", "1xx") == 3
    finally:
        for ws in sockets:
            ws.close()
    poll(lambda: value(scrape(server.url), "coachwhip_websockets_open") == 0, 10,
         what="the gauge back to 0")  # fmt: skip
    assert value(scrape(server.url), "coachwhip_websockets_total") == 3
