"""The engine's request runner (src/bridge/asgi/runner.hpp): the C coroutine each request's
Task runs instead of a Python wrapper. It must accept every awaitable an ASGI app may return,
fail like `await app(...)` would, and look like a coroutine to asyncio, inspect and anyio."""

from __future__ import annotations

import httpx
from conftest import Serve
from harness import poll


def test_an_app_returning_a_non_coroutine_awaitable_is_served(serve: Serve) -> None:
    server = serve("apps.runner_apps:awaitable_app", "--lifespan", "off")
    assert httpx.get(server.url + "/").text == "awaitable"


def test_an_app_that_is_not_async_is_a_500_with_a_hint(serve: Serve) -> None:
    server = serve("apps.runner_apps:sync_app", "--lifespan", "off")
    response = httpx.get(server.url + "/")
    assert response.status_code == 500
    poll(lambda: "which cannot be awaited (is it an 'async def' function?)" in server.output,
         5, what="the error logged")  # fmt: skip
    assert "Exception in ASGI application" in server.output


def test_an_app_raising_when_called_is_a_500_with_its_traceback(serve: Serve) -> None:
    server = serve("apps.runner_apps:raising_call_app", "--lifespan", "off")
    assert httpx.get(server.url + "/").status_code == 500
    poll(lambda: "ValueError: raised while being called" in server.output, 5, what="traceback")
    assert "in raising_call_app" in server.output  # the app's own frame is in the traceback
    assert httpx.get(server.url + "/").status_code == 500  # and the server goes on


def test_asyncio_inspect_and_anyio_see_a_running_coroutine(serve: Serve) -> None:
    server = serve("apps.runner_apps:introspect_app", "--lifespan", "off")
    for _ in range(3):
        assert httpx.get(server.url + "/").text == (
            "CORO_RUNNING True repr-ok cancelled=True taskgroup-ok"
        )


def test_a_non_none_return_value_is_logged_and_the_response_stands(serve: Serve) -> None:
    server = serve("apps.runner_apps:return_value_app", "--lifespan", "off")
    assert httpx.get(server.url + "/").text == "ok"
    poll(lambda: "ASGI callable should return None, but returned 42" in server.output, 5,
         what="the warning")  # fmt: skip


def test_cancelling_an_app_whose_awaitable_has_no_throw_fails_its_request(serve: Serve) -> None:
    # A cancelled Task throws CancelledError into the runner; with no throw() on the app's
    # iterator, the app fails with it (as `await` would): the request gets its 500 instead of
    # hanging, quietly, since a cancellation is not an app error.
    server = serve("apps.runner_apps:no_throw_app", "--lifespan", "off")
    response = httpx.get(server.url + "/", timeout=5)
    assert response.status_code == 500
    assert httpx.get(server.url + "/", timeout=5).status_code == 500  # and the server goes on
    for text in ("Exception in ASGI application", "AttributeError", "never retrieved"):
        assert text not in server.output, server.output


# --- the eager first step: the app starts inside its Task at once (asgi::step_eagerly) -----------


def test_first_step_runs_in_the_task_and_context_of_the_later_steps(serve: Serve) -> None:
    server = serve("apps.runner_apps:eager_app", "--lifespan", "off")
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/").text
        second = client.get("/").text
    # The same task and context after a bare yield and after a future; nothing set by the first
    # request leaks into the second; the first request's task ended normally.
    assert first == "inherited=unset | True True | none"
    assert second == "inherited=unset | True True | done=True cancelled=False exception=None"


def test_a_task_cancelled_in_its_first_step_gets_cancelled_error_where_it_waits(
    serve: Serve,
) -> None:
    server = serve("apps.runner_apps:self_cancel_app", "--lifespan", "off")
    response = httpx.get(server.url + "/", timeout=4)
    assert response.text == "caught, future cancelled=True"


def test_cancelled_error_raised_in_the_first_step_ends_the_task_cancelled(serve: Serve) -> None:
    server = serve("apps.runner_apps:raise_cancelled_app", "--lifespan", "off")
    assert httpx.get(server.url + "/", timeout=5).status_code == 500
    assert httpx.get(server.url + "/report", timeout=5).text == "cancelled=True"
    assert "Exception in ASGI application" not in server.output


def test_polling_is_disconnected_repeatedly_works(serve: Serve) -> None:
    server = serve("apps.runner_apps:poll_disconnect_app", "--lifespan", "off")
    response = httpx.get(server.url + "/", timeout=5)
    assert (response.status_code, response.text) == (200, "False False False False")


def test_send_and_receive_called_from_another_thread_act_on_the_loop(serve: Serve) -> None:
    # asgiref's async_to_sync calls send() in its worker thread and awaits the result on the
    # loop (Channels' sync consumers): the engine must not be driven from that thread.
    server = serve("apps.runner_apps:thread_send_app", "--lifespan", "off")
    assert httpx.get(server.url + "/").text == "deferred=True"
    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws", 1) + "/ws") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "websocket.connect hi"


def test_async_to_sync_send_from_a_sync_function(serve: Serve) -> None:
    server = serve("apps.runner_apps:channels_style_app", "--lifespan", "off")
    for _ in range(50):
        assert httpx.get(server.url + "/").text == "from a thread"
