"""No request can ride behind a CONNECT, a 101 or an odd request target past a front end's rules.

The defect: behind HAProxy (mode http, default settings) a client sent
    CONNECT localhost:80 HTTP/1.1 ... then GET /admin/secret HTTP/1.1 ...
on one connection. coachwhip handed CONNECT to the app, the app said 200, HAProxy turned the
client connection into a tunnel (RFC 9110 §9.3.6) and coachwhip went on parsing HTTP on it:
GET /admin/secret reached the app although HAProxy denies /admin. The engine now refuses CONNECT
itself (501, Connection: close) before any app runs and reads nothing after it; an app's 101 to
an Upgrade the engine does not implement becomes a 500 and closes; a target form that does not
fit the method (authority-form without CONNECT, `*` without OPTIONS) is a 400 and closes.

The app here (apps/recorder.py) is the worst case: it answers 200 to anything, CONNECT
included, and 101 to any Upgrade. It appends every request it is handed to a file, so a test
sees exactly which requests reached it; `reached()` first sends a marker request on a fresh
connection and waits for its answer, so whatever was dispatched earlier has been recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import (
    IncompleteResponse,
    MalformedResponse,
    RawConnection,
    RawResponse,
    ServerProcess,
)
from proxies import HAPROXY_DEFAULTS, ProxyProcess, haproxy, nginx

IO_TIMEOUT = 3.0  # every socket read here gives up after this long
PACE_S = 0.05  # pause between the two packets of a split exchange (pacing, not a readiness wait)

GET_ADMIN = b"GET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n"
CONNECT_80 = b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n"

HAPROXY_CFG = (
    HAPROXY_DEFAULTS
    + """
frontend fe
    bind {{listen}}
    option forwardfor
    http-request deny if { path_beg /admin }
    default_backend be

backend be
    server app {{backend}}
"""
)

# The usual nginx reverse proxy with WebSocket support: it forwards Upgrade, so it would tunnel
# after a 101 from the backend.
NGINX_CFG = """\
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      '';
}
server {
    listen {{listen}};
    location /admin {
        return 403;
    }
    location / {
        proxy_pass http://{{backend}};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
    }
}
"""


# --- the recording server and the front ends ------------------------------------------------


class Recorder:
    """The coachwhip server running apps/recorder.py, and what its app has been handed."""

    def __init__(self, server: ServerProcess, record_file: Path) -> None:
        self.server = server
        self.file = record_file
        self._markers = itertools.count()

    def entries(self) -> list[str]:
        """Each request the app was handed, as "METHOD raw_path[?query]"."""
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            return []
        entries = [json.loads(line) for line in text.splitlines() if line]
        return [
            f"{e['method']} {e['raw_path']}"
            + (f"?{e['query_string']}" if e["query_string"] else "")
            for e in entries
        ]

    def mark(self) -> int:
        return len(self.entries())

    def reached(self, since: int) -> list[str]:
        """Requests the app was handed since `since` (a mark()), after a marker round trip."""
        marker = f"/__marker__/{next(self._markers)}"
        with RawConnection(self.server.host, self.server.port, timeout=IO_TIMEOUT) as conn:
            conn.send(f"GET {marker} HTTP/1.1\r\nHost: marker\r\n\r\n".encode())
            assert conn.read_response().status == 200
        entries = self.entries()[since:]
        assert f"GET {marker}" in entries, entries
        return [e for e in entries if "/__marker__/" not in e]


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    record_file = tmp_path_factory.mktemp("recorder") / "requests.jsonl"
    server = ServerProcess("apps.recorder:app", env={"RECORDER_FILE": str(record_file)})
    try:
        server.wait_ready()
        yield Recorder(server, record_file)
    finally:
        server.kill()


@pytest.fixture(scope="module", params=["haproxy", "nginx"])
def front(
    request: pytest.FixtureRequest, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """A real proxy in front of the recorder that denies /admin (HAProxy ACL, nginx location)."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "haproxy":
        start = haproxy(HAPROXY_CFG, recorder.server, tmp_path=tmp)
    else:
        start = nginx(NGINX_CFG, recorder.server, tmp_path=tmp)
    with start as proxy:
        yield proxy


# --- one conversation on one connection -----------------------------------------------------


