"""The ASGI HTTP scope the app receives (SPECS 1.1), key by key."""

from __future__ import annotations

import json
from typing import Any

import httpx
from conftest import Serve
from harness import RawConnection, ServerProcess, request

REQUIRED_KEYS = {
    "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
    "root_path", "headers", "client", "server", "state",
}  # fmt: skip


def scope_of(server: ServerProcess, raw: bytes) -> tuple[dict[str, Any], int]:
    """The scope /scope reported for `raw`, and the client's local port."""
    with RawConnection(server.host, server.port) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert response.status == 200, response.body
        data = json.loads(response.body)
        assert isinstance(data, dict)
        return data, conn.local_port


def test_scope_has_every_key(raw_server: ServerProcess) -> None:
    scope, _ = scope_of(raw_server, request("GET", "/scope"))
    assert REQUIRED_KEYS <= set(scope["keys"]), f"missing {REQUIRED_KEYS - set(scope['keys'])}"
    assert scope["type"] == "http"
    assert scope["scheme"] == "http"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["root_path"] == ""
    assert scope["state_type"] == "dict"


def test_asgi_versions(raw_server: ServerProcess) -> None:
    scope, _ = scope_of(raw_server, request("GET", "/scope"))
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}


def test_method_and_http_version(raw_server: ServerProcess) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CUSTOMVERB"):
        scope, _ = scope_of(raw_server, request(method, "/scope", body=b"x"))
        assert scope["method"] == method
    scope, _ = scope_of(raw_server, b"GET /scope HTTP/1.0\r\n\r\n")
    assert scope["http_version"] == "1.0"


def test_path_is_percent_decoded_utf8_and_raw_path_is_not(raw_server: ServerProcess) -> None:
    target = "/scope/caf%C3%A9/%E2%9C%93%20x/a%2Fb"
    scope, _ = scope_of(raw_server, request("GET", target + "?q=a%20b&q=%E2%9C%93&flag"))
    assert scope["path"] == "/scope/café/✓ x/a/b"
    assert scope["raw_path"] == target
    assert scope["query_string"] == "q=a%20b&q=%E2%9C%93&flag"


def test_empty_query_string_is_empty_bytes(raw_server: ServerProcess) -> None:
    scope, _ = scope_of(raw_server, request("GET", "/scope/plain"))
    assert scope["query_string"] == ""
    assert scope["raw_path"] == "/scope/plain"
    scope, _ = scope_of(raw_server, request("GET", "/scope/q?"))
    assert scope["query_string"] == ""
    assert scope["raw_path"] == "/scope/q"


def test_headers_lowercased_in_order_with_duplicates(raw_server: ServerProcess) -> None:
    raw = (
        b"GET /scope HTTP/1.1\r\nHost: example.test:8080\r\nX-Dup: 1\r\n"
        b"X-Other: Mixed Case Value\r\n"
        b"x-dup: 2\r\nCookie: a=1\r\nCookie: b=2\r\nX-Latin: caf\xe9\r\n\r\n"
    )
    scope, _ = scope_of(raw_server, raw)
    assert scope["headers"] == [
        ["host", "example.test:8080"],
        ["x-dup", "1"],
        ["x-other", "Mixed Case Value"],
        ["x-dup", "2"],
        ["cookie", "a=1"],
        ["cookie", "b=2"],
        ["x-latin", "caf\xe9"],
    ]


def test_header_value_whitespace_is_trimmed(raw_server: ServerProcess) -> None:
    scope, _ = scope_of(
        raw_server, b"GET /scope HTTP/1.1\r\nHost: h\r\nX-Pad: \t padded value \t\r\n\r\n"
    )
    assert ["x-pad", "padded value"] in scope["headers"]


def test_client_and_server_addresses(raw_server: ServerProcess) -> None:
    scope, local_port = scope_of(raw_server, request("GET", "/scope"))
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", raw_server.port]


def test_root_path_flag(serve: Serve) -> None:
    server = serve("apps.raw:app", "--root-path", "/mounted")
    scope, _ = scope_of(server, request("GET", "/scope/x"))
    assert scope["root_path"] == "/mounted"
    assert scope["path"] in ("/scope/x", "/mounted/scope/x")


def test_state_is_a_shallow_copy_per_request(raw_server: ServerProcess) -> None:
    with httpx.Client(base_url=raw_server.url, timeout=5) as client:
        before = client.get("/state").json()
        assert before["keys"] == ["shared", "started"], before
        assert before["started"] == "yes-raw"
        mutated = client.get("/state/mutate").json()
        assert "leak" in mutated["keys"]
        after = client.get("/state").json()
    assert after["keys"] == ["shared", "started"], (
        "a key set in one request's state leaked into the next"
    )
    assert after["shared"] == before["shared"] + 1, (
        "the copy must be shallow: shared objects are shared"
    )


def test_lifespan_scope(raw_server: ServerProcess) -> None:
    data = httpx.get(raw_server.url + "/lifespan-scope", timeout=5).json()
    assert data["type"] == "lifespan"
    assert data["asgi"]["version"] == "3.0"
    assert data["state_type"] == "dict"


def test_body_arrives_in_several_chunks_with_more_body(raw_server: ServerProcess) -> None:
    size = 1024 * 1024
    response = httpx.post(raw_server.url + "/chunks", content=b"b" * size, timeout=10)
    messages = response.json()
    assert sum(length for length, _ in messages) == size
    assert len(messages) >= 4, f"1 MiB arrived in only {len(messages)} http.request events"
    assert [more for _, more in messages[:-1]] == [True] * (len(messages) - 1)
    assert messages[-1][1] is False


def test_request_without_body_is_one_empty_event(raw_server: ServerProcess) -> None:
    assert httpx.get(raw_server.url + "/chunks", timeout=5).json() == [[0, False]]


def test_chunked_request_body_events(raw_server: ServerProcess) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b"c" * 10_000

    messages = httpx.post(raw_server.url + "/chunks", content=chunks(), timeout=10).json()
    assert sum(length for length, _ in messages) == 200_000
    assert messages[-1][1] is False
