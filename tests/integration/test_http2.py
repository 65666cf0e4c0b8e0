"""HTTP/2 (RFC 9113) end to end, with real clients: curl (h2c by prior knowledge, h2 over TLS by
ALPN, `Upgrade: h2c`), httpx, h2load, the `h2` library and a raw frame client (hyperframe and
hpack). What the app sees (the scope, request trailers, the response-trailers extension), flow
control as backpressure both ways, streams that do not wait for each other, FastAPI over HTTP/2,
graceful shutdown (GOAWAY), `--http 1|2`, the idle timeout, and an h2load smoke run.

The clients and the expectations were first run against hypercorn 0.18 (set H2_TEST_PEER=hypercorn
to do so again: the `h2serve` fixture then starts `bench/.venv/bin/hypercorn` instead of coachwhip,
mapping the flags it has). Tests whose expectation hypercorn does not meet say so ("hypercorn:").
The hostile clients are in test_http2_hostile.py, which uses the helpers here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import httpx
import pytest
from conftest import Serve
from harness import HERE, ServerProcess, free_port, poll, request, run_curl
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
from tlscerts import Certs, Leaf, client_context, wait_https

pytestmark = pytest.mark.timeout(60)

H2_APP = "apps.h2_apps:app"
STAR_APP = "apps.h2_star:app"
MIB = 1024 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
T = TypeVar("T")

# RFC 9113 §7 error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# SETTINGS identifiers
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6


# --- the server under test -------------------------------------------------------------------

PEER = os.environ.get("H2_TEST_PEER", "coachwhip")
HYPERCORN = HERE.parents[1] / "bench" / ".venv" / "bin" / "hypercorn"
# coachwhip flag -> hypercorn flag (validation runs only; flags hypercorn lacks are dropped)
HYPERCORN_FLAGS = {
    "--timeout-keep-alive": "--keep-alive",
    "--timeout-graceful-shutdown": "--graceful-timeout",
}
HYPERCORN_SWITCHES = {"--no-access-log"}


class H2Serve(Protocol):
    def __call__(self, app: str, *args: str, leaf: Leaf | None = None) -> ServerProcess: ...


def start_hypercorn(app: str, args: Iterable[str], leaf: Leaf | None) -> ServerProcess:
    argv = [str(HYPERCORN), "--bind", f"127.0.0.1:{free_port()}"]
    items = list(args)
    while items:
        flag = items.pop(0)
        if flag in HYPERCORN_SWITCHES:
            continue
        value = items.pop(0)
        if flag in HYPERCORN_FLAGS:
            argv += [HYPERCORN_FLAGS[flag], value]
    if leaf is not None:
        argv += ["--certfile", str(leaf.chain), "--keyfile", str(leaf.key)]
    exec_it = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
    server = ServerProcess(app, python_args=["-c", exec_it, *argv, app])
    try:
        match = server.wait_for_line(r"Running on (https?)://([\d.]+):(\d+)", 15)
    except BaseException:
        server.kill()
        raise
    server.host, server.port = match.group(2), int(match.group(3))
    return server


def start_server(app: str, *args: str, leaf: Leaf | None = None) -> ServerProcess:
    """A server outside the `serve` fixture (for module-scoped fixtures): kill() it yourself."""
    if PEER == "hypercorn":
        return start_hypercorn(app, args, leaf)
    server = ServerProcess(app, *(leaf.args if leaf is not None else ()), *args)
    try:
        return wait_https(server)
    except BaseException:
        server.kill()
        raise


@pytest.fixture
def h2serve(serve: Serve) -> Iterator[H2Serve]:
    """h2serve(app, *flags, leaf=certs.ecdsa) -> a ready server (TLS with `leaf`, else plain)."""
    others: list[ServerProcess] = []

    def factory(app: str, *args: str, leaf: Leaf | None = None) -> ServerProcess:
        if PEER == "hypercorn":
            server = start_hypercorn(app, args, leaf)
            others.append(server)
            return server
        tls = leaf.args if leaf is not None else ()
        return wait_https(serve(app, *tls, *args, ready=None))

    yield factory
    for server in others:
        server.kill()


def h2_context(certs: Certs, alpn: Iterable[str] = ("h2", "http/1.1")) -> ssl.SSLContext:
    return client_context(certs, alpn=list(alpn))


def get_json(server: ServerProcess, path: str, **params: str) -> Any:
    """A side-channel request over HTTP/1.1 on its own connection."""
    return httpx.get(f"http://{server.host}:{server.port}{path}", params=params, timeout=5).json()


def open_gate(server: ServerProcess, key: str) -> None:
    """Lets /hold?id=key answer."""
    url = f"http://{server.host}:{server.port}/open"
    assert httpx.get(url, params={"id": key}, timeout=5).text == "opened"


def count(server: ServerProcess, key: str) -> int:
    """How many times /hit ran for `key`."""
    value = get_json(server, "/count", id=key)["count"]
    assert isinstance(value, int)
    return value


def hello_over_new_connection(server: ServerProcess, timeout: float = 5.0) -> None:
    """Another HTTP/2 connection is served (h2c prior knowledge)."""
    with H2Client(server, timeout=timeout) as client:
        answer = client.fetch("/hello", timeout=timeout)
    assert (answer.status, bytes(answer.data)) == (200, b"hello"), answer


class PeakRss:
    """The server's resident memory at the start and the highest sample since."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = server.rss_kib()
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, self.server.rss_kib())

    @property
    def growth_mib(self) -> float:
        self.sample()
        return (self.peak - self.baseline) / 1024


