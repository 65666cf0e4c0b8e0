"""Hostile HTTP/2 clients on raw frames (hyperframe, hpack; ../shared/ATTACKS.md section F):
Rapid Reset, CONTINUATION flood, HPACK bomb, SETTINGS and PING floods, WINDOW_UPDATE overflow,
DATA beyond the window, bad stream ids, malformed requests (pseudo-headers, uppercase names,
connection-specific fields, TE, content-length), a zero-window stall and many idle connections.
For each: the error code RFC 9113 and the contract ask for, the server's memory bounded, the app
never run for a refused request (apps/h2_apps.py counts /hit calls), and another connection
served afterwards.

Validated against hypercorn 0.18 (H2_TEST_PEER=hypercorn, see test_http2.py); where hypercorn
does not meet the expectation a comment says so ("hypercorn:").
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from harness import ServerProcess, poll
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from test_http2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    H2_APP,
    INITIAL_WINDOW_SIZE,
    INTERNAL_ERROR,
    MAX_CONCURRENT_STREAMS,
    MIB,
    PREFACE,
    PROTOCOL_ERROR,
    STREAM_CLOSED,
    Frames,
    H2Serve,
    PeakRss,
    count,
    get_json,
    hello_over_new_connection,
    open_gate,
    start_server,
)
from test_http2 import h2serve as h2serve  # the fixture

pytestmark = pytest.mark.timeout(60)

MAX_WINDOW = 2**31 - 1


@pytest.fixture(scope="module")
def shared() -> Iterator[ServerProcess]:
    """One server for the tests that leave it as they found it."""
    server = start_server(H2_APP, "--no-access-log")
    yield server
    server.kill()


def ready(server: ServerProcess, **kw: object) -> Frames:
    """A raw connection past the server's SETTINGS (acknowledged) and any WINDOW_UPDATE sent
    with them: a PING round trip orders everything the server sent first."""
    conn = Frames(server, **kw)  # type: ignore[arg-type]
    conn.send_frames(PingFrame(0, opaque_data=b"ready!!!"))
    got = conn.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, 5)
    assert got is not None, f"closed before the PING ACK: {conn.frames}"
    return conn


def server_settings(conn: Frames) -> dict[int, int]:
    settings: dict[int, int] = {}
    for frame in conn.frames:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            settings.update(frame.settings)
    return settings


def connection_window(conn: Frames) -> int:
    """The server's receive window for the whole connection, as far as `conn` has read."""
    return 65535 + sum(
        f.window_increment
        for f in conn.frames
        if isinstance(f, WindowUpdateFrame) and f.stream_id == 0
    )


def send_until_blocked(conn: Frames, data: bytes, stall_s: float = 3.0) -> str:
    """sendall(data); 'sent', 'blocked' (the server stopped reading for `stall_s`), or 'closed'."""
    conn.sock.settimeout(stall_s)
    try:
        conn.sock.sendall(data)
    except TimeoutError:
        return "blocked"
    except OSError:
        return "closed"
    return "sent"


# --- Rapid Reset (CVE-2023-44487) -------------------------------------------------------------


