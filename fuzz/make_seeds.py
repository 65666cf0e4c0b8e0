#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ (run it again after editing a list).

Each seed is a named file so a failing replay says which case broke. The parser seeds are raw
request bytes; the chunked seeds carry three control bytes and the connection seeds eight
before the client's bytes (the layouts are described at the top of each fuzz_*.cpp).
The cases follow /work/shared/ATTACKS.md sections A-C plus valid requests of many shapes, and
WebSocket handshakes followed by client frames (valid and broken) for fuzz_connection.
Files named by a 40-hex SHA-1 are a fuzzing run's inputs merged in (libFuzzer -merge=1): they
are kept when the named seeds are rewritten.
"""

from __future__ import annotations

import ipaddress
import pathlib
import re
import shutil
import zlib

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

H = "Host: a\r\n"

# ---- requests: valid shapes and ATTACKS.md A-C -------------------------------------------------

VALID = {
    "get-simple": f"GET / HTTP/1.1\r\n{H}\r\n",
    "get-query": f"GET /search?q=a%20b&x=1 HTTP/1.1\r\n{H}Accept: */*\r\n\r\n",
    "get-http10": "GET /old HTTP/1.0\r\n\r\n",
    "get-http10-keepalive": "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "head": f"HEAD /h HTTP/1.1\r\n{H}\r\n",
    "options-star": f"OPTIONS * HTTP/1.1\r\n{H}\r\n",
    "connect-authority": "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "absolute-form": "GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "absolute-https-port": "GET https://[::1]:8443/ HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
    "host-ipv4-port": "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "host-ipv6-ipv4-tail": "GET http://[::ffff:192.0.2.1]:80/ HTTP/1.1\r\n"
    "Host: [::ffff:192.0.2.1]:80\r\n\r\n",
    "host-ipvfuture": "GET / HTTP/1.1\r\nHost: [v1.fe80::a+en1]\r\n\r\n",
    "host-empty-http10": "GET / HTTP/1.0\r\nHost:\r\n\r\n",
    "post-cl": f"POST /p HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello",
    "post-cl-zero": f"POST /p HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\n",
    "post-cl-leading-zeros": f"POST /p HTTP/1.1\r\n{H}Content-Length: 0005\r\n\r\nhello",
    "post-chunked": f"POST /c HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-mixed-case": f"POST /c HTTP/1.1\r\n{H}transfer-encoding: ChUnKeD\r\n\r\n",
    "expect-continue": f"PUT /u HTTP/1.1\r\n{H}Content-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    "connection-close": f"GET / HTTP/1.1\r\n{H}Connection: close\r\n\r\n",
    "connection-list": f"GET / HTTP/1.1\r\n{H}Connection: keep-alive, , Upgrade\r\n"
    "Upgrade: websocket\r\n\r\n",
    "websocket-upgrade": "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n",
    "many-headers": "GET / HTTP/1.1\r\n"
    + H
    + "".join(f"X-H{i}: v{i}\r\n" for i in range(40))
    + "\r\n",
    "ows-values": f"GET / HTTP/1.1\r\n{H}X-A:   padded \t\r\nX-B:\r\nX-C:\t\r\n\r\n",
    "obs-text-value": f"GET / HTTP/1.1\r\n{H}X-Name: caf\xe9 \x80\xff\r\n\r\n",
    "weird-method-token": f"M-SEARCH! /x HTTP/1.1\r\n{H}\r\n",
    "target-pipes-braces": f"GET /a|b{{c}}^`~ HTTP/1.1\r\n{H}\r\n",
    "real-browser": "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n"
    "User-Agent: Mozilla/5.0\r\nAccept: text/html,application/xhtml+xml\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\nCookie: a=b; c=d\r\n\r\n",
}

ATTACKS_A = {
    "a-cl-and-te": f"POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "a-te-and-cl": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    "a-cl-empty": f"POST / HTTP/1.1\r\n{H}Content-Length:\r\n\r\n",
    "a-cl-plus": f"POST / HTTP/1.1\r\n{H}Content-Length: +1\r\n\r\nx",
    "a-cl-minus-zero": f"POST / HTTP/1.1\r\n{H}Content-Length: -0\r\n\r\n",
    "a-cl-underscore": f"POST / HTTP/1.1\r\n{H}Content-Length: 0_1\r\n\r\n",
    "a-cl-hex": f"POST / HTTP/1.1\r\n{H}Content-Length: 0x10\r\n\r\n",
    "a-cl-exponent": f"POST / HTTP/1.1\r\n{H}Content-Length: 1e3\r\n\r\n",
    "a-cl-inner-space": f"POST / HTTP/1.1\r\n{H}Content-Length:  3 1\r\n\r\n",
    "a-cl-21-digits": f"POST / HTTP/1.1\r\n{H}Content-Length: 100000000000000000000\r\n\r\n",
    "a-cl-overflow-2p64": f"POST / HTTP/1.1\r\n{H}Content-Length: 18446744073709551616\r\n\r\n",
    "a-cl-list": f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello",
    "a-cl-twice-same": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "a-cl-twice-different": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "a-te-chunked-gzip": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, gzip\r\n\r\n",
    "a-te-identity-chunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: identity, chunked\r\n\r\n",
    "a-te-gzip-chunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n",
    "a-te-leading-comma": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: ,chunked\r\n\r\n",
    "a-te-chunkedchunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunkedchunked\r\n\r\n",
    "a-te-vtab": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: \x0bchunked\r\n\r\n",
    "a-te-nbsp": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: \xa0chunked\xa0\r\n\r\n",
    "a-te-unknown": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n",
    "a-te-twice": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
    "Transfer-Encoding: chunked\r\n\r\n",
    "a-te-http10": "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "a-te-param": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked;q=1\r\n\r\n",
    "a-chunked-size-0x": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
    "0x2\r\nhi\r\n0\r\n\r\n",
    "a-after-close-pipelined": f"GET /a HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
    f"GET /b HTTP/1.1\r\n{H}\r\n",
}

ATTACKS_B = {
    "b-bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
    "b-bare-cr": "GET / HTTP/1.1\rHost: a\r\r",
    "b-lf-in-request-line": "GET /\n HTTP/1.1\r\nHost: a\r\n\r\n",
    "b-http-1-32": f"GET / HTTP/1.32\r\n{H}\r\n",
    "b-http-111": f"GET / HTTP/111\r\n{H}\r\n",
    "b-http-2-0": f"GET / HTTP/2.0\r\n{H}\r\n",
    "b-http-lowercase": f"GET / http/1.1\r\n{H}\r\n",
    "b-method-not-token": f"G(T / HTTP/1.1\r\n{H}\r\n",
    "b-empty-target": f"GET  HTTP/1.1\r\n{H}\r\n",
    "b-double-space": f"GET  / HTTP/1.1\r\n{H}\r\n",
    "b-tab-separator": f"GET\t/ HTTP/1.1\r\n{H}\r\n",
    "b-star-with-get": f"GET * HTTP/1.1\r\n{H}\r\n",
    "b-authority-with-get": f"GET example.com:80 HTTP/1.1\r\n{H}\r\n",
    "b-fragment": f"GET /a#frag HTTP/1.1\r\n{H}\r\n",
    "b-leading-crlf": f"\r\nGET / HTTP/1.1\r\n{H}\r\n",
    "b-leading-space": f" GET / HTTP/1.1\r\n{H}\r\n",
    "b-no-version": "GET /\r\n\r\n",
    "b-target-non-ascii": f"GET /\xe9 HTTP/1.1\r\n{H}\r\n",
    "b-tls-client-hello": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 32,
    "b-binary-garbage": "\x00\xff\x7f\x80PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "b-long-request-line": "GET /" + "a" * 9000 + f" HTTP/1.1\r\n{H}\r\n",
}

ATTACKS_C = {
    "c-empty-name": f"GET / HTTP/1.1\r\n{H}: value\r\n\r\n",
    "c-space-before-colon": f"GET / HTTP/1.1\r\n{H}X-A : b\r\n\r\n",
    "c-space-before-first-header": f"GET / HTTP/1.1\r\n {H}\r\n",
    "c-ctl-in-name": f"GET / HTTP/1.1\r\n{H}X\x01A: b\r\n\r\n",
    "c-delimiter-in-name": f"GET / HTTP/1.1\r\n{H}X(A): b\r\n\r\n",
    "c-high-byte-in-name": f"GET / HTTP/1.1\r\n{H}X\xe9: b\r\n\r\n",
    "c-transfer-underscore": f"POST / HTTP/1.1\r\n{H}Transfer_Encoding: chunked\r\n"
    "Content-Length: 5\r\n\r\nhello",
    "c-nul-in-value": f"GET / HTTP/1.1\r\n{H}X-A: a\x00b\r\n\r\n",
    "c-bare-cr-in-value": f"GET / HTTP/1.1\r\n{H}X-A: a\rb\r\n\r\n",
    "c-bare-lf-in-value": f"GET / HTTP/1.1\r\n{H}X-A: a\nb\r\n\r\n",
    "c-ctl-in-value": f"GET / HTTP/1.1\r\n{H}X-A: a\x07b\x7f\r\n\r\n",
    "c-obs-fold": f"GET / HTTP/1.1\r\n{H}X-A: a\r\n  folded\r\n\r\n",
    "c-no-colon": f"GET / HTTP/1.1\r\n{H}NoColon\r\n\r\n",
    "c-two-hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "c-missing-host": "GET / HTTP/1.1\r\n\r\n",
    "c-host-conflicts-absolute": "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "c-host-userinfo": "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "c-host-bad": "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "c-expect-unknown": f"GET / HTTP/1.1\r\n{H}Expect: 200-ok\r\n\r\n",
    "c-head-ends-mid-line": f"GET / HTTP/1.1\r\n{H}X-A: b",
    "c-too-many-headers": "GET / HTTP/1.1\r\n" + H + "a:\r\n" * 150 + "\r\n",
    "c-header-64k": f"GET / HTTP/1.1\r\n{H}X-Big: " + "v" * 65536 + "\r\n\r\n",
}

REQUESTS = {**VALID, **ATTACKS_A, **ATTACKS_B, **ATTACKS_C}

# ---- chunked bodies (the bytes after the head) -------------------------------------------------

CHUNKED = {
    "simple": "5\r\nhello\r\n0\r\n\r\n",
    "two-chunks": "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "uppercase-hex": "A\r\n0123456789\r\n0\r\n\r\n",
    "leading-zeros": "0005\r\nhello\r\n000\r\n\r\n",
    "extension": "5;name=value\r\nhello\r\n0;last\r\n\r\n",
    "extension-quoted": '5;n="a \\"q\\" b"\r\nhello\r\n0\r\n\r\n',
    "extension-bws": "5 ; a = b ;c\r\nhello\r\n0\r\n\r\n",
    "trailer": "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n",
    "then-next-request": "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    "empty-body": "0\r\n\r\n",
    "size-0x": "0x2\r\nhi\r\n0\r\n\r\n",
    "size-plus": "+5\r\nhello\r\n0\r\n\r\n",
    "size-minus": "-5\r\nhello\r\n0\r\n\r\n",
    "size-underscore": "1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    "size-leading-space": " 5\r\nhello\r\n0\r\n\r\n",
    "size-trailing-space": "5 \r\nhello\r\n0\r\n\r\n",
    "size-empty": "\r\nhello\r\n0\r\n\r\n",
    "size-17-digits": "10000000000000000\r\nx\r\n",
    "size-2p63": "8000000000000000\r\nx\r\n",
    "size-max": "7fffffffffffffff\r\nx",
    "data-not-crlf": "5\r\nhelloXX\r\n0\r\n\r\n",
    "bare-lf-size": "5\nhello\r\n0\r\n\r\n",
    "bare-cr-ext": "5;a\rb\r\nhello\r\n0\r\n\r\n",
    "ends-after-last-chunk": "0\r\n",
    "trailer-content-length": "0\r\nContent-Length: 5\r\n\r\n",
    "trailer-transfer-encoding": "0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "trailer-host": "0\r\nHost: evil\r\n\r\n",
    "trailer-obs-fold": "0\r\nX-A: b\r\n c\r\n\r\n",
    "trailer-long-name": "0\r\nX-A-Very-Long-Trailer-Field-Name-Indeed: 1\r\n\r\n",
    "trailer-forbidden-lookalike": "0\r\nContent-Length-Extended-Beyond-24-Bytes: 5\r\n"
    "Content-LengtH: 5\r\n\r\n",
    "long-line": "1;" + "e" * 5000 + "\r\nx\r\n0\r\n\r\n",
}

# Control bytes for fuzz_chunked: max piece (0 = one byte at a time), seed, limits.
CHUNKED_CONTROLS = {"": b"\x07\x01\x00", "-tiny-limits": b"\x00\x02\x31"}

# ---- conversations for fuzz_connection -----------------------------------------------------------

GET = f"GET / HTTP/1.1\r\n{H}\r\n"


def chunked_body(data: bytes, piece: int) -> bytes:
    out = b""
    for i in range(0, len(data), piece):
        part = data[i : i + piece]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


CONVERSATIONS = {
    "get": GET,
    "pipeline-three": f"GET /1 HTTP/1.1\r\n{H}\r\nPOST /2 HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\n"
    f"helloGET /3?q=1 HTTP/1.1\r\n{H}\r\n",
    "pipeline-ten": GET * 10,
    "chunked-trailer": f"POST /c HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n"
    "hello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n" + GET,
    "http10": "GET /old HTTP/1.0\r\n\r\n",
    "http10-keepalive-pipeline": "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    "GET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
    "close-stops-pipeline": f"GET /a HTTP/1.1\r\n{H}Connection: close\r\n\r\n" + GET,
    "head": f"HEAD /h HTTP/1.1\r\n{H}\r\n" + GET,
    "expect-continue": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    "hello" + GET,
    "expect-continue-no-body-sent": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
    "Expect: 100-continue\r\n\r\n",
    "valid-then-garbage": GET + "\x16\x03\x01\x02\x00",
    "valid-then-bare-lf": GET + "GET / HTTP/1.1\nHost: a\n\n",
    "cl-and-te": f"POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    "0\r\n\r\n" + GET,
    "smuggle-te-cl": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"
    f"\r\n5c\r\nGPOST / HTTP/1.1\r\n{H}\r\n0\r\n\r\n",
    "smuggle-underscore": f"POST / HTTP/1.1\r\n{H}Transfer_Encoding: chunked\r\nContent-Length: 5"
    "\r\n\r\n0\r\n\r\n" + GET,
    "bad-chunk-framing": f"POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"
    "\r\n" + GET,
    "chunk-ends-after-last": f"POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\n",
    "missing-host": "GET / HTTP/1.1\r\n\r\n",
    "http2-version": f"GET / HTTP/2.0\r\n{H}\r\n",
    "http2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "tls-hello": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 40,
    "obs-fold": f"GET / HTTP/1.1\r\n{H}X-A: a\r\n folded\r\n\r\n",
    "head-then-eof-mid-line": GET + "GET /b HTTP/1.1\r\nHo",
    "body-eof-early": f"POST / HTTP/1.1\r\n{H}Content-Length: 100\r\n\r\nonly-some",
    "large-cl-body": f"POST /up HTTP/1.1\r\n{H}Content-Length: 20000\r\n\r\n" + "u" * 20000 + GET,
    "large-chunked-body": (
        f"POST /up HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n".encode()
        + chunked_body(b"z" * 20000, 3000)
        + GET.encode()
    ),
    "header-70k": f"GET / HTTP/1.1\r\n{H}X-Big: " + "v" * 70000 + "\r\n\r\n",
    "request-line-9k": "GET /" + "a" * 9000 + f" HTTP/1.1\r\n{H}\r\n",
    "many-small-headers": "GET / HTTP/1.1\r\n" + H + "a:\r\n" * 2000 + "\r\n",
    "stray-crlf-after-body": f"POST / HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\nok\r\n" + GET,
    "upgrade-websocket": "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
    "Upgrade: websocket\r\n\r\n",
}

# ---- WebSocket conversations for fuzz_connection: a handshake, then the client's frames ---------

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"


def ws_handshake(
    extra: str = "",
    version: str = "13",
    key: str = WS_KEY,
    http: str = "1.1",
    method: str = "GET",
    connection: str = "Upgrade",
) -> bytes:
    return (
        f"{method} /ws HTTP/{http}\r\nHost: a\r\nUpgrade: websocket\r\nConnection: {connection}\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def ws_frame(
    op: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False, mask: bytes | None = MASK
) -> bytes:
    """One client frame (RFC 6455 §5.2): masked unless mask is None."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    m = 0x80 if mask else 0
    if n <= 125:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def ws_close(code: int | None = 1000, reason: bytes = b"") -> bytes:
    return ws_frame(0x8, b"" if code is None else code.to_bytes(2, "big") + reason)


