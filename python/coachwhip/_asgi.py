"""What the engine's request runner needs from Python: logging an app's failure.

The engine creates one asyncio Task per request. It runs a `coachwhip._core.Runner`, a coroutine
written in C (src/bridge/asgi/runner.hpp) that awaits `app(scope, receive, send)` and reports
how it ended to the exchange: `_finish(result)` when the app returned (it checks the response is
complete), `_fail()` when it raised (500 if nothing was sent yet, otherwise the connection is
closed). When it raised, `report_failure(exc)` logs it first.
"""

from __future__ import annotations

import asyncio.coroutines
import collections.abc
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from coachwhip._core import Channel, ClientDisconnected, Runner
from coachwhip.logs import error_logger


def caused_by_disconnect(exc: BaseException | None, depth: int = 0) -> bool:
    """True if `exc`, its cause/context chain or an exception group holds ClientDisconnected.

    Frameworks often wrap our OSError (Starlette raises its own ClientDisconnect from it, anyio
    wraps it in an ExceptionGroup); a client going away is not a server error in any wrapping.
    """
    while exc is not None and depth < 16:
        if isinstance(exc, ClientDisconnected):
            return True
        for inner in getattr(exc, "exceptions", ()) or ():
            if caused_by_disconnect(inner, depth + 1):
                return True
        exc = exc.__cause__ or exc.__context__
        depth += 1
    return False


def report_failure(exc: BaseException) -> None:
    """Called by the engine's request runner when the app raised `exc` (not CancelledError)."""
    if caused_by_disconnect(exc):
        error_logger.debug("client disconnected while the app was running: %r", exc)
    elif isinstance(exc, TypeError) and "positional argument" in str(exc):
        # Flask or Django served as ASGI fails here on every request: say what to do.
        error_logger.error(
            "Exception in ASGI application (calling it with (scope, receive, send) failed: is "
            "it a WSGI app? use --interface wsgi)",
            exc_info=exc,
        )
    else:
        error_logger.error("Exception in ASGI application", exc_info=exc)


# The runner is a coroutine in all but type; say so to the ABC that asyncio.iscoroutine() asks.
collections.abc.Coroutine.register(Runner)

# The app's receive() and send() (Channel objects, written in C) are awaited like coroutine
# functions; they are marked so, for asyncio.iscoroutinefunction() and inspect's, which
# asgiref's async_to_sync asks before it warns "async_to_sync was passed a non-async-marked
# callable". Class attributes, found through each instance: nothing per request.
_ASYNCIO_MARK = getattr(asyncio.coroutines, "_is_coroutine", None)  # Python 3.11 (to 3.13)
_INSPECT_MARK = getattr(inspect, "_is_coroutine_mark", None)  # 3.12+: markcoroutinefunction's
if _ASYNCIO_MARK is not None:
    Channel._is_coroutine = _ASYNCIO_MARK
if _INSPECT_MARK is not None:
    Channel._is_coroutine_marker = _INSPECT_MARK


async def call_in_loop(method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """receive()/send() called from a thread other than the event loop's, then awaited in it.

    asgiref's async_to_sync (Channels' sync consumers, Django's sync views) calls the app's
    send() in its worker thread and awaits the result on the loop. The engine's send() acts when
    called, so from another thread it returns this coroutine instead: the call happens when it is
    awaited, on the loop's thread, as an `async def` send would behave.
    """
    return await method(*args)
