"""HTTP/2 conformance: h2spec's case list (generic, http2, hpack groups) as our own pytest cases.

Each test is one h2spec 2.x case (github.com/summerwind/h2spec), named test_[generic_|hpack_]
<section>_<what>, its docstring opening with h2spec's id (group/section/number); it does what the
case describes: the same frames, the same acceptance rule (h2conformance.H2Client.expect_*),
rewritten in Python on a raw socket. Where RFC 9113 changed a
rule relative to RFC 7540, or h2spec's own frames do not match its description, the docstring
says which rule we follow. One extra case, test_5_4_1_goaway_before_close, is h2spec's
--strict case (a SHOULD); every other h2spec case runs in its default mode.

The server is coachwhip (`--http 2`, apps/h2_app.py) started once for the module, unless
H2_CONFORMANCE_TARGET=host:port points the suite at a server already running (plus
H2_CONFORMANCE_TLS=1 for TLS with ALPN h2): that is how the cases were checked against other
servers before coachwhip had HTTP/2.

Results against other servers, h2c prior knowledge, 147 cases (run with
H2_CONFORMANCE_TARGET=127.0.0.1:PORT; "lax" = H2_CONFORMANCE_H2SPEC_LAX=1, h2spec's own leniency
about unexpected error codes, see h2conformance.py):
  nghttpd (nghttp2 1.52.0, --no-tls; also over TLS): 146/147, lax 146/147. Fails 5.1.1
    decreasing_stream_id: libnghttp2 ignores a HEADERS on a lower, never-opened stream id (a
    known nghttp2 gap), so an nghttp2-based server needs its own check for this one.
  hypercorn 0.18.0 (h2 4.4.1): 137/147, lax 147/147. The 10 failures are wrong error codes
    only, GOAWAY(PROTOCOL_ERROR) where RFC 7541/9113 want COMPRESSION_ERROR (4.3
    invalid_header_block_fragment, hpack 2.3.3 x2, 4.2, 5.2 x3, 6.1, 6.3) or FRAME_SIZE_ERROR
    (6.5 settings_ack_with_payload).
  nginx 1.22.1 (`listen ... http2; return 200 "hello";`): 119/147, lax 122/147. It answers
    malformed requests with a 400 instead of RST_STREAM (8.1.2.1 x3, 8.1.2.2 x2, 8.1.2.3 x7,
    8.1.2.6 x2), ignores frames on idle/closed streams (5.1 idle_data, idle_rst_stream,
    idle_window_update, half_closed_remote_data, closed_data_after_rst_stream, closed_data;
    6.1 data_on_half_closed_remote_stream; 6.4 rst_stream_on_idle_stream), sends RST_STREAM
    (NO_ERROR) before FLOW_CONTROL_ERROR (6.9.1 stream_window_overflow), accepts bad HPACK
    (hpack 4.2, 5.2 huffman_padding_longer_than_7_bits); not lax also: wrong codes in 4.2
    data_frame_over_max_frame_size (NO_ERROR), 4.3 invalid_header_block_fragment
    (FRAME_SIZE_ERROR), 5.1 half_closed_remote_headers (PROTOCOL_ERROR).
No case fails on all three servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import _start
from h2conformance import (
    END_HEADERS,
    END_STREAM,
    EOS_BITS,
    LITERAL_INCREMENTAL,
    LITERAL_NEVER_INDEXED,
    LITERAL_WITHOUT_INDEXING,
    PADDED,
    UNKNOWN_FRAME_TYPE,
    ErrorCode,
    FrameType,
    H2Client,
    Setting,
    bits_to_bytes,
    hpack_indexed,
    hpack_integer,
    hpack_literal,
    hpack_raw_string,
    hpack_string,
    hpack_table_size_update,
    huffman_bits,
)
from hyperframe.frame import Frame, HeadersFrame, PingFrame

STATIC_USER_AGENT = 58  # RFC 7541 Appendix A: user-agent, empty value
DUMMY_VALUE = "x" * 4000  # h2spec's --max-header-length default
PING_DATA = b"h2spec\x00\x00"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """The server under test: coachwhip for this module, or H2_CONFORMANCE_TARGET."""
    external = os.environ.get("H2_CONFORMANCE_TARGET")
    if external:
        host, _, port = external.rpartition(":")
        yield Target(host or "127.0.0.1", int(port), os.environ.get("H2_CONFORMANCE_TLS") == "1")
        return
    server = _start("apps.h2_app:app", "--http", "2")
    try:
        yield Target(server.host, server.port, tls=False)
    finally:
        server.kill()


@pytest.fixture
def fresh(target: Target) -> Iterator[H2Client]:
    """A connected client that has sent nothing yet."""
    client = H2Client(target.host, target.port, tls=target.tls)
    yield client
    client.close()


@pytest.fixture
def h2(fresh: H2Client) -> H2Client:
    """A client past the preface and the SETTINGS exchange (h2spec's Handshake)."""
    fresh.handshake()
    return fresh


def is_ping_ack(frame: Frame, data: bytes) -> bool:
    return isinstance(frame, PingFrame) and "ACK" in frame.flags and frame.opaque_data == data


def dummy_headers(count: int) -> list[tuple[str, str]]:
    return [(f"x-dummy{i}", DUMMY_VALUE) for i in range(count)]


def post_headers(h2: H2Client, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [*h2.request_headers("POST"), *extra]


def send_get(h2: H2Client, stream_id: int = 1, *, end_stream: bool = True) -> bytes:
    return h2.send_headers(stream_id, h2.request_headers(), end_stream=end_stream)


# =====================================================================================
# generic: Generic tests for HTTP/2 server
# =====================================================================================


def test_generic_1_client_connection_preface(fresh: H2Client) -> None:
    """h2spec generic/1/1: after the client preface, the first frame is a SETTINGS without ACK."""
    fresh.send_preface()
    fresh.send_settings((Setting.INITIAL_WINDOW_SIZE, 65535))
    fresh.expect_server_preface()


def test_generic_2_priority_on_idle_stream(h2: H2Client) -> None:
    """h2spec generic/2/1: PRIORITY on an idle stream is accepted (the connection goes on)."""
    h2.send_priority(1, depends_on=0, weight=255)
    h2.send_ping()
    h2.expect_ping_ack()


def test_generic_2_window_update_on_half_closed_remote(h2: H2Client) -> None:
    """h2spec generic/2/2: WINDOW_UPDATE on a half-closed (remote) stream lets DATA flow."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 0))
    send_get(h2)
    h2.send_window_update(1, 1)
    h2.expect_data()


def test_generic_2_priority_on_half_closed_remote(h2: H2Client) -> None:
    """h2spec generic/2/3: PRIORITY on a half-closed (remote) stream is accepted."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 0))
    send_get(h2)
    h2.send_priority(1, depends_on=0, weight=255)
    h2.send_window_update(1, 1)
    h2.expect_data()


def test_generic_2_rst_stream_on_half_closed_remote(h2: H2Client) -> None:
    """h2spec generic/2/4: RST_STREAM on a half-closed (remote) stream is accepted."""
    send_get(h2)
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.send_ping()
    h2.expect_ping_ack_or_close()


def test_generic_2_priority_on_closed_stream(h2: H2Client) -> None:
    """h2spec generic/2/5: PRIORITY on a closed stream is accepted."""
    send_get(h2)
    h2.expect_stream_close(1)
    h2.send_priority(1, depends_on=0, weight=255)
    h2.send_ping()
    h2.expect_ping_ack()


def test_generic_3_1_data_frame(h2: H2Client) -> None:
    """h2spec generic/3.1/1: a request body in one DATA frame gets a response."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_headers(1)


def test_generic_3_1_multiple_data_frames(h2: H2Client) -> None:
    """h2spec generic/3.1/2: a request body in two DATA frames gets a response."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_headers(1)


def test_generic_3_1_data_frame_with_padding(h2: H2Client) -> None:
    """h2spec generic/3.1/3: a padded DATA frame (5 octets of padding) is accepted."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=True, pad_length=5)
    h2.expect_headers(1)


def test_generic_3_2_headers_frame(h2: H2Client) -> None:
    """h2spec generic/3.2/1: a HEADERS frame gets a response."""
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_2_headers_frame_with_padding(h2: H2Client) -> None:
    """h2spec generic/3.2/2: a padded HEADERS frame (8 octets of padding) is accepted."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, pad_length=8)
    h2.expect_headers(1)


def test_generic_3_2_headers_frame_with_priority(h2: H2Client) -> None:
    """h2spec generic/3.2/3: HEADERS with the PRIORITY flag is accepted.

    RFC 9113 §5.3.2 deprecates the RFC 7540 priority signals, but the fields must still be
    parsed, so the request is answered as usual."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, priority=(0, 255, False))
    h2.expect_headers(1)


def test_generic_3_3_priority_weight_1(h2: H2Client) -> None:
    """h2spec generic/3.3/1: PRIORITY with weight 1 (wire value 0), then the request."""
    h2.send_priority(1, depends_on=0, weight=0)
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_3_priority_weight_256(h2: H2Client) -> None:
    """h2spec generic/3.3/2: PRIORITY with weight 256 (wire value 255), then the request."""
    h2.send_priority(1, depends_on=0, weight=255)
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_3_priority_with_dependency(h2: H2Client) -> None:
    """h2spec generic/3.3/3: PRIORITY making stream 3 depend on stream 1, then stream 1."""
    h2.send_priority(3, depends_on=1, weight=0)
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_3_priority_exclusive(h2: H2Client) -> None:
    """h2spec generic/3.3/4: an exclusive PRIORITY, then the request."""
    h2.send_priority(1, depends_on=0, weight=0, exclusive=True)
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_3_priority_on_idle_stream_then_lower_stream(h2: H2Client) -> None:
    """h2spec generic/3.3/5: PRIORITY on idle stream 3 does not stop stream 1 from opening."""
    h2.send_priority(3, depends_on=0, weight=255)
    send_get(h2)
    h2.expect_headers(1)


def test_generic_3_4_rst_stream(h2: H2Client) -> None:
    """h2spec generic/3.4/1: RST_STREAM on an open stream is accepted."""
    send_get(h2, end_stream=False)
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.send_ping()
    h2.expect_ping_ack_or_close()


def test_generic_3_5_settings_frame(h2: H2Client) -> None:
    """h2spec generic/3.5/1: a SETTINGS frame with all six RFC 7540 settings is acknowledged."""
    h2.send_settings(
        (Setting.HEADER_TABLE_SIZE, 4096),
        (Setting.ENABLE_PUSH, 1),
        (Setting.MAX_CONCURRENT_STREAMS, 100),
        (Setting.INITIAL_WINDOW_SIZE, 65535),
        (Setting.MAX_FRAME_SIZE, 16384),
        (Setting.MAX_HEADER_LIST_SIZE, 100),
    )
    h2.expect_settings_ack()


def test_generic_3_7_ping_frame(h2: H2Client) -> None:
    """h2spec generic/3.7/1: PING is answered with a PING ACK carrying the same data."""
    h2.send_ping(PING_DATA)
    h2.expect_ping_ack(PING_DATA)


def test_generic_3_8_goaway_frame(h2: H2Client) -> None:
    """h2spec generic/3.8/1: after a client GOAWAY, a PING is answered or the server closes."""
    h2.send_goaway(0, ErrorCode.NO_ERROR, b"h2spec")
    h2.send_ping(PING_DATA)
    h2.expect_ping_ack_or_close(PING_DATA)


def test_generic_3_9_window_update_stream_0(h2: H2Client) -> None:
    """h2spec generic/3.9/1: WINDOW_UPDATE on the connection is accepted."""
    h2.send_window_update(0, 1)
    h2.send_ping()
    h2.expect_ping_ack()


def test_generic_3_9_window_update_stream_1(h2: H2Client) -> None:
    """h2spec generic/3.9/2: WINDOW_UPDATE on a half-closed (remote) stream is accepted."""
    send_get(h2)
    h2.send_window_update(1, 1)
    h2.expect_headers(1)


def test_generic_3_10_continuation_frame(h2: H2Client) -> None:
    """h2spec generic/3.10/1: a header block split into HEADERS + CONTINUATION."""
    block = h2.encode(h2.request_headers())
    h2.send_headers(1, block[:5], end_stream=True, end_headers=False)
    h2.send_continuation(1, block[5:], end_headers=True)
    h2.expect_headers(1)


def test_generic_3_10_multiple_continuation_frames(h2: H2Client) -> None:
    """h2spec generic/3.10/2: a header block split into HEADERS + two CONTINUATIONs."""
    block = h2.encode(h2.request_headers())
    h2.send_headers(1, block[:5], end_stream=True, end_headers=False)
    h2.send_continuation(1, block[5:10], end_headers=False)
    h2.send_continuation(1, block[10:], end_headers=True)
    h2.expect_headers(1)


def test_generic_4_get_request(h2: H2Client) -> None:
    """h2spec generic/4/1: GET gets a response (here also: :status 200)."""
    send_get(h2)
    h2.expect_response(1, "200")


def test_generic_4_head_request(h2: H2Client) -> None:
    """h2spec generic/4/2: HEAD gets a response (here also: :status 200)."""
    h2.send_headers(1, h2.request_headers("HEAD"), end_stream=True)
    h2.expect_response(1, "200")


def test_generic_4_post_request(h2: H2Client) -> None:
    """h2spec generic/4/3: POST with a body gets a response (here also: :status 200)."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_response(1, "200")


def test_generic_4_post_request_with_trailers(h2: H2Client) -> None:
    """h2spec generic/4/4: POST with a body and trailers gets a response (:status 200)."""
    h2.send_headers(1, post_headers(h2, ("trailer", "x-test")), end_stream=False)
    h2.send_data(1, b"test", end_stream=False)
    h2.send_headers(1, [("x-test", "ok")], end_stream=True)
    h2.expect_response(1, "200")


def _request_with_representation(h2: H2Client, representation: bytes) -> None:
    """The common request headers, then one more field in the given HPACK representation."""
    block = h2.encode(h2.request_headers()) + representation
    h2.send_headers(1, block, end_stream=True)
    h2.expect_headers(1)


def test_generic_5_indexed_header_field(h2: H2Client) -> None:
    """h2spec generic/5/1: an indexed header field (static user-agent) is accepted."""
    _request_with_representation(h2, hpack_indexed(STATIC_USER_AGENT))


def test_generic_5_literal_incremental_indexed_name(h2: H2Client) -> None:
    """h2spec generic/5/2: literal with incremental indexing, indexed name.

    (h2spec's bytes for 5/2..5/13 do not always match their titles; each case here sends what
    its title says.)"""
    rep = hpack_literal(LITERAL_INCREMENTAL, name=STATIC_USER_AGENT, value=b"h2spec")
    _request_with_representation(h2, rep)


def test_generic_5_literal_incremental_indexed_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/3: literal with incremental indexing, indexed name, Huffman value."""
    rep = hpack_literal(LITERAL_INCREMENTAL, name=STATIC_USER_AGENT, value=b"h2spec", huffman=True)
    _request_with_representation(h2, rep)


def test_generic_5_literal_incremental_new_name(h2: H2Client) -> None:
    """h2spec generic/5/4: literal with incremental indexing, new name."""
    _request_with_representation(
        h2, hpack_literal(LITERAL_INCREMENTAL, name=b"x-test", value=b"h2spec")
    )


def test_generic_5_literal_incremental_new_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/5: literal with incremental indexing, new name, Huffman coded."""
    _request_with_representation(
        h2, hpack_literal(LITERAL_INCREMENTAL, name=b"x-test", value=b"h2spec", huffman=True)
    )


def test_generic_5_literal_without_indexing_indexed_name(h2: H2Client) -> None:
    """h2spec generic/5/6: literal without indexing, indexed name."""
    rep = hpack_literal(LITERAL_WITHOUT_INDEXING, name=STATIC_USER_AGENT, value=b"h2spec")
    _request_with_representation(h2, rep)


def test_generic_5_literal_without_indexing_indexed_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/7: literal without indexing, indexed name, Huffman value."""
    rep = hpack_literal(
        LITERAL_WITHOUT_INDEXING, name=STATIC_USER_AGENT, value=b"h2spec", huffman=True
    )
    _request_with_representation(h2, rep)


def test_generic_5_literal_without_indexing_new_name(h2: H2Client) -> None:
    """h2spec generic/5/8: literal without indexing, new name."""
    _request_with_representation(
        h2, hpack_literal(LITERAL_WITHOUT_INDEXING, name=b"x-test", value=b"h2spec")
    )


def test_generic_5_literal_without_indexing_new_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/9: literal without indexing, new name, Huffman coded."""
    rep = hpack_literal(LITERAL_WITHOUT_INDEXING, name=b"x-test", value=b"h2spec", huffman=True)
    _request_with_representation(h2, rep)


def test_generic_5_literal_never_indexed_indexed_name(h2: H2Client) -> None:
    """h2spec generic/5/10: literal never indexed, indexed name."""
    rep = hpack_literal(LITERAL_NEVER_INDEXED, name=STATIC_USER_AGENT, value=b"h2spec")
    _request_with_representation(h2, rep)


def test_generic_5_literal_never_indexed_indexed_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/11: literal never indexed, indexed name, Huffman value."""
    rep = hpack_literal(
        LITERAL_NEVER_INDEXED, name=STATIC_USER_AGENT, value=b"h2spec", huffman=True
    )
    _request_with_representation(h2, rep)


def test_generic_5_literal_never_indexed_new_name(h2: H2Client) -> None:
    """h2spec generic/5/12: literal never indexed, new name (h2spec sends it Huffman coded;
    5/13 covers that, so this one is raw)."""
    _request_with_representation(
        h2, hpack_literal(LITERAL_NEVER_INDEXED, name=b"x-test", value=b"h2spec")
    )


def test_generic_5_literal_never_indexed_new_name_huffman(h2: H2Client) -> None:
    """h2spec generic/5/13: literal never indexed, new name, Huffman coded."""
    rep = hpack_literal(LITERAL_NEVER_INDEXED, name=b"x-test", value=b"h2spec", huffman=True)
    _request_with_representation(h2, rep)


def test_generic_5_dynamic_table_size_update(h2: H2Client) -> None:
    """h2spec generic/5/14: a header block starting with a table size update (128)."""
    h2.encoder.header_table_size = 128  # the encoder signals it at the start of the next block
    block = h2.encode(h2.request_headers())
    assert block.startswith(hpack_table_size_update(128))
    h2.send_headers(1, block, end_stream=True)
    h2.expect_headers(1)


def test_generic_5_multiple_dynamic_table_size_updates(h2: H2Client) -> None:
    """h2spec generic/5/15: two table size updates (128, then 4096) at the start of a block."""
    updates = hpack_table_size_update(128) + hpack_table_size_update(4096)
    h2.send_headers(1, updates + h2.encode(h2.request_headers()), end_stream=True)
    h2.expect_headers(1)


# =====================================================================================
# http2: Hypertext Transfer Protocol Version 2 (RFC 7540, with RFC 9113 where it differs)
# =====================================================================================


def test_3_5_client_connection_preface(fresh: H2Client) -> None:
    """h2spec http2/3.5/1: the server connection preface (a SETTINGS frame, not an ACK) is the
    first frame the server sends."""
    fresh.send_preface()
    fresh.send_settings((Setting.INITIAL_WINDOW_SIZE, 65535))
    fresh.expect_server_preface()


def test_3_5_invalid_connection_preface(fresh: H2Client) -> None:
    """h2spec http2/3.5/2: an invalid preface is a connection error (PROTOCOL_ERROR)."""
    fresh.send(b"INVALID CONNECTION PREFACE\r\n\r\n", "invalid preface")
    fresh.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_4_1_unknown_frame_type(h2: H2Client) -> None:
    """h2spec http2/4.1/1: a frame of unknown type is ignored."""
    h2.send_raw_frame(UNKNOWN_FRAME_TYPE, 0, 0, bytes(8))
    h2.send_ping()
    h2.expect_ping_ack()


def test_4_1_undefined_flags(h2: H2Client) -> None:
    """h2spec http2/4.1/2: undefined flags on a PING (0x16, ACK clear) are ignored: the PING is
    answered (h2spec only wants a PING back; here it must be the ACK)."""
    h2.send_raw_frame(FrameType.PING, 0x16, 0, bytes(8))
    h2.expect_ping_ack()


def test_4_1_reserved_bit(h2: H2Client) -> None:
    """h2spec http2/4.1/3: the reserved bit of the stream id field is ignored (PING answered)."""
    h2.send_raw_frame(FrameType.PING, 0x16, 0x8000_0000, bytes(8))
    h2.expect_ping_ack()


def test_4_2_data_frame_of_2_14_octets(h2: H2Client) -> None:
    """h2spec http2/4.2/1: a DATA frame of 2^14 octets is accepted (h2spec sends the server's
    SETTINGS_MAX_FRAME_SIZE; 2^14 is the size every endpoint must take, and the title's)."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"x" * 16384, end_stream=True)
    h2.expect_headers(1)


def test_4_2_data_frame_over_max_frame_size(h2: H2Client) -> None:
    """h2spec http2/4.2/2: a DATA frame one octet over SETTINGS_MAX_FRAME_SIZE is a
    FRAME_SIZE_ERROR (stream or connection error)."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"x" * (h2.max_frame_size + 1), end_stream=True)
    h2.expect_stream_error(ErrorCode.FRAME_SIZE_ERROR)


def test_4_2_headers_frame_over_max_frame_size(h2: H2Client) -> None:
    """h2spec http2/4.2/3: a HEADERS frame over SETTINGS_MAX_FRAME_SIZE is a connection error
    (FRAME_SIZE_ERROR): it carries a header block. h2spec sends 5 fields of 4000 octets
    whatever the server's limit; we size the block to exactly the limit + 1 octet."""
    block = h2.encode(h2.request_headers())
    target = h2.max_frame_size + 1
    filler = target - len(block) - 12  # 1 + "x-dummy0" (1 + 8) + the value's length prefix
    while True:
        field = hpack_literal(LITERAL_WITHOUT_INDEXING, name=b"x-dummy0", value=b"x" * filler)
        if len(block) + len(field) == target:
            break
        filler += target - len(block) - len(field)
    h2.send_headers(1, block + field, end_stream=True)
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_4_3_invalid_header_block_fragment(h2: H2Client) -> None:
    """h2spec http2/4.3/1: an undecodable header block (a literal with incremental indexing cut
    after its first octet) is a connection error (COMPRESSION_ERROR)."""
    h2.send_raw_frame(FrameType.HEADERS, END_STREAM | END_HEADERS, 1, b"\x40")
    h2.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


def test_4_3_priority_inside_header_block(h2: H2Client) -> None:
    """h2spec http2/4.3/2: a PRIORITY frame between HEADERS and CONTINUATION is a connection
    error (PROTOCOL_ERROR)."""
    h2.send_headers(1, h2.request_headers(), end_stream=False, end_headers=False)
    h2.send_priority(1, depends_on=0, weight=255)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_4_3_headers_to_another_stream_inside_header_block(h2: H2Client) -> None:
    """h2spec http2/4.3/3: HEADERS on stream 3 while stream 1's header block is unfinished is a
    connection error (PROTOCOL_ERROR)."""
    headers = h2.request_headers()
    h2.send_headers(1, headers, end_stream=False, end_headers=False)
    h2.send_headers(3, headers, end_stream=True)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_data(h2: H2Client) -> None:
    """h2spec http2/5.1/1: DATA on an idle stream.

    RFC 9113 §5.1 makes any frame but HEADERS/PRIORITY on an idle stream a connection error
    (PROTOCOL_ERROR); h2spec (since its last change to this case) also accepts a stream error,
    PROTOCOL_ERROR or STREAM_CLOSED, and so do we."""
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR, ErrorCode.STREAM_CLOSED)


def test_5_1_idle_rst_stream(h2: H2Client) -> None:
    """h2spec http2/5.1/2: RST_STREAM on an idle stream is a connection error (PROTOCOL_ERROR)."""
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_window_update(h2: H2Client) -> None:
    """h2spec http2/5.1/3: WINDOW_UPDATE on an idle stream is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_window_update(1, 100)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_continuation(h2: H2Client) -> None:
    """h2spec http2/5.1/4: CONTINUATION on an idle stream is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_continuation(1, h2.request_headers(), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_half_closed_remote_data(h2: H2Client) -> None:
    """h2spec http2/5.1/5: DATA on a half-closed (remote) stream is a stream error
    (STREAM_CLOSED)."""
    send_get(h2)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED)


def test_5_1_half_closed_remote_headers(h2: H2Client) -> None:
    """h2spec http2/5.1/6: HEADERS on a half-closed (remote) stream is a stream error
    (STREAM_CLOSED)."""
    send_get(h2)
    send_get(h2)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED)


def test_5_1_half_closed_remote_continuation(h2: H2Client) -> None:
    """h2spec http2/5.1/7: CONTINUATION on a half-closed (remote) stream is an error
    (STREAM_CLOSED or PROTOCOL_ERROR: no header block is open)."""
    block = send_get(h2)
    h2.send_continuation(1, block, end_headers=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


def test_5_1_closed_data_after_rst_stream(h2: H2Client) -> None:
    """h2spec http2/5.1/8: DATA after the client's RST_STREAM is a stream error
    (STREAM_CLOSED)."""
    send_get(h2, end_stream=False)
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED)


def test_5_1_closed_headers_after_rst_stream(h2: H2Client) -> None:
    """h2spec http2/5.1/9: HEADERS after the client's RST_STREAM.

    h2spec wants a STREAM_CLOSED error (RFC 7540 §5.1: MUST, stream error). RFC 9113 §5.1
    makes it a MAY (connection error STREAM_CLOSED) and §5.1.1 forbids reusing a stream id
    (PROTOCOL_ERROR, coachwhip's contract for stream id reuse), so we accept STREAM_CLOSED or
    PROTOCOL_ERROR, as RST_STREAM or GOAWAY, or the frame ignored: a PING sent after it is
    answered. (A response to the first request may still arrive: it is not checked.)"""
    send_get(h2, end_stream=False)
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    send_get(h2)
    h2.send_ping(PING_DATA)
    h2.expect_error_or(
        ErrorCode.STREAM_CLOSED,
        ErrorCode.PROTOCOL_ERROR,
        accept_rst=True,
        alternative="the HEADERS ignored (PING ACK)",
        accepts=lambda f: is_ping_ack(f, PING_DATA),
    )


def test_5_1_closed_continuation_after_rst_stream(h2: H2Client) -> None:
    """h2spec http2/5.1/10: CONTINUATION after the client's RST_STREAM is an error
    (STREAM_CLOSED or PROTOCOL_ERROR)."""
    send_get(h2, end_stream=False)
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


def test_5_1_closed_data(h2: H2Client) -> None:
    """h2spec http2/5.1/11: DATA on a stream closed by END_STREAM both ways is an error
    (STREAM_CLOSED, stream or connection)."""
    send_get(h2)
    h2.expect_stream_close(1)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED)


