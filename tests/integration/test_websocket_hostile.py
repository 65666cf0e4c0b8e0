"""Hostile WebSocket clients on raw sockets (RFC 6455, RFC 7692; ../shared/ATTACKS.md section E):
refused handshakes (400/426, the app never called), bytes after the upgrade request, frame-level
protocol violations (1002, 1007, 1009), floods and bombs whose memory must stay bounded, clients
that never read or never stop writing, a slowloris handshake, and many idle connections. After each,
the server still serves ordinary WebSocket clients.

The rest of section E (a client that leaves before accept, close before accept -> 403, send after
the disconnect) is in test_websocket.py; a crowd of clients leaving before accept is here.

Validated against uvicorn 0.54 (`--ws websockets`); where uvicorn legitimately differs from the
contract a comment says so ("uvicorn: ...").
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import socket
import time
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import Serve
from harness import ServerProcess, poll
from test_websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WS_APP,
    Frame,
    WsConnection,
    app_was_called,
    close_payload,
    frame,
    is_disconnect,
    open_ws,
    parse_frame,
    start_ws_server,
    still_serving,
    unique,
    upgrade_request,
    wait_event,
)

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
ZERO_MASK = b"\x00\x00\x00\x00"  # a valid mask that leaves bulk payloads as they are


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    started = start_ws_server("--no-access-log")
    yield started
    started.kill()


def b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


# --- the opening handshake ------------------------------------------------------------------------

# uvicorn: 400, not 426, for every bad version (websockets' legacy server)
REFUSED: dict[str, tuple[dict[str, object], int]] = {
    "version-8": ({"headers": {"Sec-WebSocket-Version": "8"}}, 426),
    "version-14": ({"headers": {"Sec-WebSocket-Version": "14"}}, 426),
    "version-garbage": ({"headers": {"Sec-WebSocket-Version": "thirteen"}}, 426),
    "version-list": ({"headers": {"Sec-WebSocket-Version": "13, 8"}}, 426),
    # "anything else wrong" -> 400. uvicorn: 426 (websockets treats a missing version as wrong)
    "version-missing": ({"headers": {"Sec-WebSocket-Version": None}}, 400),
    "key-missing": ({"headers": {"Sec-WebSocket-Key": None}}, 400),
    "key-empty": ({"headers": {"Sec-WebSocket-Key": ""}}, 400),
    "key-not-base64": ({"headers": {"Sec-WebSocket-Key": "not base64 at all!!"}}, 400),
    "key-15-bytes": ({"headers": {"Sec-WebSocket-Key": b64(15)}}, 400),
    "key-17-bytes": ({"headers": {"Sec-WebSocket-Key": b64(17)}}, 400),
    # RFC 6455 §11.3.1: the key must not appear more than once
    "key-twice": ({"extra": [f"Sec-WebSocket-Key: {b64(16)}"]}, 400),
    "post": ({"method": "POST"}, 400),
    "put": ({"method": "PUT"}, 400),
    "http-1.0": ({"version": "1.0"}, 400),  # uvicorn: 101
    # uvicorn: no upgrade token in Connection -> an ordinary HTTP request, 200 from the app
    "connection-missing": ({"headers": {"Connection": None}}, 400),
    "connection-keep-alive": ({"headers": {"Connection": "keep-alive"}}, 400),
    # uvicorn: 101 for both, the body bytes then read as frames
    "body": ({"body": b"hello"}, 400),
    "chunked-body": ({"extra": ["Transfer-Encoding: chunked"], "body": b"0\r\n\r\n"}, 400),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_handshake_is_refused_and_the_app_never_called(server: ServerProcess, case: str):
    options, status = REFUSED[case]
    key = unique(f"refused-{case}")
    with WsConnection(server.host, server.port) as conn:
        conn.send(upgrade_request(f"/echo?id={key}", **options))  # type: ignore[arg-type]
        response = conn.read_response(timeout=5)
    assert response.status == status, (response.status, response.headers, response.body[:200])
    assert response.header("sec-websocket-accept") is None
    if status == 426:
        assert response.header("sec-websocket-version") == "13"
    # a good handshake after it reaches the app; the refused one never did
    after = unique("after-refused")
    with open_ws(server, f"/echo?id={after}"):
        wait_event(server, after, lambda e: e == "accepted")
    assert not app_was_called(server, key)


ACCEPTED: dict[str, dict[str, str | None]] = {
    "upgrade-mixed-case": {"Upgrade": "WebSocket"},
    "connection-list": {"Connection": "keep-alive, Upgrade"},
    "connection-upper": {"Connection": "UPGRADE"},
    "connection-list-spaces": {"Connection": "foo ,  upgrade  , bar"},
    "upgrade-list": {"Upgrade": "websocket, foo/1"},  # uvicorn: plain HTTP, 200 from the app
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_tokens_are_case_insensitive_in_lists(server: ServerProcess, case: str):
    with WsConnection(server.host, server.port) as conn:
        conn.handshake("/echo", headers=ACCEPTED[case])
        conn.send_frame(OP_TEXT, b"in")
        assert conn.read_message().payload == b"in"


def test_bytes_after_the_upgrade_request_are_kept(server: ServerProcess):
    # uvicorn: loses them (one early frame: no echo ever comes) or misreads them (close 1002)
    with WsConnection(server.host, server.port) as conn:
        early = (
            frame(OP_TEXT, b"early bird")
            + frame(OP_PING, b"p1")
            + frame(OP_BINARY, b"\x00\x01\x02")
        )
        half = frame(OP_TEXT, b"split across the 101")
        conn.send(upgrade_request("/echo") + early + half[:5])
        head = conn.read_head(timeout=5)
        assert head.status == 101
        conn.send(half[5:])
        got: list[tuple[int, bytes]] = []
        while len(got) < 4:
            item = conn.read_frame()
            assert item is not None, got
            got.append((item.opcode, item.payload))
    data = [g for g in got if g[0] != OP_PONG]
    assert data == [
        (OP_TEXT, b"early bird"),
        (OP_BINARY, b"\x00\x01\x02"),
        (OP_TEXT, b"split across the 101"),
    ]
    assert (OP_PONG, b"p1") in got


def test_subprotocol_header_with_non_ascii_bytes(server: ServerProcess):
    key = unique("non-ascii-sub")
    with WsConnection(server.host, server.port) as conn:
        conn.send(
            upgrade_request(
                f"/scope?id={key}", headers={"Sec-WebSocket-Protocol": "chat, ch\xe9at"}
            )
        )
        head = conn.read_head(timeout=5)
        # refused (400), or accepted with the protocols as str; never a crash or a 500.
        # uvicorn: 500
        assert head.status in (101, 400), head
        if head.status == 101:
            scope = json.loads(conn.read_message().payload)
            assert scope["subprotocol_types"] == ["str"] * len(scope["subprotocols"])
            assert scope["subprotocols"][0] == "chat"
    still_serving(server)


def test_subprotocol_header_with_a_huge_list(server: ServerProcess):
    offered = [f"p{i}" for i in range(4000)]  # ~24 KiB: inside the default header size limit
    key = unique("huge-sub")
    with WsConnection(server.host, server.port, timeout=10) as conn:
        conn.send(
            upgrade_request(
                f"/scope?id={key}", headers={"Sec-WebSocket-Protocol": ", ".join(offered)}
            )
        )
        head = conn.read_head(timeout=10)
        assert head.status in (101, 400, 431), head
        if head.status == 101:
            scope = json.loads(conn.read_message(timeout=10).payload)
            assert scope["subprotocols"] == offered
    still_serving(server)


def test_slowloris_handshake_is_cut_by_the_header_timeout(serve: Serve):
    # uvicorn: has no request-header timeout; the trickle is never cut
    server = serve(WS_APP, "--timeout-request-header", "1")
    data = upgrade_request("/echo")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.monotonic()
        closed_at = None
        for byte in data:  # one byte per 0.2 s: ~30 s for the whole request, if let through
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - start
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    answer = sock.recv(4096)
                except ConnectionResetError:
                    answer = b""
                assert not answer.startswith(b"HTTP/1.1 101"), answer
                closed_at = time.monotonic() - start
                break
            if time.monotonic() - start > 8:
                break
    assert closed_at is not None, "the trickling handshake was never cut"
    assert 0.8 <= closed_at <= 4.0, f"cut after {closed_at:.2f} s with a 1 s header timeout"
    still_serving(server)


def test_crowd_leaving_before_accept_all_get_1006(server: ServerProcess):
    keys = [unique("crowd") for _ in range(50)]
    conns = []
    try:
        for key in keys:
            conn = WsConnection(server.host, server.port)
            conns.append(conn)
            conn.send(upgrade_request(f"/wait-before?id={key}"))
        for key in keys:
            wait_event(server, key, lambda e: e == "connected", timeout=10)
    finally:
        for conn in conns:
            conn.close()
    for key in keys:
        assert wait_event(server, key, is_disconnect, timeout=10)["code"] == 1006
    still_serving(server)


# --- frames ---------------------------------------------------------------------------------------

PROTOCOL_ERRORS: dict[str, list[bytes]] = {
    "unmasked": [frame(OP_TEXT, b"hello", mask=False)],
    "unmasked-close": [frame(OP_CLOSE, close_payload(1000), mask=False)],
    "rsv1-without-deflate": [frame(OP_TEXT, b"hello", rsv=4)],
    "rsv2": [frame(OP_TEXT, b"hello", rsv=2)],
    "rsv3": [frame(OP_BINARY, b"hello", rsv=1)],
    "rsv-on-ping": [frame(OP_PING, b"x", rsv=4)],
    **{f"opcode-{op:x}": [frame(op, b"x")] for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)},
    "ping-126-bytes": [frame(OP_PING, b"p" * 126)],
    "pong-126-bytes": [frame(OP_PONG, b"p" * 126)],
    "close-126-bytes": [frame(OP_CLOSE, close_payload(1000, b"r" * 124))],
    "fragmented-ping": [frame(OP_PING, b"a", fin=False), frame(OP_CONT, b"b")],
    "fragmented-close": [frame(OP_CLOSE, close_payload(1000), fin=False)],
    "continuation-without-start": [frame(OP_CONT, b"orphan")],
    "new-message-inside-fragments": [frame(OP_TEXT, b"a", fin=False), frame(OP_TEXT, b"b")],
    "binary-inside-fragments": [frame(OP_BINARY, b"a", fin=False), frame(OP_BINARY, b"b")],
    "close-1-byte": [frame(OP_CLOSE, b"\x03")],
    **{
        f"close-code-{code}": [frame(OP_CLOSE, close_payload(code))]
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)
    },
    # a 64-bit length with the most significant bit set (RFC 6455 §5.2: it MUST be 0)
    "length-2**63": [frame(OP_BINARY, b"", length=2**63)],
}
INVALID_UTF8: dict[str, list[bytes]] = {
    "ff": [frame(OP_TEXT, b"ok \xff")],
    "overlong": [frame(OP_TEXT, b"\xc0\xaf")],
    "surrogate": [frame(OP_TEXT, b"\xed\xa0\x80")],
    "above-u10ffff": [frame(OP_TEXT, b"\xf4\x90\x80\x80")],
    "truncated-at-end": [frame(OP_TEXT, b"abc\xe2\x82")],
    "across-fragments": [
        frame(OP_TEXT, b"abc\xe2\x82", fin=False),
        frame(OP_CONT, b"(", fin=True),  # \xe2\x82 then '(' is invalid
    ],
    "invalid-early-fragment": [frame(OP_TEXT, b"\xff", fin=False)],  # fail fast, without FIN
    "close-reason": [frame(OP_CLOSE, close_payload(1000, b"bad \xff reason"))],
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_protocol_error_closes_1002(server: ServerProcess, case: str):
    codes = {1002}
    if case == "length-2**63":
        codes = {1002, 1009}  # uvicorn: 1009 (above --ws-max-size before the bit is checked)
    with open_ws(server, "/echo") as conn:
        conn.send_frame(OP_TEXT, b"before")
        assert conn.read_message().payload == b"before"
        for data in PROTOCOL_ERRORS[case]:
            conn.send(data)
        conn.expect_close(codes)
        conn.expect_eof()
    still_serving(server)


@pytest.mark.parametrize("case", list(INVALID_UTF8))
def test_invalid_utf8_closes_1007(server: ServerProcess, case: str):
    with open_ws(server, "/echo") as conn:
        for data in INVALID_UTF8[case]:
            conn.send(data)
        conn.expect_close(1007)
        conn.expect_eof()
    still_serving(server)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1008, 1011, 3000, 4999])
def test_valid_close_codes_are_echoed(server: ServerProcess, code: int):
    with open_ws(server, "/echo") as conn:
        conn.send_frame(OP_CLOSE, close_payload(code, "bye ✓".encode()))
        got = conn.read_close()
        assert got is not None and got.code == code, got
        conn.expect_eof()


def test_valid_utf8_split_at_every_byte(server: ServerProcess):
    text = "aé✓🐍z".encode()
    with open_ws(server, "/echo") as conn:
        for cut in range(1, len(text)):
            conn.send_frame(OP_TEXT, text[:cut], fin=False)
            conn.send_frame(OP_CONT, text[cut:])
            got = conn.read_message()
            assert (got.opcode, got.payload) == (OP_TEXT, text), cut


# --- sizes and bombs ------------------------------------------------------------------------------


def send_while_reading(
    conn: WsConnection,
    chunks: Iterator[bytes],
    stop: Callable[[Frame], bool],
    timeout: float = 20.0,
) -> tuple[Frame | None, int]:
    """Sends `chunks` while reading (and dropping) the server's frames, so that neither side
    blocks the other; then keeps reading. Returns the first frame for which `stop` is true (None
    at EOF or a reset) and how many bytes went out."""
    sock = conn.sock
    sent = 0
    deadline = time.monotonic() + timeout
    pending: bytes | None = next(chunks, None)
    sock.setblocking(False)
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select(
                [sock], [sock] if pending is not None else [], [], 0.1
            )
            if readable:
                try:
                    data = sock.recv(256 * 1024)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return None, sent
                conn.buf += data
                while (parsed := parse_frame(conn.buf)) is not None:
                    del conn.buf[: parsed[1]]
                    if stop(parsed[0]):
                        return parsed[0], sent
            if writable and pending is not None:
                try:
                    count = sock.send(pending)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    pending = None
                    continue
                sent += count
                pending = pending[count:] or next(chunks, None)
    finally:
        sock.settimeout(5)
    raise AssertionError(f"no awaited frame within {timeout} s ({sent} bytes sent)")


def push_until_closed(conn: WsConnection, chunks: Iterator[bytes]) -> tuple[Frame | None, int]:
    """Sends `chunks` until the server's close frame (returned with the bytes sent)."""
    return send_while_reading(conn, chunks, lambda got: got.opcode == OP_CLOSE)


