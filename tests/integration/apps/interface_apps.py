"""Apps of every shape, for `--interface` detection (tests/integration/test_interface.py).

WSGI: a Flask app, a plain function of (environ, start_response), an instance of a class whose
__call__ takes (environ, start_response). ASGI 3: an `async def` of (scope, receive, send), a
Starlette app. Undecidable: `def f(*args)` wrappers around an ASGI 3 app and around a WSGI app,
whose signatures say nothing. (The Django WSGIHandler is apps/wsgi_django's
`mysite.wsgi:application`; the ASGI 2 class is apps/asgi2_app.py.)

Every app answers with a body that names its interface and the app, so a test can tell which
protocol actually served the request. The ASGI apps print a line when their lifespan starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

StartResponse = Callable[..., Any]

# --- WSGI ----------------------------------------------------------------------------------------

flask_app = Flask(__name__)


@flask_app.route("/", defaults={"rest": ""})
@flask_app.route("/<path:rest>")
def flask_any(rest: str) -> str:
    return "wsgi: flask_app"


def wsgi_body(environ: dict[str, Any], start_response: StartResponse, name: str) -> list[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    received = len(environ["wsgi.input"].read(size)) if size else 0
    body = f"wsgi: {name} {environ['REQUEST_METHOD']} {environ['PATH_INFO']} {received}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_function(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return wsgi_body(environ, start_response, "wsgi_function")


class WsgiCallable:
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return wsgi_body(environ, start_response, "wsgi_instance")


wsgi_instance = WsgiCallable()


# --- ASGI 3 --------------------------------------------------------------------------------------


async def asgi3_function(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("interface-apps: lifespan startup", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    received = 0
    while True:
        message = await receive()
        received += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = f"asgi3: asgi3_function {scope['method']} {scope['path']} {received}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def starlette_home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("asgi3: starlette_app")


starlette_app = Starlette(routes=[Route("/", starlette_home)])


# --- undecidable: the signature says nothing -----------------------------------------------------


def undecidable_asgi(*args: Any) -> Any:
    """An ASGI 3 app behind a signature-less wrapper (as some decorators make them): whatever it
    is called with, it returns a coroutine (so under --interface wsgi it "returns a coroutine")."""
    return deferred_asgi3(*args)


async def deferred_asgi3(*args: Any) -> None:
    await asgi3_function(*args)


def undecidable_wsgi(*args: Any) -> Any:
    """A WSGI app behind a signature-less wrapper."""
    return wsgi_function(*args)