def test_5_1_closed_headers(h2: H2Client) -> None:
    """h2spec http2/5.1/12: HEADERS on a stream closed by END_STREAM both ways.

    h2spec wants a connection error STREAM_CLOSED (RFC 7540 §5.1: MUST). RFC 9113 §5.1 makes
    it a MAY and §5.1.1 forbids reusing a stream id (PROTOCOL_ERROR), so we accept GOAWAY
    STREAM_CLOSED or PROTOCOL_ERROR, or the frame ignored: a PING sent after it is answered
    and stream 1 gets no second response. h2spec resends the very same header block octets;
    so do we."""
    block = send_get(h2)
    h2.expect_stream_close(1)
    h2.send_headers(1, block, end_stream=True)
    h2.send_ping(PING_DATA)
    h2.expect_error_or(
        ErrorCode.STREAM_CLOSED,
        ErrorCode.PROTOCOL_ERROR,
        accept_rst=False,
        alternative="the HEADERS ignored (PING ACK)",
        accepts=lambda f: is_ping_ack(f, PING_DATA),
        forbidden=lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1,
    )


def test_5_1_closed_continuation(h2: H2Client) -> None:
    """h2spec http2/5.1/13: CONTINUATION on a closed stream is a connection error
    (STREAM_CLOSED or PROTOCOL_ERROR)."""
    send_get(h2)
    h2.expect_stream_close(1)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR)


