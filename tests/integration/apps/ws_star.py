"""Starlette WebSocket endpoints, served end to end (test_websocket_frameworks.py).

The four ws_* framework apps share one layout so that the tests run against each of them:

    WS  /ws/echo?tag=T            text back as text, bytes back as bytes; the close is recorded
    WS  /ws/json                  each JSON message back as {"received": ..., "keys": [...]}
    WS  /ws/rooms/{room}?name=N   a chat room: each {"text": T} goes to every member
    GET /rooms/{room}/members     how many are in the room now
    WS  /ws/params/{item_id}?...  the path and query parameters as JSON, then a close
    WS  /ws/subproto              accepts the first offered of chat.v2 / chat.v1, says which
    WS  /ws/close                 sends "closing", then closes with 4000 "custom reason"
    WS  /ws/deny?token=T          denied (403) unless T is "secret"
    GET /events?tag=T             what the app saw of the connections tagged T (close codes)
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.exceptions import WebSocketException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

SUPPORTED_SUBPROTOCOLS = ("chat.v2", "chat.v1")
EVENTS: list[dict[str, object]] = []
ROOMS: dict[str, set[WebSocket]] = {}


def record(tag: str, endpoint: str, code: int | None, reason: str | None) -> None:
    EVENTS.append({"tag": tag, "endpoint": endpoint, "code": code, "reason": reason})
    print(f"cw-ws: {endpoint} {tag} closed with {code}", flush=True)  # seen after a shutdown too


async def echo(websocket: WebSocket) -> None:
    tag = websocket.query_params.get("tag", "")
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        record(tag, "echo", exc.code, exc.reason)


class JsonEcho(WebSocketEndpoint):
    """The class-based endpoint: decoding by `encoding`, the close code in on_disconnect."""

    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: object) -> None:
        keys = sorted(data) if isinstance(data, dict) else []
        await websocket.send_json({"received": data, "keys": keys})

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        record(websocket.query_params.get("tag", ""), "json", close_code, None)


async def room(websocket: WebSocket) -> None:
    name = websocket.path_params["room"]
    who = websocket.query_params.get("name", "anonymous")
    await websocket.accept()
    members = ROOMS.setdefault(name, set())
    members.add(websocket)
    try:
        await websocket.send_json({"type": "welcome", "room": name, "name": who})
        while True:
            text = (await websocket.receive_json())["text"]
            message = {"type": "message", "room": name, "from": who, "text": text}
            for member in list(members):
                await member.send_json(message)
    except WebSocketDisconnect as exc:
        record(who, "room", exc.code, exc.reason)
    finally:
        members.discard(websocket)


async def room_members(request: Request) -> Response:
    return JSONResponse(len(ROOMS.get(request.path_params["room"], ())))


async def params(websocket: WebSocket) -> None:
    await websocket.accept()
    query: dict[str, list[str]] = {}
    for key, value in websocket.query_params.multi_items():
        query.setdefault(key, []).append(value)
    await websocket.send_json(
        {
            "item_id": websocket.path_params["item_id"],
            "query": query,
            "path": websocket.url.path,
            "framework": "starlette",
        }
    )
    await websocket.close()


async def subproto(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    chosen = next((p for p in offered if p in SUPPORTED_SUBPROTOCOLS), None)
    await websocket.accept(subprotocol=chosen, headers=[(b"x-served-by", b"starlette")])
    await websocket.send_json({"offered": offered, "chosen": chosen})
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


async def close_custom(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("closing")
    await websocket.close(code=4000, reason="custom reason")


async def deny(websocket: WebSocket) -> None:
    if websocket.query_params.get("token") != "secret":
        # Before accept: the exception middleware closes the socket, which the server answers
        # with an HTTP 403.
        raise WebSocketException(code=1008, reason="bad token")
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close()


async def deny_response(websocket: WebSocket) -> None:
    """Denial with a response of the app's own (the websocket.http.response extension)."""
    await websocket.send_denial_response(
        PlainTextResponse("no entry", status_code=401, headers={"x-denied-by": "starlette"})
    )


async def events(request: Request) -> Response:
    tag = request.query_params.get("tag")
    return JSONResponse([e for e in EVENTS if tag is None or e["tag"] == tag])


app = Starlette(
    routes=[
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/json", JsonEcho),
        WebSocketRoute("/ws/rooms/{room}", room),
        Route("/rooms/{room}/members", room_members),
        WebSocketRoute("/ws/params/{item_id:int}", params),
        WebSocketRoute("/ws/subproto", subproto),
        WebSocketRoute("/ws/close", close_custom),
        WebSocketRoute("/ws/deny", deny),
        WebSocketRoute("/ws/deny-response", deny_response),
        Route("/events", events),
    ]
)
