"""Proxy headers (issue 10 §1): X-Forwarded-For/-Proto and Forwarded, uvicorn-compatible flags,
resolved in the engine and seen in scope["client"], scope["scheme"] and the access log.

The rules themselves (the walk from the right, Forwarded's grammar, malformed values) are
unit-tested in tests/cpp/test_forwarded.cpp; here the real server is driven over real sockets,
directly and behind a real nginx and HAProxy. Loopback has many addresses: clients, proxies and
the server use different ones (127.0.0.2, 127.0.0.3, ...) so that trust can be told apart.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, request, send_from
from proxies import HAPROXY_DEFAULTS, haproxy, nginx

pytestmark = pytest.mark.timeout(60)


def scope_from(
    server: ServerProcess,
    headers: list[str],
    source: str = "127.0.0.1",
    host: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    """GET /scope from the source address `source` with extra header lines; the app's view."""
    get = request("GET", "/scope", headers=[*headers, "Connection: close"])
    data = send_from(source, (host or server.host, port or server.port), get)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head[:80]
    result = json.loads(body)
    assert isinstance(result, dict)
    return result


def client_and_scheme(scope: dict[str, Any]) -> tuple[Any, str]:
    return scope["client"], scope["scheme"]


def test_trusted_peer_sets_client_and_scheme_and_the_access_log(serve: Serve) -> None:
    server = serve("apps.raw:app")
    since = server.mark()
    scope = scope_from(server, ["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"])
    assert client_and_scheme(scope) == (["203.0.113.7", 0], "https")
    server.wait_for_line(r'^INFO: +203\.0\.113\.7:0 - "GET /scope HTTP/1\.1" 200', 5, since)


def test_untrusted_peer_headers_are_ignored_entirely(serve: Serve) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", "127.0.0.2")
    spoof = ["X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https", "Forwarded: for=5.6.7.8"]
    client, scheme = client_and_scheme(scope_from(server, spoof, source="127.0.0.3"))
    assert client[0] == "127.0.0.3" and scheme == "http"
    client, scheme = client_and_scheme(scope_from(server, spoof, source="127.0.0.2"))
    assert client == ["1.2.3.4", 0] and scheme == "https"


def test_no_proxy_headers_turns_it_off(serve: Serve) -> None:
    server = serve("apps.raw:app", "--no-proxy-headers")
    scope = scope_from(server, ["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"])
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


def test_walk_from_the_right_over_trusted_proxies(serve: Serve) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8, fd00::/8")
    cases = {
        "198.51.100.1, 10.1.2.3": ["198.51.100.1", 0],
        "198.51.100.1, 203.0.113.9, 10.1.2.3, fd00::1": ["203.0.113.9", 0],
        "10.0.0.1, 10.0.0.2": ["10.0.0.1", 0],  # all trusted: the leftmost
        "[2001:db8::7]:4711, 10.9.9.9": ["2001:db8::7", 4711],
    }
    for header, expected in cases.items():
        assert scope_from(server, [f"X-Forwarded-For: {header}"])["client"] == expected, header
    two_lines = ["X-Forwarded-For: 198.51.100.2", "X-Forwarded-For: 10.0.0.5"]
    assert scope_from(server, two_lines)["client"] == ["198.51.100.2", 0]


def test_forwarded_header_rfc7239(serve: Serve) -> None:
    server = serve("apps.raw:app")
    cases: dict[str, tuple[Any, str]] = {
        'for="[2001:db8:cafe::17]:4711";proto=https': (["2001:db8:cafe::17", 4711], "https"),
        "for=192.0.2.60;proto=http;by=203.0.113.43": (["192.0.2.60", 0], "http"),
        "For=192.0.2.43, for=198.51.100.17": (["198.51.100.17", 0], "http"),
        # a proxy said: client not known (but how it was reached, it knows)
        "for=unknown;proto=https": (None, "https"),
        "for=_hidden": (None, "http"),  # obfuscated: not an address, never the proxy's
        'for="_gazonk"': (None, "http"),
    }
    for header, expected in cases.items():
        got = client_and_scheme(scope_from(server, [f"Forwarded: {header}"]))
        assert got == expected, header


def test_x_forwarded_for_wins_over_forwarded(serve: Serve) -> None:
    server = serve("apps.raw:app")
    both = ["Forwarded: for=192.0.2.1;proto=https", "X-Forwarded-For: 198.51.100.9"]
    assert client_and_scheme(scope_from(server, both)) == (["198.51.100.9", 0], "http")


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-For: not-an-address",
        "X-Forwarded-For: 300.1.1.1",
        "X-Forwarded-For: 1.2.3.4\x01",
        "X-Forwarded-For: " + ", ".join(["10.0.0.1"] * 200),
        'Forwarded: for="[::1',
        "Forwarded: for=1.2.3.4;for=5.6.7.8",
        "Forwarded: proto=https;;;",
        "X-Forwarded-Proto: javascript",
        "X-Forwarded-For: " + "a" * 6000,
    ],
    ids=lambda h: h[:40],
)
def test_malformed_values_never_crash_or_make_a_bad_scope(serve: Serve, header: str) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", "*")
    try:
        scope = scope_from(server, [header])
    except AssertionError:  # the engine may refuse the request itself (a CTL in a value)
        return
    client, scheme = client_and_scheme(scope)
    assert client is None or (isinstance(client[0], str) and isinstance(client[1], int))
    assert scheme in ("http", "https")
    if client is not None:
        socket.inet_pton(socket.AF_INET6 if ":" in client[0] else socket.AF_INET, client[0])
    assert httpx.get(server.url + "/ok").status_code == 200  # and the server is fine


