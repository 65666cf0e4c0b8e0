"""WebSocket endpoints of real frameworks served end to end: Starlette, FastAPI, Django Channels
(in-memory channel layer) and Quart, driven by the `websockets` and `wsproto` clients.

The four apps (apps/ws_star.py, ws_fast.py, ws_channels.py, ws_quart.py) share one URL layout,
described in ws_star.py, so most tests run against each of them. What an app saw (the close code
of a connection, who is in a room) it answers over HTTP at /events and /rooms/ROOM/members.

COACHWHIP_TEST_WS_UVICORN=/path/to/uvicorn runs these tests against uvicorn (`--ws websockets`)
instead of coachwhip, to check the tests themselves; a venv with uvicorn and the four
frameworks is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets.asyncio.client
import websockets.sync.client
from harness import HERE, ServerProcess, free_port, poll
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

UVICORN = os.environ.get("COACHWHIP_TEST_WS_UVICORN")
FRAMEWORKS = {
    "starlette": "apps.ws_star:app",
    "fastapi": "apps.ws_fast:app",
    "channels": "apps.ws_channels:app",
    "quart": "apps.ws_quart:app",
}
# Quart cancels a handler when its client goes away and does not tell it the close code.
SEES_CLOSE_CODE = {"starlette", "fastapi", "channels"}
TIMEOUT = 10.0
# Open WebSockets when the server shuts down: 1001 "going away" (uvicorn sends 1012).
SHUTDOWN_CLOSE_CODE = 1012 if UVICORN else 1001
BROADCAST_CLIENTS = 20
MESSAGES_EACH = 5


def start_server(app: str, cwd: Path = HERE) -> ServerProcess:
    """coachwhip serving `app` (or uvicorn, see the module docstring), ready for connections."""
    if not UVICORN:
        server = ServerProcess(app, cwd=cwd)
        try:
            server.wait_ready()
        except BaseException:
            server.kill()
            raise
        return server
    port = free_port()
    exec_uvicorn = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
    args = ["--ws", "websockets", "--app-dir", str(cwd), "--port", str(port), app]
    server = ServerProcess(app, cwd=cwd, python_args=["-c", exec_uvicorn, UVICORN, *args])
    try:
        server.wait_ready(r"Uvicorn running on")
    except BaseException:
        server.kill()
        raise
    server.host, server.port = "127.0.0.1", port
    return server


@dataclass
class Served:
    framework: str
    server: ServerProcess

    def ws(self, target: str) -> str:
        return f"ws://{self.server.host}:{self.server.port}{target}"

    def get(self, target: str) -> object:
        response = httpx.get(f"{self.server.url}{target}", timeout=TIMEOUT)
        assert response.status_code == 200, (target, response.status_code, response.text)
        return response.json()

    def events(self, tag: str, count: int = 1) -> list[dict[str, object]]:
        """The app's records for connections tagged `tag`, once there are `count` of them."""

        def check() -> list[dict[str, object]] | None:
            found = self.get(f"/events?tag={tag}")
            assert isinstance(found, list)
            return found if len(found) >= count else None

        return poll(check, TIMEOUT, interval=0.02, what=f"{count} event(s) tagged {tag}")