@dataclass
class Conversation:
    responses: list[RawResponse] = field(default_factory=list)
    closed: bool = False  # the peer closed (or reset) the connection within IO_TIMEOUT
    received: bytes = b""
    garbage: str = ""  # bytes that do not parse as a response

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


def send_quietly(conn: RawConnection, data: bytes) -> None:
    """Send; a peer that already closed (EPIPE, reset) is no error here."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(data)


def converse(
    host: str,
    port: int,
    first: bytes,
    second: bytes = b"",
    *,
    mode: str = "same-packet",
    until_close: bool = True,
) -> Conversation:
    """Send `first` and `second` on one connection and read every response that comes.

    mode "same-packet": one send; "two-packets": two sends PACE_S apart; "after-response":
    `second` only once the response to `first` arrived (what a client expecting a tunnel does).
    Reads until the peer closes, or with `until_close=False` until every request was answered.
    """
    result = Conversation()
    expected = 2 if second else 1
    with RawConnection(host, port, timeout=IO_TIMEOUT) as conn:
        if mode == "same-packet":
            conn.send(first + second)
        elif mode == "two-packets":
            conn.send(first)
            time.sleep(PACE_S)
            send_quietly(conn, second)
        elif mode == "after-response":
            conn.send(first)
        else:
            raise ValueError(mode)
        while until_close or len(result.responses) < expected:
            try:
                result.responses.append(conn.read_response(timeout=IO_TIMEOUT))
            except IncompleteResponse as exc:
                result.closed = True
                if exc.partial:
                    result.garbage = repr(exc.partial[:200])
                break
            except TimeoutError:
                break
            except MalformedResponse as exc:
                result.garbage = str(exc)
                break
            if mode == "after-response" and len(result.responses) == 1 and second:
                send_quietly(conn, second)
        result.received = bytes(conn.received)
    return result


def summary(talk: Conversation, reached: list[str]) -> dict[str, object]:
    first = talk.responses[0] if talk.responses else None
    return {
        "first status": first.status if first else None,
        "first connection header": first.header("connection") if first else None,
        "responses": len(talk.responses),
        "closed": talk.closed,
        "garbage": talk.garbage,
        "reached the app": reached,
    }


def refused(status: int) -> dict[str, object]:
    """The summary of a request refused by the engine: one response, closed, app untouched."""
    return {
        "first status": status,
        "first connection header": "close",
        "responses": 1,
        "closed": True,
        "garbage": "",
        "reached the app": [],
    }


# --- a. CONNECT straight to coachwhip -------------------------------------------------------

CONNECT_EXCHANGES = {
    "same-packet": (CONNECT_80, GET_ADMIN, "same-packet"),
    "two-packets": (CONNECT_80, GET_ADMIN, "two-packets"),
    "after-response": (CONNECT_80, GET_ADMIN, "after-response"),
    "port-443": (
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
        GET_ADMIN,
        "same-packet",
    ),
    "ip-literal": (
        b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
        GET_ADMIN,
        "same-packet",
    ),
    "http-1.0": (b"CONNECT localhost:80 HTTP/1.0\r\n\r\n", GET_ADMIN, "same-packet"),
    "tunnel-bytes-next": (CONNECT_80, b"\x16\x03\x01\x00\x05hello" + GET_ADMIN, "same-packet"),
}

# CONNECT with a malformed or odd target or framing: refused before the app either as malformed
# (400, every 400 check runs first) or as CONNECT (501); the security property is the same.
CONNECT_ODDITIES = {
    "absolute-form": b"CONNECT http://localhost:80/ HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
    "absolute-form-admin": (
        b"CONNECT http://localhost/admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n"
    ),
    "origin-form": b"CONNECT /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "asterisk-form": b"CONNECT * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "no-port": b"CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "host-mismatch": b"CONNECT localhost:80 HTTP/1.1\r\nHost: elsewhere\r\n\r\n",
    "no-host": b"CONNECT localhost:80 HTTP/1.1\r\n\r\n",
    "content-length": (
        b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "chunked": (
        b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
}


def test_control_a_pipelined_request_does_reach_the_recorder(recorder: Recorder) -> None:
    """Without CONNECT in front, both pipelined requests reach the app: the recorder sees them,
    so the negative checks below would see a smuggled request."""
    since = recorder.mark()
    talk = converse(
        recorder.server.host,
        recorder.server.port,
        b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n",
        GET_ADMIN,
        until_close=False,
    )
    assert talk.statuses == [200, 200]
    assert recorder.reached(since) == ["GET /first", "GET /admin/secret"]


@pytest.mark.parametrize("name", list(CONNECT_EXCHANGES))
def test_connect_is_refused_with_501_and_nothing_after_it_is_read(
    recorder: Recorder, name: str
) -> None:
    first, second, mode = CONNECT_EXCHANGES[name]
    since = recorder.mark()
    talk = converse(recorder.server.host, recorder.server.port, first, second, mode=mode)
    assert summary(talk, recorder.reached(since)) == refused(501), talk.received[:600]


@pytest.mark.parametrize("name", list(CONNECT_ODDITIES))
def test_odd_connect_is_refused_before_the_app(recorder: Recorder, name: str) -> None:
    since = recorder.mark()
    talk = converse(recorder.server.host, recorder.server.port, CONNECT_ODDITIES[name], GET_ADMIN)
    status = talk.statuses[0] if talk.statuses else None
    assert status is not None and status in (400, 501), talk.received[:600]
    assert summary(talk, recorder.reached(since)) == refused(status), talk.received[:600]


def test_lowercase_connect_is_another_method_and_its_authority_target_a_400(
    recorder: Recorder,
) -> None:
    """RFC 9110 §9.1: method names are case-sensitive, so `connect` is an unknown method, not
    CONNECT; authority-form is only for CONNECT (RFC 9112 §3.2.3), so its target is a 400."""
    since = recorder.mark()
    talk = converse(
        recorder.server.host,
        recorder.server.port,
        b"connect localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
        GET_ADMIN,
    )
    assert summary(talk, recorder.reached(since)) == refused(400), talk.received[:600]


def test_lowercase_connect_with_an_origin_target_reaches_the_app_as_an_ordinary_method(
    recorder: Recorder,
) -> None:
    """The other half of the case-sensitivity decision: `connect /x` is just some method."""
    since = recorder.mark()
    talk = converse(
        recorder.server.host,
        recorder.server.port,
        b"connect /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        until_close=False,
    )
    assert talk.statuses == [200]
    assert recorder.reached(since) == ["connect /x"]


# --- c. an app's 101 to an Upgrade the engine does not implement ----------------------------


@dataclass(frozen=True)
class UpgradeCase:
    query: str  # tells apps/recorder.py what to send after its 101 head
    status: int  # what the client gets instead of the 101
    logged: bool  # the server logs an error (the app did not handle the refusal itself)


UPGRADE_CASES = {
    "empty-body": UpgradeCase("plain", 500, logged=True),
    "start-only": UpgradeCase("start-only", 500, logged=True),
    "streamed-body": UpgradeCase("stream", 500, logged=True),
    # The app catches the error send() raises for its 101 and answers 200 instead: that 200
    # must close the connection too, or the bytes behind the Upgrade request are read as one.
    "app-falls-back-to-200": UpgradeCase("fallback", 200, logged=False),
}


def upgrade_request(query: str) -> bytes:
    return (
        f"GET /upgrade?{query} HTTP/1.1\r\nHost: localhost\r\n"
        "Upgrade: foo\r\nConnection: upgrade\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("mode", ["same-packet", "two-packets"])
@pytest.mark.parametrize("case", list(UPGRADE_CASES))
def test_an_app_101_is_refused_and_the_connection_closes(
    recorder: Recorder, case: str, mode: str
) -> None:
    upgrade = UPGRADE_CASES[case]
    since = recorder.mark()
    log_mark = recorder.server.mark()
    request = upgrade_request(upgrade.query)
    talk = converse(recorder.server.host, recorder.server.port, request, GET_ADMIN, mode=mode)
    assert b" 101 " not in talk.received, talk.received[:600]
    assert summary(talk, recorder.reached(since)) == {
        **refused(upgrade.status),
        "reached the app": [f"GET /upgrade?{upgrade.query}"],
    }, talk.received[:600]
    if upgrade.logged:
        recorder.server.wait_for_line(r"ERROR", timeout=IO_TIMEOUT, since=log_mark)


# --- d. target forms that do not fit the method ---------------------------------------------

WRONG_TARGET_FORMS = {
    "GET-asterisk": b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "HEAD-asterisk": b"HEAD * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "POST-asterisk": b"POST * HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    "GET-authority": b"GET localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
    "OPTIONS-authority": b"OPTIONS localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
    "POST-authority": (
        b"POST localhost:80 HTTP/1.1\r\nHost: localhost:80\r\nContent-Length: 0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(WRONG_TARGET_FORMS))
def test_a_target_form_that_does_not_fit_the_method_is_a_400_and_closes(
    recorder: Recorder, name: str
) -> None:
    since = recorder.mark()
    talk = converse(recorder.server.host, recorder.server.port, WRONG_TARGET_FORMS[name], GET_ADMIN)
    assert summary(talk, recorder.reached(since)) == refused(400), talk.received[:600]


def test_options_asterisk_is_fine_and_keeps_the_connection(recorder: Recorder) -> None:
    """Control for the 400s above: asterisk-form with OPTIONS reaches the app, and a request
    pipelined behind it is served as usual."""
    since = recorder.mark()
    talk = converse(
        recorder.server.host,
        recorder.server.port,
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n",
        until_close=False,
    )
    assert talk.statuses == [200, 200]
    assert recorder.reached(since) == ["OPTIONS *", "GET /after"]


# --- b. (and c.) through a real front end that denies /admin --------------------------------


def assert_nothing_smuggled(
    front: ProxyProcess,
    talk: Conversation,
    reached: list[str],
    allowed: list[str],
    *,
    upgrade: bool = False,
) -> None:
    context = f"received {talk.received[:800]!r}\n{front.describe()}"
    assert reached == allowed, context
    # A 2xx to CONNECT makes the proxy tunnel, a 101 makes it switch, a 200 for /admin is the
    # breach itself: the client must see none of them. (Only the first answer to an Upgrade
    # request may be a 2xx: the app's fallback.)
    statuses = talk.statuses[1:] if upgrade else talk.statuses
    assert [s for s in statuses if 200 <= s < 300 or s == 101] == [], context
    assert b"recorded GET /admin" not in talk.received, context


def test_control_the_front_end_denies_admin_and_forwards_the_rest(
    recorder: Recorder, front: ProxyProcess
) -> None:
    since = recorder.mark()
    talk = converse(
        front.host,
        front.port,
        b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n",
        GET_ADMIN,
        until_close=False,
    )
    context = f"received {talk.received[:800]!r}\n{front.describe()}"
    assert talk.statuses == [200, 403], context
    assert recorder.reached(since) == ["GET /hello"], context


FRONT_EXCHANGES = {
    **{name: CONNECT_EXCHANGES[name] for name in ("same-packet", "two-packets", "after-response")},
    "port-443": CONNECT_EXCHANGES["port-443"],
    "absolute-form": (CONNECT_ODDITIES["absolute-form"], GET_ADMIN, "same-packet"),
    "lowercase": (
        b"connect localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
        GET_ADMIN,
        "same-packet",
    ),
    "content-length": (CONNECT_ODDITIES["content-length"], GET_ADMIN, "same-packet"),
}


@pytest.mark.parametrize("name", list(FRONT_EXCHANGES))
def test_connect_through_the_front_end_smuggles_nothing(
    recorder: Recorder, front: ProxyProcess, name: str
) -> None:
    first, second, mode = FRONT_EXCHANGES[name]
    since = recorder.mark()
    talk = converse(front.host, front.port, first, second, mode=mode, until_close=False)
    assert_nothing_smuggled(front, talk, recorder.reached(since), allowed=[])


@pytest.mark.parametrize("mode", ["same-packet", "after-response"])
@pytest.mark.parametrize("case", ["empty-body", "app-falls-back-to-200"])
def test_an_app_101_through_the_front_end_smuggles_nothing(
    recorder: Recorder, front: ProxyProcess, case: str, mode: str
) -> None:
    query = UPGRADE_CASES[case].query
    since = recorder.mark()
    talk = converse(
        front.host, front.port, upgrade_request(query), GET_ADMIN, mode=mode, until_close=False
    )
    assert b" 101 " not in talk.received, f"{talk.received[:800]!r}\n{front.describe()}"
    assert_nothing_smuggled(
        front, talk, recorder.reached(since), allowed=[f"GET /upgrade?{query}"], upgrade=True
    )