def test_rapid_reset_gets_enhance_your_calm(h2serve: H2Serve):
    """10,000 HEADERS + RST_STREAM pairs as fast as the socket takes them. hypercorn: no reset
    limit; its connection dies on an exception at 1,001 streams in its priority tree, without a
    GOAWAY."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    key = "rapid"
    pairs = 10_000
    conn = ready(server)
    headers = conn.request_headers(f"/hit?id={key}")
    attack = bytearray()
    for i in range(pairs):
        sid = 2 * i + 1
        attack += conn.headers_frame(sid, headers).serialize()
        attack += RstStreamFrame(sid, error_code=CANCEL).serialize()
    outcome: list[str] = []
    sender = threading.Thread(
        target=lambda: outcome.append(send_until_blocked(conn, bytes(attack), 10)), daemon=True
    )
    started = time.monotonic()
    with conn:
        sender.start()
        hello_over_new_connection(server)  # served while the attack runs
        goaway = conn.goaway(20)
        sender.join(20)
        assert goaway is not None, f"closed without a GOAWAY ({conn.frames[-5:]})"
        assert goaway.error_code in (ENHANCE_YOUR_CALM, INTERNAL_ERROR), goaway
        # the server stopped well before the end of the attack
        assert goaway.last_stream_id < pairs, f"{goaway} after {time.monotonic() - started:.1f} s"
        conn.wait_closed(5)
    calls = count(server, key)
    assert calls < pairs // 5, f"the app ran {calls} times"
    assert rss.growth_mib < 32, f"the server grew {rss.growth_mib:.0f} MiB"
    hello_over_new_connection(server)


# --- header floods and bombs --------------------------------------------------------------------


def hpack_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(data: bytes) -> bytes:
    return hpack_int(len(data), 7) + data


def literal(name: bytes, value: bytes, *, index: bool = False) -> bytes:
    """A literal field with a literal name; `index`: added to the dynamic table."""
    return (b"\x40" if index else b"\x00") + hpack_string(name) + hpack_string(value)


def literal_static_name(index: int, value: bytes) -> bytes:
    """A literal field (not indexed) whose name is static table entry `index`."""
    return hpack_int(index, 4) + hpack_string(value)


def request_block(conn: Frames, path: str) -> bytes:
    """GET `path` as HPACK that leaves the dynamic table alone (no encoder state involved)."""
    return (
        b"\x82"  # :method GET
        + b"\x86"  # :scheme http
        + literal_static_name(1, conn.authority.encode())
        + literal_static_name(4, path.encode())
    )


def split_block(sid: int, block: bytes, end_stream: bool = True, size: int = 16384) -> bytes:
    """HEADERS then CONTINUATION frames carrying `block`."""
    pieces = [block[i : i + size] for i in range(0, len(block), size)] or [b""]
    frames: list[Frame] = []
    for i, piece in enumerate(pieces):
        flags = ["END_HEADERS"] if i == len(pieces) - 1 else []
        if i == 0:
            frames.append(HeadersFrame(sid, data=piece, flags=flags + ["END_STREAM"] * end_stream))
        else:
            frames.append(ContinuationFrame(sid, data=piece, flags=flags))
    return b"".join(f.serialize() for f in frames)


def test_continuation_flood_is_cut_off(h2serve: H2Serve):
    """HEADERS without END_HEADERS, then CONTINUATION frames for ever (CVE-2024-27316 and kin):
    the server ends the connection, having kept little of it."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    key = "continuation"
    field = literal(b"x-flood", b"f" * 100)
    payload = field * (16384 // len(field))
    frame = ContinuationFrame(1, data=payload).serialize()
    batch = frame * 64  # 1 MiB
    sent = 0
    limit = 64 * MIB
    with ready(server) as conn:
        conn.send(HeadersFrame(1, data=request_block(conn, f"/hit?id={key}")).serialize())
        while sent < limit:
            state = send_until_blocked(conn, batch, 5)
            rss.sample()
            if state != "sent":
                break
            sent += len(batch)
            conn.read(0.001)
            if conn.closed or any(
                isinstance(f, (GoAwayFrame, RstStreamFrame)) for f in conn.frames
            ):
                break
        assert sent < limit, f"the server took {sent / MIB:.0f} MiB of one header block"
        reaction = conn.wait_for(
            lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)) or conn.status(1) == 431, 5
        )
        if isinstance(reaction, GoAwayFrame):
            assert reaction.error_code in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM), reaction
        conn.wait_closed(5)
    assert rss.growth_mib < 32, f"the server grew {rss.growth_mib:.0f} MiB"
    assert count(server, key) == 0
    hello_over_new_connection(server)


def hpack_bomb(conn: Frames, sid: int, path: str, references: int = 16_000) -> bytes:
    """One ~4 KiB field added to the dynamic table (index 62), then referenced `references`
    times: a 20 KiB header block that decodes to `references` x 4 KiB."""
    value = b"b" * 3900  # name + value + 32 must fit the default 4,096-byte table
    block = request_block(conn, path) + literal(b"x-bomb", value, index=True)
    block += b"\xbe" * references  # indexed field 62
    return split_block(sid, block)