# --- an h2-library client ---------------------------------------------------------------------


@dataclass
class Stream:
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None  # the error code of an RST_STREAM from the server
    window_updates: int = 0  # WINDOW_UPDATE increments the server gave this stream

    @property
    def status(self) -> int:
        values = [v for n, v in self.headers if n == ":status"]
        return int(values[0]) if values else 0

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


def decoded(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    def text(value: Any) -> str:
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    return [(text(n), text(v)) for n, v in headers]


class H2Client:
    """An HTTP/2 client connection made with the `h2` library over a real socket (h2c by prior
    knowledge, or TLS with ALPN h2). Received DATA is acknowledged at once, except on streams
    in `no_ack`, whose windows (and the connection's share of them) stay closed."""

    def __init__(
        self,
        server: ServerProcess,
        *,
        tls: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        config: h2.config.H2Configuration | None = None,
        timeout: float = 10.0,
    ) -> None:
        sock = socket.create_connection((server.host, server.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.scheme = "https" if tls is not None else "http"
        self.authority = f"localhost:{server.port}"
        self.h2 = h2.connection.H2Connection(
            config or h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.no_ack: set[int] = set()
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.eof = False
        self.settings_received = False
        self.flush()
        self.wait(lambda: self.settings_received, timeout, "the server's SETTINGS")

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float) -> list[h2.events.Event]:
        """Reads once (waiting up to `timeout`), handles the events, sends what they call for."""
        if self.eof:
            return []
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(256 * 1024)
        except TimeoutError:
            return []
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return []
        events = self.h2.receive_data(data)
        for event in events:
            self.handle(event)
        self.flush()
        return events

    def handle(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        stream = self.streams.setdefault(sid, Stream()) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = decoded(event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(event, h2.events.DataReceived) and stream is not None:
            stream.data += event.data
            if event.stream_id not in self.no_ack:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = decoded(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = event.error_code
        elif isinstance(event, h2.events.WindowUpdated) and stream is not None:
            stream.window_updates += event.delta
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received = True

    def wait(self, check: Callable[[], T | None], timeout: float, what: str = "condition") -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None and result is not False:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                why = "the connection closed" if self.eof else f"{timeout} s passed"
                raise AssertionError(f"{why} before {what}; streams: {self.streams}")
            self.pump(remaining)

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        end: bool = True,
        authority: str | None = None,
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream()
        pseudo = [
            (":method", method),
            (":scheme", self.scheme),
            (":authority", authority or self.authority),
            (":path", path),
        ]
        self.h2.send_headers(sid, [*pseudo, *headers], end_stream=end and not body)
        self.flush()
        if body:
            self.upload(sid, body, end=end)
        return sid

    def upload(self, sid: int, body: bytes, end: bool = True, timeout: float = 30.0) -> None:
        """Sends `body` on stream `sid` as the flow-control windows allow."""
        view = memoryview(body)
        deadline = time.monotonic() + timeout
        while view:
            room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if room <= 0:
                assert time.monotonic() < deadline, f"the window stayed shut for {timeout} s"
                self.pump(0.05)
                continue
            piece = view[:room]
            view = view[room:]
            self.h2.send_data(sid, piece.tobytes(), end_stream=end and not view)
            self.flush()
        if end and not body:
            self.h2.end_stream(sid)
            self.flush()

    def response(self, sid: int, timeout: float = 10.0) -> Stream:
        stream = self.streams[sid]
        self.wait(lambda: stream.done, timeout, f"stream {sid} ended")
        return stream

    def fetch(self, path: str, timeout: float = 10.0, **kw: Any) -> Stream:
        return self.response(self.request(path, **kw), timeout)


# --- a raw frame client -------------------------------------------------------------------------


def settings_frame(settings: dict[int, int] | None = None, ack: bool = False) -> bytes:
    frame = SettingsFrame(0, settings=settings or {}, flags=["ACK"] if ack else [])
    return frame.serialize()


class Frames:
    """A raw HTTP/2 client connection: sends whatever frames a test builds (hyperframe, hpack),
    reads frames as they come (answering the server's SETTINGS with an ACK), decodes response
    header blocks, and reports EOF or a reset as `closed`."""

    def __init__(
        self,
        server: ServerProcess,
        *,
        settings: dict[int, int] | None = None,
        preface: bool = True,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((server.host, server.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.authority = f"localhost:{server.port}"
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30
        self.buf = bytearray()
        self.frames: list[Frame] = []
        self.blocks: dict[int, list[list[tuple[str, str]]]] = {}  # decoded, per stream
        self._pending_block: tuple[int, bytearray] | None = None
        self.closed = False
        self.received = 0
        if preface:
            self.send(PREFACE + settings_frame(settings))

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frames(self, *frames: Frame) -> None:
        self.send(b"".join(f.serialize() for f in frames))

    def block(self, headers: Iterable[tuple[str, str]]) -> bytes:
        return bytes(self.encoder.encode(list(headers)))

    def request_headers(
        self, path: str, method: str = "GET", extra: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[str, str]]:
        return [
            (":method", method),
            (":scheme", "http"),
            (":authority", self.authority),
            (":path", path),
            *extra,
        ]

    def headers_frame(
        self, sid: int, headers: Iterable[tuple[str, str]], end_stream: bool = True
    ) -> HeadersFrame:
        flags = ["END_HEADERS", *(["END_STREAM"] if end_stream else [])]
        return HeadersFrame(sid, data=self.block(headers), flags=flags)

    def get(self, sid: int, path: str, end_stream: bool = True) -> None:
        self.send_frames(self.headers_frame(sid, self.request_headers(path), end_stream))

    # reading

    def read(self, timeout: float) -> list[Frame]:
        """The frames that arrive within one read (waiting up to `timeout`); [] if none."""
        if self.closed:
            return []
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(256 * 1024)
        except TimeoutError:
            return []
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return []
        self.received += len(data)
        self.buf += data
        new: list[Frame] = []
        data = bytes(self.buf)
        pos = 0
        while len(data) - pos >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
            if len(data) - pos < 9 + length:
                break
            frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
            pos += 9 + length
            self._track(frame)
            new.append(frame)
        del self.buf[:pos]
        self.frames += new
        return new

    def _track(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            try:
                self.send(settings_frame(ack=True))
            except OSError:
                pass
        if isinstance(frame, HeadersFrame):
            self._pending_block = (frame.stream_id, bytearray(frame.data))
        elif isinstance(frame, ContinuationFrame) and self._pending_block is not None:
            self._pending_block[1].extend(frame.data)
        if isinstance(frame, (HeadersFrame, ContinuationFrame)) and "END_HEADERS" in frame.flags:
            assert self._pending_block is not None
            sid, data = self._pending_block
            self._pending_block = None
            self.blocks.setdefault(sid, []).append(decoded(self.decoder.decode(bytes(data))))

    def wait_for(
        self, match: Callable[[Frame], bool], timeout: float, since: int = 0
    ) -> Frame | None:
        """The first frame (from index `since`) that matches; None if the connection closes
        first; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for frame in self.frames[checked:]:
                if match(frame):
                    return frame
            checked = max(checked, len(self.frames))
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no such frame within {timeout} s; got {self.frames[since:][-20:]}"
                )
            self.read(remaining)

    def goaway(self, timeout: float = 5.0) -> GoAwayFrame | None:
        frame = self.wait_for(lambda f: isinstance(f, GoAwayFrame), timeout)
        assert frame is None or isinstance(frame, GoAwayFrame)
        return frame

    def reset_of(self, sid: int, timeout: float = 5.0) -> Frame | None:
        """The stream's RST_STREAM, or a GOAWAY, whichever comes first (None: closed)."""
        return self.wait_for(
            lambda f: (
                (isinstance(f, RstStreamFrame) and f.stream_id == sid) or isinstance(f, GoAwayFrame)
            ),
            timeout,
        )

    def wait_closed(self, timeout: float) -> float:
        """Reads until the server closes; returns when (monotonic). AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the connection is still open after {timeout} s; got {self.frames[-10:]}"
                )
            self.read(remaining)
        return time.monotonic()

    def status(self, sid: int) -> int | None:
        for block in self.blocks.get(sid, []):
            for name, value in block:
                if name == ":status":
                    return int(value)
        return None

    def body(self, sid: int) -> bytes:
        return b"".join(
            f.data for f in self.frames if isinstance(f, DataFrame) and f.stream_id == sid
        )

    def ended(self, sid: int) -> bool:
        return any(
            isinstance(f, (DataFrame, HeadersFrame))
            and f.stream_id == sid
            and "END_STREAM" in f.flags
            for f in self.frames
        )

    def ack_data(self) -> None:
        """Reopen the windows for every DATA frame read so far (connection and streams)."""
        total = 0
        frames: list[Frame] = []
        for f in self.frames[self._acked :]:
            if isinstance(f, DataFrame) and f.flow_controlled_length:
                total += f.flow_controlled_length
                frames.append(WindowUpdateFrame(f.stream_id, f.flow_controlled_length))
        self._acked = len(self.frames)
        if total:
            frames.append(WindowUpdateFrame(0, total))
            self.send_frames(*frames)

    _acked = 0


def ping() -> PingFrame:
    return PingFrame(0, opaque_data=os.urandom(8))


# --- curl ---------------------------------------------------------------------------------------


def curl_h2(*args: str, timeout: float = 20.0) -> tuple[bytes, str]:
    """curl ARGS -w '\\n%{http_version}': the body and the HTTP version curl used."""
    done = run_curl(*args, "-w", "\n%{http_version}", timeout=timeout)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition(b"\n")
    return body, version.decode()


def curl_tls(server: ServerProcess, certs: Certs, path: str, *args: str) -> list[str]:
    return [
        "--cacert",
        str(certs.ca),
        "--resolve",
        f"localhost:{server.port}:127.0.0.1",
        *args,
        f"https://localhost:{server.port}{path}",
    ]


def test_curl_h2c_prior_knowledge(h2serve: H2Serve):
    server = h2serve(H2_APP)
    body, version = curl_h2("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/scope")
    assert version == "2"
    scope = json.loads(body)
    assert (scope["http_version"], scope["scheme"], scope["path"]) == ("2", "http", "/scope")


def test_curl_h2_over_tls_by_alpn(h2serve: H2Serve, certs: Certs):
    server = h2serve(H2_APP, leaf=certs.ecdsa)
    body, version = curl_h2(*curl_tls(server, certs, "/scope", "--http2"))
    assert version == "2"
    scope = json.loads(body)
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_curl_upgrade_h2c(h2serve: H2Serve, tmp_path: Path, method: str):
    """curl --http2 on http:// sends `Upgrade: h2c` with HTTP2-Settings: 101, then the request
    is stream 1; a POST body goes before the switch, in HTTP/1.1. hypercorn: upgrades only a
    request without a body (the POST is answered in HTTP/1.1)."""
    server = h2serve(H2_APP)
    url = f"http://127.0.0.1:{server.port}/echo"
    payload = os.urandom(100_000)
    args = ["--http2", "-v"]
    if method == "POST":
        (tmp_path / "body").write_bytes(payload)
        args += ["--data-binary", f"@{tmp_path / 'body'}"]
    done = run_curl(*args, "-w", "\n%{http_version}", url)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition(b"\n")
    trace = done.stderr.decode("latin-1")
    assert re.search(r"(?im)^> upgrade: h2c", trace), trace
    assert "HTTP/1.1 101" in trace, trace
    assert version.decode() == "2"
    sent = payload if method == "POST" else b""
    assert json.loads(body) == {"bytes": len(sent), "sha256": hashlib.sha256(sent).hexdigest()}
    # and the server still answers ordinary HTTP/1.1 on the same port
    assert httpx.get(f"http://127.0.0.1:{server.port}/hello", timeout=5).text == "hello"


# --- httpx --------------------------------------------------------------------------------------


def test_httpx_http2_over_tls(h2serve: H2Serve, certs: Certs):
    server = h2serve(H2_APP, leaf=certs.ecdsa)
    with httpx.Client(http2=True, verify=h2_context(certs), trust_env=False, timeout=10) as client:
        response = client.get(f"https://localhost:{server.port}/scope?x=1")
        assert response.status_code == 200
        assert response.http_version == "HTTP/2"
        scope = response.json()
        assert (scope["http_version"], scope["scheme"], scope["query_string"]) == (
            "2",
            "https",
            "x=1",
        )
        upload = os.urandom(3 * MIB)
        echoed = client.post(f"https://localhost:{server.port}/echo", content=upload)
        assert echoed.http_version == "HTTP/2"
        assert echoed.json() == {"bytes": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}


def test_httpx_50_concurrent_requests_on_one_connection(h2serve: H2Serve, certs: Certs):
    server = h2serve(H2_APP, leaf=certs.ecdsa)
    base = f"https://localhost:{server.port}"

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            http2=True, verify=h2_context(certs), trust_env=False, timeout=20
        ) as client:
            first = await client.get(f"{base}/scope?i=warm")
            rest = await asyncio.gather(*(client.get(f"{base}/scope?i={i}") for i in range(50)))
            return [first, *rest]

    responses = asyncio.run(run())
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses)
    scopes = [r.json() for r in responses]
    assert [s["query_string"] for s in scopes[1:]] == [f"i={i}" for i in range(50)]
    ports = {s["client"][1] for s in scopes}
    assert len(ports) == 1, f"the 51 requests came over {len(ports)} connections"


# --- what the app sees ------------------------------------------------------------------------


def test_scope_over_h2c(h2serve: H2Serve):
    server = h2serve(H2_APP)
    with H2Client(server) as client:
        answer = client.fetch(
            "/scope/caf%C3%A9%20x?q=1&r=%20",
            authority=f"example.test:{server.port}",
            headers=[("cookie", "a=1"), ("x-one", "1"), ("cookie", "b=2"), ("x-two", "2")],
        )
        assert answer.status == 200
        scope = json.loads(answer.data)
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "http"
        assert scope["method"] == "GET"
        assert scope["path"] == "/scope/café x"
        assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
        assert scope["query_string"] == "q=1&r=%20"
        assert scope["client"] == ["127.0.0.1", client.local_port]
        assert scope["server"] == ["127.0.0.1", server.port]
        assert "http.response.trailers" in scope["extensions"]
        headers = scope["headers"]
        assert headers[0] == ["host", f"example.test:{server.port}"], headers
        assert [n for n, _ in headers if n == "host"] == ["host"]
        assert [v for n, v in headers if n == "cookie"] == ["a=1; b=2"], headers
        assert ["x-one", "1"] in headers and ["x-two", "2"] in headers
        assert not [n for n, _ in headers if n.startswith(":")], headers


def test_scope_over_tls_is_https(h2serve: H2Serve, certs: Certs):
    server = h2serve(H2_APP, leaf=certs.ecdsa)
    with H2Client(server, tls=h2_context(certs)) as client:
        answer = client.fetch("/scope", method="POST", body=b"x" * 1000)
    scope = json.loads(answer.data)
    assert (scope["http_version"], scope["scheme"], scope["method"]) == ("2", "https", "POST")
    assert scope["body_bytes"] == 1000
    assert ["host", f"localhost:{server.port}"] in scope["headers"]


def test_response_trailers(h2serve: H2Serve):
    server = h2serve(H2_APP)
    with H2Client(server) as client:
        # te: trailers, as gRPC clients send it (hypercorn sends trailers only then)
        answer = client.fetch("/trailers", headers=[("te", "trailers")])
    assert answer.status == 200
    assert bytes(answer.data) == b"first part, second part"
    expected = hashlib.sha256(b"first part, second part").hexdigest()
    assert ("x-sha256", expected) in answer.trailers, answer.trailers
    assert ("x-parts", "2") in answer.trailers


def test_request_trailers_are_read_and_dropped(h2serve: H2Serve):
    server = h2serve(H2_APP)
    payload = os.urandom(50_000)
    with H2Client(server) as client:
        sid = client.request("/echo", method="POST", headers=[("te", "trailers")], end=False)
        client.upload(sid, payload, end=False)
        client.h2.send_headers(sid, [("x-checksum", "abc"), ("x-more", "1")], end_stream=True)
        client.flush()
        answer = client.response(sid)
        assert answer.status == 200
        assert json.loads(answer.data) == {
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        # the connection goes on
        assert client.fetch("/hello").data == b"hello"


# --- flow control is backpressure -------------------------------------------------------------


def settled(
    read: Callable[[], int], rss: PeakRss, quiet_s: float = 1.0, timeout: float = 15
) -> int:
    """Polls `read()` until it has not moved for `quiet_s`; returns its value."""
    history: list[tuple[float, int]] = []

    def still() -> int | None:
        rss.sample()
        now = time.monotonic()
        history.append((now, read()))
        moved = [v for t, v in history if t >= now - quiet_s]
        if history[0][0] <= now - quiet_s and len(set(moved)) == 1 and moved[0] > 0:
            return moved[0]
        return None

    return poll(still, timeout, 0.05, what="the value to stop moving")


def test_download_waits_for_the_client_window(h2serve: H2Serve):
    """The client never sends WINDOW_UPDATE: the app's send() waits near the 64 KiB window.
    hypercorn: its stream buffer un-pauses the sender whenever a zero window pops nothing, so
    the app sends all of 1 GiB into memory."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    key = "nowindow"
    with H2Client(server) as client:
        sid = client.request(f"/stream?id={key}&mib=1024")
        client.no_ack.add(sid)
        stream = client.streams[sid]
        client.wait(lambda: len(stream.data) >= 65535, 10, "the first window's worth of data")

        def progress() -> int:
            client.pump(0.01)
            return int(get_json(server, "/progress", id=key).get("sent", 0))

        sent = settled(progress, rss)
        assert len(stream.data) == 65535, "the server sent past the window"
        assert sent < 1 * MIB, f"send() did not wait: the app produced {sent / MIB:.1f} MiB"
        assert rss.growth_mib < 16, f"the server grew {rss.growth_mib:.0f} MiB"
        # opening the window lets the stream go on
        client.no_ack.clear()
        client.h2.acknowledge_received_data(len(stream.data), sid)
        client.flush()
        client.wait(lambda: len(stream.data) > sent + 4 * MIB, 20, "the stream to resume")
        hello_over_new_connection(server)


def test_upload_to_an_app_that_never_reads_is_held_at_the_stream_window(h2serve: H2Serve):
    """The app never calls receive(): the server takes about one stream window of the body and
    never reopens it. hypercorn: acknowledges DATA as it arrives, so the upload never stops."""
    server = h2serve(H2_APP, "--no-access-log")
    rss = PeakRss(server)
    key = "noread"
    cap = 32 * MIB
    with H2Client(server) as client:
        sid = client.request(f"/hold?id={key}", method="POST", end=False)
        poll(lambda: get_json(server, "/progress", id=key).get("entered"), 5, what="the app")
        window = client.h2.remote_settings.initial_window_size
        sent = 0
        block = bytes(16384)
        quiet_since = time.monotonic()
        while sent < cap:
            room = min(client.h2.local_flow_control_window(sid), len(block))
            if room > 0:
                client.h2.send_data(sid, block[:room])
                client.flush()
                sent += room
                quiet_since = time.monotonic()
                continue
            client.pump(0.05)
            rss.sample()
            if time.monotonic() - quiet_since > 1.5:
                break
        stream = client.streams[sid]
        assert sent < cap, f"the server kept reopening the window: {sent / MIB:.0f} MiB taken"
        assert stream.window_updates == 0, "the stream's window reopened with nobody reading"
        assert sent == window, (sent, window)
        assert rss.growth_mib < 16, f"the server grew {rss.growth_mib:.0f} MiB"
        assert client.h2.local_flow_control_window(sid) == 0
        # another stream on the same connection is still served
        assert client.fetch("/hello").data == b"hello"
        open_gate(server, key)
        answer = client.response(sid)
        assert (answer.status, bytes(answer.data)) == (200, b"released")


def test_a_big_download_does_not_hold_up_another_stream(h2serve: H2Serve):
    """A 1 GiB response read slowly on one stream; a small one on another stream of the same
    connection is answered at once."""
    server = h2serve(H2_APP, "--no-access-log")
    key = "bigdl"
    with H2Client(server, timeout=30) as client:
        client.h2.increment_flow_control_window(256 * MIB)  # the connection's window: wide open
        client.flush()
        big = client.request(f"/stream?id={key}&mib=1024")
        client.no_ack.add(big)
        stream = client.streams[big]

        def read_slowly(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                taken = len(stream.data)
                client.pump(0.01)
                if len(stream.data) > taken:
                    client.h2.acknowledge_received_data(len(stream.data) - taken, big)
                    client.flush()
                time.sleep(0.005)

        client.wait(lambda: len(stream.data) > 0, 10, "the big response to start")
        read_slowly(1.0)
        for _ in range(3):
            started = time.monotonic()
            small = client.request("/hello")
            answer = client.streams[small]
            while not answer.done and time.monotonic() - started < 5:
                read_slowly(0.01)
            took = time.monotonic() - started
            assert (answer.status, bytes(answer.data)) == (200, b"hello"), answer
            assert took < 1.0, f"the small response took {took:.2f} s"
        assert not stream.ended
        progress = get_json(server, "/progress", id=key)
        assert 0 < progress["sent"] < 1024 * MIB, progress
        client.h2.reset_stream(big, CANCEL)
        client.flush()
    hello_over_new_connection(server)


# --- FastAPI ----------------------------------------------------------------------------------


@pytest.fixture
def star(h2serve: H2Serve, certs: Certs) -> Iterator[httpx.Client]:
    server = h2serve(STAR_APP, leaf=certs.ecdsa)
    with httpx.Client(
        http2=True,
        verify=h2_context(certs),
        trust_env=False,
        timeout=30,
        base_url=f"https://localhost:{server.port}",
    ) as client:
        yield client


def test_fastapi_json_and_streaming_over_http2(star: httpx.Client):
    response = star.get("/json", params={"name": "h2"})
    assert response.http_version == "HTTP/2"
    assert response.json() == {"hello": "h2", "http_version": "2"}
    with star.stream("GET", "/stream") as streamed:
        assert streamed.http_version == "HTTP/2"
        lines = b"".join(streamed.iter_bytes()).decode().splitlines()
    assert len(lines) == 2000
    assert lines[0] == f"line 00000 {'.' * 100}" and lines[-1].startswith("line 01999 ")


def test_fastapi_upload_of_20_mib_over_http2(star: httpx.Client):
    payload = os.urandom(20 * MIB)
    response = star.post("/upload", content=payload)
    assert response.http_version == "HTTP/2"
    assert response.json() == {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


def test_fastapi_server_sent_events_over_http2(star: httpx.Client):
    events: list[dict[str, str]] = []
    with star.stream("GET", "/sse") as response:
        assert response.http_version == "HTTP/2"
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
                continue
            name, _, value = line.partition(": ")
            current[name] = value
    assert events == [{"event": "tick", "id": str(i), "data": f"tick {i}"} for i in range(3)]


# --- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_sends_goaway_and_the_stream_in_progress_completes(h2serve: H2Serve):
    """hypercorn: sends its one GOAWAY only once the stream in progress has ended."""
    server = h2serve(H2_APP, "--timeout-graceful-shutdown", "10")
    with Frames(server) as conn:
        conn.get(1, "/slow?chunks=10&pause=0.2")
        first = conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, 5)
        assert first is not None, "the connection closed before the first chunk"
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        goaway = conn.goaway(5)
        assert goaway is not None, "the connection closed without a GOAWAY"
        assert goaway.error_code == NO_ERROR, goaway
        # then (at once, or after a round trip with 2^31-1 first) the real last stream id
        final = conn.wait_for(
            lambda f: isinstance(f, GoAwayFrame) and f.last_stream_id < 2**31 - 1, 5
        )
        assert isinstance(final, GoAwayFrame), conn.frames
        assert (final.last_stream_id, final.error_code) == (1, NO_ERROR), final
        assert not conn.ended(1), "no GOAWAY until the stream in progress had ended"
        conn.get(3, "/hello")  # above the last stream id: refused or ignored, never answered
        while not conn.ended(1):
            assert not conn.closed, f"closed before the stream ended: {conn.frames[-10:]}"
            conn.read(max(0.0, stopped + 8 - time.monotonic()))
            assert time.monotonic() < stopped + 8, "the stream did not finish"
        assert conn.status(1) == 200
        assert conn.body(1) == b"".join(f"part {i}\n".encode() for i in range(10))
        conn.wait_closed(5)
        assert conn.status(3) is None, conn.blocks
    assert server.wait_exit(10) == 0
    assert time.monotonic() - stopped < 10


# --- --http 1 | 2 ------------------------------------------------------------------------------


def test_http_1_refuses_h2c_and_negotiates_http_1_1(h2serve: H2Serve, certs: Certs):
    """hypercorn: has no such flag, so it speaks HTTP/2."""
    plain = h2serve(H2_APP, "--http", "1")
    with socket.create_connection((plain.host, plain.port), timeout=5) as sock:
        sock.sendall(PREFACE + settings_frame())
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    # the HTTP/1 parser's refusal of "PRI * HTTP/2.0" (400 or 505), or a close
    assert re.match(rb"HTTP/1\.1 [45]\d\d ", answer) or answer == b"", answer[:100]
    done = run_curl("--http2-prior-knowledge", f"http://127.0.0.1:{plain.port}/hello")
    assert done.returncode != 0 or done.stdout != b"hello"
    # Upgrade: h2c is not taken up: the answer is HTTP/1.1
    body, version = curl_h2("--http2", f"http://127.0.0.1:{plain.port}/hello")
    assert (body, version) == (b"hello", "1.1")
    tls = h2serve(H2_APP, "--http", "1", leaf=certs.ecdsa)
    with socket.create_connection((tls.host, tls.port), timeout=5) as raw:
        with h2_context(certs).wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
    body, version = curl_h2(*curl_tls(tls, certs, "/hello", "--http2"))
    assert (body, version) == (b"hello", "1.1")


def test_http_2_on_tls_offers_only_h2(h2serve: H2Serve, certs: Certs):
    """hypercorn: has no such flag (it offers http/1.1 too)."""
    server = h2serve(H2_APP, "--http", "2", leaf=certs.ecdsa)
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        ctx = h2_context(certs, alpn=["http/1.1", "h2"])
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "h2"
    # a client that offers only http/1.1 is refused (a failed handshake, or no ALPN and a
    # refusal such as 505): never served
    answer = b""
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            ctx = h2_context(certs, alpn=["http/1.1"])
            with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                assert sock.selected_alpn_protocol() != "http/1.1"
                sock.sendall(request("GET", "/hello", host="localhost"))
                while chunk := sock.recv(65536):
                    answer += chunk
    except (ssl.SSLError, ConnectionResetError, TimeoutError):
        pass
    assert not answer.startswith(b"HTTP/1.1 200") and b"hello" not in answer, answer[:100]
    body, version = curl_h2(*curl_tls(server, certs, "/hello", "--http2"))
    assert (body, version) == (b"hello", "2")


def test_http_2_on_plain_serves_prior_knowledge_only(h2serve: H2Serve):
    """hypercorn: has no such flag (it serves HTTP/1.1 too)."""
    server = h2serve(H2_APP, "--http", "2")
    body, version = curl_h2("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/hello")
    assert (body, version) == (b"hello", "2")
    done = run_curl("--http1.1", f"http://127.0.0.1:{server.port}/hello")
    assert done.stdout != b"hello", "an HTTP/1.1 request was served with --http 2"


# --- the idle timeout -------------------------------------------------------------------------


def test_idle_connection_gets_goaway_after_keep_alive_timeout(h2serve: H2Serve):
    """hypercorn: closes the idle connection on time, but without a GOAWAY."""
    server = h2serve(H2_APP, "--timeout-keep-alive", "1")
    with Frames(server) as conn:
        conn.get(1, "/hello")
        conn.wait_for(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, 5)
        assert conn.body(1) == b"hello"
        idle_from = time.monotonic()
        goaway = conn.goaway(5)
        assert goaway is not None, "closed without a GOAWAY"
        waited = time.monotonic() - idle_from
        assert goaway.error_code == NO_ERROR, goaway
        assert 0.7 <= waited <= 2.5, f"GOAWAY after {waited:.2f} s idle"
        closed = conn.wait_closed(3) - idle_from
        assert closed <= 3.0, f"closed after {closed:.2f} s idle"


def test_a_connection_with_an_open_stream_is_not_idle(h2serve: H2Serve):
    server = h2serve(H2_APP, "--timeout-keep-alive", "1")
    with Frames(server) as conn:
        conn.get(1, "/slow?chunks=4&pause=0.8")  # 2.4 s, longer than the idle timeout
        assert conn.wait_for(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, 6)
        assert not [f for f in conn.frames if isinstance(f, GoAwayFrame)], conn.frames
        assert conn.body(1) == b"".join(f"part {i}\n".encode() for i in range(4))


# --- h2load -----------------------------------------------------------------------------------


H2LOAD = ("nice", "-n", "19", "h2load")


def test_h2load_smoke(h2serve: H2Serve):
    server = h2serve(H2_APP, "--no-access-log")
    done = subprocess.run(
        [*H2LOAD, "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{server.port}/hello"],
        capture_output=True,
        timeout=60,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    match = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored",
        out,
    )
    assert match, out
    assert match.groups() == ("2000", "2000", "2000", "2000", "0", "0"), out
    assert "status codes: 2000 2xx" in out, out
    assert "h2c" in out, out
