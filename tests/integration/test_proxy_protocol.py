"""--proxy-protocol (issue 10 §2): the PROXY header, v1 and v2, as HAProxy's send-proxy and
send-proxy-v2 and the cloud network load balancers send it, in front of the real server.

The decoder itself is unit-tested split at every byte (tests/cpp/test_proxy_protocol.cpp) and
fuzzed (fuzz/fuzz_proxy_protocol.cpp); here: raw sockets and a real HAProxy from Debian.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import Serve
from harness import ServerProcess, request, send_from
from proxies import HAPROXY_DEFAULTS, haproxy

pytestmark = pytest.mark.timeout(60)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    """A PROXY v2 header, command PROXY, TCP over IPv4 or IPv6."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    ports = struct.pack("!HH", sport, dport)
    addresses = socket.inet_pton(family, src) + socket.inet_pton(family, dst) + ports
    fam_byte = 0x21 if family == socket.AF_INET6 else 0x11
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x21, fam_byte]) + struct.pack("!H", len(body)) + body


def exchange(
    server: ServerProcess, data: bytes, source: str = "127.0.0.1", to: tuple[str, int] | None = None
) -> bytes:
    """Sends `data` from `source` on a new connection to the server (or `to`); returns
    everything until the close."""
    return send_from(source, to or (server.host, server.port), data)


def scope_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    result = json.loads(body)
    assert isinstance(result, dict)
    return result


GET_SCOPE = request("GET", "/scope", headers=["Connection: close"])


def test_v1_header_names_client_and_server(serve: Serve) -> None:
    server = serve("apps.raw:app", "--proxy-protocol")
    answer = exchange(server, b"PROXY TCP4 203.0.113.7 192.0.2.9 51000 443\r\n" + GET_SCOPE)
    scope = scope_of(answer)
    assert scope["client"] == ["203.0.113.7", 51000]
    assert scope["server"] == ["192.0.2.9", 443]


def test_v1_ipv6_and_unknown(serve: Serve) -> None:
    server = serve("apps.raw:app", "--proxy-protocol")
    v6 = exchange(server, b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n" + GET_SCOPE)
    assert scope_of(v6)["client"] == ["2001:db8::1", 4000]
    unknown = exchange(server, b"PROXY UNKNOWN\r\n" + GET_SCOPE)
    assert scope_of(unknown)["client"][0] == "127.0.0.1"  # the socket's own peer


def test_v2_header_with_tlvs_and_local(serve: Serve) -> None:
    server = serve("apps.raw:app", "--proxy-protocol")
    aws_tlv = b"\xea" + struct.pack("!H", 9) + b"\x01vpce-123"
    alpn = b"\x01" + struct.pack("!H", 2) + b"h2"
    header = v2_header("198.51.100.4", "10.0.0.1", 6000, 8080, alpn + aws_tlv)
    assert scope_of(exchange(server, header + GET_SCOPE))["client"] == ["198.51.100.4", 6000]
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"  # LOCAL: a health check from the proxy itself
    assert scope_of(exchange(server, local + GET_SCOPE))["client"][0] == "127.0.0.1"


def test_v2_ssl_tlv_makes_the_scheme_https(serve: Serve) -> None:
    server = serve("apps.raw:app", "--proxy-protocol")
    version = b"\x21" + struct.pack("!H", 7) + b"TLSv1.3"
    ssl = b"\x20" + struct.pack("!H", 5 + len(version)) + b"\x01" + b"\x00\x00\x00\x00" + version
    header = v2_header("198.51.100.5", "10.0.0.1", 6001, 443, ssl)
    assert scope_of(exchange(server, header + GET_SCOPE))["scheme"] == "https"


@pytest.mark.parametrize(
    "data",
    [
        GET_SCOPE,  # no header at all
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n" + GET_SCOPE,  # bad port
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 1\r\n" + GET_SCOPE,  # leading zero
        V2_SIGNATURE + b"\x21\x11\xff\xff" + b"x" * 64,  # v2 longer than the bound
        b"\x16\x03\x01\x00\xa5\x01\x00\x00",  # a TLS ClientHello
    ],
    ids=["missing", "v1-bad-port", "v1-leading-zero", "v2-too-long", "tls"],
)
def test_a_connection_without_a_valid_header_is_closed_without_answer(
    serve: Serve, data: bytes
) -> None:
    server = serve("apps.raw:app", "--proxy-protocol")
    assert exchange(server, data) == b""
    assert scope_of(exchange(server, b"PROXY UNKNOWN\r\n" + GET_SCOPE))  # still serving


def test_only_trusted_peers_may_send_a_header(serve: Serve) -> None:
    server = serve("apps.raw:app", "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.2")
    data = b"PROXY TCP4 203.0.113.7 192.0.2.9 51000 443\r\n" + GET_SCOPE
    assert exchange(server, data, source="127.0.0.3") == b""
    assert scope_of(exchange(server, data, source="127.0.0.2"))["client"][0] == "203.0.113.7"


HAPROXY_SEND_PROXY = (
    HAPROXY_DEFAULTS
    + """
frontend fe
    bind {{listen}}
    default_backend be

backend be
    source 127.0.0.2
    server app {{backend}} {{send}}
"""
)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy_send_proxy(serve: Serve, tmp_path: Path, send: str) -> None:
    server = serve("apps.raw:app", "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.2")
    with haproxy(HAPROXY_SEND_PROXY, server, tmp_path=tmp_path, values={"send": send}) as front:
        for source in ("127.0.0.5", "127.0.0.6"):
            scope = scope_of(exchange(server, GET_SCOPE, source, to=(front.host, front.port)))
            assert scope["client"][0] == source, front.describe()
            assert scope["server"] == [front.host, front.port]