def test_hpack_bomb_is_refused_with_memory_bounded(h2serve: H2Serve):
    """hypercorn (hpack's decoder limit): GOAWAY COMPRESSION_ERROR on the first bomb."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    key = "hpack-bomb"
    refused = 0
    conn = ready(server)
    try:
        sid = 1
        for _ in range(5):  # five bombs of ~62 MB each, on one connection while it lasts
            if conn.closed or any(isinstance(f, GoAwayFrame) for f in conn.frames):
                conn.close()
                conn = ready(server)
                sid = 1
            since = len(conn.frames)
            conn.send(hpack_bomb(conn, sid, f"/hit?id={key}"))
            reaction = conn.wait_for(
                lambda f, sid=sid: (
                    (f.stream_id == sid and isinstance(f, RstStreamFrame))
                    or (isinstance(f, HeadersFrame) and f.stream_id == sid)
                    or isinstance(f, GoAwayFrame)
                ),
                10,
                since,
            )
            rss.sample()
            if reaction is None:  # closed: a connection error without a GOAWAY
                refused += 1
            elif isinstance(reaction, HeadersFrame):
                assert conn.status(sid) == 431, conn.blocks[sid]
                refused += 1
            else:
                refused += 1
            sid += 2
    finally:
        conn.close()
    assert refused == 5
    assert count(server, key) == 0
    assert rss.growth_mib < 32, f"the server grew {rss.growth_mib:.0f} MiB"
    hello_over_new_connection(server)


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_ack_flood_while_not_reading_is_cut_off(h2serve: H2Serve, kind: str):
    """SETTINGS or PING frames, each owed an ACK, from a client that reads nothing: the ACKs
    must not pile up. hypercorn: stops reading while its ACKs wait (backpressure), and neither
    sends a GOAWAY nor closes."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    conn = ready(server, rcvbuf=4096)
    if kind == "settings":
        one = SettingsFrame(0, settings={MAX_CONCURRENT_STREAMS: 100}).serialize()
    else:
        one = PingFrame(0, opaque_data=b"flooding").serialize()
    batch = one * 4096
    frames_sent = 0
    with conn:
        state = "sent"
        while frames_sent < 500_000 and state == "sent":
            state = send_until_blocked(conn, batch, 3)
            frames_sent += 4096 if state == "sent" else 0
            rss.sample()
        stopped = time.monotonic()
        # now read: the ACKs already sent, then a GOAWAY, then the end of the connection
        try:
            conn.wait_closed(5)
        except AssertionError:
            raise AssertionError(
                f"after {frames_sent} {kind} frames ({state}) the connection is still open,"
                f" without a GOAWAY: {conn.frames[-3:]}"
            ) from None
        closed_after = time.monotonic() - stopped
        goaways = [f for f in conn.frames if isinstance(f, GoAwayFrame)]
        assert all(g.error_code == ENHANCE_YOUR_CALM for g in goaways), goaways
        assert closed_after < 5
    assert rss.growth_mib < 32, f"the server grew {rss.growth_mib:.0f} MiB"
    hello_over_new_connection(server)


# --- flow control -----------------------------------------------------------------------------


def test_window_update_overflow_on_a_stream_is_rst_flow_control_error(h2serve: H2Serve):
    server = h2serve(H2_APP, "--no-access-log")
    key = "wu-stream"
    with ready(server) as conn:
        conn.send_frames(conn.headers_frame(1, conn.request_headers(f"/hold?id={key}"), False))
        poll(lambda: get_json(server, "/progress", id=key).get("entered"), 5, what="the app")
        conn.send_frames(WindowUpdateFrame(1, MAX_WINDOW))
        reset = conn.reset_of(1)
        assert isinstance(reset, RstStreamFrame), reset
        assert reset.error_code == FLOW_CONTROL_ERROR, reset
        # a stream error: the connection goes on
        conn.get(3, "/hello")
        assert conn.wait_for(lambda f: f.stream_id == 3 and "END_STREAM" in f.flags, 5)
        assert conn.body(3) == b"hello"
    open_gate(server, key)
    hello_over_new_connection(server)


def test_window_update_overflow_on_the_connection_is_goaway_flow_control_error(
    shared: ServerProcess,
):
    with ready(shared) as conn:
        conn.send_frames(WindowUpdateFrame(0, MAX_WINDOW))
        goaway = conn.goaway()
        assert goaway is not None, "closed without a GOAWAY"
        assert goaway.error_code == FLOW_CONTROL_ERROR, goaway
        conn.wait_closed(5)
    hello_over_new_connection(shared)


def test_data_beyond_the_window_is_flow_control_error(h2serve: H2Serve):
    """The app does not read, so the stream's window is what the server's SETTINGS said; the
    client sends 16 KiB more than that. hypercorn: acknowledges DATA as it arrives, so it takes
    the excess without complaint."""
    server = h2serve(H2_APP, "--no-access-log")
    key = "beyond"
    with ready(server) as conn:
        window = server_settings(conn).get(INITIAL_WINDOW_SIZE, 65535)
        conn.send_frames(
            conn.headers_frame(1, conn.request_headers(f"/hold?id={key}", "POST"), False)
        )
        total = window + 16384
        frames = [
            DataFrame(1, data=bytes(min(16384, total - off))) for off in range(0, total, 16384)
        ]
        conn.send(b"".join(f.serialize() for f in frames))
        reaction = conn.reset_of(1)
        assert reaction is not None, "closed without RST_STREAM or GOAWAY"
        assert reaction.error_code == FLOW_CONTROL_ERROR, reaction
        if total > connection_window(conn):
            assert isinstance(reaction, GoAwayFrame), reaction
    open_gate(server, key)
    hello_over_new_connection(server)


