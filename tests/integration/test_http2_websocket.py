"""WebSocket over HTTP/2 (RFC 8441, extended CONNECT), end to end: a real server running
apps/ws_app.py (and the Starlette/FastAPI apps of test_websocket_frameworks.py, and the demo in
headless Chromium), driven by real clients: the `h2` library for HTTP/2 (test_http2.H2Client)
with wsproto's FrameProtocol for the RFC 6455 frames on the stream, and a raw frame client
(test_http2.Frames) where the client must say what `h2` would refuse to.

What the HTTP/1.1 WebSocket tests check, over one HTTP/2 stream per WebSocket: the SETTINGS
(ENABLE_CONNECT_PROTOCOL only with --ws), echo of text and bytes (1 MiB, byte-exact; many in a
row), several WebSockets and ordinary requests multiplexed on one connection, the scope (ws and
wss), subprotocols, permessage-deflate, denial (403 and the websocket.http.response extension),
app errors and returns, the disconnect codes (client close, RST_STREAM, END_STREAM, a dropped
connection), pings and keepalive, flow control as backpressure both ways (and one stalled
WebSocket not stalling the connection), --ws-max-size, refused handshakes (426, 400; under
--ws none no setting and RST_STREAM PROTOCOL_ERROR; a plain CONNECT is 501), SIGTERM (close
1001 and GOAWAY), Starlette and FastAPI endpoints, and Chromium's chat page over HTTPS, whose
WebSocket must be an extended CONNECT on the page's own HTTP/2 connection.

The app reports what it saw on lines `WSAPP {"id": ..., "event": ...}` of the server's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import h2.events
import httpx
import pytest
from conftest import Serve
from harness import HERE, ServerProcess, poll
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame
from test_http2 import Frames, H2Client, PeakRss, Stream
from test_http2_apps import recording_devtools
from test_websocket import app_was_called, is_disconnect, unique, wait_event
from test_websocket_browser import browser as browser  # the fixtures, reused
from test_websocket_browser import browser_url as browser_url
from test_websocket_browser import page_script
from tlscerts import Certs, client_context, wait_https
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode

pytestmark = pytest.mark.timeout(60)

WS_APP = "apps.ws_app:app"
REPO = HERE.parents[1]
MIB = 1024 * 1024
CHUNK = 64 * 1024  # ws_app's /stream message size
ENABLE_CONNECT_PROTOCOL = 0x8
CANCEL = 0x8
PROTOCOL_ERROR = 0x1
TIMEOUT = 10.0


# --- an RFC 8441 client: h2 for the stream, wsproto for the frames on it ------------------------


class WsH2Client(H2Client):
    """H2Client that also counts the DATA it has not acknowledged on `no_ack` streams, so that
    resume() can reopen their windows later."""

    def __init__(self, server: ServerProcess, **kw: Any) -> None:
        self.unacked: dict[int, int] = {}
        super().__init__(server, **kw)

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived) and event.stream_id in self.no_ack:
            sid = event.stream_id
            self.unacked[sid] = self.unacked.get(sid, 0) + event.flow_controlled_length
        super().handle(event)

    @property
    def connect_protocol(self) -> int:
        return int(self.h2.remote_settings.enable_connect_protocol or 0)

    def resume(self, sid: int) -> None:
        """Acknowledge what `sid` received while it was not read, and from now on at once."""
        self.no_ack.discard(sid)
        owed = self.unacked.pop(sid, 0)
        if owed:
            self.h2.acknowledge_received_data(owed, sid)
            self.flush()

    def connect(
        self,
        path: str,
        *,
        protocols: tuple[str, ...] = (),
        deflate: bool = False,
        version: str = "13",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> H2WebSocket:
        """Opens the extended CONNECT stream; the WebSocket is usable once accepted()."""
        fields = [(":protocol", "websocket"), ("sec-websocket-version", version)]
        if protocols:
            fields.append(("sec-websocket-protocol", ", ".join(protocols)))
        extension = PerMessageDeflate() if deflate else None
        if extension is not None:
            fields.append(("sec-websocket-extensions", f"permessage-deflate; {extension.offer()}"))
        sid = self.request(path, method="CONNECT", headers=[*fields, *headers], end=False)
        return H2WebSocket(self, sid, extension)


class H2WebSocket:
    """One WebSocket on an HTTP/2 stream: RFC 6455 frames (masked by us) in the stream's DATA."""

    def __init__(self, client: WsH2Client, sid: int, extension: PerMessageDeflate | None) -> None:
        self.client = client
        self.sid = sid
        self.extension = extension
        self.proto: FrameProtocol | None = None
        self.frames: deque[Frame] = deque()
        self.wire_in = 0  # WebSocket bytes received (frames as sent, compressed or not)

    @property
    def stream(self) -> Stream:
        return self.client.streams[self.sid]

    def response(self, timeout: float = 5.0) -> Stream:
        """The stream once its response head (or its end) came."""
        stream = self.stream
        self.client.wait(lambda: stream.headers or stream.done, timeout, "the CONNECT response")
        return stream

    def accepted(self, timeout: float = 5.0) -> H2WebSocket:
        stream = self.response(timeout)
        assert stream.status == 200, stream
        extensions = []
        agreed = stream.header("sec-websocket-extensions")
        if agreed is not None:
            assert self.extension is not None, f"an extension nobody offered: {agreed}"
            assert agreed.split(";")[0].strip() == "permessage-deflate", agreed
            self.extension.finalize(agreed)
            extensions.append(self.extension)
        self.proto = FrameProtocol(client=True, extensions=extensions)
        return self

    @property
    def deflating(self) -> bool:
        return self.proto is not None and bool(self.proto.extensions)

    def send_raw(self, data: bytes, timeout: float = 10.0) -> None:
        self.client.upload(self.sid, bytes(data), end=False, timeout=timeout)

    def send(self, message: str | bytes, fin: bool = True, timeout: float = 10.0) -> int:
        """Sends one message (or a fragment); returns its size on the wire."""
        assert self.proto is not None
        data = self.proto.send_data(message, fin=fin)
        self.send_raw(data, timeout)
        return len(data)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        assert self.proto is not None
        self.send_raw(self.proto.close(code, reason or None))

    def _take(self) -> None:
        assert self.proto is not None
        data = self.stream.data
        if data:
            self.wire_in += len(data)
            self.proto.receive_bytes(bytes(data))
            data.clear()
            self.frames.extend(self.proto.received_frames())

    def frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            self._take()
            if self.frames:
                return self.frames.popleft()
            remaining = deadline - time.monotonic()
            stream = self.stream
            if remaining <= 0 or stream.done or self.client.eof:
                why = f"{timeout} s passed" if remaining <= 0 else "the stream ended"
                raise AssertionError(f"{why} before a frame on stream {self.sid}: {stream}")
            self.client.pump(remaining)

    def recv(self, timeout: float = 5.0) -> str | bytes:
        """The next message, put together from its frames."""
        parts: list[Any] = []
        text = False
        while True:
            got = self.frame(timeout)
            if got.opcode == Opcode.CLOSE:
                raise AssertionError(f"closed by the server: {got.payload}")
            if got.opcode in (Opcode.PING, Opcode.PONG):
                continue
            if got.opcode != Opcode.CONTINUATION:
                text = got.opcode == Opcode.TEXT
            parts.append(got.payload)
            if got.message_finished:
                return "".join(parts) if text else b"".join(parts)

    def recv_close(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Reads up to the server's close frame (dropping messages before it); its code and
        reason. The close is answered (unless the stream has already ended: after a failure the
        server closes without waiting, RFC 6455 §7.1.7), and the stream must end with
        END_STREAM."""
        while True:
            got = self.frame(timeout)
            if got.opcode == Opcode.CLOSE:
                code, reason = got.payload
                code = None if code == 1005 else int(code)
                if not self.stream.done:  # a failing server may have ended the stream already
                    self.send_close(code)
                self.ended(timeout)
                return code, reason

    def ended(self, timeout: float = 5.0) -> Stream:
        """The stream after the server's END_STREAM. The server may then reset it with NO_ERROR
        (RFC 9113 §8.1: its response is complete, the client's side is not); any other reset,
        or one without END_STREAM, is a failure."""
        stream = self.stream
        self.client.wait(lambda: stream.ended or stream.reset, timeout, f"stream {self.sid} to end")
        assert stream.ended and stream.reset in (None, 0), stream
        return stream

    def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> tuple[int, str]:
        """Our close handshake: the server's answering close frame, then END_STREAM."""
        self.send_close(code, reason)
        while True:
            got = self.frame(timeout)
            if got.opcode == Opcode.CLOSE:
                self.ended(timeout)
                return int(got.payload[0]), got.payload[1]


def open_ws(client: WsH2Client, path: str, **kw: Any) -> H2WebSocket:
    return client.connect(path, **kw).accepted()


# --- servers and helpers ----------------------------------------------------------------------


def start(app: str, *args: str, **kw: Any) -> ServerProcess:
    server = ServerProcess(app, *args, **kw)
    try:
        return wait_https(server)
    except BaseException:
        server.kill()
        raise


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """ws_app with the default flags (h2c), shared by the tests that do not stop it."""
    started = start(WS_APP)
    yield started
    started.kill()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[WsH2Client]:
    with WsH2Client(server, timeout=TIMEOUT) as connection:
        yield connection


def progress(server: ServerProcess, key: str) -> dict[str, Any]:
    """ws_app's /progress, asked over HTTP/1.1 on a connection of its own."""
    reply = httpx.get(f"{server.url}/progress", params={"id": key}, timeout=5).json()
    assert isinstance(reply, dict)
    return reply


def header(stream: Stream, name: str) -> str | None:
    return stream.header(name)


def finished(client: WsH2Client, stream: Stream, timeout: float = 5.0) -> Stream:
    """A response that must end with END_STREAM (then perhaps RST_STREAM NO_ERROR, RFC 9113
    §8.1: the request side is still open); any other reset is a failure."""
    client.wait(lambda: stream.ended or stream.reset, timeout, "the response to end")
    assert stream.ended and stream.reset in (None, 0), stream
    return stream


# --- settings, echo, multiplexing ----------------------------------------------------------------


def test_settings_announce_extended_connect_and_the_access_log_says_connect(
    server: ServerProcess, client: WsH2Client
) -> None:
    assert client.connect_protocol == 1
    key = unique("log")
    since = server.mark()
    ws = open_ws(client, f"/echo?id={key}")
    assert header(ws.stream, "sec-websocket-accept") is None  # no RFC 6455 key dance on h2
    ws.send("log me")
    assert ws.recv() == "log me"
    assert ws.close() == (1000, "")
    port = client.local_port
    server.wait_for_line(rf'127\.0\.0\.1:{port} - "CONNECT /echo\?id={key} HTTP/2" 200', 5, since)
    assert wait_event(server, key, is_disconnect)["code"] == 1000


def test_echo_text_and_bytes_small_and_one_mib_exact(client: WsH2Client) -> None:
    ws = open_ws(client, "/echo")
    ws.send("hello ✓")
    assert ws.recv() == "hello ✓"
    ws.send(b"\x00\xff binary")
    assert ws.recv() == b"\x00\xff binary"
    ws.send("")
    assert ws.recv() == ""
    blob = os.urandom(MIB)
    ws.send(blob)
    assert ws.recv(timeout=20) == blob
    text = ("é✓ UTF-8 " + os.urandom(6).hex()) * (MIB // 24)
    ws.send(text)
    assert ws.recv(timeout=20) == text
    # fragments of one message, a multi-byte character split between them
    ws.send("fragm\u00e9", fin=False)
    ws.send("nted", fin=True)
    assert ws.recv() == "fragménted"
    assert ws.close(1000, "done") == (1000, "done")


def test_many_messages_in_a_row_come_back_in_order(client: WsH2Client) -> None:
    ws = open_ws(client, "/echo")
    sent = [f"message {i} " * (i % 7 + 1) if i % 2 else os.urandom(i) for i in range(300)]
    for message in sent:
        ws.send(message)
    got = [ws.recv() for _ in sent]
    assert got == sent
    assert ws.close() == (1000, "")


def test_more_messages_than_the_queue_in_one_data_frame(client: WsH2Client) -> None:
    """100 small messages in one DATA frame: more than --ws-max-queue (32), so reading pauses
    with bytes still in the buffer; as the app takes messages, the rest must be read on."""
    ws = open_ws(client, "/echo")
    assert ws.proto is not None
    batch = b"".join(bytes(ws.proto.send_data(f"batched {i}")) for i in range(100))
    ws.send_raw(batch)
    got = []
    for _ in range(100):
        try:
            got.append(ws.recv(timeout=3))
        except AssertionError as exc:
            raise AssertionError(f"only {len(got)} of 100 echoes came back: {exc}") from None
    assert got == [f"batched {i}" for i in range(100)]
    assert ws.close() == (1000, "")


def test_ping_is_answered_and_a_fragmented_message_may_carry_one(client: WsH2Client) -> None:
    ws = open_ws(client, "/echo")
    assert ws.proto is not None
    ws.send_raw(ws.proto.ping(b"are you there"))
    pong = ws.frame()
    assert (pong.opcode, pong.payload) == (Opcode.PONG, b"are you there")
    ws.send_raw(ws.proto.pong(b"unsolicited"))  # ignored
    ws.send("h\u00e9", fin=False)
    ws.send_raw(ws.proto.ping(b"mid"))
    ws.send(" there", fin=False)
    ws.send("!", fin=True)
    pong = ws.frame()
    assert (pong.opcode, pong.payload) == (Opcode.PONG, b"mid")
    assert ws.recv() == "hé there!"
    assert ws.close() == (1000, "")


def test_keepalive_pings_run_over_h2(serve: Serve) -> None:
    server = wait_https(
        serve(WS_APP, "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.5", ready=None)
    )
    with WsH2Client(server, timeout=TIMEOUT) as client:
        silent = open_ws(client, "/echo")
        started = time.monotonic()
        ping = silent.frame(timeout=3)
        assert ping.opcode == Opcode.PING, ping
        assert silent.recv_close(timeout=5)[0] == 1011  # never answered
        assert time.monotonic() - started < 4
        polite = open_ws(client, "/echo")
        assert polite.proto is not None
        for _ in range(2):  # answered: it stays open across intervals
            ping = polite.frame(timeout=3)
            assert ping.opcode == Opcode.PING, ping
            polite.send_raw(polite.proto.pong(ping.payload))
        polite.send("alive")
        assert polite.recv() == "alive"
        assert polite.close() == (1000, "")


def test_websockets_and_requests_share_one_connection(
    server: ServerProcess, client: WsH2Client
) -> None:
    keys = [unique(f"mux{i}") for i in range(4)]
    sockets = [open_ws(client, f"/echo?id={key}") for key in keys]
    assert len({ws.sid for ws in sockets}) == 4
    # ordinary requests while they are open: ws_app answers their scope as JSON
    gets = [client.request(f"/plain/{i}?q={i}") for i in range(3)]
    post = client.request("/upload", method="POST", body=b"x" * (300 * 1024))
    # large messages on every WebSocket at once: their DATA interleaves under flow control
    blobs = [os.urandom(300 * 1024 + i) for i in range(len(sockets))]
    for ws, blob in zip(sockets, blobs, strict=True):
        ws.send(blob)
    for i, ws in enumerate(sockets):
        ws.send(f"small {i}")
    for ws, blob in zip(sockets, blobs, strict=True):
        assert ws.recv(timeout=20) == blob
    for i, ws in enumerate(sockets):
        assert ws.recv() == f"small {i}"
    for i, sid in enumerate(gets):
        answer = client.response(sid)
        assert answer.status == 200, answer
        scope = json.loads(bytes(answer.data))
        assert (scope["type"], scope["http_version"], scope["method"]) == ("http", "2", "GET")
        assert (scope["path"], scope["query_string"]) == (f"/plain/{i}", f"q={i}")
    uploaded = client.response(post)
    assert uploaded.status == 200 and json.loads(bytes(uploaded.data))["method"] == "POST"
    # one closes; the others (and requests) go on
    assert sockets[0].close(4000, "first") == (4000, "first")
    for i, ws in enumerate(sockets[1:], 1):
        ws.send(f"after {i}")
        assert ws.recv() == f"after {i}"
    assert client.fetch("/after").status == 200
    for ws in sockets[1:]:
        assert ws.close() == (1000, "")
    codes = [wait_event(server, key, is_disconnect)["code"] for key in keys]
    assert codes == [4000, 1000, 1000, 1000]


# --- the scope, subprotocols, permessage-deflate ----------------------------------------------


def test_scope_over_h2c(client: WsH2Client) -> None:
    ws = open_ws(
        client,
        "/scope/a%20b/%C3%A9?x=1&y=%C3%A9",
        protocols=("chat.v1", "chat.v2"),
        headers=(("x-custom", "value 1"), ("cookie", "a=1")),
    )
    scope = json.loads(ws.recv())
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["asgi"]["version"] == "3.0"
    assert "method" not in scope["keys"]
    assert scope["path"] == "/scope/a b/é"
    assert scope["raw_path"] == "/scope/a%20b/%C3%A9"
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    assert scope["subprotocol_types"] == ["str", "str"]
    headers = scope["headers"]
    assert ["host", client.authority] in headers
    assert ["x-custom", "value 1"] in headers
    assert ["cookie", "a=1"] in headers
    assert ["sec-websocket-version", "13"] in headers
    assert not [n for n, _ in headers if n.startswith(":")], headers  # no pseudo-headers
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] == client.local_port
    assert scope["extension_values"].get("websocket.http.response") == {}
    assert ws.close() == (1000, "")


def test_subprotocol_the_app_picks_comes_back(server: ServerProcess, client: WsH2Client) -> None:
    key = unique("sub")
    ws = open_ws(client, f"/subprotocol?id={key}&pick=chat.v2", protocols=("chat.v1", "chat.v2"))
    assert header(ws.stream, "sec-websocket-protocol") == "chat.v2"
    assert header(ws.stream, "x-ws-extra") == "yes"
    assert header(ws.stream, "set-cookie") == "ws=1; Path=/"
    assert ws.recv() == "chose chat.v2"
    assert ws.close() == (1000, "")
    # none offered, none picked: no header
    ws = open_ws(client, "/subprotocol")
    assert header(ws.stream, "sec-websocket-protocol") is None
    assert ws.recv() == "chose None"
    assert ws.close() == (1000, "")
    # one not offered: the accept is refused (the app's exception), the stream answers 500
    bad = unique("sub-bad")
    refused = client.connect(f"/subprotocol?id={bad}&pick=nope", protocols=("chat.v1",))
    stream = refused.response()
    assert stream.status == 500, stream
    finished(client, stream)
    assert wait_event(server, bad, lambda e: isinstance(e, dict) and "exc" in e)["runtime"]


def test_permessage_deflate_round_trips_compressed_both_ways(client: WsH2Client) -> None:
    ws = open_ws(client, "/echo", deflate=True)
    agreed = header(ws.stream, "sec-websocket-extensions") or ""
    assert agreed.split(";")[0].strip() == "permessage-deflate", agreed
    assert ws.deflating
    text = "compressible text ✓ " * 60_000  # 1.3 MB
    on_wire = ws.send(text)
    assert on_wire < len(text.encode()) // 20, on_wire  # we compressed it ...
    before = ws.wire_in
    assert ws.recv(timeout=20) == text  # ... the server inflated it, and deflated the echo
    assert ws.wire_in - before < len(text.encode()) // 20, ws.wire_in - before
    data = os.urandom(200_000)
    ws.send(data)
    assert ws.recv(timeout=10) == data
    for i in range(50):  # context takeover across messages
        ws.send(f"again and again {i} " * 50)
        assert ws.recv() == f"again and again {i} " * 50
    assert ws.close() == (1000, "")
    # not offered: not agreed, plain frames
    plain = open_ws(client, "/echo")
    assert header(plain.stream, "sec-websocket-extensions") is None
    plain.send("plain " * 1000)
    assert plain.recv() == "plain " * 1000
    assert plain.close() == (1000, "")


# --- denial, app errors, closes, disconnects --------------------------------------------------


def test_close_before_accept_is_403(server: ServerProcess, client: WsH2Client) -> None:
    key = unique("deny")
    stream = finished(client, client.connect(f"/deny-close?id={key}").response())
    assert stream.status == 403, stream
    assert wait_event(server, key, lambda e: e == "denied")
    hello = client.fetch("/still")  # the connection is fine
    assert hello.status == 200


def test_denial_response_extension(client: WsH2Client) -> None:
    stream = finished(client, client.connect("/deny-response").response())
    assert stream.status == 418, stream
    assert header(stream, "x-denied") == "teapot"
    assert header(stream, "content-type") == "text/plain"
    assert bytes(stream.data) == b"no websocket for you"


def test_raise_after_accept_closes_1011(server: ServerProcess, client: WsH2Client) -> None:
    ws = open_ws(client, "/raise-after")
    assert ws.recv_close()[0] == 1011
    server.wait_for_line("cw-ws-boom-after-accept", timeout=5)


def test_return_without_closing_closes_1000(client: WsH2Client) -> None:
    ws = open_ws(client, "/return-open")
    assert ws.recv() == "bye"
    assert ws.recv_close() == (1000, "")


def test_app_close_sends_code_and_reason(server: ServerProcess, client: WsH2Client) -> None:
    key = unique("app-close")
    ws = open_ws(client, f"/close?id={key}&code=4001&reason=r%C3%A9ason")
    assert ws.recv_close() == (4001, "réason")
    assert wait_event(server, key, is_disconnect)["code"] == 4001


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "tab closed"), (4321, "ré ✓")])
def test_client_close_reaches_the_app_with_its_code_and_reason(
    server: ServerProcess, client: WsH2Client, code: int, reason: str
) -> None:
    key = unique("client-close")
    ws = open_ws(client, f"/echo?id={key}")
    ws.send("x")
    assert ws.recv() == "x"
    assert ws.close(code, reason) == (code, reason)  # echoed, then END_STREAM
    event = wait_event(server, key, is_disconnect)
    assert (event["code"], event["reason"]) == (code, reason)


