"""WSGI under the engine's operations: recycling, the heartbeat, metrics, limits.

The same machinery as for ASGI (test_workers.py, test_metrics.py); these check it holds when the
app runs on the WSGI threads and the engine on a thread of its own.
"""

from __future__ import annotations

import contextlib
import threading

import httpx
import pytest
from conftest import Serve
from harness import poll
from loadgen import Load
from test_metrics import requests_of, scrape, value
from test_workers import count_lines, workers_of

pytestmark = pytest.mark.timeout(90)

APP = "apps.wsgi_app:app"


def get_in_background(url: str) -> threading.Thread:
    """A GET on its own thread; its outcome does not matter (the worker may be killed)."""

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_max_requests_recycles_wsgi_workers_without_failed_requests(serve: Serve) -> None:
    server = serve(
        APP, "--interface", "wsgi", "--workers", "2", "--max-requests", "60", "--no-access-log"
    )
    first = workers_of(server)
    with Load(server.host, server.port, threads=4, path="/ok") as load:
        poll(
            lambda: (
                count_lines(server, "exited (status 0)") >= 2 and not (workers_of(server) & first)
            ),
            30,
            what="both first workers recycled",
        )
    result = load.stop()
    assert not result.failures, result.failures[:5]
    assert result.ok > 100


def test_worker_whose_wsgi_threads_are_all_stuck_is_replaced(serve: Serve) -> None:
    server = serve(
        APP,
        "--interface",
        "wsgi",
        "--workers",
        "2",
        "--threads",
        "1",
        "--timeout-worker-healthcheck",
        "1",
        "--timeout-graceful-shutdown",
        "1",
    )
    before = workers_of(server)
    # Eight sleeping requests over two one-thread workers: one worker has at least four, so its
    # thread sleeps while the others wait behind it and its queue does not move.
    for i in range(8):
        get_in_background(f"{server.url}/sleep?s=30&id=s{i}")
    server.wait_for_line(r"All 1 WSGI threads have been busy for \d+s with requests waiting", 10)
    line = server.wait_for_line(r"Worker \[(\d+)\] is stuck: no heartbeat", 10)
    stuck = int(line.group(1))
    assert stuck in before
    poll(
        lambda: len(workers_of(server)) == 2 and stuck not in workers_of(server),
        10,
        what="the stuck worker replaced",
    )


def test_one_busy_thread_with_an_idle_one_is_not_stuck(serve: Serve) -> None:
    # A long request with a free thread beside it is no reason to replace the worker.
    server = serve(
        APP,
        "--interface",
        "wsgi",
        "--workers",
        "1",
        "--threads",
        "2",
        "--timeout-worker-healthcheck",
        "1",
    )
    before = workers_of(server)
    slow = get_in_background(f"{server.url}/sleep?s=3")
    server.wait_for_line(r"WSGIAPP sleeping", 10)
    for _ in range(20):
        assert httpx.get(f"{server.url}/ok", timeout=5).status_code == 200
    slow.join(10)
    assert workers_of(server) == before
    assert "no heartbeat" not in server.output


def test_metrics_count_wsgi_requests(serve: Serve) -> None:
    server = serve(APP, "--interface", "wsgi", "--metrics")
    for _ in range(5):
        assert httpx.get(f"{server.url}/ok", timeout=5).status_code == 200
    assert httpx.get(f"{server.url}/m/raise-before-start", timeout=5).status_code == 500
    poll(
        lambda: requests_of(scrape(server.url), "GET", "2xx") >= 5,
        5,
        what="five 200s counted",
    )
    samples = scrape(server.url)
    assert requests_of(samples, "GET", "5xx") == 1
    assert value(samples, "coachwhip_requests_in_flight") == 0


def test_limit_concurrency_counts_wsgi_requests_until_they_end(serve: Serve) -> None:
    server = serve(APP, "--interface", "wsgi", "--threads", "4", "--limit-concurrency", "1")
    slow = get_in_background(f"{server.url}/sleep?s=1.5")
    server.wait_for_line(r"WSGIAPP sleeping", 10)
    assert httpx.get(f"{server.url}/ok", timeout=5).status_code == 503
    slow.join(10)
    assert httpx.get(f"{server.url}/ok", timeout=5).status_code == 200
