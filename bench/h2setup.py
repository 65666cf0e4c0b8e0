"""HTTP/2 for the benchmarks: h2load's command line, its run (the server's CPU time taken over
the main phase only, after h2load's own warm-up) and its output (req/s and failures from its
summary, p50/p99 from its per-request log), and a small client on the `h2` library (the one
hypercorn uses, in bench/.venv) for the checks and for holding N idle HTTP/2 connections.

Imports the `h2` library only inside its functions: run.py imports this module before it has
re-executed itself in bench/.venv."""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import procfs
from load import SAMPLE_EVERY_S, WrkError, WrkResult

if TYPE_CHECKING:
    from scenarios import Scenario

H2LOAD = "h2load"
# h2load's own warm-up inside every measured run (--warm-up-time): the connections are made
# and the first requests sent before the clock starts; a smoke run's shorter --warmup caps it.
H2LOAD_WARMUP_S = 1.0
TIMEOUT_S = 10
MAIN_STARTED = "Main benchmark duration is started"
MAIN_OVER = "Main benchmark duration is over"
# Where h2load writes one line per request (a write(2) each): tmpfs when there is one.
LOG_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def peer_settings() -> dict[str, dict[str, Any]]:
    """The HTTP/2 defaults of coachwhip, granian and hypercorn as installed (bench/.venv), for
    the report; a server whose settings cannot be read is left out."""
    out: dict[str, dict[str, Any]] = {}
    try:
        from coachwhip.config import Config

        out["coachwhip"] = {
            f.name.removeprefix("http2_"): f.default
            for f in dataclasses.fields(Config)
            if f.name.startswith("http2_")
        }
    except (ImportError, AttributeError, TypeError):
        pass
    try:
        from granian.http import HTTP2Settings

        out["granian"] = {f.name: f.default for f in dataclasses.fields(HTTP2Settings)}
    except (ImportError, AttributeError, TypeError):
        pass
    try:
        from hypercorn.config import Config as HypercornConfig

        names = ("h2_max_concurrent_streams", "h2_max_header_list_size")
        out["hypercorn"] = {n.removeprefix("h2_"): getattr(HypercornConfig, n) for n in names}
        out["hypercorn"]["max_inbound_frame_size"] = HypercornConfig.h2_max_inbound_frame_size
        # It sends GOAWAY once a connection has served this many requests.
        out["hypercorn"]["keep_alive_max_requests"] = HypercornConfig.keep_alive_max_requests
    except (ImportError, AttributeError, TypeError):
        pass
    return out