def test_rst_stream_is_disconnect_1006_and_the_connection_serves_on(
    server: ServerProcess, client: WsH2Client
) -> None:
    key = unique("rst")
    ws = open_ws(client, f"/echo?id={key}")
    ws.send("still here")
    assert ws.recv() == "still here"
    client.h2.reset_stream(ws.sid, CANCEL)
    client.flush()
    assert wait_event(server, key, is_disconnect)["code"] == 1006
    # before accept too
    early = unique("rst-early")
    waiting = client.connect(f"/wait-before?id={early}")
    wait_event(server, early, lambda e: e == "connected")
    client.h2.reset_stream(waiting.sid, CANCEL)
    client.flush()
    assert wait_event(server, early, is_disconnect)["code"] == 1006
    other = open_ws(client, "/echo")
    other.send("next")
    assert other.recv() == "next"
    assert other.close() == (1000, "")


def test_dropped_connection_is_1006_for_each_websocket_on_it(server: ServerProcess) -> None:
    keys = [unique(f"drop{i}") for i in range(3)]
    with WsH2Client(server, timeout=TIMEOUT) as client:
        for key in keys:
            ws = open_ws(client, f"/echo?id={key}")
            ws.send(key)
            assert ws.recv() == key
    assert [wait_event(server, key, is_disconnect)["code"] for key in keys] == [1006] * 3


