"""A raw HTTP/2 client for conformance tests: frames from hyperframe, header blocks from hpack.

It is deliberately not the `h2` state machine: the conformance cases send frames that a correct
client never would (DATA on stream 0, PING with a stream id, a SETTINGS ACK with a payload, ...),
so every frame is built here, valid or not, and written to the socket as is.

Reading mirrors h2spec (github.com/summerwind/h2spec, spec/verifier.go): each wait for the next
frame has its own deadline (WAIT_S, h2spec's default 2 s); a wait that times out ends the
verification; a connection closed or reset by the peer is an event, not an exception. The
`expect_*` methods are h2spec's acceptance rules, with one deliberate difference: h2spec ignores a
GOAWAY or RST_STREAM whose error code is not one it expects and passes anyway if the connection
then closes; here such a frame fails the expectation at once (the error code is the verdict),
unless H2_CONFORMANCE_H2SPEC_LAX=1 (used only to compare our counts with h2spec's).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import hpack
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WAIT_S = 2.0  # h2spec's default per-read timeout
MAX_EVENTS = 10_000  # a verification gives up after this many frames (a chatty server)
VERIFY_BUDGET_S = 10.0  # ... or after this long in all
# h2spec's own leniency, for comparing results with it: a GOAWAY/RST_STREAM carrying an error
# code the case does not expect is skipped instead of failing the case at once.
H2SPEC_LAX = os.environ.get("H2_CONFORMANCE_H2SPEC_LAX") == "1"
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME_SIZE = 16_384
HeaderList = list[tuple[str, str]]


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


# Flag bits, for frames written byte by byte.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
UNKNOWN_FRAME_TYPE = 0x16  # unassigned in the IANA HTTP/2 frame type registry


@dataclass(frozen=True)
class Closed:
    """The peer closed (or reset) the TCP connection."""

    reason: str

    def __str__(self) -> str:
        return f"connection closed ({self.reason})"


@dataclass(frozen=True)
class TimedOut:
    """No complete frame arrived within the wait."""

    after_s: float

    def __str__(self) -> str:
        return f"timeout ({self.after_s:g} s without a frame)"


Event = Frame | Closed | TimedOut


def describe(event: Event) -> str:
    """One line per event, for failure messages."""
    if not isinstance(event, Frame):
        return str(event)
    name = type(event).__name__.removesuffix("Frame").upper()
    flags = ",".join(sorted(event.flags)) or "-"
    detail = ""
    if isinstance(event, GoAwayFrame):
        detail = (
            f" last_stream_id={event.last_stream_id} error={_code_name(event.error_code)}"
            f" debug={event.additional_data[:80]!r}"
        )
    elif isinstance(event, RstStreamFrame):
        detail = f" error={_code_name(event.error_code)}"
    elif isinstance(event, DataFrame):
        detail = f" length={len(event.data)}"
    elif isinstance(event, PingFrame):
        detail = f" data={event.opaque_data!r}"
    elif isinstance(event, SettingsFrame):
        detail = f" {dict(event.settings)}"
    elif isinstance(event, WindowUpdateFrame):
        detail = f" increment={event.window_increment}"
    elif isinstance(event, ExtensionFrame):
        name = f"EXTENSION(type={event.type:#x})"
    return f"{name} stream={event.stream_id} flags={flags}{detail}"


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return hex(code)


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame written byte by byte: any length, type, flags and stream id (R bit included)."""
    header = struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", frame_type, flags, stream_id)
    return header + payload


def settings_payload(*pairs: tuple[int, int]) -> bytes:
    """A SETTINGS payload, in the given order (repeated identifiers allowed)."""
    return b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)


def _with_stream(frame: Frame, stream_id: int) -> Frame:
    """hyperframe refuses some stream ids at construction; the wire format does not."""
    frame.stream_id = stream_id
    return frame


# --- HPACK pieces written by hand (RFC 7541), for the representations an encoder never emits.


