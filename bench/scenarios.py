"""The scenarios: which app each serves, the request wrk (or tlsload, wsload, h2load) sends, and
how one answer is checked. The `wsgi-*` scenarios serve WSGI twins of the ASGI apps
(apps/wsgi_*.py) to the WSGI servers; the `h2*` ones the plain apps over HTTP/2."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass


def _is_hello(body: bytes) -> bool:
    return body == b"Hello, world!"


def _is_json_1k(body: bytes) -> bool:
    return len(body) == 1024 and isinstance(json.loads(body), dict)


def _is_16k(body: bytes) -> bool:
    return body == b"16384"


def _is_1mib(body: bytes) -> bool:
    return len(body) == 1024 * 1024


def _is_item(body: bytes) -> bool:
    return json.loads(body).get("item_id") == 42


WSGI_FILE_SIZE = 10 * 1024 * 1024  # apps/wsgi_file.py's file: the bytes 0..255 repeated


def _is_file_10mib(body: bytes) -> bool:
    return body == bytes(range(256)) * (WSGI_FILE_SIZE // 256)


@dataclass(frozen=True)
class Scenario:
    """One scenario. `app` is MODULE:ATTRIBUTE relative to bench/; `lua` names a request script
    under bench/lua/ (None: plain GET); `close` sends `Connection: close` (one TCP connection
    per request). `check` validates the body of one request sent before the warm-up.

    `tls`: served over TLS (every server gets the same certificate; see tls.py). `client` is the
    load generator: "wrk", or "tlsload" (bench/tlsload/: a new connection, TLS handshake and
    GET per request), which with `resume` offers each connection the previous one's session.

    WebSocket scenarios have `client` "wsload" (bench/wsload/) and `ws` its mode: "echo" (round
    trips of a `ws_size`-byte text message), "large" (of a `ws_size`-byte binary message) or
    "idle" (connections opened and held while the server's memory is read; `deflate` offers
    permessage-deflate). `concurrency` replaces --concurrency's default for the scenario.

    `wsgi`: the app is a WSGI callable; only servers that serve WSGI take part (see
    servers.ServerSpec), and coachwhip gets its WSGI flags (`--interface wsgi --threads N`).

    `h2`: served over HTTP/2, h2c with prior knowledge on a plain port or h2 chosen by ALPN with
    `tls`; only servers that speak it take part (servers.ServerSpec.h2). "load": `client` is
    h2load, with `streams` concurrent streams per connection (`h2load -m`); "idle":
    connections opened (preface, SETTINGS exchanged, one GET each) and held while the server's
    memory is read (h2setup.open_idle)."""

    key: str
    title: str
    short: str  # chart label
    app: str
    path: str
    check: Callable[[bytes], bool]
    method: str = "GET"
    body_size: int = 0
    lua: str | None = None
    close: bool = False
    # Flags added for this scenario only, by server name prefix ("coachwhip" also matches
    # "coachwhip-w2"), e.g. to turn on what the scenario measures.
    server_args: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tls: bool = False
    client: str = "wrk"
    resume: bool = False
    ws: str = ""
    ws_size: int = 0
    deflate: bool = False
    concurrency: tuple[int, ...] = ()
    wsgi: bool = False
    h2: str = ""
    streams: int = 1

    @property
    def holds_idle(self) -> bool:
        """Connections held open while memory is read, not a load run (idle-ws*, idle-h2c)."""
        return self.ws == "idle" or self.h2 == "idle"

    def args_for(self, server: str) -> tuple[str, ...]:
        return tuple(
            a for prefix, args in self.server_args if server.startswith(prefix) for a in args
        )


def _h2(
    proto: str,
    key: str,
    title: str,
    short: str,
    app: str,
    check: Callable[[bytes], bool],
    streams: int,
    body_size: int = 0,
) -> Scenario:
    """An HTTP/2 load scenario (h2load) at 64 connections: `proto` "h2c" (prior knowledge on a
    plain port) or "h2" (ALPN, over TLS)."""
    over = "h2c" if proto == "h2c" else "h2 over TLS"
    return Scenario(
        f"{proto}-{key}",
        f"{over}: {title}",
        f"{proto} {short}",
        app,
        "/",
        check,
        method="POST" if body_size else "GET",
        body_size=body_size,
        tls=proto == "h2",
        client="h2load",
        h2="load",
        streams=streams,
        concurrency=(64,),
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hello", "GET, 13-byte text", "1. hello, 13 B", "apps.hello:app", "/", _is_hello),
    Scenario("json", "GET, 1 KiB JSON", "2. JSON, 1 KiB", "apps.json1k:app", "/", _is_json_1k),
    Scenario(
        "upload",
        "POST 16 KiB, read whole",
        "3. POST 16 KiB",
        "apps.upload:app",
        "/",
        _is_16k,
        method="POST",
        body_size=16384,
        lua="post_16k.lua",
    ),
    Scenario(
        "stream",
        "GET, 1 MiB streamed in 64 KiB chunks",
        "4. stream 1 MiB",
        "apps.stream:app",
        "/",
        _is_1mib,
    ),
    Scenario(
        "fastapi",
        "FastAPI /items/{item_id}",
        "5. FastAPI /items/{id}",
        "apps.fastapi_items:app",
        "/items/42",
        _is_item,
    ),
    Scenario(
        "close",
        "GET, new connection per request",
        "6. connection per request",
        "apps.hello:app",
        "/",
        _is_hello,
        close=True,
    ),
    # Scenario 1 as it runs behind a load balancer: every request carries X-Forwarded-For and
    # X-Forwarded-Proto from a trusted peer, and coachwhip counts into /-/metrics. uvicorn
    # applies the same proxy headers (its default --proxy-headers, same trust); granian and
    # hypercorn pass the headers through unread.
    Scenario(
        "proxied",
        "GET, 13-byte text, proxy headers resolved, metrics on",
        "7. hello behind a proxy",
        "apps.hello:app",
        "/",
        _is_hello,
        lua="proxied.lua",
        server_args=(
            ("coachwhip", ("--metrics", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")),
            ("uvicorn", ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")),
        ),
    ),
    # Over TLS (TLS 1.3 is what every server and client here negotiates; an ECDSA P-256
    # certificate made at bench time). nginx joins these, answering by itself: the limit.
    Scenario(
        "tls-hello",
        "GET, 13-byte text over TLS, keep-alive",
        "8. hello over TLS",
        "apps.hello:app",
        "/",
        _is_hello,
        tls=True,
    ),
    Scenario(
        "tls-handshake",
        "GET over TLS, new connection and full handshake per request",
        "9. TLS full handshake",
        "apps.hello:app",
        "/",
        _is_hello,
        close=True,
        tls=True,
        client="tlsload",
    ),
    Scenario(
        "tls-resume",
        "GET over TLS, new connection per request, session resumed",
        "10. TLS resumed",
        "apps.hello:app",
        "/",
        _is_hello,
        close=True,
        tls=True,
        client="tlsload",
        resume=True,
    ),
    # WebSocket (bench/wsload). Every message of the echo is checked byte for byte by wsload.
    Scenario(
        "ws-echo",
        "WebSocket echo, 32-byte text messages",
        "11. WS echo, 32 B",
        "apps.ws_echo:app",
        "/",
        _is_hello,
        client="wsload",
        ws="echo",
        ws_size=32,
        concurrency=(1, 64),
    ),
    Scenario(
        "ws-large",
        "WebSocket echo, 1 MiB binary messages",
        "12. WS echo, 1 MiB",
        "apps.ws_echo:app",
        "/",
        _is_hello,
        client="wsload",
        ws="large",
        ws_size=1024 * 1024,
        concurrency=(1, 4),
    ),
    Scenario(
        "idle-ws",
        "idle WebSockets (one echo each, no extension offered)",
        "13. idle WS",
        "apps.ws_echo:app",
        "/",
        _is_hello,
        client="wsload",
        ws="idle",
        ws_size=32,
    ),
    Scenario(
        "idle-ws-deflate",
        "idle WebSockets (one echo each, permessage-deflate offered)",
        "14. idle WS, deflate",
        "apps.ws_echo:app",
        "/",
        _is_hello,
        client="wsload",
        ws="idle",
        ws_size=32,
        deflate=True,
    ),
    # WSGI (issue 15): the same requests as 1, 2, 3 and 5 to WSGI twins of their apps, and a
    # file sent through wsgi.file_wrapper. Servers: coachwhip --interface wsgi --threads N and
    # the WSGI peers (servers.WSGI_SERVERS), one worker each.
    Scenario(
        "wsgi-hello",
        "WSGI: GET, 13-byte text",
        "15. WSGI hello, 13 B",
        "apps.wsgi_hello:app",
        "/",
        _is_hello,
        wsgi=True,
    ),
    Scenario(
        "wsgi-json",
        "WSGI: GET, 1 KiB JSON",
        "16. WSGI JSON, 1 KiB",
        "apps.wsgi_json1k:app",
        "/",
        _is_json_1k,
        wsgi=True,
    ),
    Scenario(
        "wsgi-upload",
        "WSGI: POST 16 KiB, read whole",
        "17. WSGI POST 16 KiB",
        "apps.wsgi_upload:app",
        "/",
        _is_16k,
        method="POST",
        body_size=16384,
        lua="post_16k.lua",
        wsgi=True,
    ),
    Scenario(
        "wsgi-flask",
        "WSGI: Flask /items/<int:item_id>",
        "18. Flask /items/<id>",
        "apps.wsgi_flask:app",
        "/items/42",
        _is_item,
        wsgi=True,
    ),
    Scenario(
        "wsgi-file",
        "WSGI: GET, 10 MiB file through wsgi.file_wrapper",
        "19. WSGI file, 10 MiB",
        "apps.wsgi_file:app",
        "/",
        _is_file_10mib,
        wsgi=True,
        # 256 connections would hold 2.5 GiB in flight: a response would take seconds, the
        # slower servers near wrk's 10 s timeout (as ws-large keeps to 1 and 4 for 1 MiB).
        concurrency=(1, 64),
    ),
    # HTTP/2 (h2load): the apps of 1, 4 and 3, as h2c with prior knowledge and as h2
    # chosen by ALPN over TLS. Servers: coachwhip (`--http auto`, its default), granian `--http
    # 2`, hypercorn, and nginx answering by itself in the hello ones (the limit); uvicorn has no
    # HTTP/2. The multiplexed hello is 64 connections x 10 concurrent streams; the 1 MiB
    # download keeps one stream per connection (64 responses in flight, as scenario 4 at 64).
    _h2(
        "h2c",
        "hello",
        "GET, 13-byte text, 10 streams per connection",
        "hello x10",
        "apps.hello:app",
        _is_hello,
        streams=10,
    ),
    _h2(
        "h2c",
        "download-1mib",
        "GET, 1 MiB streamed, 1 stream per connection",
        "1 MiB",
        "apps.stream:app",
        _is_1mib,
        streams=1,
    ),
    _h2(
        "h2c",
        "upload-16k",
        "POST 16 KiB, read whole, 10 streams per connection",
        "POST 16 KiB x10",
        "apps.upload:app",
        _is_16k,
        streams=10,
        body_size=16384,
    ),
    _h2(
        "h2",
        "hello",
        "GET, 13-byte text, 10 streams per connection",
        "hello x10",
        "apps.hello:app",
        _is_hello,
        streams=10,
    ),
    _h2(
        "h2",
        "download-1mib",
        "GET, 1 MiB streamed, 1 stream per connection",
        "1 MiB",
        "apps.stream:app",
        _is_1mib,
        streams=1,
    ),
    _h2(
        "h2",
        "upload-16k",
        "POST 16 KiB, read whole, 10 streams per connection",
        "POST 16 KiB x10",
        "apps.upload:app",
        _is_16k,
        streams=10,
        body_size=16384,
    ),
    Scenario(
        "idle-h2c",
        "idle HTTP/2 connections (h2c, SETTINGS exchanged, one GET each)",
        "idle h2c",
        "apps.hello:app",
        "/",
        _is_hello,
        h2="idle",
    ),
)

BY_KEY = {s.key: s for s in SCENARIOS}
# HTTP/1.1 over TLS; HTTP/2 over TLS (h2-*) belongs to H2_KEYS.
TLS_KEYS = tuple(s.key for s in SCENARIOS if s.tls and not s.h2)
WS_KEYS = tuple(s.key for s in SCENARIOS if s.ws)
WSGI_KEYS = tuple(s.key for s in SCENARIOS if s.wsgi)
H2_KEYS = tuple(s.key for s in SCENARIOS if s.h2)
# What runs when --scenarios is not given: everything but TLS, WebSocket, WSGI and HTTP/2, which
# run on request (--scenarios tls, ws, wsgi, h2, or their keys).
DEFAULT_KEYS = tuple(s.key for s in SCENARIOS if not s.tls and not s.ws and not s.wsgi and not s.h2)
# --scenarios shorthands.
GROUPS = {"tls": TLS_KEYS, "ws": WS_KEYS, "wsgi": WSGI_KEYS, "h2": H2_KEYS}