def test_5_1_1_even_stream_id(h2: H2Client) -> None:
    """h2spec http2/5.1.1/1: a client stream with an even id is a connection error
    (PROTOCOL_ERROR)."""
    send_get(h2, 2)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_1_decreasing_stream_id(h2: H2Client) -> None:
    """h2spec http2/5.1.1/2: a stream id lower than one already used (5, then 3) is a
    connection error (PROTOCOL_ERROR)."""
    send_get(h2, 5)
    send_get(h2, 3)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_2_exceed_max_concurrent_streams(h2: H2Client) -> None:
    """h2spec http2/5.1.2/1: one stream more than SETTINGS_MAX_CONCURRENT_STREAMS is a stream
    error (PROTOCOL_ERROR or REFUSED_STREAM). The client's initial window is 0, so that no
    response can finish and free a stream.

    h2spec skips this case when the server announces no limit; coachwhip announces one
    (--http2-max-concurrent-streams, default 100), so here a missing limit fails."""
    limit = h2.server_settings.get(Setting.MAX_CONCURRENT_STREAMS)
    assert limit is not None, "the server announced no SETTINGS_MAX_CONCURRENT_STREAMS"
    assert limit <= 10_000, f"SETTINGS_MAX_CONCURRENT_STREAMS {limit} is too big to exceed here"
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 0))
    block = h2.encode(h2.request_headers())
    for stream_id in range(1, 2 * (limit + 1), 2):
        h2.send_headers(stream_id, block, end_stream=True)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR, ErrorCode.REFUSED_STREAM)