def deflated(messages: list[bytes], takeover: bool = True) -> list[bytes]:
    """permessage-deflate payloads (RFC 7692 §7.2.1: the 00 00 ff ff tail removed)."""
    out = []
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    for m in messages:
        if not takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


PMD = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
PMD_NO_TAKEOVER = (
    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
    "server_no_context_takeover; server_max_window_bits=10, permessage-deflate\r\n"
)
_z = deflated([b"hello hello hello", b"hello again, hello"])
_zn = deflated([b"abcabcabcabc", b"abcabcabcabc"], takeover=False)

WS_CONVERSATIONS = {
    "ws-echo": ws_handshake()
    + ws_frame(0x1, b"hello")
    + ws_frame(0x9, b"p")
    + ws_frame(0x2, bytes(range(200)))
    + ws_close(1000, b"bye"),
    "ws-subprotocols": ws_handshake("Sec-WebSocket-Protocol: chat, superchat\r\n")
    + ws_frame(0x1, b'{"a":1}')
    + ws_close(1000),
    "ws-deflate": ws_handshake(PMD)
    + ws_frame(0x1, _z[0], rsv1=True)
    + ws_frame(0x1, _z[1], rsv1=True)
    + ws_frame(0x1, b"plain")
    + ws_close(1001, b"going"),
    "ws-deflate-no-takeover": ws_handshake(PMD_NO_TAKEOVER)
    + ws_frame(0x2, _zn[0], rsv1=True)
    + ws_frame(0x2, _zn[1], rsv1=True)
    + ws_close(None),
    "ws-fragments-pings": ws_handshake()
    + ws_frame(0x1, b"frag", fin=False)
    + ws_frame(0x9, b"between")
    + ws_frame(0x0, b"ment\xe2\x82", fin=False)
    + ws_frame(0x0, b"\xac", fin=True)
    + ws_frame(0xA, b"\x00\x00\x00\x01")
    + ws_close(4000, b"\xe2\x82\xac"),
    "ws-large": ws_handshake() + ws_frame(0x2, b"L" * 70000) + ws_close(1000),
    "ws-no-close": ws_handshake() + ws_frame(0x1, b"then EOF"),
    "ws-after-get": GET.encode() + ws_handshake() + ws_frame(0x1, b"second") + ws_close(1000),
    "ws-frames-look-like-http": ws_handshake() + GET.encode() + GET.encode(),
    "ws-unmasked": ws_handshake() + ws_frame(0x1, b"unmasked", mask=None),
    "ws-bad-utf8": ws_handshake() + ws_frame(0x1, b"\xed\xa0\x80"),
    "ws-ping-flood": ws_handshake() + ws_frame(0x9, b"x" * 125) * 40 + ws_close(1000),
    # broken handshakes: answered 400/426 without the app (or, without --ws, plain requests)
    "ws-bad-key": ws_handshake(key="abc"),
    "ws-version-8": ws_handshake(version="8") + ws_frame(0x1, b"x"),
    "ws-http10": ws_handshake(http="1.0"),
    "ws-post": ws_handshake(method="POST"),
    "ws-body": ws_handshake("Content-Length: 5\r\n") + b"hello" + ws_frame(0x1, b"x"),
    "ws-chunked-body": ws_handshake("Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
    "ws-no-connection-upgrade": ws_handshake(connection="keep-alive"),
    "ws-two-keys": ws_handshake(f"Sec-WebSocket-Key: {WS_KEY}\r\n"),
    "ws-bad-subprotocol": ws_handshake("Sec-WebSocket-Protocol: chat, sup\xe9r\r\n"),
    "ws-many-subprotocols": ws_handshake(
        "Sec-WebSocket-Protocol: " + ", ".join(f"p{i}" for i in range(40)) + "\r\n"
    ),
    "ws-bad-extension": ws_handshake("Sec-WebSocket-Extensions: permessage-deflate;;=\r\n"),
}
WS_BROKEN = {name for name in WS_CONVERSATIONS if name.startswith("ws-b") or "-no-conn" in name}
WS_BROKEN |= {"ws-version-8", "ws-http10", "ws-post", "ws-two-keys", "ws-many-subprotocols"}
WS_BROKEN |= {"ws-chunked-body"}

# Control bytes for fuzz_connection (see fuzz_connection.cpp): flags, app seed, split seed,
# client reading, config, plans, limits, WebSocket. Each conversation gets the variants below.
CONNECTION_CONTROLS = {
    # whole, all plans drawn, client reads everything, defaults; half-close at the end
    "": bytes([0x08, 0x11, 0x22, 0x00, 0x00, 0x7F, 0x00, 0x00]),
    # differential: split in 1..8-byte pieces, rerun whole, compare
    "-diff": bytes([0x8A, 0x05, 0x33, 0x00, 0x00, 0x7F, 0x00, 0x00]),
    # slow reader, tiny limits, timers, shutdown, max_body 1 KiB, refuse the 2nd request;
    # WebSocket: no context takeover asked for, small windows, tiny ws limits
    "-hostile": bytes([0x3B, 0x2A, 0x44, 0x02, 0x5A, 0x7F, 0xDA, 0x2E]),
    # the peer resets after some segment; one-byte-a-time client with a small read window
    "-reset": bytes([0x49, 0x3C, 0x55, 0x01, 0x00, 0x7F, 0x00, 0x10]),
}
# Variants for WebSocket conversations only.
WS_CONTROLS = {
    # timers fire midway and at the end (ping, pong, close); mid ws limits, no close timer
    "-timers": bytes([0x2C, 0x07, 0x66, 0x00, 0x00, 0x7F, 0xC0, 0x30]),
    # another app: a different answer to the handshake; deflate off
    "-app2": bytes([0x0B, 0x5D, 0x21, 0x00, 0x00, 0x7F, 0x00, 0x01]),
    "-app3": bytes([0x0C, 0xA7, 0x12, 0x00, 0x00, 0x7F, 0x00, 0x00]),
    # the owner has no WebSocket (upgrade() says false); --ws none
    "-refused": bytes([0x08, 0x11, 0x22, 0x00, 0x00, 0x7F, 0x00, 0x40]),
    "-ws-none": bytes([0x08, 0x11, 0x22, 0x00, 0x00, 0x7F, 0x00, 0x80]),
}
# Variants for a few conversations only, to keep the corpus lean.
CONNECTION_VARIANT_CASES = {
    "pipeline-three",
    "chunked-trailer",
    "expect-continue",
    "head",
    "valid-then-garbage",
    "large-chunked-body",
    "head-then-eof-mid-line",
    "smuggle-te-cl",
    "http10-keepalive-pipeline",
}


# Regressions: inputs that once failed, with the controls that made them fail.
REGRESSIONS = {
    # 413 or 400 depending on segmentation (max_body checked once per read); fixed in 4f8f9fc.
    "regress-chunked-limit-413-or-400": bytes([0x8E, 0x05, 0x33, 0x00, 0x00, 0x00, 0x03, 0x00])
    + f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    "6\r\nworld\rXX\r\n0\r\n\r\n".encode(),
}


def as_bytes(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("latin-1")


def write(target: str, name: str, data: bytes) -> None:
    (ROOT / target / name).write_bytes(data)


# ---- PROXY protocol headers (fuzz_proxy_protocol) ----------------------------------------------
# One control byte (see fuzz_proxy_protocol.cpp: bits 0-1 mode, bits 2-7 a tight max_header / 8),
# then the bytes. Raw seeds are followed by the request that comes after the header.


def crc32c(data: bytes) -> int:
    """Bitwise CRC32c (Castagnoli, reflected 0x82F63B78): independent of the C++ table version."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp2_tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def pp2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return PP2_SIG + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


def pp2_crc(fam: int, addr: bytes, tlvs: bytes) -> bytes:
    """A PROXY v2 header with a PP2_TYPE_CRC32C TLV first and a valid checksum (§2.2.3)."""
    header = pp2(0x21, fam, addr + pp2_tlv(0x03, bytes(4)) + tlvs)
    at = 16 + len(addr) + 3
    return header[:at] + crc32c(header).to_bytes(4, "big") + header[at + 4 :]


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        bytes(int(x) for x in src.split("."))
        + bytes(int(x) for x in dst.split("."))
        + sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
    )


V4 = inet4("192.0.2.1", "192.0.2.2", 56324, 443)
SSL = (
    bytes([0x07])
    + bytes(4)
    + pp2_tlv(0x21, b"TLSv1.3")
    + pp2_tlv(0x22, b"client.example.com")
    + pp2_tlv(0x23, b"TLS_AES_256_GCM_SHA384")
    + pp2_tlv(0x24, b"RSA-SHA256")
    + pp2_tlv(0x25, b"RSA2048")
)
PROXY_HEADERS = {
    "v1-tcp4": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    "v1-tcp4-max": b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 1234 443\r\n",
    "v1-tcp6-mapped": b"PROXY TCP6 ::ffff:192.0.2.1 :: 0 0\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-unknown-junk": b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n",
    "v1-bad-port": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",
    "v1-leading-zero": b"PROXY TCP4 01.2.3.4 5.6.7.8 1 80\r\n",
    "v1-bare-lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 80\n",
    "v1-port-leading-zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n",
    "v1-port-zero-zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
    "v1-double-space": b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    "v1-trailing-space": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    "v1-family-mismatch": b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    "v1-tcp6-bad": b"PROXY TCP6 1::2::3 [::1] 1 2\r\n",
    "v1-cr-without-lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    "v1-too-long": b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
    "v2-tcp4": pp2(0x21, 0x11, V4),
    "v2-udp4": pp2(0x21, 0x12, V4),
    "v2-tcp6": pp2(0x21, 0x21, inet6("2001:db8::1", "::ffff:10.0.0.1", 1, 65535)),
    "v2-unix": pp2(
        0x21, 0x31, b"/run/haproxy.sock".ljust(108, b"\0") + b"\0abstract".ljust(108, b"\0")
    ),
    "v2-local": pp2(0x20, 0x00, b""),
    "v2-unspec": pp2(0x21, 0x00, b"whatever"),
    "v2-tlvs": pp2(
        0x21,
        0x11,
        V4
        + pp2_tlv(0x01, b"h2")
        + pp2_tlv(0x02, b"example.com")
        + pp2_tlv(0x04, b"")
        + pp2_tlv(0x05, b"id-1")
        + pp2_tlv(0x20, SSL)
        + pp2_tlv(0x30, b"blue")
        + pp2_tlv(0xE0, b"gcp-psc1"),
    ),
    "v2-haproxy-ssl-crc": pp2_crc(
        0x11,
        inet4("203.0.113.7", "10.0.0.5", 51514, 443),
        pp2_tlv(0x01, b"h2") + pp2_tlv(0x02, b"www.example.com") + pp2_tlv(0x20, SSL),
    ),
    "v2-aws-nlb-vpce": pp2(
        0x21,
        0x21,
        inet6("2001:db8:85a3::8a2e:370:7334", "2600:1f18::10", 40001, 80)
        + pp2_tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9"),
    ),
    "v2-aws-nlb-crc": pp2_crc(
        0x11,
        inet4("198.51.100.23", "172.31.5.9", 33445, 8000),
        pp2_tlv(0xEA, b"\x01vpce-0123456789abcdef0"),
    ),
    "v2-crc-mismatch": pp2(0x21, 0x11, V4 + pp2_tlv(0x03, bytes(4))),
    "v2-tlv-overrun": pp2(0x21, 0x11, V4 + b"\x01\x00\x09h2"),
    "v2-ssl-short": pp2(0x21, 0x11, V4 + pp2_tlv(0x20, b"\x01\0\0\0")),
    "v2-duplicate-alpn": pp2(0x21, 0x11, V4 + pp2_tlv(0x01, b"h2") + pp2_tlv(0x01, b"h2")),
    "v2-version-1": PP2_SIG + b"\x11\x11\x00\x0c" + V4,
    "v2-oversized": PP2_SIG + b"\x21\x11\xff\xff" + V4,
    "not-proxy-http": GET.encode(),
    "not-proxy-tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}
# Builder seeds: control byte 0x82 (valid v2 from the payload) and 0x83 (valid v1).
PROXY_BUILDERS = {
    "build-v2-tcp4-tlvs": bytes([0x82, 0x05])
    + bytes(range(1, 13))
    + bytes([6, 0, 3, 1, 0, 4, 2])
    + b"abcd",
    "build-v2-unix": bytes([0x82, 0x07, 5]) + b"/sock" + bytes([0]) + bytes([1, 4, 1, 0]),
    "build-v2-tcp6-ssl-crc": bytes([0x82, 0x06])
    + bytes(range(36))
    + bytes([3, 4, 0, 7, 0, 0, 0, 0, 0, 0, 5])
    + b"TLSv1.3"
    + bytes([1, 1, 1, 1, 1, 1, 1, 0]),
    "build-v2-local": bytes([0x82, 0x85]) + bytes(12),
    "build-v1-tcp4": bytes([0x83, 0x00])
    + bytes([192, 0, 2, 1, 192, 0, 2, 2, 0x1F, 0x90, 0x01, 0xBB]),
    "build-v1-tcp6-upper": bytes([0x83, 0x09]) + bytes(range(32)) + b"\x00\x50\x00\x51",
    "build-v1-unknown": bytes([0x83, 0x03, 10]) + b"junk bytes",
    "build-v1-defect-port": bytes([0x83, 0x00]) + bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 1, 0, 2]),
    "build-v1-defect-lf": bytes([0x83, 0x01]) + bytes(range(32)) + bytes([0, 1, 0, 2, 6]),
    "build-v2-defect-crc-flip": bytes([0x82, 0x05])
    + bytes(range(1, 13))
    + bytes([0, 3, 1, 0, 5, 1]),
    "build-v2-defect-overrun": bytes([0x82, 0x06])
    + bytes(range(36))
    + bytes([1, 0, 2])
    + b"h2"
    + bytes([7]),
}

# ---- client address from proxy headers (fuzz_forwarded) ----------------------------------------
# Lines: --forwarded-allow-ips, the peer, then header lines ('F' X-Forwarded-For,
# 'P' X-Forwarded-Proto, 'W' Forwarded).

FORWARDED = {
    "xff-single": "127.0.0.1\n127.0.0.1\nF203.0.113.5\nPhttps\n",
    "xff-chain": "127.0.0.1, 10.0.0.0/8\n10.0.0.1\nF198.51.100.1, 203.0.113.5, 10.0.0.2\n"
    "Phttps, http, http\n",
    "xff-lines": "127.0.0.1, 10.0.0.0/8\n10.0.0.1\nF198.51.100.1\nF203.0.113.5, 10.0.0.2\n"
    "Phttp\nPHTTPS\n",
    "xff-ipv6-ports": "::1, fd00::/8\n::1\nF[2001:db8::5]:4711, fd00::2, 192.0.2.1:8080\n",
    "xff-all-trusted": "10.0.0.0/8\n10.0.0.1\nF10.0.0.3, 10.0.0.2\nPwss, http\n",
    "xff-unknown": "127.0.0.1\n127.0.0.1\nF1.2.3.4, unknown\nPhttps\n",
    "xff-junk": "127.0.0.1\n127.0.0.1\nFgarbage!!, 203.0.113.5, not-an-ip\n",
    "xff-star": "*\n192.0.2.1\nF1.1.1.1, 2.2.2.2\n",
    "xff-unix": "unix:\nunix\nF203.0.113.5, unix:\n",
    "xff-many": "10.0.0.0/8\n10.0.0.1\nF" + "10.0.0.1, " * 100 + "\n",
    "xff-mapped-peer": "10.0.0.0/8\n::ffff:10.0.0.1\nF203.0.113.5\n",
    "xfp-only": "127.0.0.1\n127.0.0.1\nP https \nPftp\n",
    "untrusted": "10.0.0.0/8\n192.0.2.1\nF1.2.3.4\nPhttps\nWfor=1.2.3.4\n",
    "fwd-rfc7239": "127.0.0.1\n127.0.0.1\nWfor=192.0.2.60;proto=http;by=203.0.113.43\n",
    "fwd-ipv6-quoted": "127.0.0.1\n127.0.0.1\n"
    'WFor="[2001:db8:cafe::17]:4711";host="ex\\ample.com", for=_hidden\n',
    "fwd-chain": "127.0.0.1, 10.0.0.0/8\n10.0.0.1\nWfor=198.51.100.1;proto=http, "
    "for=203.0.113.5;proto=https;host=a.example, for=10.0.0.2\n",
    "fwd-obfuscated-literal": "127.0.0.1, _edge, proxy1\n127.0.0.1\nWfor=192.0.2.1, for=_edge\n",
    "fwd-unknown": "127.0.0.1\n127.0.0.1\nWfor=unknown;proto=https;host=example.com\n",
    "fwd-unterminated": '127.0.0.1\n127.0.0.1\nWfor="1.2.3.4, for=203.0.113.5\n',
    "fwd-empty-pairs": "127.0.0.1\n127.0.0.1\nW, ;for=203.0.113.5;;proto=https; ,\n",
    "fwd-quoted-comma": '127.0.0.1\n127.0.0.1\nWext="a,b\\",c";for="203.0.113.5:_port"\n',
    "precedence": "127.0.0.1\n127.0.0.1\nF203.0.113.5\nWfor=198.51.100.1;proto=https\nPhttp\n",
    "bad-spec": "10.0.0.0/33\n127.0.0.1\nF1.2.3.4\n",
    "spec-edge": " 0.0.0.0/0 , ::/0,192.0.2.1/32, 2001:db8::1/128, hostname \n"
    "198.51.100.9\nF1.2.3.4\n",
}


def write_proxy_seeds() -> None:
    for target in ("fuzz_proxy_protocol", "fuzz_forwarded"):
        shutil.rmtree(ROOT / target, ignore_errors=True)
        (ROOT / target).mkdir(parents=True)
    for name, header in PROXY_HEADERS.items():
        write("fuzz_proxy_protocol", name, bytes([0x80]) + header + GET.encode())
    for name, payload in PROXY_BUILDERS.items():
        write("fuzz_proxy_protocol", name, payload)
    for name, text in FORWARDED.items():
        write("fuzz_forwarded", name, text.encode("latin-1"))
    for target in ("fuzz_proxy_protocol", "fuzz_forwarded"):
        print(f"{target}: {len(list((ROOT / target).iterdir()))} seeds")


MERGED = re.compile(r"[0-9a-f]{40}")


def clear_named_seeds(target: str) -> None:
    """Removes the named seeds of `target`, keeping inputs merged in from fuzzing runs."""
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        if not MERGED.fullmatch(f.name):
            f.unlink()


def main() -> None:
    for target in ("fuzz_parser", "fuzz_chunked", "fuzz_connection"):
        clear_named_seeds(target)
    for name, req in REQUESTS.items():
        write("fuzz_parser", name, as_bytes(req))
    for name, body in CHUNKED.items():
        for suffix, ctl in CHUNKED_CONTROLS.items():
            write("fuzz_chunked", name + suffix, ctl + as_bytes(body))
    for name, conv in CONVERSATIONS.items():
        for suffix, ctl in CONNECTION_CONTROLS.items():
            if suffix and name not in CONNECTION_VARIANT_CASES and suffix != "-diff":
                continue
            write("fuzz_connection", name + suffix, ctl + as_bytes(conv))
    for name, conv in WS_CONVERSATIONS.items():
        for suffix, ctl in CONNECTION_CONTROLS.items():
            if name in WS_BROKEN and suffix not in ("", "-diff"):
                continue
            write("fuzz_connection", name + suffix, ctl + conv)
        if name in WS_BROKEN:
            continue
        for suffix, ctl in WS_CONTROLS.items():
            if suffix in ("-refused", "-ws-none") and name not in ("ws-echo", "ws-deflate"):
                continue
            write("fuzz_connection", name + suffix, ctl + conv)
    for name, data in REGRESSIONS.items():
        write("fuzz_connection", name, data)
    for target in ("fuzz_parser", "fuzz_chunked", "fuzz_connection"):
        print(f"{target}: {len(list((ROOT / target).iterdir()))} seeds")
    write_proxy_seeds()


if __name__ == "__main__":
    main()