@pytest.fixture(scope="module", params=list(FRAMEWORKS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    server = start_server(FRAMEWORKS[request.param])
    try:
        yield Served(request.param, server)
    finally:
        server.kill()


def connect(url: str, **kwargs: object) -> websockets.sync.client.ClientConnection:
    return websockets.sync.client.connect(
        url,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        proxy=None,
        **kwargs,  # type: ignore[arg-type]
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- a wsproto client over a plain socket -------------------------------------------------------


class WsprotoClient:
    """A blocking WebSocket client made of a socket and wsproto's sans-I/O state machine."""

    def __init__(
        self, host: str, port: int, target: str, subprotocols: tuple[str, ...] = ()
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.eof = False
        self.send(Request(host=f"{host}:{port}", target=target, subprotocols=list(subprotocols)))

    def close_socket(self) -> None:
        self.sock.close()

    def send(self, event: Event) -> None:
        self.sock.sendall(self.conn.send(event))

    def next_event(self, timeout: float = TIMEOUT) -> Event:
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.eof:
                raise EOFError("the server closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no WebSocket event within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data: bytes | None = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                data = None
            self.conn.receive_data(data)
            self.pending.extend(self.conn.events())
        return self.pending.popleft()

    def handshake(self) -> AcceptConnection:
        event = self.next_event()
        assert isinstance(event, AcceptConnection), event
        return event

    def message(self) -> str | bytes:
        """The next whole message (its frames joined), answering pings on the way."""
        parts: list[str | bytes] = []
        while True:
            event = self.next_event()
            if isinstance(event, Ping):
                self.send(event.response())
                continue
            assert isinstance(event, Message), event
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    return "".join(str(p) for p in parts)
                return b"".join(bytes(p) for p in parts)  # type: ignore[arg-type]


# --- every framework -----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_bytes(served: Served, compression: str | None) -> None:
    with connect(served.ws("/ws/echo"), compression=compression) as ws:
        extensions = ws.response.headers.get("sec-websocket-extensions") if ws.response else None
        assert (extensions or "").startswith("permessage-deflate") == (compression is not None)
        for text in ("hello", "héllo ✓ 🎉", "x" * 100_000):
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
        for data in (b"\x00\xff\x80binary", bytes(range(256)) * 4096):
            ws.send(data)
            assert ws.recv(timeout=TIMEOUT) == data


def test_echo_keeps_order_of_many_queued_messages(served: Served) -> None:
    count = 500
    with connect(served.ws("/ws/echo")) as ws:
        for i in range(count):  # all sent before any is read back
            ws.send(f"message {i}")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(count)] == [
            f"message {i}" for i in range(count)
        ]


def test_json_round_trip(served: Served) -> None:
    payloads: list[object] = [
        {"name": "café ✓", "values": [1, 2.5, None, True], "nested": {"k": "v"}},
        {"z": 1, "a": {"deep": [[], {}]}},
        [1, 2, 3],
    ]
    with connect(served.ws("/ws/json")) as ws:
        for payload in payloads:
            ws.send(json.dumps(payload))
            answer = json.loads(ws.recv(timeout=TIMEOUT))
            keys = sorted(payload) if isinstance(payload, dict) else []
            assert answer == {"received": payload, "keys": keys}


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1001, "going away"), (4001, "bye ✓"), (3000, "")]
)
def test_disconnect_code_seen_by_app(served: Served, code: int, reason: str) -> None:
    tag = unique("close")
    with connect(served.ws(f"/ws/echo?tag={tag}")) as ws:
        ws.send("ping")
        assert ws.recv(timeout=TIMEOUT) == "ping"
        ws.close(code=code, reason=reason)
    [event] = served.events(tag)
    assert event["endpoint"] == "echo"
    if served.framework in SEES_CLOSE_CODE:
        assert event["code"] == code
    if served.framework in ("starlette", "fastapi"):
        assert event["reason"] == reason
    # The JSON endpoint records through another path (Starlette's WebSocketEndpoint.on_disconnect,
    # FastAPI's receive_json, an AsyncWebsocketConsumer).
    tag = unique("close-json")
    with connect(served.ws(f"/ws/json?tag={tag}")) as ws:
        ws.send("{}")
        ws.recv(timeout=TIMEOUT)
        ws.close(code=code, reason=reason)
    [event] = served.events(tag)
    if served.framework in SEES_CLOSE_CODE:
        assert event["code"] == code


def test_close_without_code_is_1005_for_the_app(served: Served) -> None:
    tag = unique("nocode")
    client = WsprotoClient(served.server.host, served.server.port, f"/ws/echo?tag={tag}")
    try:
        client.handshake()
        client.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))  # a close frame, no payload
        reply = client.next_event()
        assert isinstance(reply, CloseConnection), reply
    finally:
        client.close_socket()
    [event] = served.events(tag)
    if served.framework in SEES_CLOSE_CODE:
        assert event["code"] == 1005


def test_dropped_connection_is_1006_for_the_app(served: Served) -> None:
    tag = unique("drop")
    client = WsprotoClient(served.server.host, served.server.port, f"/ws/echo?tag={tag}")
    client.handshake()
    client.send(TextMessage(data="still here"))
    assert client.message() == "still here"
    client.close_socket()  # no close frame: the TCP connection just ends
    [event] = served.events(tag)
    if served.framework in SEES_CLOSE_CODE:
        assert event["code"] == 1006


