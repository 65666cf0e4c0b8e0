"""The per-request runner: awaits the app and reports how it ended to the engine.

The engine creates one Task per request running `run_http(app, scope, exchange)`. The exchange
(coachwhip._core.Exchange) provides `receive`/`send` and two hooks: `_finish(result)` when the app
returned (it checks that the response is complete) and `_fail()` when it raised (500 if nothing
was sent yet, otherwise the connection is closed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from coachwhip._core import ClientDisconnected
from coachwhip.logs import error_logger


def _caused_by_disconnect(exc: BaseException | None, depth: int = 0) -> bool:
    """True if `exc`, its cause/context chain or an exception group holds ClientDisconnected.

    Frameworks often wrap our OSError (Starlette raises its own ClientDisconnect from it, anyio
    wraps it in an ExceptionGroup); a client going away is not a server error in any wrapping.
    """
    while exc is not None and depth < 16:
        if isinstance(exc, ClientDisconnected):
            return True
        for inner in getattr(exc, "exceptions", ()) or ():
            if _caused_by_disconnect(inner, depth + 1):
                return True
        exc = exc.__cause__ or exc.__context__
        depth += 1
    return False


async def run_http(app: Any, scope: dict[str, Any], exchange: Any) -> None:
    try:
        result = await app(scope, exchange.receive, exchange.send)
    except asyncio.CancelledError:
        exchange._fail()  # the server cancelled it (shutdown timeout): close quietly
        raise
    except BaseException as exc:
        if _caused_by_disconnect(exc):
            error_logger.debug("client disconnected while the app was running: %r", exc)
        else:
            error_logger.error("Exception in ASGI application", exc_info=exc)
        exchange._fail()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return
    exchange._finish(result)