def test_zero_window_stall_is_closed_by_the_write_timeout(h2serve: H2Serve):
    """The client announces a zero stream window and never opens it: the response cannot move,
    and --timeout-write (2 s) ends the connection. hypercorn: no write timeout."""
    server = h2serve(H2_APP, "--no-access-log", "--timeout-write", "2")
    rss = PeakRss(server)
    with ready(server, settings={INITIAL_WINDOW_SIZE: 0}) as conn:
        conn.get(1, "/stream?id=zero&mib=64")
        head = conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, 5)
        assert head is not None and conn.status(1) == 200
        since = time.monotonic()
        conn.wait_closed(8)
        took = time.monotonic() - since
        assert 1.5 <= took <= 6.0, f"closed {took:.1f} s after the response started"
        assert not [f for f in conn.frames if isinstance(f, DataFrame) and f.data], "DATA sent"
    assert rss.growth_mib < 16
    hello_over_new_connection(server)


# --- stream ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["reuse", "even", "decreasing"])
def test_bad_stream_id_is_goaway_protocol_error(shared: ServerProcess, case: str):
    key = f"stream-id-{case}"
    with ready(shared) as conn:
        if case == "reuse":
            conn.get(1, "/hello")
            assert conn.wait_for(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, 5)
            bad = 1
        elif case == "even":
            bad = 2
        else:
            conn.get(5, "/hello")
            bad = 3
        conn.send_frames(conn.headers_frame(bad, conn.request_headers(f"/hit?id={key}")))
        goaway = conn.goaway(3)  # well within the idle timeout (its GOAWAY is NO_ERROR)
        assert goaway is not None, f"closed without a GOAWAY: {conn.frames}"
        assert goaway.error_code in (PROTOCOL_ERROR, STREAM_CLOSED), goaway
        conn.wait_closed(5)
    assert count(shared, key) == 0
    hello_over_new_connection(shared)


# --- malformed requests -----------------------------------------------------------------------

BASE = [(":method", "GET"), (":scheme", "http"), (":authority", "AUTH"), (":path", "PATH")]


def without(name: str) -> list[tuple[str, str]]:
    return [h for h in BASE if h[0] != name]


def swap(name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in BASE]


# case -> (headers, body or None). The body goes with the HEADERS in one write, END_STREAM on it.
MALFORMED: dict[str, tuple[list[tuple[str, str]], bytes | None]] = {
    "no-method": (without(":method"), None),
    "no-scheme": (without(":scheme"), None),
    "no-path": (without(":path"), None),
    "empty-path": (swap(":path", ""), None),
    "duplicate-method": ([*BASE, (":method", "GET")], None),
    "duplicate-path": ([*BASE, (":path", "PATH")], None),
    "unknown-pseudo": ([*BASE, (":foo", "bar")], None),
    "response-pseudo": ([*BASE, (":status", "200")], None),
    "pseudo-after-regular": ([*without(":path"), ("x-a", "1"), (":path", "PATH")], None),
    "uppercase-name": ([*BASE, ("X-Upper", "1")], None),
    "connection": ([*BASE, ("connection", "keep-alive")], None),
    "keep-alive": ([*BASE, ("keep-alive", "timeout=5")], None),
    "proxy-connection": ([*BASE, ("proxy-connection", "keep-alive")], None),
    "transfer-encoding": ([*swap(":method", "POST"), ("transfer-encoding", "chunked")], b"0\r\n"),
    "upgrade": ([*BASE, ("upgrade", "websocket")], None),
    "te-gzip": ([*BASE, ("te", "gzip")], None),
    "connect-with-path": (swap(":method", "CONNECT"), None),
    "content-length-without-body": ([*BASE, ("content-length", "10")], None),
    "content-length-short": ([*swap(":method", "POST"), ("content-length", "10")], b"12345"),
    "content-length-long": ([*swap(":method", "POST"), ("content-length", "5")], b"1234567890"),
    "content-length-not-a-number": ([*swap(":method", "POST"), ("content-length", "abc")], b"x"),
}
# the same shapes, well formed: served (proves that the refusals above are about the flaw)
WELL_FORMED: dict[str, tuple[list[tuple[str, str]], bytes | None]] = {
    "te-trailers": ([*BASE, ("te", "trailers")], None),
    "content-length-right": ([*swap(":method", "POST"), ("content-length", "5")], b"12345"),
    "lowercase-name": ([*BASE, ("x-lower", "1")], None),
}