def test_fragmented_message_and_ping_between_fragments(served: Served) -> None:
    client = WsprotoClient(served.server.host, served.server.port, "/ws/echo")
    try:
        client.handshake()
        client.send(TextMessage(data="frag", message_finished=False))
        client.send(Ping(payload=b"between"))
        client.send(TextMessage(data="mented ✓", message_finished=False))
        client.send(TextMessage(data="!", message_finished=True))
        pong = client.next_event()
        assert isinstance(pong, Pong) and pong.payload == b"between", pong
        assert client.message() == "fragmented ✓!"
        client.send(BytesMessage(data=b"\x01\x02", message_finished=False))
        client.send(BytesMessage(data=b"\x03", message_finished=True))
        assert client.message() == b"\x01\x02\x03"
        client.send(CloseConnection(code=4002, reason="done"))
        reply = client.next_event()
        # The server's close frame repeats the client's code (what websockets and uvicorn do).
        assert isinstance(reply, CloseConnection) and reply.code == 4002, reply
    finally:
        client.close_socket()


def test_broadcast_to_many_clients(served: Served) -> None:
    room = unique("room")
    names = [f"c{i}" for i in range(BROADCAST_CLIENTS)]

    async def speak(ws: websockets.asyncio.client.ClientConnection, name: str) -> None:
        for i in range(MESSAGES_EACH):
            await ws.send(json.dumps({"text": f"{name} says {i}"}))

    async def scenario() -> None:
        clients: list[websockets.asyncio.client.ClientConnection] = []
        try:
            for name in names:
                ws = await websockets.asyncio.client.connect(
                    served.ws(f"/ws/rooms/{room}?name={name}"), open_timeout=TIMEOUT, proxy=None
                )
                clients.append(ws)
                welcome = json.loads(await ws.recv())
                assert welcome == {"type": "welcome", "room": room, "name": name}
            assert served.get(f"/rooms/{room}/members") == BROADCAST_CLIENTS
            # Everyone speaks at once; everyone hears everything, each speaker's lines in order.
            await asyncio.gather(
                *(speak(ws, name) for ws, name in zip(clients, names, strict=True))
            )
            expected = {name: [f"{name} says {i}" for i in range(MESSAGES_EACH)] for name in names}
            for ws in clients:
                heard: dict[str, list[str]] = {name: [] for name in names}
                for _ in range(len(names) * MESSAGES_EACH):
                    message = json.loads(await ws.recv())
                    assert (message["type"], message["room"]) == ("message", room), message
                    heard[message["from"]].append(message["text"])
                assert heard == expected
        finally:
            await asyncio.gather(*(ws.close() for ws in clients))

    asyncio.run(asyncio.wait_for(scenario(), 4 * TIMEOUT))
    poll(
        lambda: served.get(f"/rooms/{room}/members") == 0,
        TIMEOUT,
        what="the room to empty",
    )
    for name in names:
        [event] = served.events(name)
        if served.framework in SEES_CLOSE_CODE:
            assert event["code"] == 1000, event


def test_broadcast_after_some_clients_left(served: Served) -> None:
    room = unique("room")
    leaver_name = f"leaver-{room}"
    with contextlib.ExitStack() as stack:
        stayers = [
            stack.enter_context(connect(served.ws(f"/ws/rooms/{room}?name=s{i}"))) for i in range(3)
        ]
        leaver = stack.enter_context(connect(served.ws(f"/ws/rooms/{room}?name={leaver_name}")))
        for ws in [*stayers, leaver]:
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "welcome"
        leaver.close(code=4003)
        [event] = served.events(leaver_name)
        if served.framework in SEES_CLOSE_CODE:
            assert event["code"] == 4003
        poll(lambda: served.get(f"/rooms/{room}/members") == 3, TIMEOUT, what="3 members")
        stayers[0].send(json.dumps({"text": "who is left?"}))
        for ws in stayers:
            assert json.loads(ws.recv(timeout=TIMEOUT))["text"] == "who is left?"


def test_denied_before_accept_is_403(served: Served) -> None:
    with pytest.raises(InvalidStatus) as denied:
        connect(served.ws("/ws/deny?token=wrong"))
    assert denied.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as denied:
        connect(served.ws("/ws/deny"))
    assert denied.value.response.status_code == 403
    with connect(served.ws("/ws/deny?token=secret")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "welcome"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["chat.v1", "chat.v2"], "chat.v1"),
        (["other", "chat.v2"], "chat.v2"),
        (["other"], None),
        ([], None),
    ],
)
def test_subprotocol_negotiation(served: Served, offered: list[str], chosen: str | None) -> None:
    with connect(served.ws("/ws/subproto"), subprotocols=offered or None) as ws:
        assert ws.subprotocol == chosen
        assert ws.response is not None
        assert ws.response.headers.get("sec-websocket-protocol") == chosen
        assert ws.response.headers.get("x-served-by") == served.framework
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"offered": offered, "chosen": chosen}