def test_end_stream_without_a_close_frame_is_1006(
    server: ServerProcess, client: WsH2Client
) -> None:
    """The client half-closes its stream (END_STREAM) with no close handshake: the app sees
    an abnormal closure, and the server's side of the stream ends too."""
    key = unique("half-close")
    ws = open_ws(client, f"/echo?id={key}")
    ws.send("x")
    assert ws.recv() == "x"
    client.h2.end_stream(ws.sid)
    client.flush()
    assert wait_event(server, key, is_disconnect)["code"] == 1006
    client.wait(lambda: ws.stream.done, 5, "the server's side of the stream to end")


# --- backpressure -------------------------------------------------------------------------------


def test_client_that_does_not_read_makes_the_app_send_wait(server: ServerProcess) -> None:
    rss = PeakRss(server)
    key = unique("stream")
    total = 32 * MIB
    with WsH2Client(server, timeout=TIMEOUT) as client:
        ws = client.connect(f"/stream?id={key}&mib={total // MIB}")
        client.no_ack.add(ws.sid)  # no WINDOW_UPDATE for what arrives
        ws.accepted()
        poll(lambda: progress(server, key)["sent"], 5, what="the app to start sending")
        stalled: list[int] = []

        def settled() -> bool:
            client.pump(0.01)
            rss.sample()
            stalled.append(int(progress(server, key)["sent"]))
            return len(stalled) > 20 and stalled[-1] == stalled[-21]

        poll(settled, 20, 0.05, what="the app's send() to wait")
        sent = stalled[-1]
        # the client's 64 KiB window plus the server's WebSocket high-water mark, not 32 MiB
        assert sent < 4 * MIB, f"the app sent {sent / MIB:.1f} MiB to a client that reads nothing"
        assert rss.growth_mib < 32, f"server grew {rss.growth_mib:.0f} MiB"
        assert not progress(server, key).get("error")
        # the window reopens: the stream goes on to its end, every byte as the app sent it
        client.resume(ws.sid)
        received = 0
        while received < total:
            message = ws.recv(timeout=10)
            assert message == b"\x5a" * CHUNK
            received += len(message)
        assert ws.recv() == "end"
        assert progress(server, key)["done"] is True
        assert ws.close() == (1000, "")
    assert wait_event(server, key, is_disconnect)["code"] == 1000