def test_5_3_1_headers_depends_on_itself(h2: H2Client) -> None:
    """h2spec http2/5.3.1/1: HEADERS whose priority makes the stream depend on itself.

    RFC 7540 §5.3.1 made this a stream error (PROTOCOL_ERROR), which h2spec checks (a GOAWAY
    also passes). RFC 9113 deprecates RFC 7540 priorities (§5.3.2) and drops the rule, so the
    request may also simply be answered (HEADERS on stream 1); any other error fails."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, priority=(1, 255, False))
    h2.expect_error_or(
        ErrorCode.PROTOCOL_ERROR,
        accept_rst=True,
        alternative="a response on stream 1 (priority ignored)",
        accepts=lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1,
    )


def test_5_3_1_priority_depends_on_itself(h2: H2Client) -> None:
    """h2spec http2/5.3.1/2: PRIORITY making a stream depend on itself.

    As 5.3.1/1: PROTOCOL_ERROR (RST_STREAM or GOAWAY) per RFC 7540, or, RFC 9113 having
    dropped the rule, the frame ignored: a PING sent after it is answered."""
    h2.send_priority(1, depends_on=1, weight=255)
    h2.send_ping(PING_DATA)
    h2.expect_error_or(
        ErrorCode.PROTOCOL_ERROR,
        accept_rst=True,
        alternative="the PRIORITY ignored (PING ACK)",
        accepts=lambda f: is_ping_ack(f, PING_DATA),
    )


def test_5_4_1_connection_error_closes_connection(h2: H2Client) -> None:
    """h2spec http2/5.4.1/1: after a connection error (PING on stream 3), the server closes
    the TCP connection."""
    h2.send_raw_frame(FrameType.PING, 0, 3, bytes(8))
    h2.expect_connection_close()


def test_5_4_1_goaway_before_close(h2: H2Client) -> None:
    """h2spec http2/5.4.1/2 (an h2spec --strict case, a SHOULD): a connection error is first
    signalled with a GOAWAY frame (here: with PROTOCOL_ERROR, h2spec takes any GOAWAY)."""
    h2.send_raw_frame(FrameType.PING, 0, 3, bytes(8))
    h2.expect_goaway(ErrorCode.PROTOCOL_ERROR)


def test_5_5_unknown_extension_frame(h2: H2Client) -> None:
    """h2spec http2/5.5/1: an unknown extension frame is ignored."""
    h2.send_raw_frame(UNKNOWN_FRAME_TYPE, 0, 0, bytes(8))
    h2.send_ping()
    h2.expect_ping_ack()


def test_5_5_unknown_extension_frame_inside_header_block(h2: H2Client) -> None:
    """h2spec http2/5.5/2: an unknown frame in the middle of a header block is a connection
    error (PROTOCOL_ERROR)."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, end_headers=False)
    h2.send_raw_frame(UNKNOWN_FRAME_TYPE, 0, 0, bytes(8))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_1_data_on_stream_0(h2: H2Client) -> None:
    """h2spec http2/6.1/1: DATA on stream 0 is a connection error (PROTOCOL_ERROR)."""
    h2.send_data(0, b"test", end_stream=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_1_data_on_half_closed_remote_stream(h2: H2Client) -> None:
    """h2spec http2/6.1/2: DATA on a stream that is not open (the POST ended with its
    HEADERS) is a stream error (STREAM_CLOSED)."""
    h2.send_headers(1, post_headers(h2), end_stream=True)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.STREAM_CLOSED)


