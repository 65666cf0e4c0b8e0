"""Quart WebSocket routes, served end to end: the layout of ws_star.py (see its docstring).

Quart does not tell a handler how the client closed: when the client goes away, the handler's
task is cancelled. So /events records the disconnect with code None.
"""

from __future__ import annotations

import asyncio

from quart import Quart, Response, abort, jsonify, request, websocket

SUPPORTED_SUBPROTOCOLS = ("chat.v2", "chat.v1")
EVENTS: list[dict[str, object]] = []
ROOMS: dict[str, set[object]] = {}

app = Quart(__name__)


def record(tag: str, endpoint: str, code: int | None, reason: str | None) -> None:
    EVENTS.append({"tag": tag, "endpoint": endpoint, "code": code, "reason": reason})
    print(f"cw-ws: {endpoint} {tag} closed with {code}", flush=True)  # seen after a shutdown too


@app.websocket("/ws/echo")
async def echo() -> None:
    tag = websocket.args.get("tag", "")
    await websocket.accept()
    try:
        while True:
            await websocket.send(await websocket.receive())
    except asyncio.CancelledError:
        record(tag, "echo", None, None)
        raise


@app.websocket("/ws/json")
async def json_echo() -> None:
    tag = websocket.args.get("tag", "")
    try:
        while True:
            data = await websocket.receive_json()
            keys = sorted(data) if isinstance(data, dict) else []
            await websocket.send_json({"received": data, "keys": keys})
    except asyncio.CancelledError:
        record(tag, "json", None, None)
        raise


@app.websocket("/ws/rooms/<room>")
async def room(room: str) -> None:
    who = websocket.args.get("name", "anonymous")
    await websocket.accept()
    me = websocket._get_current_object()  # the object other handlers' broadcasts send to
    members = ROOMS.setdefault(room, set())
    members.add(me)
    try:
        await websocket.send_json({"type": "welcome", "room": room, "name": who})
        while True:
            text = (await websocket.receive_json())["text"]
            message = {"type": "message", "room": room, "from": who, "text": text}
            for member in list(members):
                await member.send_json(message)  # type: ignore[attr-defined]
    except asyncio.CancelledError:
        record(who, "room", None, None)
        raise
    finally:
        members.discard(me)


@app.get("/rooms/<room>/members")
async def room_members(room: str) -> Response:
    return jsonify(len(ROOMS.get(room, ())))


@app.websocket("/ws/params/<int:item_id>")
async def params(item_id: int) -> None:
    await websocket.accept()
    query = {key: websocket.args.getlist(key) for key in websocket.args}
    await websocket.send_json(
        {"item_id": item_id, "query": query, "path": websocket.path, "framework": "quart"}
    )
    await websocket.close(1000)


@app.websocket("/ws/subproto")
async def subproto() -> None:
    offered = list(websocket.requested_subprotocols)
    chosen = next((p for p in offered if p in SUPPORTED_SUBPROTOCOLS), None)
    await websocket.accept(headers={"x-served-by": "quart"}, subprotocol=chosen)
    await websocket.send_json({"offered": offered, "chosen": chosen})
    while True:
        await websocket.receive()


@app.websocket("/ws/close")
async def close_custom() -> None:
    await websocket.accept()
    await websocket.send("closing")
    await websocket.close(4000, "custom reason")


@app.websocket("/ws/deny")
async def deny() -> None:
    if websocket.args.get("token") != "secret":
        abort(403)  # before accept: Quart sends its 403 response (websocket.http.response)
    await websocket.accept()
    await websocket.send("welcome")
    await websocket.close(1000)


@app.get("/events")
async def events() -> Response:
    tag = request.args.get("tag")
    return jsonify([e for e in EVENTS if tag is None or e["tag"] == tag])