def flood(ws: H2WebSocket, frame: bytes, limit: int, still: float = 1.0) -> int:
    """Sends `frame` over and over as the stream's window allows, until `limit` bytes or no
    window for `still` s; returns the bytes sent (the last frame may be cut short)."""
    client = ws.client
    sent, last = 0, time.monotonic()
    while sent < limit and time.monotonic() - last < still:
        room = min(client.h2.local_flow_control_window(ws.sid), client.h2.max_outbound_frame_size)
        if room <= 0:
            client.pump(0.05)
            continue
        offset = sent % len(frame)
        piece = frame[offset : offset + room]
        client.h2.send_data(ws.sid, piece)
        client.flush()
        sent += len(piece)
        last = time.monotonic()
    return sent


def finish_cut_frame(ws: H2WebSocket, frame: bytes, sent: int, timeout: float = 10) -> None:
    """Sends the rest of the frame flood() cut short (the stream must carry whole WebSocket
    frames before anything else is sent on it), as the window reopens."""
    client = ws.client
    rest = frame[sent % len(frame) :] if sent % len(frame) else b""
    deadline = time.monotonic() + timeout
    while rest:
        assert time.monotonic() < deadline, "the window did not reopen for the cut frame"
        room = min(client.h2.local_flow_control_window(ws.sid), client.h2.max_outbound_frame_size)
        if room <= 0:
            client.pump(0.05)
            continue
        client.h2.send_data(ws.sid, rest[:room])
        client.flush()
        rest = rest[room:]


