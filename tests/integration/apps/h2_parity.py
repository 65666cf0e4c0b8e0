"""The same site twice, as a Starlette app (`star`) and as a FastAPI app (`fast`), for
test_http2_apps.py, which runs one set of checks against both over HTTP/1.1, h2c and h2 (TLS).

Routes (the same paths and answers in both apps; `fast` uses FastAPI's own idioms):
  GET  /json?name=N            {"hello", "http_version", "scheme", "host"} from the request
  POST /multipart              form fields and uploaded files: {"fields": {..}, "files": [{"field",
                               "filename", "content_type", "bytes", "sha256"}, ...]}; `fast`
                               requires the `note` field (422 without it)
  POST /upload                 the raw body hashed as it streams in: {"bytes", "sha256", "chunks"}
  GET  /sse?id=K&n=N           N server-sent events; each one after the first waits until
                               POST /release?id=K (10 s at most, then an `event: timeout`)
  POST /release?id=K           lets /sse?id=K send its next event
  GET  /cookies/set            three Set-Cookie fields (flavour, session, theme)
  GET  /cookies/read           {"cookies": the parsed cookies, "cookie_fields": the raw `cookie`
                               header fields the app got}
  GET  /redirect?code=C        a redirect (status C) to the absolute URL of /target?from=redirect
  GET  /target?from=F          {"method", "from", "url"}
  GET  /doc                    a fixed text document (DOC); HEAD answers its headers only
  GET  /teapot                 raises TeapotError: its handler answers 418 JSON
  GET  /crash                  raises RuntimeError: 500 from the framework's error middleware
  GET  /stream-then-crash      three lines, then the generator raises
  POST /background/{name}      answers at once; a background task then records `name`
  GET  /background-done        the names recorded so far
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Form, HTTPException, UploadFile
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

DOC = "".join(f"document line {i}\n" for i in range(200))
SSE_TIMEOUT = 10.0
BACKGROUND_DONE: list[str] = []
GATES: dict[str, asyncio.Semaphore] = {}


class TeapotError(Exception):
    pass


def gate(key: str) -> asyncio.Semaphore:
    return GATES.setdefault(key, asyncio.Semaphore(0))


def request_info(request: Request, name: str) -> dict[str, Any]:
    return {
        "hello": name,
        "http_version": request.scope.get("http_version"),
        "scheme": request.url.scheme,
        "host": request.headers.get("host"),
    }


async def hash_upload(upload: StarletteUploadFile, field: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await upload.read(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return {
        "field": field,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "bytes": size,
        "sha256": digest.hexdigest(),
    }


async def hash_body(request: Request) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = chunks = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        chunks += 1 if chunk else 0
    return {"bytes": size, "sha256": digest.hexdigest(), "chunks": chunks}


def sse_response(key: str, count: int) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        for i in range(count):
            if i:
                try:
                    await asyncio.wait_for(gate(key).acquire(), SSE_TIMEOUT)
                except TimeoutError:
                    yield "event: timeout\ndata: not released\n\n"
                    return
            yield f"event: tick\nid: {i}\ndata: tick {i} of {key}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


def set_cookies(response: Response) -> Response:
    response.set_cookie("flavour", "oatmeal")
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark", max_age=3600, samesite="lax")
    return response


def cookies_seen(request: Request) -> dict[str, Any]:
    fields = [v.decode("latin-1") for k, v in request.scope["headers"] if k == b"cookie"]
    return {"cookies": dict(request.cookies), "cookie_fields": fields}


def redirect(request: Request, code: int) -> RedirectResponse:
    target = request.url_for("target").include_query_params(**{"from": "redirect"})
    return RedirectResponse(str(target), status_code=code)


def target_info(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "from": request.query_params.get("from"),
        "url": str(request.url),
    }


def crashing_stream() -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0)
        raise RuntimeError("stream-then-crash failed on purpose")

    return StreamingResponse(lines(), media_type="text/plain")


def _remember(name: str) -> None:
    BACKGROUND_DONE.append(name)


async def teapot_handler(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "teapot", "detail": str(exc)}, status_code=418)


# --- Starlette ---------------------------------------------------------------------------------


async def s_json(request: Request) -> Response:
    return JSONResponse(request_info(request, request.query_params.get("name", "world")))


async def s_multipart(request: Request) -> Response:
    fields: dict[str, str] = {}
    files: list[dict[str, Any]] = []
    async with request.form(max_part_size=4 * 1024 * 1024) as form:
        for name, value in form.multi_items():
            if isinstance(value, StarletteUploadFile):
                files.append(await hash_upload(value, name))
            else:
                fields[name] = value
    return JSONResponse({"fields": fields, "files": files})


async def s_upload(request: Request) -> Response:
    return JSONResponse(await hash_body(request))


async def s_sse(request: Request) -> Response:
    return sse_response(request.query_params["id"], int(request.query_params.get("n", "3")))


async def s_release(request: Request) -> Response:
    gate(request.query_params["id"]).release()
    return PlainTextResponse("released")


async def s_cookies_set(request: Request) -> Response:
    return set_cookies(PlainTextResponse("cookies set"))


async def s_cookies_read(request: Request) -> Response:
    return JSONResponse(cookies_seen(request))


async def s_redirect(request: Request) -> Response:
    return redirect(request, int(request.query_params.get("code", "307")))


async def s_target(request: Request) -> Response:
    return JSONResponse(target_info(request))


async def s_doc(request: Request) -> Response:
    return PlainTextResponse(DOC)


async def s_teapot(request: Request) -> Response:
    raise TeapotError("short and stout")


async def s_crash(request: Request) -> Response:
    raise RuntimeError("crash on purpose")


async def s_stream_then_crash(request: Request) -> Response:
    return crashing_stream()


async def s_background(request: Request) -> Response:
    name = request.path_params["name"]
    return JSONResponse({"scheduled": name}, background=BackgroundTask(_remember, name))


async def s_background_done(request: Request) -> Response:
    return JSONResponse(BACKGROUND_DONE)


star = Starlette(
    routes=[
        Route("/json", s_json),
        Route("/multipart", s_multipart, methods=["POST"]),
        Route("/upload", s_upload, methods=["POST"]),
        Route("/sse", s_sse),
        Route("/release", s_release, methods=["POST"]),
        Route("/cookies/set", s_cookies_set),
        Route("/cookies/read", s_cookies_read),
        Route("/redirect", s_redirect),
        Route("/target", s_target, name="target"),
        Route("/doc", s_doc),  # Starlette answers HEAD for every GET route
        Route("/teapot", s_teapot),
        Route("/crash", s_crash),
        Route("/stream-then-crash", s_stream_then_crash),
        Route("/background/{name}", s_background, methods=["POST"]),
        Route("/background-done", s_background_done),
    ],
    exception_handlers={TeapotError: teapot_handler},
)


# --- FastAPI -----------------------------------------------------------------------------------

fast = FastAPI()
fast.add_exception_handler(TeapotError, teapot_handler)


@fast.get("/json")
async def f_json(request: Request, name: str = "world") -> dict[str, Any]:
    return request_info(request, name)


@fast.post("/multipart")
async def f_multipart(
    request: Request,
    note: str = Form(...),
    files: list[UploadFile] | None = None,
    extra: list[UploadFile] | None = None,
) -> dict[str, Any]:
    hashed = [await hash_upload(f, "files") for f in files or []]
    hashed += [await hash_upload(f, "extra") for f in extra or []]
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    assert fields["note"] == note
    return {"fields": fields, "files": hashed}


@fast.post("/upload")
async def f_upload(request: Request) -> dict[str, Any]:
    return await hash_body(request)


@fast.get("/sse")
async def f_sse(id: str, n: int = 3) -> StreamingResponse:
    return sse_response(id, n)


@fast.post("/release")
async def f_release(id: str) -> Response:
    gate(id).release()
    return PlainTextResponse("released")


@fast.get("/cookies/set")
async def f_cookies_set(response: Response) -> Response:
    return set_cookies(PlainTextResponse("cookies set"))


@fast.get("/cookies/read")
async def f_cookies_read(request: Request) -> dict[str, Any]:
    return cookies_seen(request)


@fast.get("/redirect")
async def f_redirect(request: Request, code: int = 307) -> RedirectResponse:
    return redirect(request, code)


@fast.get("/target", name="target")
async def f_target(request: Request) -> dict[str, Any]:
    return target_info(request)


@fast.api_route("/doc", methods=["GET", "HEAD"])
async def f_doc() -> PlainTextResponse:
    return PlainTextResponse(DOC)


@fast.get("/teapot")
async def f_teapot() -> None:
    raise TeapotError("short and stout")


@fast.get("/crash")
async def f_crash() -> None:
    raise RuntimeError("crash on purpose")


@fast.get("/not-found")
async def f_not_found() -> None:
    raise HTTPException(status_code=404, detail="nothing here")


@fast.get("/stream-then-crash")
async def f_stream_then_crash() -> StreamingResponse:
    return crashing_stream()


@fast.post("/background/{name}")
async def f_background(name: str, background: BackgroundTasks) -> dict[str, str]:
    background.add_task(_remember, name)
    return {"scheduled": name}


@fast.get("/background-done")
async def f_background_done() -> list[str]:
    return BACKGROUND_DONE