def test_6_1_data_with_invalid_pad_length(h2: H2Client) -> None:
    """h2spec http2/6.1/3: DATA whose pad length (6) exceeds its payload is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_headers(1, post_headers(h2, ("content-length", "4")), end_stream=False)
    h2.send_raw_frame(FrameType.DATA, END_STREAM | PADDED, 1, b"\x06Test")
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_2_priority_between_headers_and_continuation(h2: H2Client) -> None:
    """h2spec http2/6.2/1: HEADERS without END_HEADERS followed by PRIORITY is a connection
    error (PROTOCOL_ERROR)."""
    h2.send_headers(1, h2.request_headers(), end_stream=False, end_headers=False)
    h2.send_priority(1, depends_on=0, weight=255)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_2_headers_to_another_stream_during_header_block(h2: H2Client) -> None:
    """h2spec http2/6.2/2: HEADERS on stream 3 while stream 1's block is open is a connection
    error (PROTOCOL_ERROR)."""
    headers = h2.request_headers()
    h2.send_headers(1, headers, end_stream=False, end_headers=False)
    h2.send_headers(3, headers, end_stream=True)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_2_headers_on_stream_0(h2: H2Client) -> None:
    """h2spec http2/6.2/3: HEADERS on stream 0 is a connection error (PROTOCOL_ERROR)."""
    send_get(h2, 0)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_2_headers_with_invalid_pad_length(h2: H2Client) -> None:
    """h2spec http2/6.2/4: HEADERS whose pad length exceeds the payload is an error
    (PROTOCOL_ERROR). RFC 9113 §6.2 says connection error; h2spec also takes RST_STREAM."""
    block = h2.encode(h2.request_headers())
    payload = bytes([len(block) + 2]) + block
    h2.send_raw_frame(FrameType.HEADERS, END_STREAM | END_HEADERS | PADDED, 1, payload)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_6_3_priority_on_stream_0(h2: H2Client) -> None:
    """h2spec http2/6.3/1: PRIORITY on stream 0 is a connection error (PROTOCOL_ERROR)."""
    h2.send_priority(0, depends_on=0, weight=255)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_3_priority_with_length_4(h2: H2Client) -> None:
    """h2spec http2/6.3/2: PRIORITY of 4 octets is a stream error (FRAME_SIZE_ERROR)."""
    send_get(h2)
    h2.send_raw_frame(FrameType.PRIORITY, 0, 1, b"\x80\x00\x00\x01")
    h2.expect_stream_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_4_rst_stream_on_stream_0(h2: H2Client) -> None:
    """h2spec http2/6.4/1: RST_STREAM on stream 0 is a connection error (PROTOCOL_ERROR)."""
    h2.send_rst_stream(0, ErrorCode.CANCEL)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_4_rst_stream_on_idle_stream(h2: H2Client) -> None:
    """h2spec http2/6.4/2: RST_STREAM on an idle stream is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_rst_stream(1, ErrorCode.CANCEL)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_4_rst_stream_with_length_3(h2: H2Client) -> None:
    """h2spec http2/6.4/3: RST_STREAM of 3 octets is a FRAME_SIZE_ERROR. RFC 9113 §6.4 says
    connection error; h2spec also takes RST_STREAM, and so do we."""
    send_get(h2)
    h2.send_raw_frame(FrameType.RST_STREAM, 0, 1, b"\x00\x00\x00")
    h2.expect_stream_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_settings_ack_with_payload(h2: H2Client) -> None:
    """h2spec http2/6.5/1: a SETTINGS ACK with a payload is a connection error
    (FRAME_SIZE_ERROR)."""
    h2.send_raw_frame(FrameType.SETTINGS, 0x1, 0, b"\x00")
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_settings_on_stream_1(h2: H2Client) -> None:
    """h2spec http2/6.5/2: SETTINGS on a stream other than 0 is a connection error
    (PROTOCOL_ERROR)."""
    payload = bytes.fromhex("0003 00000064")  # MAX_CONCURRENT_STREAMS = 100
    h2.send_raw_frame(FrameType.SETTINGS, 0, 1, payload)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_settings_length_not_multiple_of_6(h2: H2Client) -> None:
    """h2spec http2/6.5/3: SETTINGS of 3 octets is a FRAME_SIZE_ERROR (h2spec also takes
    PROTOCOL_ERROR, RST_STREAM or GOAWAY)."""
    h2.send_raw_frame(FrameType.SETTINGS, 0, 0, b"\x00\x03\x00")
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR, ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_2_enable_push_invalid_value(h2: H2Client) -> None:
    """h2spec http2/6.5.2/1: SETTINGS_ENABLE_PUSH = 2 is a connection error (PROTOCOL_ERROR)."""
    h2.send_settings((Setting.ENABLE_PUSH, 2))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_2_initial_window_size_too_big(h2: H2Client) -> None:
    """h2spec http2/6.5.2/2: SETTINGS_INITIAL_WINDOW_SIZE = 2^31 is a connection error
    (FLOW_CONTROL_ERROR)."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 2**31))
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_6_5_2_max_frame_size_too_small(h2: H2Client) -> None:
    """h2spec http2/6.5.2/3: SETTINGS_MAX_FRAME_SIZE = 16383 is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_settings((Setting.MAX_FRAME_SIZE, 16383))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_2_max_frame_size_too_big(h2: H2Client) -> None:
    """h2spec http2/6.5.2/4: SETTINGS_MAX_FRAME_SIZE = 2^24 is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_settings((Setting.MAX_FRAME_SIZE, 2**24))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_2_unknown_setting(h2: H2Client) -> None:
    """h2spec http2/6.5.2/5: an unknown setting (0xff) is ignored."""
    h2.send_settings((0xFF, 1))
    h2.send_ping()
    h2.expect_ping_ack()


def test_6_5_3_settings_values_in_order(h2: H2Client) -> None:
    """h2spec http2/6.5.3/1: settings are processed in order: INITIAL_WINDOW_SIZE 100 then 1
    in one frame leaves 1, so the response's first DATA frame carries 1 octet."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 100), (Setting.INITIAL_WINDOW_SIZE, 1))
    h2.expect_settings_ack()
    send_get(h2)
    h2.expect_data_length(1, 1)