def test_app_not_receiving_closes_the_window(serve: Serve) -> None:
    server = wait_https(serve(WS_APP, "--ws-max-queue", "4", ready=None))
    rss = PeakRss(server)
    key = unique("slow")
    with WsH2Client(server, timeout=TIMEOUT) as client:
        ws = open_ws(client, f"/slow-receiver?id={key}")
        wait_event(server, key, lambda e: e == "waiting")
        assert ws.proto is not None
        one = bytes(ws.proto.send_data(b"m" * CHUNK))
        sent = flood(ws, one, 256 * MIB)
        rss.sample()
        # the window closed and stayed closed: 4 queued messages and the stream window
        assert client.h2.local_flow_control_window(ws.sid) <= 0
        assert sent < 4 * MIB, f"{sent / MIB:.1f} MiB went in while the app did not receive"
        assert rss.growth_mib < 32, f"server grew {rss.growth_mib:.0f} MiB"
        # one stalled WebSocket does not stall the connection's others
        other = open_ws(client, "/echo")
        other.send(os.urandom(100_000))
        assert len(other.recv()) == 100_000
        # let the app receive: every message arrives, in full
        assert httpx.get(f"{server.url}/open-gate", params={"id": key}, timeout=5).is_success
        offset = sent % len(one)
        if offset:
            ws.send_raw(one[offset:])
        frames = -(-sent // len(one))
        ws.send("done")
        assert json.loads(ws.recv(timeout=20)) == [frames + 1, frames * CHUNK + 4]
        assert ws.close() == (1000, "")


def test_stalled_websockets_do_not_stall_the_connection(serve: Serve) -> None:
    """Three WebSockets whose apps do not receive, each with its stream window (256 KiB) full:
    the connection's window (1 MiB) must not be held by them, or the connection's other streams
    (a WebSocket, a request with a body) can no longer send anything."""
    server = wait_https(serve(WS_APP, "--ws-max-queue", "1", ready=None))
    keys = [unique(f"stall{i}") for i in range(3)]
    with WsH2Client(server, timeout=TIMEOUT) as client:
        stalled = [open_ws(client, f"/slow-receiver?id={key}") for key in keys]
        for key in keys:
            wait_event(server, key, lambda e: e == "waiting")
        cut: list[tuple[bytes, int]] = []
        for ws in stalled:
            assert ws.proto is not None
            frame = bytes(ws.proto.send_data(b"s" * CHUNK))
            cut.append((frame, flood(ws, frame, 8 * MIB, still=0.3)))
            assert client.h2.local_flow_control_window(ws.sid) <= 0
        other = open_ws(client, "/echo")
        blob = os.urandom(600 * 1024)
        try:
            other.send(blob, timeout=5)
            echoed = other.recv(timeout=5)
        except AssertionError as exc:
            window = client.h2.outbound_flow_control_window
            raise AssertionError(f"{exc}; the connection's send window: {window}") from None
        assert echoed == blob
        answer = client.fetch("/upload", method="POST", body=b"u" * (512 * 1024), timeout=10)
        assert answer.status == 200
        # the stalled ones resume when their apps receive
        for key in keys:
            assert httpx.get(f"{server.url}/open-gate", params={"id": key}, timeout=5).is_success
        for ws, (frame, sent) in zip(stalled, cut, strict=True):
            finish_cut_frame(ws, frame, sent)
            ws.send("done")
            count, size = json.loads(ws.recv(timeout=10))
            assert size >= 4 * CHUNK, (count, size)


def test_ws_max_size_closes_1009(serve: Serve) -> None:
    server = wait_https(
        serve(WS_APP, "--ws-max-size", "1024", "--ws-per-message-deflate", "false", ready=None)
    )
    with WsH2Client(server, timeout=TIMEOUT) as client:
        ws = open_ws(client, "/echo", deflate=True)
        assert not ws.deflating  # --ws-per-message-deflate false
        ws.send(b"a" * 1024)  # at the limit: fine
        assert ws.recv() == b"a" * 1024
        ws.send("é" * 512)
        assert ws.recv() == "é" * 512
        neighbour = open_ws(client, "/echo")
        ws.send(b"b" * 1025)
        assert ws.recv_close()[0] == 1009
        neighbour.send("unaffected")
        assert neighbour.recv() == "unaffected"
        assert neighbour.close() == (1000, "")


# --- refused handshakes, --ws none ------------------------------------------------------------


def test_version_other_than_13_is_426(server: ServerProcess, client: WsH2Client) -> None:
    for version in ("12", "8", "thirteen"):
        key = unique(f"v{version}")
        stream = client.connect(f"/echo?id={key}", version=version).response()
        finished(client, stream)
        assert stream.status == 426, stream
        assert header(stream, "sec-websocket-version") == "13"
        assert not app_was_called(server, key)
    ok = open_ws(client, "/echo")
    ok.send("13 works")
    assert ok.recv() == "13 works"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sec-websocket-extensions", "permessage-deflate; =1"),
        ("sec-websocket-extensions", "permessage-deflate;;"),
        ("sec-websocket-protocol", "chat v1"),
    ],
)
def test_malformed_extension_or_subprotocol_header_is_400(
    server: ServerProcess, client: WsH2Client, name: str, value: str
) -> None:
    key = unique("bad-header")
    stream = client.connect(f"/echo?id={key}", headers=((name, value),)).response()
    finished(client, stream)
    assert stream.status == 400, stream
    assert not app_was_called(server, key)


