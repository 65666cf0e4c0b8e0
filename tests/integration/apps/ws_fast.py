"""FastAPI WebSocket endpoints, served end to end: the layout of ws_star.py (see its docstring),
written the FastAPI way (typed path and query parameters, dependencies, a connection manager as
in FastAPI's tutorial)."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    Depends,
    FastAPI,
    Query,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    status,
)

SUPPORTED_SUBPROTOCOLS = ("chat.v2", "chat.v1")
EVENTS: list[dict[str, object]] = []

app = FastAPI()


def record(tag: str, endpoint: str, code: int | None, reason: str | None) -> None:
    EVENTS.append({"tag": tag, "endpoint": endpoint, "code": code, "reason": reason})
    print(f"cw-ws: {endpoint} {tag} closed with {code}", flush=True)  # seen after a shutdown too


class ConnectionManager:
    """The shared set of connections each room broadcasts to."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[WebSocket]] = {}

    async def connect(self, room: str, websocket: WebSocket) -> None:
        await websocket.accept()
        self.rooms.setdefault(room, set()).add(websocket)

    def disconnect(self, room: str, websocket: WebSocket) -> None:
        self.rooms.get(room, set()).discard(websocket)

    async def broadcast(self, room: str, message: dict[str, object]) -> None:
        for connection in list(self.rooms.get(room, ())):
            await connection.send_json(message)


manager = ConnectionManager()


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket, tag: str = "") -> None:
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


@app.websocket("/ws/json")
async def json_echo(websocket: WebSocket, tag: str = "") -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            keys = sorted(data) if isinstance(data, dict) else []
            await websocket.send_json({"received": data, "keys": keys})
    except WebSocketDisconnect as exc:
        record(tag, "json", exc.code, exc.reason)


@app.websocket("/ws/rooms/{room}")
async def room(websocket: WebSocket, room: str, name: str = "anonymous") -> None:
    await manager.connect(room, websocket)
    try:
        await websocket.send_json({"type": "welcome", "room": room, "name": name})
        while True:
            text = (await websocket.receive_json())["text"]
            await manager.broadcast(
                room, {"type": "message", "room": room, "from": name, "text": text}
            )
    except WebSocketDisconnect as exc:
        record(name, "room", exc.code, exc.reason)
    finally:
        manager.disconnect(room, websocket)


@app.get("/rooms/{room}/members")
async def room_members(room: str) -> int:
    return len(manager.rooms.get(room, ()))


@app.websocket("/ws/params/{item_id}")
async def params(
    websocket: WebSocket,
    item_id: int,
    q: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
) -> None:
    await websocket.accept()
    query: dict[str, list[str]] = {}
    for key, value in websocket.query_params.multi_items():
        query.setdefault(key, []).append(value)
    await websocket.send_json(
        {
            "item_id": item_id,
            "query": query,
            "path": websocket.url.path,
            "framework": "fastapi",
            "typed": {"q": q, "tag": tag},
        }
    )
    await websocket.close()


@app.websocket("/ws/subproto")
async def subproto(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    chosen = next((p for p in offered if p in SUPPORTED_SUBPROTOCOLS), None)
    await websocket.accept(subprotocol=chosen, headers=[(b"x-served-by", b"fastapi")])
    await websocket.send_json({"offered": offered, "chosen": chosen})
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/close")
async def close_custom(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("closing")
    await websocket.close(code=4000, reason="custom reason")


async def require_token(token: str | None = None) -> str:
    if token != "secret":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="bad token")
    return token


@app.websocket("/ws/deny")
async def deny(websocket: WebSocket, token: Annotated[str, Depends(require_token)]) -> None:
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close()


@app.get("/events")
async def events(tag: str | None = None) -> list[dict[str, object]]:
    return [e for e in EVENTS if tag is None or e["tag"] == tag]
