"""Which interface an app speaks (ASGI 3, ASGI 2 or WSGI), and the ASGI 2 adapter.

`--interface auto` looks at the app once, at startup: well-known classes first (Flask, Django's
handlers, Quart), then the shape of the callable (async or not, how many positional parameters).
It never calls the app. What it cannot tell, it says, and serves as ASGI 3.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from coachwhip.logs import error_logger

KNOWN: dict[tuple[str, str], tuple[str, str]] = {
    ("flask.app", "Flask"): ("wsgi", "Flask app"),
    ("django.core.handlers.wsgi", "WSGIHandler"): ("wsgi", "Django WSGIHandler"),
    ("django.core.handlers.asgi", "ASGIHandler"): ("asgi3", "Django ASGIHandler"),
    ("quart.app", "Quart"): ("asgi3", "Quart app"),
    ("werkzeug.middleware.dispatcher", "DispatcherMiddleware"): ("wsgi", "Werkzeug middleware"),
    ("werkzeug.middleware.proxy_fix", "ProxyFix"): ("wsgi", "Werkzeug middleware"),
}


def _positional(func: Any, skip_self: bool) -> int | None:
    """How many positional parameters `func` takes, or None when it cannot be told (*args)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if skip_self and params:
        params = params[1:]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def detect(app: Any) -> tuple[str | None, str]:
    """("asgi3" | "asgi2" | "wsgi" | None, why) for an app object."""
    for cls in type(app).__mro__:
        known = KNOWN.get((cls.__module__, cls.__qualname__))
        if known:
            return known
    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return "asgi3", "a class whose instances are awaitable"
        count = _positional(app.__init__, skip_self=True)
        if count == 1:
            return "asgi2", "a class built with the scope"
        if count == 2:
            return "wsgi", "a class built with (environ, start_response)"
        return None, "a class whose constructor does not say"
    if not callable(app):
        return None, f"{type(app).__name__} is not callable"
    func = app if inspect.isroutine(app) else type(app).__call__
    bound = not inspect.isroutine(app)
    what = "a function" if inspect.isfunction(app) else "a callable"
    if inspect.iscoroutinefunction(func):
        return "asgi3", f"{what} that is async"
    count = _positional(func, skip_self=bound)
    if count == 2:
        return "wsgi", f"{what} of (environ, start_response)"
    if count == 3:
        return "asgi3", f"{what} of (scope, receive, send)"
    if count == 1:
        return "asgi2", f"{what} of (scope)"
    return None, f"{what} whose parameters do not say"


class ASGI2Adapter:
    """Serves an ASGI 2 app (a callable of the scope that returns a callable of (receive, send))
    as ASGI 3, as uvicorn's ASGI2Middleware does."""

    def __init__(self, app: Callable[[dict[str, Any]], Any]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def choose(app: Any, requested: str, name: str) -> tuple[str, Any, str]:
    """(interface, the app to serve, what to log) for `requested` (a --interface value)."""
    detected, why = detect(app)
    if requested == "auto":
        if detected is None:
            error_logger.warning(
                "could not tell whether %s is ASGI or WSGI (%s): serving it as ASGI 3; choose "
                "with --interface asgi3|asgi2|wsgi",
                name,
                why,
            )
            kind, note = "asgi3", "not detected"
        else:
            kind, note = detected, f"detected: {why}"
    else:
        kind, note = requested, f"--interface {requested}"
        if detected is not None and detected != kind:
            error_logger.warning(
                "--interface %s, but %s looks like %s (%s): if every request fails, use "
                "--interface %s",
                kind,
                name,
                detected.upper(),
                why,
                detected,
            )
    served = ASGI2Adapter(app) if kind == "asgi2" else app
    return kind, served, note