def connect_frame(frames: Frames, sid: int, path: str) -> HeadersFrame:
    headers = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", frames.authority),
        (":path", path),
        ("sec-websocket-version", "13"),
    ]
    return frames.headers_frame(sid, headers, end_stream=False)


def plain_connect(frames: Frames, sid: int) -> HeadersFrame:
    """A classic CONNECT (RFC 9113 §8.5: a TCP tunnel to :authority), which is not served."""
    headers = [(":method", "CONNECT"), (":authority", "example.com:443")]
    return frames.headers_frame(sid, headers, end_stream=False)


def status_of(frames: Frames, sid: int) -> str:
    frames.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == sid, 5)
    return dict(frames.blocks[sid][0])[":status"]


def test_ws_none_announces_no_extended_connect(serve: Serve) -> None:
    """Without --ws the setting is not sent, so an extended CONNECT is a malformed request
    (RFC 8441 §3, RFC 9113 §8.1.1: RST_STREAM PROTOCOL_ERROR); a plain CONNECT is 501; the
    connection serves on."""
    server = wait_https(serve(WS_APP, "--ws", "none", ready=None))
    key = unique("ws-none")
    with Frames(server) as frames:
        first = frames.wait_for(lambda f: isinstance(f, SettingsFrame), 5)
        assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
        assert ENABLE_CONNECT_PROTOCOL not in first.settings, first.settings
        frames.send_frames(connect_frame(frames, 1, f"/echo?id={key}"))
        reset = frames.reset_of(1)
        assert isinstance(reset, RstStreamFrame) and reset.error_code == PROTOCOL_ERROR, reset
        frames.send_frames(plain_connect(frames, 3))
        assert status_of(frames, 3) == "501"
        frames.get(5, f"/plain?id={key}")
        assert status_of(frames, 5) == "200"
    assert not app_was_called(server, key)
    with WsH2Client(server, timeout=TIMEOUT) as client:  # what the h2 library sees
        assert client.connect_protocol == 0


