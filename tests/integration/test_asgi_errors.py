"""Disconnects, and apps that break the ASGI rules: the server logs, answers 500 or closes."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from conftest import Serve
from harness import IncompleteResponse, RawConnection, RawResponse, ServerProcess, poll, request


def events(server: ServerProcess, key: str) -> list[Any]:
    data = httpx.get(f"{server.url}/events", params={"id": key}, timeout=5).json()
    assert isinstance(data, list)
    return data


def fetch(server: ServerProcess, target: str) -> tuple[RawResponse | None, bytes]:
    """(the response, or None if the connection closed before a whole one), and the raw bytes."""
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", target))
        try:
            response = conn.read_response()
        except IncompleteResponse:
            return None, bytes(conn.received)
        return response, bytes(conn.received)


def assert_still_serving(server: ServerProcess) -> None:
    assert server.running(), server.output
    assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


# --- disconnects ----------------------------------------------------------------------------------


def test_disconnect_is_delivered_to_a_waiting_receive(raw_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", f"/wait-disconnect?id={key}"))
        poll(lambda: "waiting" in events(raw_server, key), 5, what="the app to wait in receive()")
    poll(lambda: "http.disconnect" in events(raw_server, key), 5, what="http.disconnect")
    assert events(raw_server, key) == ["waiting", "http.disconnect"]


def test_send_after_disconnect_raises_oserror_and_is_not_logged(raw_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    since = raw_server.mark()
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", f"/send-after-disconnect?id={key}"))
        poll(lambda: "waiting" in events(raw_server, key), 5, what="the app to wait in receive()")
    outcome = poll(
        lambda: next((e for e in events(raw_server, key) if isinstance(e, dict)), None),
        5,
        what="send()",
    )
    assert outcome.get("oserror") is True, f"send() after the client left gave {outcome}"
    assert raw_server.no_line_within(r"Traceback|ERROR|Exception in ASGI", 0.5, since), (
        raw_server.output
    )
    assert_still_serving(raw_server)


def test_disconnect_during_streaming_response_stops_the_app(raw_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    since = raw_server.mark()
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", f"/big?mib=512&id={key}"))
        head = conn.read_head()
        assert head.status == 200
    # The app's send() must fail with an OSError once the peer is gone, long before 512 MiB.

    def failed() -> dict[str, Any] | None:
        data = httpx.get(f"{raw_server.url}/progress", params={"id": key}, timeout=5).json()
        return data if "error" in data or data["done"] else None

    outcome = poll(failed, 10, interval=0.02, what="send() to fail after the client left")
    assert outcome.get("oserror") is True, outcome
    assert not outcome["done"]
    assert raw_server.no_line_within(r"Traceback|ERROR", 0.3, since), raw_server.output
    assert_still_serving(raw_server)


# --- exceptions -----------------------------------------------------------------------------------


def test_exception_before_start_is_500_and_logged(raw_server: ServerProcess) -> None:
    since = raw_server.mark()
    response, _ = fetch(raw_server, "/error/before-start")
    assert response is not None, "expected a 500 response, got a closed connection"
    assert response.status == 500
    raw_server.wait_for_line(r"Traceback", 5, since)
    raw_server.wait_for_line(r"RuntimeError: cw-boom-before-start", 5, since)
    assert_still_serving(raw_server)


def test_exception_after_start_closes_the_connection(raw_server: ServerProcess) -> None:
    since = raw_server.mark()
    response, received = fetch(raw_server, "/error/after-start")
    assert response is None, f"a complete response for a failed app: {received[:300]!r}"
    assert received == b"" or received.startswith(b"HTTP/1.1 200 "), received[:100]
    raw_server.wait_for_line(r"RuntimeError: cw-boom-after-start", 5, since)
    assert_still_serving(raw_server)


def test_return_without_response_is_500(raw_server: ServerProcess) -> None:
    since = raw_server.mark()
    response, received = fetch(raw_server, "/error/no-response")
    assert response is not None and response.status == 500, received[:200]
    complaint = r"(?i)without|never|no response|did not|returned"
    poll(
        lambda: raw_server.find_line(complaint, since, skip_access=True),
        5,
        what="a log line about it",
    )
    assert_still_serving(raw_server)


# --- send() contract violations -------------------------------------------------------------------

VIOLATIONS = {
    # endpoint: a pattern the server's complaint (exception message or log line) must match
    "/error/start-twice": r"http\.response\.start|twice|already",
    "/error/str-body": r"(?i)bytes|str",
    "/error/header-value?c=cr": r"(?i)header|value|x-evil|invalid|CR|LF",
    "/error/header-value?c=lf": r"(?i)header|value|x-evil|invalid|CR|LF",
    "/error/header-value?c=crlf": r"(?i)header|value|x-evil|invalid|CR|LF",
    "/error/header-value?c=nul": r"(?i)header|value|x-evil|invalid|NUL|\\x00",
    "/error/unknown-type": r"http\.bogus",
    "/error/header-shape?k=str-name": r"must be bytes, got \(str, bytes\)",
    "/error/header-shape?k=int-value": r"must be bytes, got \(bytes, int\)",
    "/error/header-shape?k=triple": r"pair of 2 items",
    "/error/header-shape?k=not-pair": r"must be a \[name, value\] pair",
    "/error/header-shape?k=not-iterable": r"'headers' must be an iterable",
}


@pytest.mark.parametrize(("target", "complaint"), list(VIOLATIONS.items()), ids=list(VIOLATIONS))
def test_spec_violation_is_logged_and_answered_safely(
    raw_server: ServerProcess, target: str, complaint: str
) -> None:
    key = uuid.uuid4().hex
    since = raw_server.mark()
    separator = "&" if "?" in target else "?"
    response, received = fetch(raw_server, f"{target}{separator}id={key}")
    if response is not None:
        assert response.status == 500, (
            f"a broken response was not replaced by a 500: {received[:300]!r}"
        )
    assert b"x-injected" not in received.lower(), "header injection reached the wire"
    raised = [e for e in events(raw_server, key) if isinstance(e, dict)]
    if raised:  # send() raised: the message names the problem and the server logs it
        message = raised[0]["msg"]
        assert re.search(complaint, message), (
            f"send() raised {raised[0]} which does not name the problem"
        )
        raw_server.wait_for_line(re.escape(message.splitlines()[0]), 5, since)
    else:  # the server dealt with it itself: it must say so
        poll(
            lambda: raw_server.find_line(complaint, since, skip_access=True),
            5,
            what=f"a log line matching {complaint!r}",
        )
    assert_still_serving(raw_server)


def test_headers_changed_after_start_do_not_change_the_response(
    raw_server: ServerProcess,
) -> None:
    # The server keeps the header bytes given with http.response.start (bytes are immutable),
    # not the app's list, which the app may reuse or change before the body is sent.
    response = httpx.get(raw_server.url + "/headers-mutated")
    assert response.text == "as sent"
    assert response.headers["x-first"] == "1"
    assert "x-late" not in response.headers


MIXED_CASE_NOTE = (
    "response header names are not all lowercase as ASGI asks (got 'X-Upper', Django sends "
    "them so); sent as given, since HTTP field names are case-insensitive (said once)"
)


def test_mixed_case_response_header_is_sent_and_noted_at_debug(serve: Serve) -> None:
    """README decision: Django sends 'Content-Type' on purpose; names go out as given. Legal
    HTTP: a note at DEBUG, once per process, never a WARNING (issue 11: noise)."""
    server = serve("apps.raw:app", "--log-level", "debug")
    since = server.mark()
    response, received = fetch(server, "/error/upper-header?id=upper")
    assert response is not None and response.status == 200, received[:300]
    assert b"\r\nX-Upper: 1\r\n" in received
    assert response.body == b"upper"
    line = server.wait_for_line(re.escape(MIXED_CASE_NOTE), 5, since).string
    assert line == f"DEBUG:    {MIXED_CASE_NOTE}"
    assert_still_serving(server)


def test_mixed_case_response_header_says_nothing_at_info(serve: Serve) -> None:
    server = serve("apps.raw:app")
    since = server.mark()
    response, received = fetch(server, "/error/upper-header?id=upper")
    assert response is not None and response.status == 200, received[:300]
    server.wait_for_line(r'"GET /error/upper-header\?id=upper HTTP/1\.1" 200', 5, since)
    assert not server.find_line("lowercase", since), server.output
    assert not server.find_line("WARNING", since), server.output


def test_body_after_final_body_never_reaches_the_wire(raw_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    since = raw_server.mark()
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", f"/error/body-after-final?id={key}"))
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"done")
        conn.send(request("GET", "/ok"))
        try:
            following = conn.read_response()
        except IncompleteResponse:
            following = None  # closing the connection is fine too
        if following is not None:
            assert (following.status, following.body) == (200, b"ok")
    assert b"SMUGGLED" not in conn.received
    raised = [e for e in events(raw_server, key) if isinstance(e, dict)]
    if raised:
        raw_server.wait_for_line(re.escape(raised[0]["msg"].splitlines()[0]), 5, since)
    assert_still_serving(raw_server)


@pytest.mark.parametrize("target", ["/error/body-too-long", "/error/body-too-short"])
def test_body_not_matching_content_length_never_desyncs(
    raw_server: ServerProcess, target: str
) -> None:
    """The response may be a 500 or cut short, but the next response must not be corrupted."""
    key = uuid.uuid4().hex
    with RawConnection(raw_server.host, raw_server.port) as conn:
        conn.send(request("GET", f"{target}?id={key}") + request("GET", "/ok"))
        try:
            first = conn.read_response()
        except IncompleteResponse:
            first = None
        if first is not None:
            assert first.status == 500 or first.body == b"abcd", first.raw[:300]
            try:
                following = conn.read_response()
            except IncompleteResponse as exc:
                assert exc.partial == b"", "a partial second response"
            else:
                assert (following.status, following.body) == (200, b"ok"), following.raw[:300]
    assert b"EXTRA" not in conn.received
    assert not (first is not None and first.status == 200 and target.endswith("short"))
    assert_still_serving(raw_server)


def test_server_survives_a_burst_of_failing_requests(raw_server: ServerProcess) -> None:
    for _ in range(20):
        response, _ = fetch(raw_server, "/error/before-start")
        assert response is not None and response.status == 500
    assert_still_serving(raw_server)
