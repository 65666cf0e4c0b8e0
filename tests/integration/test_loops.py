"""The engine under both event loops the Python side can run: uvloop (the default) and asyncio.

The engine's epoll fd is driven through loop.add_reader / loop.call_soon, which the two loops
implement differently; these run the paths that touch the loop (keep-alive, streaming, body
backpressure, disconnect, a framework app) under each.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request

LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_streams_and_uploads(serve: Serve, loop: str) -> None:
    server = serve("apps.raw:app", "--loop", loop)
    server.wait_for_line(rf"Started coachwhip .*, {loop} loop\)", 5)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(20):  # keep-alive: one connection, many requests
            assert client.get("/ok").text == "ok"
        body = bytes(range(256)) * 4096  # 1 MiB: passes the 64 KiB body pause many times
        echoed = client.post("/echo", content=body)
        assert echoed.content == body
        streamed = client.get("/stream?n=50")
        assert streamed.text == "".join(f"chunk-{i}\n" for i in range(50))


@pytest.mark.parametrize("loop", LOOPS)
def test_disconnect_reaches_a_waiting_app(serve: Serve, loop: str) -> None:
    server = serve("apps.raw:app", "--loop", loop)
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/wait-disconnect?id=loops-" + loop))
    poll_events(server, "loops-" + loop, "http.disconnect")


@pytest.mark.parametrize("loop", LOOPS)
def test_fastapi_app(serve: Serve, loop: str) -> None:
    server = serve("apps.fast:app", "--loop", loop)
    response = httpx.get(server.url + "/items/7?q=x")
    assert response.status_code == 200
    assert response.json()["item_id"] == 7


def poll_events(server: ServerProcess, key: str, wanted: str) -> None:
    def seen() -> bool:
        data = httpx.get(f"{server.url}/events?id={key}").json()
        return wanted in data

    poll(seen, 5, what=f"{wanted} recorded by the app")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_task_factory_installed_by_the_app_makes_the_request_tasks(
    serve: Serve, loop: str
) -> None:
    # Without a factory the engine creates request tasks directly (cheaper than
    # loop.create_task); with one, every request task must still come from it.
    server = serve("apps.task_factory:app", "--loop", loop, "--lifespan", "on")
    with httpx.Client(base_url=server.url) as client:
        assert [client.get("/").text for _ in range(3)] == ["factory"] * 3
        assert client.get("/remove").text == "removed"
        assert [client.get("/").text for _ in range(3)] == ["plain"] * 3
        # The engine's own tasks: real asyncio Tasks on the server's loop, named for what they
        # run (a constant name: formatting "Task-<n>" cost ~1.4k instructions per request).
        assert client.get("/task").text == "Task coachwhip.request True"
        assert client.get("/install").text == "installed"
        assert client.get("/").text == "factory"
