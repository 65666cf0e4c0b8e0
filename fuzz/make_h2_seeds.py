#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_http2_connection (fuzz/corpus/fuzz_http2_connection/).

Run with the project's virtualenv, which has the `h2` library (it makes the client's frames):
    .venv/bin/python fuzz/make_h2_seeds.py

Each seed is two control bytes and a list of steps (the layout is described at the top of
fuzz/fuzz_http2_connection.cpp). The client's frames come from h2's client connection as raw
steps (op 1: a 16-bit length, then the bytes), without the 24-byte magic, which the target always
sends first; between them come the app's and the owner's steps. Files named by a 40-hex SHA-1
are a fuzzing run's inputs merged in (libFuzzer -merge=1): they are kept when this rewrites the
named seeds.
"""

from __future__ import annotations

import pathlib
import re
import struct
import zlib
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.settings
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "fuzz_http2_connection"
MAGIC = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MERGED = re.compile(r"[0-9a-f]{40}")
Headers = Sequence[tuple[str, str]]

# Limits (control byte 0) and seed (byte 1).
L_SMALL_WINDOWS, L_SMALL_HEADERS, L_FEW_STREAMS, L_RESET_BURST = 1, 2, 4, 8
L_SMALL_WATER, L_LEFTOVER, L_INTERNAL, L_TINY_READS = 16, 32, 64, 128


def op(kind: int, p: int = 0) -> bytes:
    return bytes([kind | (p << 5)])


class Seed:
    """A seed under construction: an h2 client whose bytes become raw steps, and app steps."""

    def __init__(
        self, limits: int = 0, seed: int = 0, settings: dict | None = None, ack: bool = True
    ) -> None:
        self.data = bytearray([limits, seed])
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.c = h2.connection.H2Connection(config=config)
        self.c.initiate_connection()
        if settings:
            self.c.update_settings(settings)
        first = self.c.data_to_send()
        assert first.startswith(MAGIC)
        self.raw(first[len(MAGIC) :])
        # The server's SETTINGS, acknowledged as a client does once it reads them.
        if ack:
            self.ack()

    def ack(self) -> Seed:
        return self.raw(SettingsFrame(0, flags=["ACK"]).serialize())

    # ---- the client's bytes ----
    def raw(self, b: bytes, cut: int = 0) -> Seed:
        while b:
            piece, b = b[:65535], b[65535:]
            self.data += op(1, cut) + struct.pack(">H", len(piece)) + piece
        return self

    def flush(self, cut: int = 0) -> Seed:
        return self.raw(self.c.data_to_send(), cut)

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        body: bytes | None = None,
        extra: Headers = (),
        end: bool = True,
        cut: int = 0,
        headers: Headers | None = None,
    ) -> int:
        sid = self.c.get_next_available_stream_id()
        if headers is None:
            headers = [
                (":method", method),
                (":scheme", "https"),
                (":authority", "example.com"),
                (":path", path),
                *extra,
            ]
        self.c.send_headers(sid, headers, end_stream=body is None and end)
        if body is not None:
            for i in range(0, max(len(body), 1), 16384):
                last = i + 16384 >= len(body)
                self.c.send_data(sid, body[i : i + 16384], end_stream=end and last)
        self.flush(cut)
        return sid

    # ---- the app (pick 0: the oldest connected exchange) ----
    def respond(
        self,
        status_idx: int = 0,
        shape: int = 1,
        size: int = 5,
        more: bool = False,
        trailers: bool = False,
        pick: int = 0,
    ) -> Seed:
        p = (1 if more else 0) | (2 if trailers else 0) | (4 if size > 255 else 0)
        self.data += op(12, p) + bytes([pick, status_idx, shape])
        self.data += self._size(size) + bytes([7, 0xFF])  # salt, no mistake
        return self

    def more(self, size: int = 5, more: bool = False, pick: int = 0) -> Seed:
        p = (1 if more else 0) | (4 if size > 255 else 0)
        self.data += op(13, p) + bytes([pick]) + self._size(size) + bytes([3])
        return self

    def take(self, pick: int = 0) -> Seed:
        self.data += op(14) + bytes([pick])
        return self

    def trailers(self, n: int = 2, pick: int = 0) -> Seed:
        self.data += op(15) + bytes([pick, n])
        return self

    def abort(self, pick: int = 0) -> Seed:
        self.data += op(16) + bytes([pick])
        return self

    def send_file(
        self, offset: int = 0, size: int = 1000, more: bool = False, pick: int = 0
    ) -> Seed:
        p = (1 if more else 0) | (4 if size > 255 else 0)
        self.data += op(17, p) + bytes([pick]) + struct.pack(">H", offset) + self._size(size)
        return self

    # ---- the owner ----
    def timer(self, write: bool = False) -> Seed:
        self.data += op(18, 1 if write else 0)
        return self

    def window(self, p: int, n: int = 0) -> Seed:  # p 0: blocked; 7: all; else n << 2p more bytes
        self.data += op(19, p) + (bytes([n]) if p not in (0, 7) else b"")
        return self

    def shutdown(self) -> Seed:
        self.data += op(20)
        return self

    def clock(self, n: int = 100, p: int = 0) -> Seed:
        self.data += op(21, p) + bytes([n])
        return self

    def eof(self, p: int = 0) -> Seed:
        self.data += op(22, p)
        return self

    # ---- WebSocket over HTTP/2 (control byte 1 bit 7) ----
    def headers(self, sid: int, headers: Headers, end: bool = False) -> Seed:
        """A HEADERS frame h2 does not make itself (an extended CONNECT), encoded with h2's own
        HPACK encoder so that its dynamic table stays in step with the server's."""
        flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
        block = self.c.encoder.encode(headers)
        return self.raw(HeadersFrame(sid, data=block, flags=flags).serialize())

    def ws_connect(self, sid: int, extra: Headers = (), version: str = "13") -> Seed:
        return self.headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":path", "/chat"),
                (":authority", "example.com"),
                ("sec-websocket-version", version),
                *extra,
            ],
        )

    def ws_data(self, sid: int, frames: bytes, end: bool = False) -> Seed:
        return self.raw(
            DataFrame(sid, data=frames, flags=["END_STREAM"] if end else []).serialize()
        )

    def accept(self, how: int = 1, pick: int = 0) -> Seed:  # how bit 0: a subprotocol offered
        self.data += op(12) + bytes([pick, how])
        return self

    def ws_send(self, size: int = 5, text: bool = True, pick: int = 0) -> Seed:
        self.data += op(25, 1 if text else 0) + bytes([pick, size])
        return self

    def ws_close(self, code_idx: int = 0, reason: int = 4, pick: int = 0) -> Seed:
        self.data += op(26) + bytes([pick, code_idx, reason])
        return self

    def ws_take(self, pick: int = 0) -> Seed:
        self.data += op(27) + bytes([pick])
        return self

    def tick(self) -> Seed:
        self.data += op(18, 2)
        return self

    @staticmethod
    def _size(n: int) -> bytes:
        if n <= 255:
            return bytes([n])
        return bytes([min(n // 257, 255), min(n % 257, 255)])


def ws_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    key = b"\x37\xfa\x21\x3d"
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n <= 125:
        head = bytes([b0, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def deflated(message: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def headers_block(headers: Headers) -> bytes:
    return hpack.Encoder().encode(headers)


def seeds() -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    s = Seed()
    s.request("GET", "/p?q=1", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("user-agent", "h2")])
    s.respond(shape=3, size=12)
    out["get"] = bytes(s.data)

    s = Seed()
    sid = s.request("POST", "/up", body=b"x" * 3000, end=False)
    s.take()
    s.c.send_data(sid, b"y" * 16000)
    s.c.send_data(sid, b"y" * 4000, end_stream=True)
    s.flush()
    s.take().respond(size=2)
    out["post-body"] = bytes(s.data)

    s = Seed(limits=L_SMALL_WINDOWS, seed=1)
    sid = s.request("PUT", "/big", body=b"z" * 4096, end=False)
    s.take()
    s.c.send_data(sid, b"z" * 4096, end_stream=True)
    s.flush(cut=1)
    s.take().respond(status_idx=3, size=0)
    out["post-small-window"] = bytes(s.data)

    s = Seed()
    s.request("POST", "/grpc", body=b"\0\0\0\0\x05hello", extra=[("te", "trailers")])
    s.respond(size=10, more=True, trailers=True).more(size=4).trailers(n=2)
    out["trailers"] = bytes(s.data)

    s = Seed()
    a = s.request("GET", "/a")
    s.c.reset_stream(a)
    s.flush()
    b = s.request("GET", "/b")
    s.respond(size=300, more=True)
    s.c.reset_stream(b, error_code=8)
    s.flush()
    s.more(size=10)
    out["rst-stream"] = bytes(s.data)

    s = Seed(limits=L_RESET_BURST, seed=2)
    for i in range(8):
        sid = s.request("GET", f"/r{i}")
        s.c.reset_stream(sid)
        s.flush()
    out["rapid-reset"] = bytes(s.data)

    s = Seed(
        settings={
            h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384 * 2,
        }
    )
    s.raw(SettingsFrame(0, settings={0x4: 65535, 0x1: 8192}).serialize())
    s.request("GET", "/settings")
    s.respond(size=1000)
    s.raw(WindowUpdateFrame(1, window_increment=2000).serialize())
    out["settings"] = bytes(s.data)

    s = Seed()
    s.c.ping(b"12345678")
    s.flush()
    s.raw(PingFrame(0, opaque_data=b"abcdefgh", flags=["ACK"]).serialize())
    for _ in range(5):
        s.raw(PingFrame(0, opaque_data=b"flooding").serialize(), cut=2)
    out["ping"] = bytes(s.data)

    s = Seed(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    s.request("GET", "/down")
    s.respond(size=60000, more=True)
    for sid in (0, 1, 0, 1):
        s.raw(WindowUpdateFrame(sid, window_increment=16384).serialize())
    s.more(size=0).window(0).raw(WindowUpdateFrame(1, window_increment=30000).serialize())
    s.timer(write=True)
    out["window-update"] = bytes(s.data)

    block = headers_block(
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/cont"),
            (":authority", "e"),
            ("x-long", "v" * 300),
        ]
    )
    s = Seed()
    s.raw(HeadersFrame(1, data=block[:10]).serialize())
    s.raw(ContinuationFrame(1, data=block[10:100]).serialize())
    s.raw(ContinuationFrame(1, data=block[100:], flags=["END_HEADERS"]).serialize())
    s.respond(size=3)
    out["continuation"] = bytes(s.data)

    s = Seed()
    s.request("GET", "/before")
    s.raw(GoAwayFrame(0, last_stream_id=1, error_code=0, additional_data=b"bye").serialize())
    s.respond(size=5)
    out["client-goaway"] = bytes(s.data)

    s = Seed()
    s.raw(PriorityFrame(3, depends_on=0, stream_weight=200).serialize())
    block = headers_block(
        [(":method", "GET"), (":scheme", "http"), (":path", "/prio"), (":authority", "e")]
    )
    s.raw(
        HeadersFrame(
            5,
            data=block,
            depends_on=3,
            stream_weight=16,
            flags=["END_HEADERS", "END_STREAM", "PRIORITY"],
        ).serialize()
    )
    s.raw(PriorityFrame(5, depends_on=5, stream_weight=1).serialize())  # self-dependency
    out["priority"] = bytes(s.data)

    s = Seed(limits=L_SMALL_HEADERS)
    s.request("GET", "/huge", extra=[("x-huge", "h" * 20000)])
    s.request("GET", "/after")
    s.respond(size=1)
    out["huge-header-block"] = bytes(s.data)

    s = Seed()
    s.request("GET", "/file")
    s.send_file(offset=100, size=40000, more=True).more(size=6)
    out["send-file"] = bytes(s.data)

    s = Seed()
    s.request("GET", "/slow")
    s.shutdown()
    s.request("GET", "/racing")
    s.timer().respond(size=3).respond(size=4)
    out["graceful-shutdown"] = bytes(s.data)

    s = Seed(limits=L_SMALL_WATER)
    s.request("GET", "/blocked")
    s.window(0).respond(size=9000, more=True).timer(write=True)
    out["write-timeout"] = bytes(s.data)

    s = Seed(limits=L_FEW_STREAMS, ack=False)  # the first flight: REFUSED_STREAM past 3
    for i in range(5):
        s.request("GET", f"/c{i}")
    s.ack().respond().respond(status_idx=2)
    out["concurrency"] = bytes(s.data)

    s = Seed()
    s.request("HEAD", "/h")
    s.request("GET", "/n")
    s.respond(size=10).respond(status_idx=3, size=0)
    s.request(headers=[(":method", "CONNECT"), (":authority", "example.com:443")])
    out["head-204-connect"] = bytes(s.data)

    s = Seed(limits=L_LEFTOVER | L_TINY_READS, seed=3)
    s.request("GET", "/-/health")
    s.request("GET", "/app")
    s.respond(size=2).clock(200).timer()
    out["leftover-tiny-reads"] = bytes(s.data)

    s = Seed(limits=L_INTERNAL)
    s.request("GET", "/x")
    s.request("HEAD", "/-/health")
    out["internal-only"] = bytes(s.data)

    s = Seed(seed=4)
    for _ in range(4):
        s.request("GET", "/same", extra=[("x-token", "abcdef"), ("accept", "*/*")])
    s.respond().respond().abort().respond(size=2)
    s.timer()
    s.eof()
    out["hpack-dynamic-abort"] = bytes(s.data)

    # Request bodies over the body budget (8 KiB here): the connection window waits for takes.
    s = Seed(limits=L_SMALL_WINDOWS, seed=0)  # seed 0: the app takes only when told
    for i in range(3):
        s.request("POST", f"/b{i}", body=bytes([65 + i]) * 4096, end=False)
    s.take().take(pick=1).take(pick=2).respond().respond().respond()
    out["body-budget"] = bytes(s.data)

    s = Seed()
    s.request("GET", "/idle")
    s.respond(size=1).clock(250, p=7).timer()
    out["idle-timeout"] = bytes(s.data)

    # WebSocket over HTTP/2 (RFC 8441): control byte 1 bit 7; seed 0x88: no keepalive, the app
    # takes messages only when told.
    s = Seed(seed=0x88)
    s.ws_connect(1, extra=[("sec-websocket-protocol", "chat, superchat")])
    s.accept(how=1)
    s.ws_data(1, ws_frame(0x1, b"hello") + ws_frame(0x9, b"ping!"))
    s.ws_take().ws_send(size=12).ws_send(size=200, text=False)
    s.ws_data(1, ws_frame(0x2, b"frag", fin=False) + ws_frame(0x0, b"ment"))
    s.ws_take()
    s.ws_data(1, ws_frame(0x8, b"\x03\xe8bye"))
    out["ws-echo"] = bytes(s.data)

    s = Seed(seed=0x80)
    s.ws_connect(
        1, extra=[("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")]
    )
    s.accept(how=0)
    s.ws_data(1, ws_frame(0x1, deflated(b"compressed " * 20), rsv1=True))
    s.ws_send(size=250).ws_close(code_idx=0, reason=10)
    s.ws_data(1, ws_frame(0x8, b"\x03\xe8"), end=True)
    out["ws-deflate"] = bytes(s.data)

    s = Seed(seed=0x88)
    s.ws_connect(1)
    s.respond(status_idx=5, size=300)  # p bit 2 (a size over 255): deny with an HTTP 404
    s.ws_connect(3, version="8")  # 426
    s.headers(5, [(":method", "CONNECT"), (":protocol", "websocket"), (":authority", "e")])
    out["ws-denied-bad"] = bytes(s.data)

    s = Seed(seed=0xE8)  # small limits (max_message 1000, high water 512)
    s.ws_connect(1)
    s.accept(how=0)
    s.ws_data(1, ws_frame(0x2, b"x" * 2000))  # over max_message: 1009
    s.ws_connect(3)
    s.accept(how=0)
    s.ws_send(size=255).ws_send(size=255)
    s.window(0).tick().tick()
    s.raw(RstStreamFrame(3, error_code=8).serialize())
    out["ws-limits-reset"] = bytes(s.data)

    s = Seed(seed=0x80)  # keepalive on: the tick sends pings, then times out
    s.ws_connect(1)
    s.accept(how=0)
    s.tick().clock(200, p=7).tick().tick()
    s.shutdown().timer()
    out["ws-keepalive-shutdown"] = bytes(s.data)

    # Malformed: DATA on an idle stream, a bad HEADERS (uppercase name), a frame too large.
    s = Seed()
    s.raw(DataFrame(7, data=b"x").serialize())
    out["data-idle-stream"] = bytes(s.data)
    s = Seed()
    s.request("GET", "/ok")
    bad = [
        (":method", "GET"),
        (":path", "/"),
        (":scheme", "http"),
        (":authority", "e"),
        ("Upper", "x"),
    ]
    s.raw(
        HeadersFrame(101, data=headers_block(bad), flags=["END_HEADERS", "END_STREAM"]).serialize()
    )
    s.respond(size=1)
    out["malformed-headers"] = bytes(s.data)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        if not MERGED.fullmatch(f.name):
            f.unlink()
    for name, data in seeds().items():
        assert len(data) <= 65536, name
        (OUT / name).write_bytes(data)
    print(f"fuzz_http2_connection: {len(list(OUT.iterdir()))} seeds")


if __name__ == "__main__":
    main()