def test_6_5_3_settings_ack(h2: H2Client) -> None:
    """h2spec http2/6.5.3/2: a SETTINGS frame is acknowledged."""
    h2.send_settings((Setting.ENABLE_PUSH, 0))
    h2.expect_settings_ack()


def test_6_7_ping(h2: H2Client) -> None:
    """h2spec http2/6.7/1: PING is answered with an ACK carrying the same data."""
    h2.send_ping(PING_DATA)
    h2.expect_ping_ack(PING_DATA)


def test_6_7_ping_ack_is_not_answered(h2: H2Client) -> None:
    """h2spec http2/6.7/2: a PING ACK is not answered: the first PING back acknowledges the
    second (non-ACK) PING."""
    h2.send_ping(b"invalid\x00", ack=True)
    h2.send_ping(PING_DATA)
    h2.expect_ping_ack(PING_DATA)


def test_6_7_ping_on_stream_1(h2: H2Client) -> None:
    """h2spec http2/6.7/3: PING on a stream is a connection error (PROTOCOL_ERROR)."""
    h2.send_raw_frame(FrameType.PING, 0, 1, bytes(8))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_7_ping_with_length_6(h2: H2Client) -> None:
    """h2spec http2/6.7/4: PING of 6 octets is a connection error (FRAME_SIZE_ERROR)."""
    h2.send_raw_frame(FrameType.PING, 0, 0, bytes(6))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_8_goaway_on_stream_1(h2: H2Client) -> None:
    """h2spec http2/6.8/1: GOAWAY on a stream is a connection error (PROTOCOL_ERROR)."""
    h2.send_raw_frame(FrameType.GOAWAY, 0, 1, bytes(8))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_9_window_update_zero_on_connection(h2: H2Client) -> None:
    """h2spec http2/6.9/1: WINDOW_UPDATE of 0 on the connection is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_window_update(0, 0)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_9_window_update_zero_on_stream(h2: H2Client) -> None:
    """h2spec http2/6.9/2: WINDOW_UPDATE of 0 on an open stream is a stream error
    (PROTOCOL_ERROR)."""
    send_get(h2, end_stream=False)
    h2.send_window_update(1, 0)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_6_9_window_update_with_length_3(h2: H2Client) -> None:
    """h2spec http2/6.9/3: WINDOW_UPDATE of 3 octets is a connection error
    (FRAME_SIZE_ERROR)."""
    h2.send_raw_frame(FrameType.WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_9_1_initial_window_size_1(h2: H2Client) -> None:
    """h2spec http2/6.9.1/1: with SETTINGS_INITIAL_WINDOW_SIZE = 1 the first DATA frame of a
    response carries 1 octet."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 1))
    h2.expect_settings_ack()
    send_get(h2)
    h2.expect_data_length(1, 1)


