"""--proxy-protocol with TLS: a TCP balancer that passes TLS through (HAProxy `mode tcp` with
send-proxy-v2, AWS NLB) sends the PROXY header first and the client's TLS handshake after it.
The engine reads the header from the socket, then hands what follows to TLS."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from conftest import Serve
from harness import ServerProcess, request
from proxies import HAPROXY_DEFAULTS, haproxy
from test_proxy_protocol import v2_header
from tlscerts import Certs, client_context, serve_tls

pytestmark = pytest.mark.timeout(60)

GET_SCOPE = request("GET", "/scope", headers=["Connection: close"], host="localhost")
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.9 51000 443\r\n"


def tls_exchange(
    to: tuple[str, int], header: bytes, ctx: ssl.SSLContext, source: str = "127.0.0.1"
) -> bytes:
    """From `source`: the PROXY `header`, then a TLS handshake and GET /scope; the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.bind((source, 0))
        raw.connect(to)
        # MSG_MORE: the header and the ClientHello leave in one segment, as a balancer's would.
        raw.send(header, socket.MSG_MORE)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(GET_SCOPE)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            return answer


def scope_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    result = json.loads(body)
    assert isinstance(result, dict)
    return result


def start(serve: Serve, certs: Certs, *args: str) -> ServerProcess:
    return serve_tls(serve, certs.ecdsa, "--proxy-protocol", *args, app="apps.raw:app")


def test_v1_and_v2_headers_before_the_handshake(serve: Serve, certs: Certs) -> None:
    server = start(serve, certs)
    ctx = client_context(certs)
    scope = scope_of(tls_exchange((server.host, server.port), V1, ctx))
    assert scope["client"] == ["203.0.113.7", 51000]
    assert scope["server"] == ["192.0.2.9", 443]
    assert scope["scheme"] == "https"
    v2 = v2_header("2001:db8::7", "2001:db8::9", 40000, 8443)
    scope = scope_of(tls_exchange((server.host, server.port), v2, ctx))
    assert scope["client"] == ["2001:db8::7", 40000]


def test_without_a_header_or_from_an_untrusted_peer_the_connection_closes(
    serve: Serve, certs: Certs
) -> None:
    server = start(serve, certs, "--forwarded-allow-ips", "127.0.0.2")
    ctx = client_context(certs)
    for header, source in ((b"", "127.0.0.2"), (V1, "127.0.0.3")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_exchange((server.host, server.port), header, ctx, source)
    assert scope_of(tls_exchange((server.host, server.port), V1, ctx, "127.0.0.2"))["client"][
        0
    ] == ("203.0.113.7")


HAPROXY_TCP_PASSTHROUGH = (
    HAPROXY_DEFAULTS
    + """
frontend fe
    mode tcp
    bind {{listen}}
    default_backend be

backend be
    mode tcp
    source 127.0.0.2
    server app {{backend}} send-proxy-v2
"""
)


def test_behind_haproxy_passing_tls_through(serve: Serve, certs: Certs, tmp_path: Path) -> None:
    server = start(serve, certs, "--forwarded-allow-ips", "127.0.0.2")
    ctx = client_context(certs)
    with haproxy(HAPROXY_TCP_PASSTHROUGH, server, tmp_path=tmp_path) as front:
        for source in ("127.0.0.5", "127.0.0.6"):
            scope = scope_of(tls_exchange((front.host, front.port), b"", ctx, source))
            assert scope["client"][0] == source, front.describe()
            assert scope["scheme"] == "https"