def hpack_integer(value: int, prefix_bits: int, first_byte_flags: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; `first_byte_flags` fills the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman_bits(text: bytes) -> str:
    """The Huffman code (RFC 7541 Appendix B) of `text`, as a string of '0'/'1', unpadded."""
    return "".join(format(REQUEST_CODES[b], f"0{REQUEST_CODES_LENGTH[b]}b") for b in text)


EOS_BITS = format(REQUEST_CODES[256], f"0{REQUEST_CODES_LENGTH[256]}b")


def bits_to_bytes(bits: str, pad: str = "1") -> bytes:
    """Pack a bit string into octets, filling the last one with `pad` bits."""
    if len(bits) % 8:
        bits += pad * (8 - len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def hpack_string(value: bytes, *, huffman: bool = False) -> bytes:
    """A string literal (RFC 7541 §5.2), raw or Huffman coded with the usual all-ones padding."""
    data = bits_to_bytes(huffman_bits(value)) if huffman else value
    return hpack_integer(len(data), 7, 0x80 if huffman else 0) + data


def hpack_raw_string(encoded: bytes, *, huffman: bool) -> bytes:
    """A string literal whose (possibly invalid) octets are given as they go on the wire."""
    return hpack_integer(len(encoded), 7, 0x80 if huffman else 0) + encoded


# Representation prefixes (RFC 7541 §6.2): (first-byte pattern, index prefix bits).
LITERAL_INCREMENTAL = (0x40, 6)
LITERAL_WITHOUT_INDEXING = (0x00, 4)
LITERAL_NEVER_INDEXED = (0x10, 4)


def hpack_literal(
    kind: tuple[int, int],
    *,
    name: bytes | int,
    value: bytes,
    huffman: bool = False,
) -> bytes:
    """A literal header field: `name` is a table index (int) or a new name (bytes)."""
    pattern, prefix = kind
    if isinstance(name, int):
        out = hpack_integer(name, prefix, pattern)
    else:
        out = bytes([pattern]) + hpack_string(name, huffman=huffman)
    return out + hpack_string(value, huffman=huffman)


def hpack_indexed(index: int) -> bytes:
    """An indexed header field (RFC 7541 §6.1)."""
    return hpack_integer(index, 7, 0x80)


def hpack_table_size_update(size: int) -> bytes:
    """A dynamic table size update (RFC 7541 §6.3)."""
    return hpack_integer(size, 5, 0x20)


# --- The client.


@dataclass
class Response:
    """What arrived on one stream: decoded header blocks and DATA."""

    header_blocks: list[HeaderList] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False

    @property
    def status(self) -> str | None:
        for name, value in self.header_blocks[0] if self.header_blocks else []:
            if name == ":status":
                return value
        return None


class ExpectationFailed(AssertionError):
    pass


class H2Client:
    """One HTTP/2 connection to the server under test, driven frame by frame."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        wait_s: float = WAIT_S,
        server_name: str | None = None,
    ) -> None:
        self.host, self.port, self.tls, self.wait_s = host, port, tls, wait_s
        raw = socket.create_connection((host, port), timeout=wait_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname=server_name or host)
            if self.sock.selected_alpn_protocol() != "h2":
                raw.close()
                raise ExpectationFailed(
                    f"ALPN did not select h2 (got {self.sock.selected_alpn_protocol()!r})"
                )
        else:
            self.sock = raw
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.decoder.max_allowed_table_size = 1 << 16
        self.server_settings: dict[int, int] = {}
        self.responses: dict[int, Response] = {}
        self.log: list[str] = []  # what was sent and received, for failure messages
        self.closed = False  # no more reads: the peer closed, or a wait timed out (as h2spec)
        self._buffer = bytearray()
        self._outbox = bytearray()
        self._pending_block: tuple[int, bytearray, bool] | None = None
        self._decoder_broken = False

    # ---- lifetime

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @property
    def max_frame_size(self) -> int:
        """The largest frame the server said it accepts (SETTINGS_MAX_FRAME_SIZE)."""
        return self.server_settings.get(Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE)

    # ---- sending

    def send(self, data: bytes, note: str | None = None) -> None:
        """Queue bytes; they go out in one write before the next read (or on flush()).

        Frames a case sends back to back thus reach the server together, so that it processes
        them before it can answer the request: otherwise a fast server may finish a response
        (and close the stream) between two frames, and the case would test something else."""
        self.log.append(f"-> {note or f'{len(data)} raw bytes'}")
        self._outbox += data

    def flush(self) -> None:
        """Write what is queued; a peer that already closed is not an error (as in h2spec)."""
        if not self._outbox:
            return
        data, self._outbox = bytes(self._outbox), bytearray()
        try:
            self.sock.settimeout(max(self.wait_s, 10.0))
            self.sock.sendall(data)
        except OSError as exc:
            self.log.append(f"   (write failed: {exc!r})")

    def send_frame(self, frame: Frame) -> None:
        self.send(frame.serialize(), describe(frame))

    def send_raw_frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        note = (
            f"raw frame type={frame_type:#x} flags={flags:#x} stream={stream_id:#x}"
            f" length={len(payload)}"
        )
        self.send(raw_frame(frame_type, flags, stream_id, payload), note)

    def send_preface(self) -> None:
        self.send(PREFACE, "client connection preface")

    def send_settings(self, *pairs: tuple[int, int]) -> None:
        """A SETTINGS frame with the pairs in this order (h2spec's frames may repeat an id)."""
        self.send_raw_frame(FrameType.SETTINGS, 0, 0, settings_payload(*pairs))

    def send_settings_ack(self) -> None:
        self.send_frame(SettingsFrame(flags=["ACK"]))

    def send_ping(self, data: bytes = bytes(8), *, ack: bool = False) -> None:
        self.send_frame(PingFrame(opaque_data=data, flags=["ACK"] if ack else []))

    def send_goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        self.send_frame(
            GoAwayFrame(last_stream_id=last_stream_id, error_code=code, additional_data=debug)
        )

    def send_rst_stream(self, stream_id: int, code: int) -> None:
        self.send_frame(_with_stream(RstStreamFrame(1, error_code=code), stream_id))

    def send_window_update(self, stream_id: int, increment: int) -> None:
        # The payload is written directly: hyperframe checks nothing on write, but be explicit.
        payload = struct.pack(">I", increment & 0x7FFFFFFF)
        self.send(
            raw_frame(FrameType.WINDOW_UPDATE, 0, stream_id, payload),
            f"WINDOW_UPDATE stream={stream_id} increment={increment}",
        )

    def send_priority(
        self, stream_id: int, *, depends_on: int = 0, weight: int = 255, exclusive: bool = False
    ) -> None:
        """PRIORITY; `weight` is the wire value (0..255, i.e. priority weight - 1)."""
        frame = PriorityFrame(1, depends_on=depends_on, stream_weight=weight, exclusive=exclusive)
        self.send_frame(_with_stream(frame, stream_id))

    def send_data(
        self, stream_id: int, data: bytes, *, end_stream: bool, pad_length: int | None = None
    ) -> None:
        flags = ["END_STREAM"] if end_stream else []
        kwargs = {}
        if pad_length is not None:
            flags.append("PADDED")
            kwargs["pad_length"] = pad_length
        frame = DataFrame(1, data=data, flags=flags, **kwargs)
        self.send_frame(_with_stream(frame, stream_id))

    def send_headers(
        self,
        stream_id: int,
        headers: Sequence[tuple[str, str]] | bytes,
        *,
        end_stream: bool,
        end_headers: bool = True,
        pad_length: int | None = None,
        priority: tuple[int, int, bool] | None = None,
    ) -> bytes:
        """HEADERS with a header list (encoded here) or a ready block; returns the block."""
        block = headers if isinstance(headers, bytes) else self.encode(headers)
        flags = []
        if end_stream:
            flags.append("END_STREAM")
        if end_headers:
            flags.append("END_HEADERS")
        kwargs: dict[str, object] = {}
        if pad_length is not None:
            flags.append("PADDED")
            kwargs["pad_length"] = pad_length
        if priority is not None:
            depends_on, weight, exclusive = priority
            flags.append("PRIORITY")
            kwargs.update(depends_on=depends_on, stream_weight=weight, exclusive=exclusive)
        frame = HeadersFrame(1, data=block, flags=flags, **kwargs)
        self.send_frame(_with_stream(frame, stream_id))
        return block

    def send_continuation(
        self, stream_id: int, headers: Sequence[tuple[str, str]] | bytes, *, end_headers: bool
    ) -> None:
        block = headers if isinstance(headers, bytes) else self.encode(headers)
        frame = ContinuationFrame(1, data=block, flags=["END_HEADERS"] if end_headers else [])
        self.send_frame(_with_stream(frame, stream_id))

    def send_push_promise(self, stream_id: int, promised_stream_id: int, block: bytes) -> None:
        frame = PushPromiseFrame(
            1, promised_stream_id=promised_stream_id, data=block, flags=["END_HEADERS"]
        )
        self.send_frame(_with_stream(frame, stream_id))

    # ---- headers

    def encode(self, headers: Iterable[tuple[str, str]]) -> bytes:
        """Encode with this connection's HPACK context (incremental indexing, Huffman)."""
        return self.encoder.encode(list(headers))

    def request_headers(self, method: str = "GET", path: str = "/") -> HeaderList:
        """h2spec's common request headers: :method, :scheme, :path, :authority, in that order."""
        return [
            (":method", method),
            (":scheme", "https" if self.tls else "http"),
            (":path", path),
            (":authority", self.authority),
        ]

    # ---- connection setup

    def handshake(self) -> None:
        """Preface + SETTINGS(INITIAL_WINDOW_SIZE=65535), as h2spec; done when the server's
        SETTINGS has been acknowledged by us and ours by it (frames in between are dropped)."""
        self.send_preface()
        self.send_settings((Setting.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            event = self.next_event()
            if not isinstance(event, Frame):
                raise ExpectationFailed(self._report("the HTTP/2 handshake", event))
            if isinstance(event, SettingsFrame):
                if "ACK" in event.flags:
                    got_ack = True
                else:
                    got_settings = True
                    self.server_settings.update(event.settings)
                    self.send_settings_ack()

    # ---- reading

    def next_event(self, wait_s: float | None = None) -> Event:
        """The next frame, or Closed / TimedOut. After either, the connection is done."""
        self.flush()
        if self.closed:
            return Closed("already finished")
        wait = self.wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + wait
        while True:
            frame = self._parse_buffered()
            if frame is not None:
                self.log.append(f"<- {describe(frame)}")
                self._track(frame)
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._finish(TimedOut(wait))
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return self._finish(TimedOut(wait))
            except ssl.SSLError as exc:
                return self._finish(Closed(f"TLS error {exc!r}"))
            except OSError as exc:  # ECONNRESET and friends: h2spec counts them as a close
                return self._finish(Closed(repr(exc)))
            if not chunk:
                return self._finish(Closed("EOF"))
            self._buffer += chunk

    def _finish(self, event: Closed | TimedOut) -> Closed | TimedOut:
        self.closed = True
        self.log.append(f"<- {event}")
        return event

    def _parse_buffered(self) -> Frame | None:
        if len(self._buffer) < 9:
            return None
        frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
        if len(self._buffer) < 9 + length:
            return None
        body = bytes(self._buffer[9 : 9 + length])
        del self._buffer[: 9 + length]
        try:
            frame.parse_body(memoryview(body))
        except Exception as exc:  # a frame the server should never have sent
            raise ExpectationFailed(
                self._report("a well-formed frame", Closed(f"unparsable frame: {exc!r}"))
            ) from exc
        return frame

    def _track(self, frame: Frame) -> None:
        """Keep the HPACK decoder in step and collect responses (for status/body checks)."""
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            ended = "END_STREAM" in frame.flags and isinstance(frame, HeadersFrame)
            self._pending_block = (frame.stream_id, bytearray(frame.data), ended)
            if "END_HEADERS" in frame.flags:
                self._decode_pending()
        elif isinstance(frame, ContinuationFrame) and self._pending_block is not None:
            self._pending_block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                self._decode_pending()
        elif isinstance(frame, DataFrame):
            response = self.responses.setdefault(frame.stream_id, Response())
            response.data += frame.data
            response.ended = response.ended or "END_STREAM" in frame.flags

    def _decode_pending(self) -> None:
        assert self._pending_block is not None
        stream_id, block, ended = self._pending_block
        self._pending_block = None
        response = self.responses.setdefault(stream_id, Response())
        response.ended = response.ended or ended
        if self._decoder_broken:
            return
        try:
            decoded = self.decoder.decode(bytes(block), raw=False)
        except Exception as exc:
            self._decoder_broken = True
            self.log.append(f"   (could not decode the server's header block: {exc!r})")
            return
        response.header_blocks.append([(str(n), str(v)) for n, v in decoded])

    def _report(self, expected: str, actual: Event | str) -> str:
        shown = actual if isinstance(actual, str) else describe(actual)
        trail = "\n".join(f"    {line}" for line in self.log[-40:])
        return f"expected {expected}\n  got: {shown}\n  exchange:\n{trail}"

    def _events(self) -> Iterable[Event]:
        """Events until the connection is done (closed or a wait timed out), within a budget
        (MAX_EVENTS frames, VERIFY_BUDGET_S seconds) so that a chatty server cannot stall us."""
        deadline = time.monotonic() + VERIFY_BUDGET_S
        for _ in range(MAX_EVENTS):
            remaining = deadline - time.monotonic()
            event = self.next_event(min(self.wait_s, max(remaining, 0.0)))
            yield event
            if not isinstance(event, Frame):
                return

    # ---- h2spec's verifications

    def wait_for(self, frame_type: type[Frame], what: str | None = None) -> Frame:
        """The first frame of this type (others are skipped); fails on close or timeout."""
        last: Event | None = None
        for event in self._events():
            if isinstance(event, frame_type):
                return event
            last = event
        raise ExpectationFailed(self._report(what or f"a {frame_type.__name__}", last or ""))

    def expect_connection_error(self, *codes: ErrorCode) -> None:
        """Connection error: GOAWAY with one of `codes`, or the connection closed.

        Other frames (RST_STREAM included) are skipped, as h2spec does; a GOAWAY with another
        error code fails at once (h2spec would wait for the close and pass; see H2SPEC_LAX)."""
        self._expect_error(codes, accept_rst=False)

    def expect_stream_error(self, *codes: ErrorCode) -> None:
        """Stream error as h2spec checks it: RST_STREAM or GOAWAY with one of `codes`, or the
        connection closed. A RST_STREAM(NO_ERROR) (a response that ended early) is skipped;
        any other code fails at once (unless H2SPEC_LAX)."""
        self._expect_error(codes, accept_rst=True)

    def expect_error_or(
        self,
        *codes: ErrorCode,
        accept_rst: bool,
        alternative: str,
        accepts: Callable[[Frame], bool],
        forbidden: Callable[[Frame], bool] | None = None,
    ) -> None:
        """As expect_stream_error / expect_connection_error, but a frame for which `accepts` is
        true also passes (`alternative` names it), and one for which `forbidden` is true fails.
        For rules RFC 9113 relaxed (an error that became a MAY, or no longer exists)."""
        self._expect_error(
            codes,
            accept_rst=accept_rst,
            alternative=(alternative, accepts),
            forbidden=forbidden,
        )

    def _expect_error(
        self,
        codes: tuple[ErrorCode, ...],
        *,
        accept_rst: bool,
        alternative: tuple[str, Callable[[Frame], bool]] | None = None,
        forbidden: Callable[[Frame], bool] | None = None,
    ) -> None:
        names = "/".join(code.name for code in codes)
        what = f"GOAWAY({names})"
        if accept_rst:
            what += f" or RST_STREAM({names})"
        if alternative is not None:
            what += f" or {alternative[0]}"
        what += " or the connection closed"
        last: Event | None = None
        for event in self._events():
            if isinstance(event, Closed):
                return
            if not isinstance(event, Frame):  # timed out: the loop ends here
                last = event
                continue
            if forbidden is not None and forbidden(event):
                raise ExpectationFailed(self._report(what, event))
            if alternative is not None and alternative[1](event):
                return
            if isinstance(event, GoAwayFrame):
                if event.error_code in codes:
                    return
                if not H2SPEC_LAX:
                    raise ExpectationFailed(self._report(what, event))
            if accept_rst and isinstance(event, RstStreamFrame):
                if event.error_code in codes:
                    return
                if event.error_code != ErrorCode.NO_ERROR and not H2SPEC_LAX:
                    raise ExpectationFailed(self._report(what, event))
            last = event
        raise ExpectationFailed(self._report(what, last or ""))

    def expect_goaway(self, *codes: ErrorCode) -> GoAwayFrame:
        """A GOAWAY frame (and nothing less: a bare close fails) with one of `codes`."""
        names = "/".join(code.name for code in codes)
        frame = self.wait_for(GoAwayFrame, f"GOAWAY({names})")
        assert isinstance(frame, GoAwayFrame)
        if frame.error_code not in codes:
            raise ExpectationFailed(self._report(f"GOAWAY({names})", frame))
        return frame

    def expect_rst_stream(self, stream_id: int, *codes: ErrorCode) -> RstStreamFrame:
        """The first RST_STREAM must be on `stream_id` with one of `codes`."""
        names = "/".join(code.name for code in codes)
        what = f"RST_STREAM(stream {stream_id}, {names})"
        frame = self.wait_for(RstStreamFrame, what)
        assert isinstance(frame, RstStreamFrame)
        if frame.stream_id != stream_id or frame.error_code not in codes:
            raise ExpectationFailed(self._report(what, frame))
        return frame

    def expect_connection_close(self) -> None:
        """The TCP connection closes (frames before it, a GOAWAY included, are skipped)."""
        last: Event | None = None
        for event in self._events():
            if isinstance(event, Closed):
                return
            last = event
        raise ExpectationFailed(self._report("the connection closed", last or ""))

    def expect_stream_close(self, stream_id: int) -> None:
        """The stream ends: DATA/HEADERS with END_STREAM, or RST_STREAM(NO_ERROR)."""
        last: Event | None = None
        for event in self._events():
            if isinstance(event, (DataFrame, HeadersFrame)) and "END_STREAM" in event.flags:
                if event.stream_id == stream_id:
                    return
            if isinstance(event, RstStreamFrame) and event.error_code == ErrorCode.NO_ERROR:
                if event.stream_id == stream_id:
                    return
            last = event
        raise ExpectationFailed(self._report(f"stream {stream_id} to end", last or ""))

    def expect_headers(self, stream_id: int) -> HeadersFrame:
        """The first HEADERS frame that arrives must be on `stream_id` (h2spec's check)."""
        frame = self.wait_for(HeadersFrame, f"HEADERS on stream {stream_id}")
        assert isinstance(frame, HeadersFrame)
        if frame.stream_id != stream_id:
            raise ExpectationFailed(self._report(f"HEADERS on stream {stream_id}", frame))
        return frame

    def expect_response(self, stream_id: int, status: str = "200") -> Response:
        """HEADERS on `stream_id` (as expect_headers) whose decoded :status is `status`."""
        self.expect_headers(stream_id)
        if self._pending_block is not None:  # the block continues in CONTINUATION frames
            while self._pending_block is not None:
                event = self.next_event()
                if not isinstance(event, Frame):
                    raise ExpectationFailed(self._report("the rest of the header block", event))
        response = self.responses[stream_id]
        if response.status != status:
            raise ExpectationFailed(
                self._report(f":status {status}", f"{response.header_blocks[:1]}")
            )
        return response

    def expect_server_preface(self) -> None:
        """The very first frame is a SETTINGS frame without ACK (the server preface)."""
        event = self.next_event()
        if not isinstance(event, SettingsFrame) or "ACK" in event.flags:
            raise ExpectationFailed(self._report("SETTINGS without ACK as the first frame", event))
        self.server_settings.update(event.settings)

    def expect_data(self) -> DataFrame:
        """A DATA frame (other frames are skipped)."""
        frame = self.wait_for(DataFrame, "a DATA frame")
        assert isinstance(frame, DataFrame)
        return frame

    def expect_settings_ack(self) -> None:
        """The next SETTINGS frame must be an ACK."""
        frame = self.wait_for(SettingsFrame, "SETTINGS with ACK")
        if "ACK" not in frame.flags:
            raise ExpectationFailed(self._report("SETTINGS with ACK", frame))

    def expect_ping_ack(self, data: bytes = bytes(8)) -> None:
        """The next PING frame must be an ACK carrying `data`."""
        what = f"PING with ACK and data {data!r}"
        frame = self.wait_for(PingFrame, what)
        assert isinstance(frame, PingFrame)
        if "ACK" not in frame.flags or frame.opaque_data != data:
            raise ExpectationFailed(self._report(what, frame))

    def expect_ping_ack_or_close(self, data: bytes = bytes(8)) -> None:
        """A PING ACK carrying `data`, or the connection closed (other frames skipped)."""
        what = f"PING with ACK and data {data!r}, or the connection closed"
        last: Event | None = None
        for event in self._events():
            if isinstance(event, Closed):
                return
            if isinstance(event, PingFrame) and "ACK" in event.flags and event.opaque_data == data:
                return
            last = event
        raise ExpectationFailed(self._report(what, last or ""))

    def expect_data_length(self, stream_id: int, length: int) -> DataFrame:
        """The first DATA frame must be on `stream_id` and carry exactly `length` octets."""
        what = f"DATA on stream {stream_id} with {length} octet(s)"
        frame = self.wait_for(DataFrame, what)
        assert isinstance(frame, DataFrame)
        if frame.stream_id != stream_id or len(frame.data) != length:
            raise ExpectationFailed(self._report(what, frame))
        return frame