def send_request(conn: Frames, sid: int, case: str, spec: tuple[list, bytes | None]) -> str:
    headers, body = spec
    key = f"malformed-{case}"
    path = f"/hit?id={key}"
    fields = [(n, v.replace("AUTH", conn.authority).replace("PATH", path)) for n, v in headers]
    frames: list[Frame] = [conn.headers_frame(sid, fields, end_stream=body is None)]
    if body is not None:
        frames.append(DataFrame(sid, data=body, flags=["END_STREAM"]))
    conn.send_frames(*frames)
    return key


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_rst_protocol_error_and_never_reaches_the_app(
    shared: ServerProcess, case: str
):
    """hypercorn (the h2 library): a connection error, GOAWAY PROTOCOL_ERROR, for all but one;
    content-length-without-body reaches the app."""
    with ready(shared) as conn:
        key = send_request(conn, 1, case, MALFORMED[case])
        reaction = conn.wait_for(
            lambda f: (
                (f.stream_id == 1 and isinstance(f, (RstStreamFrame, HeadersFrame)))
                or isinstance(f, GoAwayFrame)
            ),
            5,
        )
        assert isinstance(reaction, RstStreamFrame), (reaction, conn.blocks.get(1))
        assert reaction.error_code == PROTOCOL_ERROR, reaction
        # a stream error: the connection goes on
        conn.get(3, "/hello")
        assert conn.wait_for(lambda f: f.stream_id == 3 and "END_STREAM" in f.flags, 5)
        assert conn.body(3) == b"hello"
    assert count(shared, key) == 0


@pytest.mark.parametrize("case", list(WELL_FORMED))
def test_well_formed_variants_are_served(shared: ServerProcess, case: str):
    with ready(shared) as conn:
        key = send_request(conn, 1, case, WELL_FORMED[case])
        assert conn.wait_for(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, 5)
        assert (conn.status(1), conn.body(1)) == (200, b"hit")
    assert count(shared, key) == 1


# --- many idle connections --------------------------------------------------------------------

IDLE = 1000


@pytest.mark.timeout(120)
def test_1000_idle_connections_then_a_request_is_served(h2serve: H2Serve):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = h2serve(H2_APP, "--no-access-log", "--timeout-keep-alive", "120")
    idle: list[Frames] = []
    try:
        idle = [ready(server) for _ in range(20)]  # warm-up, kept open
        baseline = server.rss_kib()
        idle += [ready(server) for _ in range(IDLE)]
        after = server.rss_kib()
        per_connection = (after - baseline) / IDLE
        assert per_connection <= 32, f"{per_connection:.1f} KiB per idle HTTP/2 connection"
        hello_over_new_connection(server)
        for conn in (idle[0], idle[len(idle) // 2], idle[-1]):  # and the idle ones still work
            conn.get(1, "/hello")
            assert conn.wait_for(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, 5)
            assert conn.body(1) == b"hello"
    finally:
        for conn in idle:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_client_that_sends_only_the_preface_is_closed_by_the_header_timeout(h2serve: H2Serve):
    """The preface, and no SETTINGS after it: --timeout-request-header applies. hypercorn: no
    such timeout."""
    server = h2serve(H2_APP, "--no-access-log", "--timeout-request-header", "1")
    with socket.create_connection((server.host, server.port), timeout=6) as sock:
        sock.sendall(PREFACE)
        since = time.monotonic()
        closed = False
        try:
            while sock.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
        took = time.monotonic() - since
    assert closed, "still open 6 s after a preface without SETTINGS"
    assert took <= 4.0, f"closed after {took:.1f} s"
    hello_over_new_connection(server)


def test_ping_is_answered(shared: ServerProcess):
    """The baseline for the floods: one PING, one ACK with the same payload."""
    with ready(shared) as conn:
        data = os.urandom(8)
        conn.send_frames(PingFrame(0, opaque_data=data))
        ack = conn.wait_for(
            lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == data, 5
        )
        assert ack is not None