def h2load_version() -> str:
    try:
        out = subprocess.run([H2LOAD, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "not installed"
    return out.strip().removeprefix("h2load ")  # "nghttp2/1.52.0"


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def warmup_for(plan_warmup_s: float) -> float:
    return min(H2LOAD_WARMUP_S, plan_warmup_s)


def write_body(scenario: Scenario, out_dir: Path) -> Path | None:
    """The request body h2load posts (`-d`), beside the logs; None for a GET."""
    if not scenario.body_size:
        return None
    path = out_dir / f"h2load-body-{scenario.body_size}.bin"
    if not path.exists() or path.stat().st_size != scenario.body_size:
        path.write_bytes(b"x" * scenario.body_size)
    return path


def h2load_argv(
    scenario: Scenario,
    port: int,
    connections: int,
    duration_s: float,
    warmup_s: float,
    cpus: str,
    log_file: Path,
    body: Path | None,
) -> list[str]:
    """h2load pinned like wrk, one thread: `-c` connections with `-m` streams each, `-D`
    seconds measured after `--warm-up-time`; h2c with prior knowledge for http:// (h2load's
    default), h2 by ALPN for https://."""
    argv = ["taskset", "-c", cpus, H2LOAD, "-t", "1", "-c", str(connections)]
    argv += ["-m", str(scenario.streams), "-D", _duration(duration_s)]
    argv += ["--warm-up-time", _duration(warmup_s), "--log-file", str(log_file)]
    if body is not None:
        argv += ["-d", str(body)]
    scheme = "https" if scenario.tls else "http"
    return [*argv, f"{scheme}://127.0.0.1:{port}{scenario.path}"]


def flags_for(scenario: Scenario) -> str:
    """h2load's flags in the report (without the port and file names)."""
    body = f" -d <{scenario.body_size // 1024} KiB>" if scenario.body_size else ""
    return f"-t 1 -c C -m {scenario.streams}{body}"


def run_h2load(
    argv: list[str],
    duration_s: float,
    warmup_s: float,
    sample: Callable[[], None],
    mark: Callable[[], None],
) -> WrkResult:
    """Run h2load (argv from h2load_argv, with `--log-file` last but two or three), calling
    `sample()` every 100 ms and `mark()` when its main phase starts and when it ends (h2load
    prints both), so that the caller can take the server's CPU time over exactly the
    requests counted. h2load's own CPU time over the same window comes from /proc."""
    log_file = Path(argv[argv.index("--log-file") + 1])
    log_file.unlink(missing_ok=True)  # h2load appends
    allowed = warmup_s + duration_s + 30
    deadline = time.monotonic() + allowed
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    client: list[float] = []  # h2load's CPU seconds at the start and the end of its main phase
    next_sample = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise WrkError(f"h2load did not finish within {allowed:.0f} s: {' '.join(argv)}")
            if now >= next_sample:
                sample()
                next_sample = now + SAMPLE_EVERY_S
            try:
                line = lines.get(timeout=max(0.0, next_sample - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if line.startswith((MAIN_STARTED, MAIN_OVER)):
                client.append(procfs.cpu_seconds([proc.pid]))  # taskset exec()s h2load
                mark()
        proc.wait(timeout=30)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    output = "".join(seen)
    if len(client) != 2:
        raise WrkError(f"h2load exited {proc.returncode} without a main phase:\n{output[-1500:]}")
    try:
        result = parse(output, duration_s)
        latency = log_latency(log_file)
    finally:
        log_file.unlink(missing_ok=True)
    result.p50_us, result.p90_us, result.p99_us = latency["p50"], latency["p90"], latency["p99"]
    result.max_us, result.mean_us = latency["max"], latency["mean"]
    result.extra["logged"] = latency["count"]
    result.client_cpu_s = client[1] - client[0]
    return result


_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: \S+ \((\d+)\) total")


def parse(output: str, duration_s: float) -> WrkResult:
    """h2load's summary: `succeeded` (2xx/3xx) are the requests, over the -D seconds (h2load's
    own req/s counts any status); `failed` (a stream reset, a connection lost, a non-2xx/3xx
    status) and `errored` are kept for the verdict, the negotiated protocol and TLS too."""
    requests, status = _REQUESTS.search(output), _STATUS.search(output)
    if requests is None or status is None:
        raise WrkError(f"h2load printed no summary:\n{output.strip()[-1500:]}")
    _, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    s2, s3, s4, s5 = map(int, status.groups())
    traffic = _TRAFFIC.search(output)

    def field_of(name: str) -> str:
        m = re.search(rf"^{name}: (.+)$", output, re.MULTILINE)
        return m.group(1).strip() if m else ""

    tls = " ".join(x for x in (field_of("TLS Protocol"), field_of("Cipher")) if x)
    key = field_of("Server Temp Key")
    return WrkResult(
        requests=succeeded,
        duration_us=round(duration_s * 1e6),
        bytes=int(traffic.group(1)) if traffic else 0,
        connect_errors=0,
        read_errors=errored,
        write_errors=0,
        status_errors=s4 + s5,
        timeouts=timeout,
        p50_us=0,
        p90_us=0,
        p99_us=0,
        max_us=0,
        mean_us=0.0,
        extra={
            "started": started,
            "done": done,
            "failed": failed,
            "errored": errored,
            "status_2xx": s2 + s3,
            "protocol": field_of("Application protocol"),
            **({"tls": f"{tls}, {key.split()[0]}" if key else tls} if tls else {}),
        },
    )


def log_latency(path: Path) -> dict[str, Any]:
    """Percentiles (nearest rank, microseconds) of the requests h2load logged in its main phase
    (columns: start time, status or -1 for a failed stream, microseconds to the end of the
    response); failed streams are left out."""
    times: list[int] = []
    with path.open("rb") as f:
        for line in f:
            fields = line.split(b"\t")
            if len(fields) >= 3 and fields[1] != b"-1" and fields[2].strip().isdigit():
                times.append(int(fields[2]))
    times.sort()
    n = len(times)

    def pct(q: float) -> int:
        return times[min(n - 1, max(0, math.ceil(q * n) - 1))] if n else 0

    return {
        "count": n,
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": times[-1] if n else 0,
        "mean": round(sum(times) / n, 1) if n else 0.0,
    }


def log_path() -> Path:
    """A fresh path for one run's --log-file (h2load creates it)."""
    fd, name = tempfile.mkstemp(prefix="coachwhip-h2load-", suffix=".log", dir=LOG_DIR)
    os.close(fd)
    return Path(name)


# ------------------------------------------------------------------------ the h2 client


@dataclass
class Exchange:
    """One request over a fresh HTTP/2 connection, and what was negotiated."""

    status: int
    body: bytes
    protocol: str  # "h2" (ALPN) or "h2c"
    tls: str = ""  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    server_header: str = ""
    peer_cert: bytes = b""  # DER, over TLS


@dataclass
class Held:
    """An idle HTTP/2 connection: its socket and the h2 state that reads what arrives later."""

    sock: socket.socket
    conn: Any  # h2.connection.H2Connection
    closed: bool = False
    events: list[str] = field(default_factory=list)


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _connect(port: int, tls: bool, timeout_s: float) -> tuple[socket.socket, Any]:
    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    try:
        if tls:
            secure = _client_context().wrap_socket(sock, server_hostname="localhost")
            sock = secure
            if (chosen := secure.selected_alpn_protocol()) != "h2":
                raise OSError(f"ALPN chose {chosen!r}, not h2")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
    except BaseException:
        sock.close()
        raise
    return sock, conn


def _exchange(
    sock: socket.socket, conn: Any, port: int, method: str, path: str, body: bytes, tls: bool
) -> tuple[int, bytes, dict[bytes, bytes]]:
    """Send one request on a new stream and read its whole response (acknowledging the data, so
    that flow control never stalls it). Raises OSError on a reset, a GOAWAY or a close."""
    import h2.events
    import h2.exceptions

    stream = conn.get_next_available_stream_id()
    headers = [
        (b":method", method.encode()),
        (b":scheme", b"https" if tls else b"http"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b":path", path.encode()),
    ]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    status, got, response = 0, bytearray(), {}
    try:
        conn.send_headers(stream, headers, end_stream=not body)
        unsent = memoryview(body)
        while True:
            while unsent:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(stream, bytes(unsent[:window]), end_stream=len(unsent) <= window)
                unsent = unsent[window:]
            if out := conn.data_to_send():
                sock.sendall(out)
            data = sock.recv(65536)
            if not data:
                raise OSError("the server closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)
                    status = int(response.get(b":status", b"0"))
                elif isinstance(event, h2.events.DataReceived):
                    got += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    raise OSError(f"stream reset ({event.error_code!r})")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise OSError(f"GOAWAY ({event.error_code!r})")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    if out := conn.data_to_send():
                        sock.sendall(out)  # the SETTINGS ACK, window updates
                    return status, bytes(got), response
    except h2.exceptions.ProtocolError as e:
        raise OSError(f"not HTTP/2: {e!r}") from e


def request(
    port: int, method: str, path: str, body: bytes, tls: bool, timeout_s: float = 10.0
) -> Exchange:
    """One request over a fresh HTTP/2 connection (h2c with prior knowledge, or h2 by ALPN with
    the certificate not verified); raises OSError if the server does not speak HTTP/2."""
    sock, conn = _connect(port, tls, timeout_s)
    try:
        status, got, headers = _exchange(sock, conn, port, method, path, body, tls)
        negotiated = ""
        cert = b""
        if isinstance(sock, ssl.SSLSocket):
            cipher = sock.cipher()
            negotiated = f"{sock.version()} {cipher[0] if cipher else '?'}"
            cert = sock.getpeercert(binary_form=True) or b""
        return Exchange(
            status,
            got,
            "h2" if tls else "h2c",
            negotiated,
            headers.get(b"server", b"").decode(errors="replace"),
            cert,
        )
    finally:
        sock.close()


def same_certificate(der: bytes, pem_path: Path) -> bool:
    return der == ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def open_idle(port: int, count: int, timeout_s: float) -> list[Held]:
    """Open `count` h2c connections one after another, each sending the preface and SETTINGS,
    one GET (answered 200 with the hello body) and the ACK of the server's SETTINGS, and leave
    them open. Raises OSError (the connections opened so far closed) past `timeout_s`."""
    held: list[Held] = []
    deadline = time.monotonic() + timeout_s
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened only {len(held)} of {count} in {timeout_s:.0f} s")
            sock, conn = _connect(port, False, 10)
            held.append(Held(sock, conn))
            status, body, _ = _exchange(sock, conn, port, "GET", "/", b"", False)
            if status != 200 or body != b"Hello, world!":
                raise OSError(f"unexpected answer {status} {body[:40]!r}")
    except OSError as e:
        close_all(held)
        raise OSError(f"connection {len(held)} of {count}: {e}") from e
    except BaseException:
        close_all(held)
        raise
    return held


def count_closed(held: list[Held]) -> int:
    """How many the server has closed, or sent a GOAWAY on, while they sat idle: what arrived
    since is read without blocking and fed to each connection's h2 state (a PING is not a
    close; the answers h2 queues are not sent)."""
    import h2.events
    import h2.exceptions

    closed = 0
    for h in held:
        h.sock.setblocking(False)
        try:
            while not h.closed:
                data = h.sock.recv(65536)
                if not data:
                    h.closed = True
                    break
                for event in h.conn.receive_data(data):
                    h.events.append(type(event).__name__)
                    if isinstance(event, h2.events.ConnectionTerminated):
                        h.closed = True
        except (BlockingIOError, InterruptedError):
            pass
        except (OSError, h2.exceptions.ProtocolError):
            h.closed = True
        closed += h.closed
    return closed


def close_all(held: list[Held]) -> None:
    for h in held:
        h.sock.close()
