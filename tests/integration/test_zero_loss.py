"""Zero requests lost while workers are replaced (issue 9, ATTACKS G), for every load shape.

Each test keeps a load running (tests/integration/loadgen.py: a new connection per request,
keep-alive, or pipelined 8 deep) while the supervisor replaces workers 20 times - by SIGHUP, by
--max-requests recycling, or by SIGTTIN/SIGTTOU - with the shared listening socket and with
--reuse-port. The load generator counts every failed request itself; zero is the only pass.
Retries that HTTP/1.1 allows a client (an idle keep-alive connection closed under it, pipelined
requests left unanswered by a response that said "connection: close") are counted apart.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from conftest import Serve
from harness import ServerProcess, poll
from loadgen import Load, Result

pytestmark = pytest.mark.timeout(150)

ROUNDS = 20
SHAPES = ["close", "keepalive", "pipeline"]
SOCKETS = [
    pytest.param((), id="shared-socket"),
    pytest.param(("--reuse-port",), id="reuse-port"),
]


def count(server: ServerProcess, text: str) -> int:
    return sum(1 for line in server.lines if text in line)


def under_load(server: ServerProcess, shape: str, step: Callable[[int], None]) -> Result:
    """Runs `step(round)` ROUNDS times under load, with requests served between rounds."""
    with Load(server.host, server.port, threads=4, mode=shape) as load:
        load.wait_for(50)
        for round_ in range(1, ROUNDS + 1):
            step(round_)
            load.wait_for(load.result.ok + 20)  # the new workers serve before the next round
    result = load.stop()
    summary = f"{result.ok} ok, {result.retried} retried, {len(result.failures)} failed"
    assert not result.failures, f"{summary}: {result.failures[:5]}"
    assert result.ok > ROUNDS * 20, summary
    return result


@pytest.mark.parametrize("sockets", SOCKETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_sighup_loses_no_request(serve: Serve, shape: str, sockets: tuple[str, ...]) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log", *sockets)

    def sighup(round_: int) -> None:
        server.send_signal(signal.SIGHUP)
        poll(lambda: count(server, "exited (status 0)") >= 2 * round_, 20, what=f"roll {round_}")

    under_load(server, shape, sighup)


@pytest.mark.parametrize("sockets", SOCKETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_max_requests_recycling_loses_no_request(
    serve: Serve, shape: str, sockets: tuple[str, ...]
) -> None:
    args = ("--workers", "2", "--max-requests", "150", "--no-access-log", *sockets)
    server = serve("apps.workers:app", *args)

    def recycled(round_: int) -> None:
        poll(lambda: count(server, "exited (status 0)") >= round_, 20, what=f"recycle {round_}")

    under_load(server, shape, recycled)
    assert count(server, "max-requests") >= ROUNDS


@pytest.mark.parametrize("sockets", SOCKETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_sigttin_sigttou_lose_no_request(
    serve: Serve, shape: str, sockets: tuple[str, ...]
) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log", *sockets)

    def resize(round_: int) -> None:
        server.send_signal(signal.SIGTTIN)
        poll(lambda: count(server, "ready") >= 2 + round_, 20, what=f"worker {round_} added")
        server.send_signal(signal.SIGTTOU)
        poll(lambda: count(server, "exited (status 0)") >= round_, 20, what=f"retire {round_}")

    under_load(server, shape, resize)