def test_default_server_takes_a_raw_extended_connect_but_not_a_plain_one(
    server: ServerProcess,
) -> None:
    with Frames(server) as frames:
        first = frames.wait_for(lambda f: isinstance(f, SettingsFrame), 5)
        assert isinstance(first, SettingsFrame)
        assert first.settings.get(ENABLE_CONNECT_PROTOCOL) == 1, first.settings
        frames.send_frames(connect_frame(frames, 1, "/echo"))
        assert status_of(frames, 1) == "200"
        frames.send_frames(plain_connect(frames, 3))
        assert status_of(frames, 3) == "501"


# --- shutdown ------------------------------------------------------------------------------------


class RawWebSockets:
    """WebSockets on a raw frame connection (test_http2.Frames), which, unlike the h2 library,
    still reads the streams' DATA after a GOAWAY (a graceful shutdown sends GOAWAY first)."""

    def __init__(self, server: ServerProcess) -> None:
        self.frames = Frames(server)
        self.protos: dict[int, FrameProtocol] = {}
        self.seen = 0  # frames already fed to the protocols
        self.got: dict[int, list[Frame]] = {}

    def open(self, sid: int, path: str) -> None:
        self.frames.send_frames(connect_frame(self.frames, sid, path))
        assert status_of(self.frames, sid) == "200"
        self.protos[sid] = FrameProtocol(client=True, extensions=[])
        self.got[sid] = []

    def send(self, sid: int, message: str) -> None:
        data = bytes(self.protos[sid].send_data(message))
        self.frames.send_frames(DataFrame(sid, data=data))

    def send_close(self, sid: int, code: int) -> None:
        data = bytes(self.protos[sid].close(code))
        self.frames.send_frames(DataFrame(sid, data=data))

    def _feed(self) -> None:
        for frame in self.frames.frames[self.seen :]:
            if isinstance(frame, DataFrame) and frame.stream_id in self.protos:
                proto = self.protos[frame.stream_id]
                proto.receive_bytes(frame.data)
                self.got[frame.stream_id].extend(proto.received_frames())
        self.seen = len(self.frames.frames)

    def next(self, sid: int, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            self._feed()
            if self.got[sid]:
                return self.got[sid].pop(0)
            remaining = deadline - time.monotonic()
            assert remaining > 0 and not self.frames.closed, f"no frame on {sid}"
            self.frames.read(remaining)


def test_sigterm_closes_websockets_1001_with_goaway_and_exits_0(serve: Serve) -> None:
    server = wait_https(serve(WS_APP, "--timeout-graceful-shutdown", "5", ready=None))
    keys = [unique(f"term{i}") for i in range(3)]
    with contextlib.ExitStack() as stack:
        first = RawWebSockets(server)
        second = RawWebSockets(server)
        stack.callback(first.frames.close)
        stack.callback(second.frames.close)
        sockets = [(first, 1, keys[0]), (first, 3, keys[1]), (second, 1, keys[2])]
        for conn, sid, key in sockets:
            conn.open(sid, f"/echo?id={key}")
            conn.send(sid, "up")
            assert conn.next(sid).payload == "up"
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for conn, sid, _ in sockets:
            got = conn.next(sid, timeout=8)
            assert got.opcode == Opcode.CLOSE and int(got.payload[0]) == 1001, got
            conn.send_close(sid, 1001)
        for conn in (first, second):
            goaway = conn.frames.goaway(8)
            assert isinstance(goaway, GoAwayFrame), "no GOAWAY before the connection closed"
            assert goaway.error_code == 0 and goaway.last_stream_id >= max(conn.protos), goaway
        assert server.wait_exit(8) == 0
        assert time.monotonic() - started < 5, "not within --timeout-graceful-shutdown"
    for key in keys:
        assert wait_event(server, key, is_disconnect)["code"] == 1001


# --- TLS ----------------------------------------------------------------------------------------


def test_wss_over_tls_with_alpn_h2(serve: Serve, certs: Certs) -> None:
    server = wait_https(serve(WS_APP, *certs.ecdsa.args, ready=None))
    ctx = client_context(certs, alpn=["h2"])
    with WsH2Client(server, tls=ctx, timeout=TIMEOUT) as client:
        assert client.connect_protocol == 1
        ws = open_ws(client, "/scope?tls=1", protocols=("chat",))
        scope = json.loads(ws.recv())
        assert (scope["type"], scope["http_version"], scope["scheme"]) == ("websocket", "2", "wss")
        assert "tls" in scope["extensions"], scope["extensions"]
        assert scope["subprotocols"] == ["chat"]
        assert ws.close() == (1000, "")
        echo = open_ws(client, "/echo", deflate=True)
        assert echo.deflating
        payload = os.urandom(MIB)
        echo.send(payload)
        assert echo.recv(timeout=20) == payload
        echo.send("deflated " * 10_000)
        assert echo.recv() == "deflated " * 10_000
        assert client.fetch("/plain").status == 200
        assert echo.close() == (1000, "")


# --- frameworks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["apps.ws_star:app", "apps.ws_fast:app"])
def test_starlette_and_fastapi_endpoints_over_h2(serve: Serve, app: str) -> None:
    server = wait_https(serve(app, ready=None))
    tag = unique("fw")
    with WsH2Client(server, timeout=TIMEOUT) as client:
        echo = open_ws(client, f"/ws/echo?tag={tag}")
        echo.send("text ✓")
        assert echo.recv() == "text ✓"
        echo.send(b"\x01bytes")
        assert echo.recv() == b"\x01bytes"
        sub = open_ws(client, "/ws/subproto", protocols=("chat.v0", "chat.v1"))
        assert header(sub.stream, "sec-websocket-protocol") == "chat.v1"
        assert json.loads(sub.recv()) == {"offered": ["chat.v0", "chat.v1"], "chosen": "chat.v1"}
        params = open_ws(client, "/ws/params/7?a=1&a=2")
        got = json.loads(params.recv())
        assert (got["item_id"], got["query"]) == (7, {"a": ["1", "2"]})
        assert params.recv_close()[0] == 1000
        closing = open_ws(client, "/ws/close")
        assert closing.recv() == "closing"
        assert closing.recv_close() == (4000, "custom reason")
        denied = client.connect("/ws/deny?token=wrong").response()
        assert denied.status == 403, denied
        welcome = open_ws(client, "/ws/deny?token=secret")
        assert welcome.recv() == "welcome"
        assert echo.close(4002, "bye") == (4002, "bye")
        assert sub.close() == (1000, "")

        def closes() -> list[Any] | None:
            answer = client.fetch(f"/events?tag={tag}")
            assert answer.status == 200
            events = json.loads(bytes(answer.data))
            return events or None

        events = poll(closes, 5, 0.05, what="the app's record of the close")
        assert [(e["endpoint"], e["code"]) for e in events] == [("echo", 4002)]


def test_starlette_denial_response_over_h2(serve: Serve) -> None:
    server = wait_https(serve("apps.ws_star:app", ready=None))
    with WsH2Client(server, timeout=TIMEOUT) as client:
        stream = client.connect("/ws/deny-response").response()
        finished(client, stream)
        assert stream.status == 401, stream
        assert header(stream, "x-denied-by") == "starlette"
        assert bytes(stream.data) == b"no entry"


# --- Chromium -------------------------------------------------------------------------------------

SAID = "hello over an h2 WebSocket ✓"


def test_chromium_chat_over_https_h2(serve: Serve, certs: Certs, browser_url: str) -> None:
    """The demo's chat page over HTTPS in headless Chromium: the chat must work, and since the
    server announces ENABLE_CONNECT_PROTOCOL on the page's HTTP/2 connection, Chromium opens
    its WebSocket as an extended CONNECT stream on that same connection (RFC 8441)."""
    demo = wait_https(serve("demo.app:app", *certs.ecdsa.args, cwd=REPO, ready=None))
    origin = f"https://localhost:{demo.port}"

    async def scenario() -> dict[str, Any]:
        async with recording_devtools(browser_url) as tools:
            await tools.call("Security.setIgnoreCertificateErrors", ignore=True)
            chat = await tools.open_page_recorded(f"{origin}/chat")
            said = await tools.evaluate(chat, page_script(SAID, SAID))
            handshakes = [
                m["params"]["response"]
                for m in tools.messages
                if m["method"] == "Network.webSocketHandshakeResponseReceived"
            ]
            return {"chat": said, "handshakes": handshakes}

    result = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert result["chat"]["status"] == "connected", result
    assert result["chat"]["lines"][-1].endswith(f": {SAID}"), result
    demo.wait_for_line(r'"GET /chat HTTP/2" 200', 10)
    found = demo.wait_for_line(r'"(CONNECT|GET) /ws/chat HTTP/(2|1\.1)" (200|101)', 10)
    assert found.group(0) == '"CONNECT /ws/chat HTTP/2" 200', (found.group(0), result)
    # DevTools says the same: a 200 (a 101 is HTTP/1.1's), no Sec-WebSocket-Accept, and
    # permessage-deflate agreed as over HTTP/1.1
    [handshake] = result["handshakes"]
    assert handshake["status"] == 200, handshake
    headers = {name.lower(): value for name, value in handshake["headers"].items()}
    assert "sec-websocket-accept" not in headers, headers
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate"), headers
    page = re.search(r"127\.0\.0\.1:(\d+) - \"GET /chat HTTP/2\"", demo.output)
    socket_line = re.search(r"127\.0\.0\.1:(\d+) - \"CONNECT /ws/chat HTTP/2\"", demo.output)
    assert page and socket_line and page.group(1) == socket_line.group(1), demo.output