def test_subprotocol_seen_by_wsproto(served: Served) -> None:
    client = WsprotoClient(
        served.server.host, served.server.port, "/ws/subproto", subprotocols=("x", "chat.v2")
    )
    try:
        accepted = client.handshake()
        assert accepted.subprotocol == "chat.v2"
        assert json.loads(str(client.message())) == {
            "offered": ["x", "chat.v2"],
            "chosen": "chat.v2",
        }
    finally:
        client.close_socket()


def test_server_closes_with_code_and_reason(served: Served) -> None:
    with connect(served.ws("/ws/close")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "closing"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "custom reason")


def test_path_and_query_params(served: Served) -> None:
    target = "/ws/params/42?q=hello%20world&tag=a&tag=b&empty="
    with connect(served.ws(target)) as ws:
        data = json.loads(ws.recv(timeout=TIMEOUT))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert data["framework"] == served.framework
    assert data["item_id"] == 42
    assert data["path"] == "/ws/params/42"
    assert data["query"] == {"q": ["hello world"], "tag": ["a", "b"], "empty": [""]}
    if served.framework == "fastapi":
        assert data["typed"] == {"q": "hello world", "tag": ["a", "b"]}


# What each framework answers when the path parameter is not an int: Starlette finds no route and
# closes before accept (403); FastAPI's validation error closes with 1008 before accept (403); Quart
# sends its 404 page (websocket.http.response); Channels' URLRouter raises ValueError before
# accept, which the server answers with 500.
BAD_PATH_STATUS = {"starlette": 403, "fastapi": 403, "quart": 404, "channels": 500}


def test_path_param_of_the_wrong_type(served: Served) -> None:
    with pytest.raises(InvalidStatus) as denied:
        connect(served.ws("/ws/params/not-a-number"))
    assert denied.value.response.status_code == BAD_PATH_STATUS[served.framework]


def test_plain_http_still_served(served: Served) -> None:
    response = httpx.get(f"{served.server.url}/rooms/nobody/members", timeout=TIMEOUT)
    assert (response.status_code, response.json()) == (200, 0)


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_shutdown_closes_open_websockets_with_1001(framework: str) -> None:
    served = Served(framework, start_server(FRAMEWORKS[framework]))
    tags = [unique("shutdown") for _ in range(3)]
    try:
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(served.ws(f"/ws/echo?tag={t}"))) for t in tags]
            for ws in clients:
                ws.send("still here")
                assert ws.recv(timeout=TIMEOUT) == "still here"
            served.server.send_signal(signal.SIGTERM)
            for ws in clients:
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=TIMEOUT)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == SHUTDOWN_CLOSE_CODE
        # uvicorn re-raises the SIGTERM once it has shut down: it "exits" by that signal.
        assert served.server.wait_exit(TIMEOUT) == (-signal.SIGTERM if UVICORN else 0)
        for tag in tags:
            seen = served.server.wait_for_line(rf"cw-ws: echo {tag} closed with (\S+)", TIMEOUT)
            if framework in SEES_CLOSE_CODE:
                assert seen.group(1) == str(SHUTDOWN_CLOSE_CODE)
    finally:
        served.server.kill()


# --- one framework each --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starlette() -> Iterator[Served]:
    server = start_server(FRAMEWORKS["starlette"])
    try:
        yield Served("starlette", server)
    finally:
        server.kill()


def test_starlette_denial_response_with_websockets(starlette: Served) -> None:
    with pytest.raises(InvalidStatus) as denied:
        connect(starlette.ws("/ws/deny-response"))
    response = denied.value.response
    assert response.status_code == 401
    assert response.headers.get("x-denied-by") == "starlette"
    assert response.body == b"no entry"


def test_starlette_denial_response_with_wsproto(starlette: Served) -> None:
    client = WsprotoClient(starlette.server.host, starlette.server.port, "/ws/deny-response")
    try:
        rejected = client.next_event()
        assert isinstance(rejected, RejectConnection), rejected
        assert rejected.status_code == 401
        assert (b"x-denied-by", b"starlette") in list(rejected.headers)
        body = b""
        while rejected.has_body:
            event = client.next_event()
            assert isinstance(event, RejectData), event
            body += event.data
            if event.body_finished:
                break
        assert body == b"no entry"
    finally:
        client.close_socket()
