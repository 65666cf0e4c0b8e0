"""A Starlette application served end to end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

BACKGROUND_DONE: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "hello from starlette startup"}
    print("cw-star: lifespan shutdown ran", flush=True)


async def home(request: Request) -> Response:
    return PlainTextResponse("starlette home")


async def user(request: Request) -> Response:
    return JSONResponse(
        {
            "user_id": request.path_params["user_id"],
            "q": request.query_params.get("q"),
            "tags": request.query_params.getlist("tag"),
        }
    )


async def echo_json(request: Request) -> Response:
    payload = await request.json()
    return JSONResponse({"received": payload, "keys": sorted(payload)}, status_code=201)


async def numbers(request: Request) -> Response:
    count = int(request.query_params.get("n", "5"))

    async def generate() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"{i}\n".encode()

    return StreamingResponse(generate(), media_type="text/plain")


def _remember(name: str) -> None:
    BACKGROUND_DONE.append(name)


async def background(request: Request) -> Response:
    name = request.path_params["name"]
    return PlainTextResponse(f"scheduled {name}", background=BackgroundTask(_remember, name))


async def background_done(request: Request) -> Response:
    return JSONResponse(BACKGROUND_DONE)


async def state(request: Request) -> Response:
    return JSONResponse({"greeting": request.state.greeting})


async def sub_hello(request: Request) -> Response:
    return JSONResponse({"path": request.url.path, "root_path": request.scope.get("root_path")})


app = Starlette(
    routes=[
        Route("/", home),
        Route("/users/{user_id:int}", user),
        Route("/echo-json", echo_json, methods=["POST"]),
        Route("/numbers", numbers),
        Route("/background/{name}", background, methods=["POST"]),
        Route("/background-done", background_done),
        Route("/state", state),
        Mount("/sub", routes=[Route("/hello", sub_hello)]),
    ],
    lifespan=lifespan,
)
