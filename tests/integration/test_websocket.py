"""ASGI WebSocket conformance (ASGI spec 2.4 with the websocket.http.response extension, RFC 6455,
RFC 7692), end to end: a real server running apps/ws_app.py, driven by the `websockets` client and
by hand-made frames on raw sockets where the exact bytes matter.

Each rule of the ASGI section of the WebSocket contract has a test here: the scope, the event
sequence, accept (subprotocol, headers), close before accept (403), the denial response, app errors
before and after accept, an app that returns, send before accept and after the close, the
disconnect codes (1000, 1005, 1006, custom, 1001 at shutdown), permessage-deflate, the --ws*
flags, the access log line and wss.

The app reports what it saw on lines `WSAPP {"id": ..., "event": ...}` of the server's output.

Validated against uvicorn 0.54 (`--ws websockets`); assertions where uvicorn legitimately differs
from the contract say so in a comment ("uvicorn: ...").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, RawResponse, ServerProcess, poll, request, run_cli
from tlscerts import Certs, client_context, serve_tls
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.timeout(60)

WS_APP = "apps.ws_app:app"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --- helpers shared with test_websocket_hostile.py ------------------------------------------------


def start_ws_server(*args: str) -> ServerProcess:
    """A server for ws_app outside the `serve` fixture (module fixtures): kill() it yourself."""
    server = ServerProcess(WS_APP, *args)
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    return server


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def ws_url(server: ServerProcess, path: str, scheme: str = "ws", host: str | None = None) -> str:
    return f"{scheme}://{host or server.host}:{server.port}{path}"


def ws_connect(server: ServerProcess, path: str, **kw: Any) -> ClientConnection:
    """The `websockets` sync client, bounded in time, with no proxy from the environment."""
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    scheme = "wss" if "ssl" in kw else "ws"
    host = "localhost" if "ssl" in kw else None
    return connect(ws_url(server, path, scheme, host), proxy=None, **kw)


def app_events(server: ServerProcess, key: str) -> list[Any]:
    """What ws_app recorded under `key`, in order (from its WSAPP output lines)."""
    found: list[Any] = []
    for line in server.output.splitlines():
        at = line.find("WSAPP ")
        if at < 0:
            continue
        try:
            item = json.loads(line[at + 6 :])
        except ValueError:
            continue
        if item.get("id") == key:
            found.append(item["event"])
    return found


def wait_event(
    server: ServerProcess,
    key: str,
    match: Callable[[Any], bool] = lambda event: True,
    timeout: float = 5.0,
) -> Any:
    """The first event recorded under `key` for which `match` is true (polls with a deadline)."""
    found = poll(
        lambda: next(((e,) for e in app_events(server, key) if match(e)), None),
        timeout,
        what=f"an app event under {key!r}",
    )
    return found[0]


def is_disconnect(event: Any) -> bool:
    return isinstance(event, dict) and event.get("type") == "websocket.disconnect"


def app_was_called(server: ServerProcess, key: str) -> bool:
    return "scope" in app_events(server, key)


def upgrade_request(
    target: str,
    *,
    headers: dict[str, str | None] | None = None,
    extra: Sequence[str] = (),
    method: str = "GET",
    version: str = "1.1",
    body: bytes = b"",
) -> bytes:
    """An RFC 6455 opening handshake; `headers` overrides (None drops) the standard fields."""
    fields: dict[str, str | None] = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return request(
        method, target, host="test", headers=[*lines, *extra], body=body, version=version
    )


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def xor_mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
    mask_key: bytes | None = None,
) -> bytes:
    """One client frame; `length` overrides the length field (the payload is sent as given)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if size < 126:
        head = bytes([first, bit | size])
    elif size < 65536:
        head = bytes([first, bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return head + key + xor_mask(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            raise AssertionError(f"not a close frame: {self}")
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def reason(self) -> str:
        return self.payload[2:].decode("utf-8")


def parse_frame(data: bytes | bytearray) -> tuple[Frame, int] | None:
    """One server frame from the front of `data` and its size, or None if incomplete."""
    if len(data) < 2:
        return None
    fin, rsv, opcode = bool(data[0] & 0x80), (data[0] >> 4) & 7, data[0] & 0x0F
    masked, size, at = bool(data[1] & 0x80), data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, at = struct.unpack("!H", data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, at = struct.unpack("!Q", data[2:10])[0], 10
    key = b""
    if masked:
        key, at = bytes(data[at : at + 4]), at + 4
    if len(data) < at + size:
        return None
    payload = bytes(data[at : at + size])
    if masked:
        payload = xor_mask(payload, key)
    return Frame(fin, rsv, opcode, masked, payload), at + size


class WsConnection(RawConnection):
    """A raw socket that makes the opening handshake by hand, then reads and writes frames."""

    def handshake(
        self, target: str, expect: int = 101, timeout: float = 5.0, **kw: Any
    ) -> RawResponse:
        self.send(upgrade_request(target, **kw))
        response = self.read_head(timeout)
        assert response.status == expect, (response.status, response.headers)
        if expect == 101:
            assert response.header("sec-websocket-accept") == ACCEPT, response.headers
        return response

    def send_frame(self, opcode: int, payload: bytes = b"", **kw: Any) -> None:
        self.send(frame(opcode, payload, **kw))

    def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame, or None at EOF (TimeoutError if neither comes in time)."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = parse_frame(self.buf)
            if parsed is not None:
                del self.buf[: parsed[1]]
                return parsed[0]
            if not self._fill(deadline):
                if self.buf:
                    raise AssertionError(f"EOF inside a frame: {bytes(self.buf[:64])!r}")
                return None

    def read_message(self, timeout: float = 5.0) -> Frame:
        """The next data frame (answering nothing; pings and pongs are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.read_frame(max(0.01, deadline - time.monotonic()))
            assert got is not None, "EOF before a data frame"
            if got.opcode not in (OP_PING, OP_PONG):
                return got

    def read_close(self, timeout: float = 5.0) -> Frame | None:
        """Frames until the server's close frame (returned), or None if it hangs up without one."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.read_frame(max(0.01, deadline - time.monotonic()))
            if got is None or got.opcode == OP_CLOSE:
                return got

    def expect_close(self, code: int | set[int], timeout: float = 5.0) -> Frame:
        """The server closes with `code` (one of a set), unmasked, then hangs up."""
        codes = {code} if isinstance(code, int) else code
        got = self.read_close(timeout)
        assert got is not None, f"the server hung up without a close frame (wanted {codes})"
        assert got.code in codes, f"close code {got.code} {got.payload[2:]!r}, wanted {codes}"
        assert not got.masked, "server frames must not be masked"
        return got

    def expect_eof(self, timeout: float = 5.0) -> None:
        """The server ends the TCP connection (after any frames) within `timeout`."""
        deadline = time.monotonic() + timeout
        while self.read_frame(max(0.01, deadline - time.monotonic())) is not None:
            pass


def open_ws(server: ServerProcess, target: str, **kw: Any) -> WsConnection:
    conn = WsConnection(server.host, server.port, timeout=5)
    try:
        conn.handshake(target, **kw)
    except BaseException:
        conn.close()
        raise
    return conn


def still_serving(server: ServerProcess) -> None:
    """A new WebSocket connection echoes a message, and plain HTTP still works."""
    with ws_connect(server, "/echo?id=still-serving") as ws:
        ws.send("ping?")
        assert ws.recv(timeout=5) == "ping?"
    assert httpx.get(f"{server.url}/events?id=none", timeout=5).json() == []


def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int | None, str]:
    """Reads until the server closes; the code and reason of the close frame it sent."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return None, ""
        return exc.rcvd.code, exc.rcvd.reason
    except TimeoutError:
        raise AssertionError(f"the server did not close within {timeout} s") from None


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """ws_app with default settings, shared by the tests that do not stop or reconfigure it."""
    started = start_ws_server()
    yield started
    started.kill()


# --- the connection and messages ------------------------------------------------------------------


def test_echo_text_and_bytes(server: ServerProcess):
    with ws_connect(server, "/echo") as ws:
        for message in ["hello", "", "héllo ✓ 🐍", b"\x00\x01\xff", b"", "x" * 70_000]:
            ws.send(message)
            assert ws.recv(timeout=5) == message  # text stays str, bytes stay bytes
        big = os.urandom(3 * 1024 * 1024)
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_receive_events_carry_exactly_one_of_text_and_bytes(server: ServerProcess):
    with ws_connect(server, "/shape") as ws:
        ws.send("text")
        text_shape = json.loads(ws.recv(timeout=5))
        ws.send(b"bytes")
        bytes_shape = json.loads(ws.recv(timeout=5))
    # the other key absent (or None, which the ASGI spec allows)
    assert text_shape.pop("bytes", "NoneType") == "NoneType"
    assert text_shape == {"type": "str", "text": "str"}
    assert bytes_shape.pop("text", "NoneType") == "NoneType"
    assert bytes_shape == {"type": "str", "bytes": "bytes"}


def test_scope_keys_and_values(server: ServerProcess):
    target = "/scope/caf%C3%A9%20x?a=1&b=%20&c=%E2%9C%93"
    with ws_connect(
        server,
        target,
        subprotocols=["chat.v2", "chat.v1"],  # type: ignore[list-item]
        additional_headers={"X-Custom": "Value 1"},
    ) as ws:
        scope = json.loads(ws.recv(timeout=5))
        local = ws.local_address
    required = {
        "type",
        "asgi",
        "http_version",
        "scheme",
        "path",
        "raw_path",
        "query_string",
        "root_path",
        "headers",
        "client",
        "server",
        "subprotocols",
        "state",
        "extensions",
    }
    assert required <= set(scope["keys"]), scope["keys"]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/café x"
    assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
    assert scope["query_string"] == "a=1&b=%20&c=%E2%9C%93"
    assert scope["root_path"] == ""
    headers = scope["headers"]
    assert ["x-custom", "Value 1"] in headers
    assert ["sec-websocket-protocol", "chat.v2, chat.v1"] in headers
    assert any(name == "sec-websocket-key" for name, _ in headers)
    assert all(name == name.lower() for name, _ in headers)
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == [server.host, server.port]
    assert scope["subprotocols"] == ["chat.v2", "chat.v1"]
    assert scope["subprotocol_types"] == ["str", "str"]
    assert scope["state"].get("token") == "lifespan-token", scope["state"]
    assert "websocket.http.response" in scope["extensions"]
    assert scope["extension_values"]["websocket.http.response"] == {}
    assert "tls" not in scope["extensions"]


def test_scope_without_subprotocols_has_an_empty_list(server: ServerProcess):
    with ws_connect(server, "/scope") as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["subprotocols"] == []


def test_what_an_app_writes_into_its_scope_no_other_connection_sees(server: ServerProcess):
    # The server builds websocket scopes from shared templates and shares their immutable parts
    # (header tuples, paths) between connections: every dict and list must still be the
    # connection's own, before and after another connection scribbles on its scope.
    with ws_connect(server, "/scope") as ws:
        pristine = json.loads(ws.recv(timeout=5))
    with ws_connect(server, "/scribble") as first, ws_connect(server, "/scribble") as second:
        for ws in (first, second):  # both wrote into their own copies only
            scribbled = json.loads(ws.recv(timeout=5))
            assert scribbled["asgi"]["version"] == "scribbled"
            assert scribbled["subprotocols"] == ["scribbled"]
            assert scribbled["extension_values"]["websocket.http.response"] == "non-empty"
        with ws_connect(server, "/scope") as ws:
            after = json.loads(ws.recv(timeout=5))
    assert after["asgi"] == pristine["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert after["keys"] == pristine["keys"]
    assert after["extensions"].keys() == pristine["extensions"].keys()
    assert after["extension_values"] == {"websocket.http.response": {}}
    assert after["subprotocols"] == []
    assert after["state"] == pristine["state"] == {"token": "lifespan-token", "started": True}
    assert [name for name, _ in after["headers"]] == [name for name, _ in pristine["headers"]]
    assert after["headers"][0] == pristine["headers"][0]  # host: a shared tuple


def test_root_path_is_the_same_as_for_http(serve: Serve):
    server = serve(WS_APP, "--root-path", "/mnt")
    # the path convention (with or without the root path in front) is the server's; it must be
    # the same for HTTP and WebSocket. uvicorn: "/mnt/scope/x" for both
    http = httpx.get(f"{server.url}/scope/x?q=1", timeout=5).json()
    with ws_connect(server, "/scope/x?q=1") as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["root_path"] == http["root_path"] == "/mnt"
    assert scope["path"] == http["path"]
    assert scope["raw_path"] == http["raw_path"]


def test_lifespan_state_is_a_copy_per_connection(server: ServerProcess):
    with ws_connect(server, "/scope") as first, ws_connect(server, "/scope") as second:
        one = json.loads(first.recv(timeout=5))
        two = json.loads(second.recv(timeout=5))
    assert one["state"] == two["state"] == {"token": "lifespan-token", "started": True}


# --- accept: subprotocol and headers --------------------------------------------------------------


def test_accept_with_subprotocol_and_headers(server: ServerProcess):
    key = unique("sub")
    with ws_connect(
        server,
        f"/subprotocol?id={key}&pick=b",
        subprotocols=["a", "b"],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "b"
        assert ws.recv(timeout=5) == "chose b"
        assert ws.response is not None
        headers = ws.response.headers
        assert headers["Sec-WebSocket-Protocol"] == "b"
        assert headers["X-WS-Extra"] == "yes"
        assert headers["Set-Cookie"] == "ws=1; Path=/"
    assert wait_event(server, key, lambda e: e == {"accepted": "b"})


def test_101_response_head(server: ServerProcess):
    with open_ws(server, "/echo", headers={"Connection": "keep-alive, Upgrade"}) as conn:
        conn.send_frame(OP_TEXT, b"hi")
        assert conn.read_message().payload == b"hi"
    conn2 = WsConnection(server.host, server.port)
    with conn2:
        head = conn2.handshake("/echo")
        assert head.version == "1.1"
        assert (head.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (head.header("connection") or "").lower()
        assert head.header("sec-websocket-accept") == ACCEPT
        assert head.header("sec-websocket-protocol") is None  # none offered, none chosen
        assert head.header("content-length") is None
        assert head.header("transfer-encoding") is None
        # no offer, no extension
        assert head.header("sec-websocket-extensions") is None


def test_subprotocol_the_client_did_not_offer_is_500(server: ServerProcess):
    key = unique("bad-sub")
    with WsConnection(server.host, server.port) as conn:
        conn.send(
            upgrade_request(
                f"/subprotocol?id={key}&pick=zzz", headers={"Sec-WebSocket-Protocol": "a, b"}
            )
        )
        # uvicorn: sends 101 with `sec-websocket-protocol: zzz` and no error to the app
        response = conn.read_response(timeout=5)
        assert response.status == 500, response.headers
    event = wait_event(server, key, lambda e: isinstance(e, dict) and "exc" in e)
    assert event["runtime"], event


def test_accept_without_a_subprotocol_when_one_was_offered(server: ServerProcess):
    with WsConnection(server.host, server.port) as conn:
        head = conn.handshake("/echo", headers={"Sec-WebSocket-Protocol": "a, b"})
        assert head.header("sec-websocket-protocol") is None


# --- before accept: close, denial, errors ---------------------------------------------------------


def test_close_before_accept_is_403(server: ServerProcess):
    key = unique("deny")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/deny-close?id={key}"))
        response = conn.read_response(timeout=5)
    assert response.status == 403
    assert response.header("sec-websocket-accept") is None
    assert wait_event(server, key, lambda e: e == "denied")
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server, f"/deny-close?id={key}")
    assert info.value.response.status_code == 403


def test_denial_response_extension(server: ServerProcess):
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request("/deny-response"))
        response = conn.read_response(timeout=5)
    assert response.status == 418
    assert response.header("x-denied") == "teapot"
    assert response.header("content-type") == "text/plain"
    assert response.header("sec-websocket-accept") is None
    assert response.body == b"no websocket for you"


def test_raise_before_accept_is_500(server: ServerProcess):
    key = unique("raise-before")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/raise-before?id={key}"))
        response = conn.read_response(timeout=5)
    assert response.status == 500
    assert b"cw-ws-boom" not in response.body  # the traceback goes to the log, not the client
    server.wait_for_line("cw-ws-boom-before-accept", timeout=5)


def test_return_before_accept_is_500(server: ServerProcess):
    key = unique("return-before")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/return-before?id={key}"))
        response = conn.read_response(timeout=5)
    assert response.status == 500
    assert wait_event(server, key, lambda e: e == "returning")


def test_send_before_accept_raises_runtime_error(server: ServerProcess):
    key = unique("send-before")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/send-before?id={key}"))
        response = conn.read_response(timeout=5)
    assert response.status == 500  # the app let the RuntimeError out, before accept
    event = wait_event(server, key, lambda e: isinstance(e, dict))
    assert event["runtime"], event


@pytest.mark.parametrize(
    ("kind", "exc", "says"),
    [
        ("accept-owned-header", "RuntimeError", "the server sets them; name a subprotocol"),
        ("send-both", "RuntimeError", "exactly one of 'bytes' and 'text'"),
        ("send-neither", "RuntimeError", "exactly one of 'bytes' and 'text'"),
        ("send-text-bytes", "TypeError", "'text' must be str"),
        ("close-1005", "RuntimeError", "use 1000 for a normal close"),
        ("close-reason-bytes", "TypeError", "'reason' must be str"),
        ("unknown-type", "RuntimeError", "Expected ASGI message 'websocket.send' or"),
    ],
)
def test_app_mistakes_raise_a_message_that_says_what_to_do(
    server: ServerProcess, kind: str, exc: str, says: str
):
    key = unique(kind)
    with ws_connect(server, f"/mistake?id={key}&kind={kind}") as ws:
        assert ws.recv(timeout=5) == "still open"  # nothing was sent, the connection goes on
    event = wait_event(server, key, lambda e: isinstance(e, dict) and "exc" in e)
    assert event["exc"] == exc, event
    assert says in event["msg"], event


def test_client_leaving_before_accept_gives_disconnect_1006(server: ServerProcess):
    key = unique("leave-before")
    conn = WsConnection(server.host, server.port)
    with conn:
        conn.send(upgrade_request(f"/wait-before?id={key}"))
        wait_event(server, key, lambda e: e == "connected")
    event = wait_event(server, key, is_disconnect)
    assert event["code"] == 1006, event


# --- after accept: app errors, return, close ------------------------------------------------------


def test_raise_after_accept_closes_1011(server: ServerProcess):
    with ws_connect(server, "/raise-after") as ws:
        code, _ = closed_with(ws)
    assert code == 1011  # uvicorn: drops the TCP connection without a close frame (1006)
    server.wait_for_line("cw-ws-boom-after-accept", timeout=5)


def test_return_without_closing_closes_1000(server: ServerProcess):
    with ws_connect(server, "/return-open") as ws:
        assert ws.recv(timeout=5) == "bye"
        code, _ = closed_with(ws)
    assert code == 1000  # uvicorn: drops the TCP connection without a close frame (1006)


def test_app_close_sends_code_and_reason_then_disconnect(server: ServerProcess):
    key = unique("app-close")
    with ws_connect(server, f"/close?id={key}&code=4001&reason=r%C3%A9ason") as ws:
        code, reason = closed_with(ws)
    assert (code, reason) == (4001, "réason")
    event = wait_event(server, key, is_disconnect)
    # the client's answer echoes the code. uvicorn: code 1005, reason None
    assert event["code"] == 4001, event


def test_app_close_default_code_is_1000(server: ServerProcess):
    with open_ws(server, "/close") as conn:
        got = conn.expect_close(1000)
        assert got.payload[2:] == b""
        conn.send_frame(OP_CLOSE, close_payload(1000))
        conn.expect_eof()


def test_send_after_disconnect_raises_an_oserror(server: ServerProcess):
    key = unique("send-after")
    with ws_connect(server, f"/send-after?id={key}") as ws:
        ws.close()
    assert wait_event(server, key, is_disconnect)["code"] == 1000
    event = wait_event(server, key, lambda e: isinstance(e, dict) and "exc" in e)
    # coachwhip._core.ClientDisconnected. uvicorn: RuntimeError ("after sending 'websocket.close'")
    assert event["oserror"], event


# --- disconnect codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "tab closed"), (4321, "custom ✓ reason"), (3000, "")],
)
def test_disconnect_carries_the_client_close_code_and_reason(
    server: ServerProcess, code: int, reason: str
):
    key = unique("disc")
    with ws_connect(server, f"/echo?id={key}") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.close(code, reason)
        assert ws.close_code == code  # the server echoed the code
    event = wait_event(server, key, is_disconnect)
    assert (event["code"], event["reason"]) == (code, reason)


def test_close_frame_without_a_code_is_1005(server: ServerProcess):
    key = unique("disc-1005")
    with open_ws(server, f"/echo?id={key}") as conn:
        conn.send_frame(OP_CLOSE)
        got = conn.read_close()
        assert got is not None and got.code in (None, 1000), got
        conn.expect_eof()
    event = wait_event(server, key, is_disconnect)
    assert event["code"] == 1005, event


def test_dropped_connection_is_1006(server: ServerProcess):
    key = unique("disc-1006")
    with open_ws(server, f"/echo?id={key}") as conn:
        conn.send_frame(OP_TEXT, b"still here")
        assert conn.read_message().payload == b"still here"
    event = wait_event(server, key, is_disconnect)
    assert event["code"] == 1006, event


def test_ping_is_answered_with_a_pong(server: ServerProcess):
    with open_ws(server, "/echo") as conn:
        conn.send_frame(OP_PING, b"are you there")
        got = conn.read_frame()
        assert got is not None and got.opcode == OP_PONG and got.payload == b"are you there"
        conn.send_frame(OP_PONG, b"unsolicited")  # ignored
        conn.send_frame(OP_TEXT, b"after")
        assert conn.read_message().payload == b"after"


def test_fragmented_message_with_interleaved_ping(server: ServerProcess):
    with open_ws(server, "/echo") as conn:
        conn.send_frame(OP_TEXT, "hé".encode()[:2], fin=False)
        conn.send_frame(OP_PING, b"mid")
        conn.send_frame(OP_CONT, "hé".encode()[2:] + b" there", fin=False)
        conn.send_frame(OP_CONT, b"!", fin=True)
        pong = conn.read_frame()
        assert pong is not None and (pong.opcode, pong.payload) == (OP_PONG, b"mid")
        message = conn.read_message()
        assert (message.opcode, message.payload) == (OP_TEXT, "hé there!".encode())


# --- graceful shutdown ----------------------------------------------------------------------------


def test_sigterm_closes_websockets_with_1001(serve: Serve):
    server = serve(WS_APP, "--timeout-graceful-shutdown", "5")
    keys = [unique("shutdown") for _ in range(3)]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(server, f"/echo?id={key}")) for key in keys]
        for ws in clients:
            ws.send("up")
            assert ws.recv(timeout=5) == "up"
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for ws in clients:
            code, _ = closed_with(ws, timeout=8)
            # uvicorn: 1012 (service restart)
            assert code == 1001
        for key in keys:
            event = wait_event(server, key, is_disconnect, timeout=8)
            assert event["code"] == 1001, event  # uvicorn: 1012
        server.wait_exit(8)
        assert time.monotonic() - start < 5, "not within --timeout-graceful-shutdown"


def test_sighup_with_workers_closes_websockets_1001_and_does_not_wait_forever(serve: Serve):
    # A rolling restart: the old workers close their WebSockets with 1001 and exit, even for a
    # client that never answers the close (the closing handshake is bounded by 10 s, well within
    # the 30 s --timeout-graceful-shutdown); new connections go to the new workers.
    server = serve(WS_APP, "--workers", "2")
    key = unique("sighup")
    with contextlib.ExitStack() as stack:
        polite = [stack.enter_context(ws_connect(server, f"/echo?id={key}")) for _ in range(3)]
        for ws in polite:
            ws.send("up")
            assert ws.recv(timeout=5) == "up"
        silent = stack.enter_context(open_ws(server, "/echo"))  # never answers a close frame
        silent.send_frame(OP_TEXT, b"up")
        assert silent.read_message().payload == b"up"
        start = time.monotonic()
        server.send_signal(signal.SIGHUP)
        for ws in polite:
            assert closed_with(ws, timeout=10)[0] == 1001
        assert silent.expect_close(1001, timeout=10)
        poll(lambda: server.output.count("exited (status 0)") >= 2, 25, what="both workers rolled")
        assert time.monotonic() - start < 20, "the old workers waited on the silent client"
    with ws_connect(server, "/echo") as ws:
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


# --- permessage-deflate ---------------------------------------------------------------------------


def test_permessage_deflate_is_negotiated_by_default(server: ServerProcess):
    with ws_connect(server, "/echo") as ws:
        assert ws.response is not None
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert agreed.split(";")[0].strip() == "permessage-deflate", agreed
        text = "compressible " * 100_000
        ws.send(text)
        assert ws.recv(timeout=10) == text
        data = os.urandom(200_000)
        ws.send(data)
        assert ws.recv(timeout=10) == data


def test_permessage_deflate_parameters_are_honoured(server: ServerProcess):
    offer = (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits"
    )
    with WsConnection(server.host, server.port) as conn:
        head = conn.handshake("/echo", headers={"Sec-WebSocket-Extensions": offer})
    agreed = head.header("sec-websocket-extensions") or ""
    params = [p.strip() for p in agreed.split(";")]
    assert params[0] == "permessage-deflate", agreed
    assert "server_no_context_takeover" in params  # RFC 7692 §7.1.1.1: the server must agree
    bits = [p for p in params if p.startswith("server_max_window_bits")]
    assert bits and 8 <= int(bits[0].split("=")[1]) <= 10, agreed
    for param in params[1:]:
        name = param.split("=")[0]
        assert name in {
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        }, agreed


def test_unknown_extension_is_not_agreed(server: ServerProcess):
    with WsConnection(server.host, server.port) as conn:
        head = conn.handshake("/echo", headers={"Sec-WebSocket-Extensions": "x-webkit-mux"})
        assert head.header("sec-websocket-extensions") is None
        conn.send_frame(OP_TEXT, b"plain")
        assert conn.read_message().payload == b"plain"


def test_permessage_deflate_off(serve: Serve):
    server = serve(WS_APP, "--ws-per-message-deflate", "false")
    with ws_connect(server, "/echo") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain " * 1000)
        assert ws.recv(timeout=5) == "plain " * 1000


# --- the --ws flags -------------------------------------------------------------------------------


def test_ws_none_makes_upgrades_plain_http(serve: Serve):
    server = serve(WS_APP, "--ws", "none")
    key = unique("ws-none")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/echo?id={key}"))
        response = conn.read_response(timeout=5)
    assert response.status == 200
    scope = json.loads(response.body)
    assert scope["type"] == "http" and scope["method"] == "GET"
    assert ["upgrade", "websocket"] in scope["headers"]
    assert wait_event(server, key, lambda e: e == {"http": "GET"})


@pytest.mark.parametrize("alias", ["websockets", "websockets-sansio", "wsproto"])
def test_ws_aliases_are_accepted(serve: Serve, alias: str):
    server = serve(WS_APP, "--ws", alias)
    with ws_connect(server, "/echo") as ws:
        ws.send(alias)
        assert ws.recv(timeout=5) == alias
    # said once in the log. uvicorn: nothing of the kind (it really switches implementations)
    startup = [line for line in server.lines if "WSAPP" not in line]
    mentions = [line for line in startup if re.search(rf"\b{re.escape(alias)}\b", line)]
    assert len(mentions) == 1, startup


def test_ws_auto_is_accepted_and_bad_values_are_refused(serve: Serve):
    server = serve(WS_APP, "--ws", "auto")
    still_serving(server)
    result = run_cli("--ws", "bogus", "--port", "0", WS_APP, timeout=20)
    assert result.returncode != 0
    assert "--ws" in result.stderr, result.stderr


def test_ws_max_size_closes_1009(serve: Serve):
    server = serve(WS_APP, "--ws-max-size", "1024", "--ws-per-message-deflate", "false")
    with ws_connect(server, "/echo") as ws:
        ws.send(b"a" * 1024)  # at the limit: fine
        assert ws.recv(timeout=5) == b"a" * 1024
        ws.send("é" * 512)  # 1024 bytes of UTF-8
        assert ws.recv(timeout=5) == "é" * 512
        ws.send(b"b" * 1025)
        code, _ = closed_with(ws)
    assert code == 1009
    still_serving(server)


def test_ws_max_size_applies_after_decompression(serve: Serve):
    server = serve(WS_APP, "--ws-max-size", "4096")
    with ws_connect(server, "/echo") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send("z" * 4096)
        assert ws.recv(timeout=5) == "z" * 4096
        ws.send("z" * 4097)  # a few dozen bytes on the wire
        code, _ = closed_with(ws)
    assert code == 1009


def test_ping_timeout_closes_1011(serve: Serve):
    server = serve(WS_APP, "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.5")
    with open_ws(server, "/echo") as conn:
        start = time.monotonic()
        got = conn.read_frame(timeout=3)
        assert got is not None and got.opcode == OP_PING, got
        conn.expect_close(1011, timeout=5)  # never answered
        assert time.monotonic() - start < 4
    # a client that answers stays connected across several intervals
    with open_ws(server, "/echo") as conn:
        pings = 0
        while pings < 3:
            got = conn.read_frame(timeout=3)
            assert got is not None and got.opcode == OP_PING, got
            conn.send_frame(OP_PONG, got.payload)
            pings += 1
        conn.send_frame(OP_TEXT, b"alive")
        assert conn.read_message().payload == b"alive"


def test_ping_interval_zero_sends_no_pings(serve: Serve):
    # uvicorn: 0 is passed on to websockets, which pings at once and closes 1011 at once
    server = serve(WS_APP, "--ws-ping-interval", "0", "--ws-ping-timeout", "0")
    with open_ws(server, "/echo") as conn:
        with pytest.raises(TimeoutError):
            conn.read_frame(timeout=1.0)
        conn.send_frame(OP_TEXT, b"ok")
        assert conn.read_message().payload == b"ok"


def test_env_fallback_for_ws_max_size(serve: Serve):
    # uvicorn: UVICORN_WS_MAX_SIZE instead
    server = serve(WS_APP, env={"COACHWHIP_WS_MAX_SIZE": "100", "UVICORN_WS_MAX_SIZE": "100"})
    with ws_connect(server, "/echo", compression=None) as ws:
        ws.send(b"c" * 100)
        assert ws.recv(timeout=5) == b"c" * 100
        ws.send(b"c" * 101)
        code, _ = closed_with(ws)
    assert code == 1009


# --- access log and wss ---------------------------------------------------------------------------


def test_access_log_line_for_an_accepted_websocket(server: ServerProcess):
    since = server.mark()
    with ws_connect(server, "/echo") as ws:
        port = ws.local_address[1]
        ws.send("log me")
        assert ws.recv(timeout=5) == "log me"
    # uvicorn: `127.0.0.1:PORT - "WebSocket /echo" [accepted]`
    line = server.wait_for_line(rf'127\.0\.0\.1:{port} - "GET /echo HTTP/1\.1" 101', 5, since)
    assert line


def test_wss_over_tls(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, app=WS_APP)
    ctx = client_context(certs)
    with ws_connect(server, "/scope?tls=1", ssl=ctx) as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["scheme"] == "wss"
    # uvicorn: no "tls" extension in the scope
    assert "tls" in scope["extensions"], scope["extensions"]
    with ws_connect(server, "/echo", ssl=ctx) as ws:
        payload = os.urandom(1024 * 1024)
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send("deflated " * 10_000)
        assert ws.recv(timeout=10) == "deflated " * 10_000