class PeakRss:
    """The server's resident memory at the start and the highest sample since."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = server.rss_kib()
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, self.server.rss_kib())

    @property
    def growth_mib(self) -> float:
        self.sample()
        return (self.peak - self.baseline) / 1024


def test_2_63_minus_1_length_is_1009(server: ServerProcess):
    with open_ws(server, "/echo") as conn:
        conn.send(frame(OP_BINARY, b"", length=2**63 - 1))
        conn.expect_close(1009)


def test_100_mib_frame_is_1009_without_being_buffered(serve: Serve):
    server = serve(WS_APP, "--no-access-log")  # default --ws-max-size: 16 MiB
    rss = PeakRss(server)
    with open_ws(server, "/echo") as conn:
        size = 100 * MIB
        head = frame(OP_BINARY, b"", length=size, mask_key=ZERO_MASK)
        block = bytes(MIB)

        def chunks() -> Iterator[bytes]:
            yield head
            for _ in range(100):
                rss.sample()
                yield block

        closing, sent = push_until_closed(conn, chunks())
        assert closing is not None and closing.code == 1009, (closing, sent)
        assert sent < 40 * MIB, f"{sent} bytes went out before the close"
    assert rss.growth_mib < 48, f"server grew {rss.growth_mib:.0f} MiB"
    still_serving(server)


def test_100_mib_fragmented_message_is_1009_after_max_size(serve: Serve):
    server = serve(WS_APP, "--no-access-log")
    rss = PeakRss(server)
    with open_ws(server, "/echo") as conn:
        block = bytes(MIB)

        def chunks() -> Iterator[bytes]:
            yield frame(OP_BINARY, block, fin=False, mask_key=ZERO_MASK)
            for _ in range(99):
                rss.sample()
                yield frame(OP_CONT, block, fin=False, mask_key=ZERO_MASK)

        closing, sent = push_until_closed(conn, chunks())
        assert closing is not None and closing.code == 1009, (closing, sent)
        # 16 MiB is the limit; kernel buffers may hold some more on the way
        assert sent < 60 * MIB, f"{sent} bytes went out before the close"
    assert rss.growth_mib < 64, f"server grew {rss.growth_mib:.0f} MiB"
    still_serving(server)


def deflate_bomb(mib: int) -> bytes:
    """`mib` MiB of zeros as one permessage-deflate message payload (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    block = bytes(MIB)
    data = b"".join(compressor.compress(block) for _ in range(mib))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


BOMB = deflate_bomb(256)  # ~250 KiB on the wire


@pytest.mark.parametrize("shape", ["one-frame", "fragments"])
def test_deflate_bomb_is_bounded_by_ws_max_size(serve: Serve, shape: str):
    server = serve(WS_APP, "--no-access-log", "--ws-max-size", str(MIB))
    rss = PeakRss(server)
    with WsConnection(server.host, server.port) as conn:
        head = conn.handshake("/echo", headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        agreed = head.header("sec-websocket-extensions") or ""
        assert agreed.startswith("permessage-deflate"), agreed
        if shape == "one-frame":
            frames = [frame(OP_BINARY, BOMB, rsv=4)]
        else:
            step = len(BOMB) // 16 + 1
            parts = [BOMB[i : i + step] for i in range(0, len(BOMB), step)]
            frames = [frame(OP_BINARY, parts[0], rsv=4, fin=False)]
            frames += [frame(OP_CONT, p, fin=False) for p in parts[1:-1]]
            frames += [frame(OP_CONT, parts[-1])]
        closing, _ = push_until_closed(conn, iter(frames))
        assert closing is not None and closing.code == 1009, closing
    assert rss.growth_mib < 32, f"server grew {rss.growth_mib:.0f} MiB inflating a bomb"
    still_serving(server)


def test_small_compressed_message_inflates_fine(server: ServerProcess):
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = ("squeeze me " * 1000).encode()
    payload = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with WsConnection(server.host, server.port) as conn:
        head = conn.handshake("/echo", headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        assert (head.header("sec-websocket-extensions") or "").startswith("permessage-deflate")
        conn.send_frame(OP_TEXT, payload[:-4], rsv=4)
        got = conn.read_message()
        assert got.opcode == OP_TEXT
        echoed = got.payload
        if got.rsv & 4:  # the server compressed its answer too
            echoed = zlib.decompressobj(-15).decompress(echoed + b"\x00\x00\xff\xff")
        assert echoed == text


# --- floods and clients that do not read ----------------------------------------------------------


def test_ping_flood_does_not_grow_memory(serve: Serve):
    server = serve(WS_APP, "--no-access-log")
    rss = PeakRss(server)
    with open_ws(server, "/echo") as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        ping = frame(OP_PING, b"f" * 125, mask_key=ZERO_MASK)
        block = ping * (MIB // len(ping))  # ~1 MiB of pings per send
        sock = conn.sock
        sock.setblocking(False)
        sent, last_progress, start = 0, time.monotonic(), time.monotonic()
        pending = memoryview(block)
        while sent < 64 * MIB and time.monotonic() - last_progress < 1.5:
            if time.monotonic() - start > 20:
                break
            _, writable, _ = select.select([], [sock], [], 0.1)
            if not writable:
                rss.sample()
                continue
            try:
                count = sock.send(pending)
            except BlockingIOError:
                continue
            sent += count
            last_progress = time.monotonic()
            pending = pending[count:] if count < len(pending) else memoryview(block)
            if sent % (4 * MIB) < count:
                rss.sample()
        growth = rss.growth_mib
        assert growth < 32, f"server grew {growth:.0f} MiB during {sent / MIB:.0f} MiB of pings"
        # finish the frame in progress, then the connection still works (or was closed cleanly)
        rest = bytes(pending)[: len(pending) % len(ping)] if len(pending) != len(block) else b""
        got, _ = send_while_reading(
            conn,
            iter([rest + frame(OP_TEXT, b"after the flood")]),
            lambda f: f.opcode in (OP_TEXT, OP_CLOSE),
            timeout=30,
        )
        assert got is not None, "connection dropped without a close frame"
        if got.opcode == OP_CLOSE:
            assert got.code in (1008, 1011), got  # a policy close of a flooder is fine
        else:
            assert got.payload == b"after the flood"
    still_serving(server)


def test_client_that_never_reads_makes_the_app_send_wait(serve: Serve):
    server = serve(WS_APP, "--no-access-log")
    key = unique("stream")
    rss = PeakRss(server)
    conn = WsConnection(server.host, server.port, timeout=10)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with conn:
        conn.handshake(f"/stream?id={key}&mib=256")

        def progress() -> dict[str, object]:
            reply = httpx.get(f"{server.url}/progress", params={"id": key}, timeout=5).json()
            assert isinstance(reply, dict)
            return reply

        poll(lambda: progress()["sent"], 5, what="the app to start sending")
        # wait until the app's send() stops returning: no progress for 1 s
        stalled: list[int] = []

        def settled() -> bool:
            rss.sample()
            stalled.append(int(progress()["sent"]))  # type: ignore[call-overload]
            return len(stalled) > 20 and stalled[-1] == stalled[-21]

        poll(settled, 20, 0.05, what="the app's send() to wait")
        sent = stalled[-1]
        # the server's write high-water mark (256 KiB) plus kernel socket buffers, not 256 MiB
        assert sent < 16 * MIB, f"the app sent {sent / MIB:.1f} MiB to a client that reads nothing"
        assert rss.growth_mib < 32, f"server grew {rss.growth_mib:.0f} MiB"
        assert not progress().get("error"), progress()
        still_serving(server)
        # reading resumes the stream
        received = 0
        while received < sent + 8 * MIB:
            got = conn.read_frame(timeout=10)
            assert got is not None and got.opcode == OP_BINARY, got
            received += len(got.payload)
        assert int(progress()["sent"]) > sent  # type: ignore[call-overload]


def test_a_gigabyte_each_way_never_sits_in_memory(serve: Serve):
    # The bound: a 1 GiB stream in either direction, with a client and an app that both
    # keep up, passes through; the server's memory stays flat (output waits at 256 KiB, input at
    # --ws-max-queue messages). What may stay is bounded by the queue, not by the stream: 8
    # queued 1 MiB messages, each copied once more into the app's bytes, plus what glibc keeps
    # (it returns freed heap to the system above 16 MiB, tune_allocator). With the default queue
    # of 32 a slow CI machine measured 66 MiB: the queue filled, and that is its bound, not a leak.
    queue = 8
    server = serve(WS_APP, "--no-access-log", "--ws-max-queue", str(queue))
    rss = PeakRss(server)
    key = unique("down")
    with WsConnection(server.host, server.port, timeout=30) as conn:
        conn.handshake(f"/stream?id={key}&mib=1024")
        received = 0
        while True:
            got = conn.read_frame(timeout=30)
            assert got is not None, "EOF in the middle of the stream"
            if got.opcode == OP_TEXT:
                assert got.payload == b"end"
                break
            received += len(got.payload)
            if received % (64 * MIB) == 0:
                rss.sample()
        assert received == 1024 * MIB
    key = unique("up")
    one = frame(OP_BINARY, b"u" * MIB, mask_key=ZERO_MASK)
    with WsConnection(server.host, server.port, timeout=30) as conn:
        conn.handshake(f"/sink?id={key}")
        for i in range(1024):
            conn.send(one)
            if i % 64 == 0:
                rss.sample()
        conn.send(frame(OP_CLOSE, close_payload(1000)))
        conn.expect_close(1000, timeout=30)
    event = wait_event(server, key, is_disconnect, timeout=30)
    assert event["code"] == 1000
    progress = httpx.get(f"{server.url}/progress", params={"id": key}, timeout=5).json()
    assert progress["received"] == 1024 * MIB, progress
    bound = 2 * queue + 16
    if os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD"):
        bound += 48  # ASan: its 16 MiB quarantine, and an allocator that keeps what it freed
    assert rss.growth_mib < bound, f"the server grew {rss.growth_mib:.0f} MiB over 2 GiB"


def test_flooding_client_pauses_reading_when_the_app_does_not_receive(serve: Serve):
    server = serve(WS_APP, "--no-access-log", "--ws-max-queue", "4")
    key = unique("slow")
    rss = PeakRss(server)
    conn = WsConnection(server.host, server.port, timeout=10)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with conn:
        conn.handshake(f"/slow-receiver?id={key}")
        wait_event(server, key, lambda e: e == "waiting")
        one = frame(OP_BINARY, b"m" * (64 * 1024), mask_key=ZERO_MASK)
        sock = conn.sock
        sock.setblocking(False)
        sent, last_progress = 0, time.monotonic()
        limit = 256 * MIB
        while sent < limit and time.monotonic() - last_progress < 1.0:
            _, writable, _ = select.select([], [sock], [], 0.1)
            if not writable:
                continue
            offset = sent % len(one)
            try:
                sent += sock.send(one[offset:])
            except BlockingIOError:
                continue
            last_progress = time.monotonic()
            if sent % (4 * MIB) < len(one):
                rss.sample()
        # 4 queued messages, the server's read buffer and the kernel's, not 256 MiB
        assert sent < 64 * MIB, f"{sent / MIB:.1f} MiB went in while the app did not receive"
        assert rss.growth_mib < 32, f"server grew {rss.growth_mib:.0f} MiB"
        # let the app receive: every message arrives, in full
        httpx.get(f"{server.url}/open-gate", params={"id": key}, timeout=5)
        sock.settimeout(20)
        offset = sent % len(one)
        if offset:
            sock.sendall(one[offset:])
        frames = -(-sent // len(one))
        sock.sendall(frame(OP_TEXT, b"done"))
        got = conn.read_message(timeout=30)
        assert json.loads(got.payload) == [frames + 1, frames * 64 * 1024 + 4]


IDLE = 1000


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("deflate", "limit_kib"), [(False, 16), (True, 64)])
def test_many_idle_websockets_stay_cheap_and_served(serve: Serve, deflate: bool, limit_kib: int):
    """1,000 idle WebSockets (handshake done, nothing sent). The limits are this suite's: the issue
    asks <= 4 KiB per idle connection without deflate in the benchmark, and deflate state kept
    small. uvicorn: several times over both (a Python protocol object and task per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = serve(WS_APP, "--no-access-log", "--ws-per-message-deflate", str(deflate).lower())
    extensions = {"Sec-WebSocket-Extensions": "permessage-deflate"} if deflate else {}
    conns: list[WsConnection] = []
    try:
        for _ in range(20):
            conns.append(open_ws(server, "/echo", headers=extensions))
        baseline = server.rss_kib()
        for _ in range(IDLE):
            conns.append(open_ws(server, "/echo", headers=extensions))
        after = server.rss_kib()
        per_connection = (after - baseline) / IDLE
        assert per_connection <= limit_kib, f"{per_connection:.1f} KiB per idle WebSocket"
        for conn in (conns[0], conns[len(conns) // 2], conns[-1]):
            if deflate:
                compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
                data = compressor.compress(b"wake") + compressor.flush(zlib.Z_SYNC_FLUSH)
                conn.send_frame(OP_TEXT, data[:-4], rsv=4)
                got = conn.read_message()
                payload = got.payload
                if got.rsv & 4:
                    payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
                assert payload == b"wake"
            else:
                conn.send_frame(OP_TEXT, b"wake")
                assert conn.read_message().payload == b"wake"
        still_serving(server)
    finally:
        for conn in conns:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


BUDGET_CONNECTIONS = 10_000


@pytest.mark.timeout(240)
def test_ten_thousand_idle_websockets_cost_at_most_4_kib_each(serve: Serve):
    """The issue's budget (13): at most 4 KiB of server RSS per idle WebSocket without deflate,
    at the idle-ws benchmark's count. Against apps/ws_echo (a plain `message = await receive()`
    loop), each connection echoes one 32-byte message and then stays open: the server holds its
    scope, its task and pending receive(), the app its coroutine and last message, and the engine
    its connection. Measured 3.8 KiB (5.1 before issue 13's cuts). The sanitizer run's
    allocator adds redzones and a quarantine to every allocation: 6.8 KiB, hence its looser
    bound."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= BUDGET_CONNECTIONS + 500, f"RLIMIT_NOFILE hard limit {hard} is too low"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = serve("apps.ws_echo:app", "--no-access-log", "--ws-per-message-deflate", "false")
    payload = b"x" * 32

    def echoed() -> WsConnection:
        conn = open_ws(server, "/ws")
        conn.send_frame(OP_TEXT, payload)
        assert conn.read_message().payload == payload
        return conn

    idle: list[WsConnection] = []
    try:
        idle = [echoed() for _ in range(200)]  # warm-up (caches, first arenas), kept open
        baseline = server.rss_kib()
        idle += [echoed() for _ in range(BUDGET_CONNECTIONS)]
        after = server.rss_kib()
        per_connection = (after - baseline) / BUDGET_CONNECTIONS
        limit = 12.0 if os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD") else 4.0
        assert per_connection <= limit, f"{per_connection:.2f} KiB per idle WebSocket"
        for conn in (idle[0], idle[len(idle) // 2], idle[-1]):  # and every one still served
            conn.send_frame(OP_TEXT, b"wake")
            assert conn.read_message().payload == b"wake"
    finally:
        for conn in idle:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