def test_ipv6_listener_and_peer(serve: Serve) -> None:
    server = serve("apps.raw:app", "--host", "::1", "--forwarded-allow-ips", "::1", ready=None)
    port = int(server.wait_for_line(r"Listening on http://\[::1\]:(\d+)", 15).group(1))
    scope = scope_from(
        server, ["X-Forwarded-For: 2001:db8::5"], source="::1", host="::1", port=port
    )
    assert scope["client"] == ["2001:db8::5", 0]


@pytest.mark.parametrize("allow", ["unix:", "127.0.0.1"])
def test_unix_socket_peer_is_trusted_only_with_unix_literal(
    serve: Serve, tmp_path: Path, allow: str
) -> None:
    path = tmp_path / "cw.sock"
    server = serve(
        "apps.raw:app", "--uds", str(path), "--forwarded-allow-ips", allow, port=None, ready=None
    )
    server.wait_for_line(r"Listening on", 15)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(
            request("GET", "/scope", headers=["X-Forwarded-For: 203.0.113.5", "Connection: close"])
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    client = json.loads(data.partition(b"\r\n\r\n")[2])["client"]
    assert client == (["203.0.113.5", 0] if allow == "unix:" else None)


def test_environment_variables(serve: Serve) -> None:
    server = serve("apps.raw:app", env={"FORWARDED_ALLOW_IPS": "127.0.0.2"})
    assert scope_from(server, ["X-Forwarded-For: 1.1.1.1"])["client"][0] == "127.0.0.1"
    server = serve(
        "apps.raw:app",
        env={"FORWARDED_ALLOW_IPS": "127.0.0.2", "COACHWHIP_FORWARDED_ALLOW_IPS": "127.0.0.1"},
    )
    assert scope_from(server, ["X-Forwarded-For: 1.1.1.1"])["client"] == ["1.1.1.1", 0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or CIDR"),
        ("010.0.0.1", "'010.0.0.1'"),
        ("[::1]", "'[::1]'"),
    ],
)
def test_bad_allow_list_is_a_usage_error(serve: Serve, value: str, message: str) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", value, ready=None)
    assert server.wait_exit(10) == 2
    assert any("--forwarded-allow-ips" in line and message in line for line in server.lines), (
        server.lines[-3:]
    )


# --- real proxies in front -----------------------------------------------------------------------

NGINX_FORWARDING = """\
server {
    listen {{listen}};
    location / {
        proxy_pass http://{{backend}};
        proxy_bind 127.0.0.2;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
    }
}
"""


def test_behind_nginx_the_real_client_is_seen_and_spoofing_fails(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", "127.0.0.2")
    with nginx(NGINX_FORWARDING, server, tmp_path=tmp_path) as front:
        honest = scope_from(server, [], source="127.0.0.3", host=front.host, port=front.port)
        assert client_and_scheme(honest) == (["127.0.0.3", 0], "https")
        # A client's own X-Forwarded-For is kept by nginx ($proxy_add_x_forwarded_for), but it
        # sits left of the address nginx appends, behind an untrusted hop: never believed.
        spoof = scope_from(
            server,
            ["X-Forwarded-For: 6.6.6.6", "Forwarded: for=7.7.7.7"],
            source="127.0.0.4",
            host=front.host,
            port=front.port,
        )
        assert spoof["client"] == ["127.0.0.4", 0], front.describe()


HAPROXY_FORWARDING = (
    HAPROXY_DEFAULTS
    + """
frontend fe
    bind {{listen}}
    default_backend be

backend be
    {{option}}
    source 127.0.0.2
    server app {{backend}}
"""
)


@pytest.mark.parametrize(
    "option",
    [
        "option forwardfor",
        # HAProxy 2.6 has no "option forwarded" (2.7+): the header is set by hand
        "http-request set-header Forwarded for=%[src]",
    ],
)
def test_behind_haproxy_with_forwardfor_and_forwarded(
    serve: Serve, tmp_path: Path, option: str
) -> None:
    server = serve("apps.raw:app", "--forwarded-allow-ips", "127.0.0.2")
    with haproxy(HAPROXY_FORWARDING, server, tmp_path=tmp_path, values={"option": option}) as front:
        scope = scope_from(server, [], source="127.0.0.5", host=front.host, port=front.port)
        assert scope["client"][0] == "127.0.0.5", front.describe()
        headers = dict((k.lower(), v) for k, v in scope["headers"])
        assert ("forwarded" in headers) == ("forwarded" in option.lower())


def test_raw_connection_still_works_without_any_header(serve: Serve) -> None:
    server = serve("apps.raw:app")
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/scope"))
        scope = json.loads(conn.read_response().body)
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


@pytest.mark.parametrize("variable", ["FORWARDED_ALLOW_IPS", "COACHWHIP_FORWARDED_ALLOW_IPS"])
def test_bad_allow_list_in_a_variable_names_the_variable(serve: Serve, variable: str) -> None:
    server = serve("apps.raw:app", env={variable: "10.0.0.1/8"}, ready=None)
    assert server.wait_exit(10) == 2
    assert any(f"{variable}='10.0.0.1/8'" in line for line in server.lines), server.lines[-3:]