def test_6_9_1_connection_window_overflow(h2: H2Client) -> None:
    """h2spec http2/6.9.1/2: WINDOW_UPDATEs taking the connection window over 2^31-1 get a
    GOAWAY(FLOW_CONTROL_ERROR) (a bare close fails)."""
    h2.send_window_update(0, 2**31 - 1)
    h2.send_window_update(0, 2**31 - 1)
    h2.expect_goaway(ErrorCode.FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_overflow(h2: H2Client) -> None:
    """h2spec http2/6.9.1/3: WINDOW_UPDATEs taking a stream window over 2^31-1 get
    RST_STREAM(FLOW_CONTROL_ERROR) on that stream."""
    send_get(h2, end_stream=False)
    h2.send_window_update(1, 2**31 - 1)
    h2.send_window_update(1, 2**31 - 1)
    h2.expect_rst_stream(1, ErrorCode.FLOW_CONTROL_ERROR)


def test_6_9_2_initial_window_size_change_applies_to_open_streams(h2: H2Client) -> None:
    """h2spec http2/6.9.2/1: raising SETTINGS_INITIAL_WINDOW_SIZE from 0 to 1 after the
    request lets 1 octet of DATA out."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 0))
    h2.expect_settings_ack()
    send_get(h2)
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 1))
    h2.expect_data_length(1, 1)


def test_6_9_2_negative_window(h2: H2Client) -> None:
    """h2spec http2/6.9.2/2: a window made negative by SETTINGS is tracked: window 3, 3 octets
    sent, window size lowered to 2 (window -1), WINDOW_UPDATE 2: exactly 1 octet more."""
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 3))
    h2.expect_settings_ack()
    send_get(h2)
    h2.expect_data()
    h2.send_settings((Setting.INITIAL_WINDOW_SIZE, 2))
    h2.expect_settings_ack()
    h2.send_window_update(1, 2)
    h2.expect_data_length(1, 1)


def test_6_9_2_initial_window_size_over_maximum(h2: H2Client) -> None:
    """h2spec http2/6.9.2/3: SETTINGS_INITIAL_WINDOW_SIZE = 2^31 is a connection error
    (FLOW_CONTROL_ERROR)."""
    h2.send_raw_frame(FrameType.SETTINGS, 0, 0, bytes.fromhex("0004 80000000"))
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_6_10_multiple_continuation_frames(h2: H2Client) -> None:
    """h2spec http2/6.10/1: HEADERS followed by two CONTINUATION frames is one request."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, end_headers=False)
    h2.send_continuation(1, dummy_headers(1), end_headers=False)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_headers(1)


def test_6_10_continuation_followed_by_data(h2: H2Client) -> None:
    """h2spec http2/6.10/2: a DATA frame where a CONTINUATION must come is a connection error
    (PROTOCOL_ERROR)."""
    h2.send_headers(1, post_headers(h2), end_stream=False, end_headers=False)
    h2.send_continuation(1, dummy_headers(1), end_headers=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_on_stream_0(h2: H2Client) -> None:
    """h2spec http2/6.10/3: CONTINUATION on stream 0 is a connection error (PROTOCOL_ERROR)."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, end_headers=False)
    h2.send_continuation(0, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_end_headers(h2: H2Client) -> None:
    """h2spec http2/6.10/4: CONTINUATION after a HEADERS with END_HEADERS is a connection
    error (PROTOCOL_ERROR)."""
    send_get(h2)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_continuation_with_end_headers(h2: H2Client) -> None:
    """h2spec http2/6.10/5: CONTINUATION after a CONTINUATION with END_HEADERS is a
    connection error (PROTOCOL_ERROR)."""
    h2.send_headers(1, h2.request_headers(), end_stream=True, end_headers=False)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.send_continuation(1, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_data(h2: H2Client) -> None:
    """h2spec http2/6.10/6: a DATA frame inside a header block, then CONTINUATIONs, is a
    connection error (PROTOCOL_ERROR)."""
    h2.send_headers(1, post_headers(h2), end_stream=False, end_headers=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.send_continuation(1, dummy_headers(1), end_headers=False)
    h2.send_continuation(0, dummy_headers(1), end_headers=True)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_7_goaway_with_unknown_error_code(h2: H2Client) -> None:
    """h2spec http2/7/1: an unknown error code in GOAWAY is not an error: a PING is answered
    or the connection closes."""
    h2.send_goaway(0, 0xFF)
    h2.send_ping(PING_DATA)
    h2.expect_ping_ack_or_close(PING_DATA)


def test_7_rst_stream_with_unknown_error_code(h2: H2Client) -> None:
    """h2spec http2/7/2: an unknown error code in RST_STREAM is not an error: a PING is
    answered (or the connection closes)."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_rst_stream(1, 0xFF)
    h2.send_ping()
    h2.expect_ping_ack_or_close()


def test_8_1_trailers_without_end_stream(h2: H2Client) -> None:
    """h2spec http2/8.1/1: a second HEADERS (trailers) without END_STREAM is a stream error
    (PROTOCOL_ERROR)."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=False)
    h2.send_headers(1, [("x-test", "ok")], end_stream=False)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def _malformed_request(h2: H2Client, headers: list[tuple[str, str]]) -> None:
    h2.send_headers(1, headers, end_stream=True)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_8_1_2_uppercase_header_name(h2: H2Client) -> None:
    """h2spec http2/8.1.2/1: an uppercase field name makes the request malformed (stream error
    PROTOCOL_ERROR; RFC 9113 §8.2.1)."""
    _malformed_request(h2, [*h2.request_headers(), ("X-TEST", "ok")])


def test_8_1_2_1_unknown_pseudo_header(h2: H2Client) -> None:
    """h2spec http2/8.1.2.1/1: an unknown pseudo-header field (:test) makes the request
    malformed (PROTOCOL_ERROR; RFC 9113 §8.3)."""
    _malformed_request(h2, [*h2.request_headers(), (":test", "ok")])


def test_8_1_2_1_response_pseudo_header_in_request(h2: H2Client) -> None:
    """h2spec http2/8.1.2.1/2: :status in a request makes it malformed (PROTOCOL_ERROR)."""
    _malformed_request(h2, [*h2.request_headers(), (":status", "200")])


def test_8_1_2_1_pseudo_header_in_trailers(h2: H2Client) -> None:
    """h2spec http2/8.1.2.1/3: a pseudo-header field in trailers makes the request malformed
    (PROTOCOL_ERROR). As in h2spec, the trailers also lack END_STREAM."""
    h2.send_headers(1, post_headers(h2), end_stream=False)
    h2.send_data(1, b"test", end_stream=False)
    h2.send_headers(1, [(":method", "POST")], end_stream=False)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_8_1_2_1_pseudo_header_after_regular_header(h2: H2Client) -> None:
    """h2spec http2/8.1.2.1/4: pseudo-header fields after a regular field make the request
    malformed (PROTOCOL_ERROR)."""
    _malformed_request(h2, [("x-test", "ok"), *h2.request_headers()])


def test_8_1_2_2_connection_specific_header(h2: H2Client) -> None:
    """h2spec http2/8.1.2.2/1: a connection-specific field (connection: keep-alive) makes the
    request malformed (PROTOCOL_ERROR; RFC 9113 §8.2.2)."""
    _malformed_request(h2, [*h2.request_headers(), ("connection", "keep-alive")])


def test_8_1_2_2_te_other_than_trailers(h2: H2Client) -> None:
    """h2spec http2/8.1.2.2/2: TE with a value other than "trailers" ("trailers, deflate")
    makes the request malformed (PROTOCOL_ERROR). h2spec also sends a regular field named
    "trailers"; so do we."""
    headers = [*h2.request_headers(), ("trailers", "test"), ("te", "trailers, deflate")]
    _malformed_request(h2, headers)


def test_8_1_2_3_empty_path(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/1: an empty :path makes the request malformed (PROTOCOL_ERROR)."""
    headers = h2.request_headers()
    headers[2] = (":path", "")
    _malformed_request(h2, headers)


def test_8_1_2_3_missing_method(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/2: a request without :method is malformed (PROTOCOL_ERROR).

    h2spec's frame drops :scheme as well (a slicing slip); we drop :method only, as the
    case's title says."""
    _malformed_request(h2, [h for h in h2.request_headers() if h[0] != ":method"])


def test_8_1_2_3_missing_scheme(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/3: a request without :scheme is malformed (PROTOCOL_ERROR)."""
    _malformed_request(h2, [h for h in h2.request_headers() if h[0] != ":scheme"])


def test_8_1_2_3_missing_path(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/4: a request without :path is malformed (PROTOCOL_ERROR)."""
    _malformed_request(h2, [h for h in h2.request_headers() if h[0] != ":path"])


def test_8_1_2_3_duplicated_method(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/5: a duplicated :method makes the request malformed."""
    _malformed_request(h2, [*h2.request_headers(), (":method", "GET")])


def test_8_1_2_3_duplicated_scheme(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/6: a duplicated :scheme makes the request malformed."""
    headers = h2.request_headers()
    _malformed_request(h2, [*headers, headers[1]])


def test_8_1_2_3_duplicated_path(h2: H2Client) -> None:
    """h2spec http2/8.1.2.3/7: a duplicated :path makes the request malformed."""
    headers = h2.request_headers()
    _malformed_request(h2, [*headers, headers[2]])


def test_8_1_2_6_content_length_mismatch(h2: H2Client) -> None:
    """h2spec http2/8.1.2.6/1: content-length 1 with 4 octets of DATA makes the request
    malformed (PROTOCOL_ERROR; RFC 9113 §8.1.1)."""
    h2.send_headers(1, post_headers(h2, ("content-length", "1")), end_stream=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_8_1_2_6_content_length_mismatch_multiple_data(h2: H2Client) -> None:
    """h2spec http2/8.1.2.6/2: content-length 1 with 2 DATA frames of 4 octets makes the
    request malformed (PROTOCOL_ERROR)."""
    h2.send_headers(1, post_headers(h2, ("content-length", "1")), end_stream=False)
    h2.send_data(1, b"test", end_stream=False)
    h2.send_data(1, b"test", end_stream=True)
    h2.expect_stream_error(ErrorCode.PROTOCOL_ERROR)


def test_8_2_push_promise_from_client(h2: H2Client) -> None:
    """h2spec http2/8.2/1: a client PUSH_PROMISE is a connection error (PROTOCOL_ERROR)."""
    h2.send_push_promise(1, 3, h2.encode(h2.request_headers()))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


# =====================================================================================
# hpack: HPACK: Header Compression for HTTP/2 (RFC 7541)
# =====================================================================================


def _bad_header_block(h2: H2Client, block: bytes) -> None:
    h2.send_headers(1, block, end_stream=True)
    h2.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


def test_hpack_2_3_3_indexed_field_invalid_index(h2: H2Client) -> None:
    """h2spec hpack/2.3.3/1: an indexed field beyond both tables (index 70) is a connection
    error (COMPRESSION_ERROR)."""
    _bad_header_block(h2, h2.encode(h2.request_headers()) + hpack_indexed(70))


def test_hpack_2_3_3_literal_field_invalid_name_index(h2: H2Client) -> None:
    """h2spec hpack/2.3.3/2: a literal whose name index (70) is beyond both tables is a
    connection error (COMPRESSION_ERROR)."""
    literal = hpack_integer(70, 6, 0x40) + hpack_string(b"")
    _bad_header_block(h2, h2.encode(h2.request_headers()) + literal)


def test_hpack_4_2_table_size_update_at_end_of_block(h2: H2Client) -> None:
    """h2spec hpack/4.2/1: a dynamic table size update after a header field (at the end of the
    block) is a connection error (COMPRESSION_ERROR)."""
    _bad_header_block(h2, h2.encode(h2.request_headers()) + hpack_table_size_update(1))


def _literal_with_value_octets(encoded_value: bytes) -> bytes:
    """x-test: <Huffman value given octet by octet>, without indexing."""
    name = hpack_string(b"x-test", huffman=True)
    return bytes([0x00]) + name + hpack_raw_string(encoded_value, huffman=True)


def test_hpack_5_2_huffman_padding_longer_than_7_bits(h2: H2Client) -> None:
    """h2spec hpack/5.2/1: a Huffman string padded with more than 7 bits is a connection error
    (COMPRESSION_ERROR)."""
    value = bits_to_bytes(huffman_bits(b"test")) + b"\xff"
    _bad_header_block(h2, h2.encode(h2.request_headers()) + _literal_with_value_octets(value))


def test_hpack_5_2_huffman_padded_with_zeros(h2: H2Client) -> None:
    """h2spec hpack/5.2/2: Huffman padding that is not the EOS prefix (zeros) is a connection
    error (COMPRESSION_ERROR)."""
    value = bits_to_bytes(huffman_bits(b"test"), pad="0")
    _bad_header_block(h2, h2.encode(h2.request_headers()) + _literal_with_value_octets(value))


def test_hpack_5_2_huffman_with_eos(h2: H2Client) -> None:
    """h2spec hpack/5.2/3: a Huffman string containing the EOS symbol is a connection error
    (COMPRESSION_ERROR)."""
    value = bits_to_bytes(huffman_bits(b"te") + EOS_BITS + huffman_bits(b"st"))
    _bad_header_block(h2, h2.encode(h2.request_headers()) + _literal_with_value_octets(value))


def test_hpack_6_1_indexed_field_index_0(h2: H2Client) -> None:
    """h2spec hpack/6.1/1: an indexed field with index 0 is a connection error
    (COMPRESSION_ERROR)."""
    _bad_header_block(h2, h2.encode(h2.request_headers()) + hpack_indexed(0))


def test_hpack_6_3_table_size_update_over_settings(h2: H2Client) -> None:
    """h2spec hpack/6.3/1: a table size update above the server's SETTINGS_HEADER_TABLE_SIZE
    is a connection error (COMPRESSION_ERROR)."""
    limit = h2.server_settings.get(Setting.HEADER_TABLE_SIZE, 4096)
    _bad_header_block(h2, hpack_table_size_update(limit + 1) + h2.encode(h2.request_headers()))
