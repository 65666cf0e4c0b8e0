"""Helpers for the integration tests: a real server process, a raw HTTP/1.1 client, polling.

Nothing here sleeps to wait for readiness: every wait is a poll of a concrete condition (a log
line, a process exit, a socket state) with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
LISTEN_RE = r"Listening on http://([\d.]+):(\d+)"
ACCESS_RE = r'"[A-Z]+ \S+ HTTP/1\.[01]" \d{3}'
READY_TIMEOUT = 15.0
T = TypeVar("T")
LIVE: list[ServerProcess] = []  # servers not yet killed, for failure reports and cleanup


def server_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server process: ours minus any COACHWHIP_* setting, plus `env`.

    Under scripts/test's sanitizer run, COACHWHIP_TEST_SERVER_PRELOAD names the ASan/UBSan
    runtimes: they are preloaded into server processes only (not into curl or this process).
    """
    preload = os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD")
    base = {k: v for k, v in os.environ.items() if not k.startswith("COACHWHIP_")}
    base["PYTHONUNBUFFERED"] = "1"
    base.pop("PYTHONPATH", None)
    if preload:
        base["LD_PRELOAD"] = preload
    base.update(env or {})
    return base


def poll(
    check: Callable[[], T | None], timeout: float, interval: float = 0.01, what: str = "condition"
) -> T:
    """Call `check` until it returns something other than None/False; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ServerProcess:
    """A coachwhip server started as `python -m coachwhip [--port 0] ARGS APP`, output captured."""

    def __init__(
        self,
        app: str,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = 0,
        cwd: Path = HERE,
        pass_fds: Sequence[int] = (),
        python_args: Sequence[str] | None = None,
    ) -> None:
        if python_args is None:
            port_args = ["--port", str(port)] if port is not None else []
            python_args = ["-m", "coachwhip", *port_args, *args, app]
        self.argv = [sys.executable, *python_args]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.host = ""
        self.port = 0
        self.proc = subprocess.Popen(
            self.argv,
            cwd=str(cwd),
            env=server_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        LIVE.append(self)

    # -- output -----------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def find_line(
        self, pattern: str, since: int = 0, *, skip_access: bool = False
    ) -> re.Match[str] | None:
        regex = re.compile(pattern)
        with self._cond:
            lines = list(self.lines[since:])
        for line in lines:
            if skip_access and re.search(ACCESS_RE, line):
                continue
            match = regex.search(line)
            if match:
                return match
        return None

    def wait_for_line(self, pattern: str, timeout: float = 5.0, since: int = 0) -> re.Match[str]:
        """The first output line (from index `since`) matching `pattern`, else AssertionError."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = since
        with self._cond:
            while True:
                for line in self.lines[checked:]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = max(checked, len(self.lines))
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "process output ended" if self._eof else f"timed out after {timeout} s"
                    raise AssertionError(
                        f"{why} before a line matching {pattern!r}; output:\n"
                        + self.output_unlocked()
                    )
                self._cond.wait(remaining)

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def no_line_within(
        self, pattern: str, window: float, since: int = 0, *, skip_access: bool = False
    ) -> bool:
        """True if no line matches `pattern` within `window` s (a bounded negative check)."""
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            if self.find_line(pattern, since, skip_access=skip_access):
                return False
            with self._cond:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.find_line(pattern, since, skip_access=skip_access) is None

    def mark(self) -> int:
        """Index of the next output line: pass it as `since` to look only at later output."""
        with self._cond:
            return len(self.lines)

    # -- lifecycle ---------------------------------------------------------------------------

    def wait_ready(self, pattern: str = LISTEN_RE, timeout: float = READY_TIMEOUT) -> re.Match[str]:
        match = self.wait_for_line(pattern, timeout)
        if pattern == LISTEN_RE:
            self.host, self.port = match.group(1), int(match.group(2))
        return match

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {timeout} s later; output:\n{self.output}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.send_signal(sig)
        code = self.wait_exit(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self in LIVE:
            LIVE.remove(self)

    # -- memory ------------------------------------------------------------------------------

    def rss_kib(self) -> int:
        """Resident memory of the server and its descendants, in KiB (from /proc/PID/status)."""
        total = 0
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            total += int(match.group(1)) if match else 0
        return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = HERE,
    timeout: float = 20.0,
    python_args: Sequence[str] | None = None,
) -> CliResult:
    """Run `python -m coachwhip ARGS` to completion (for commands that must exit on their own)."""
    argv = [
        sys.executable,
        *(python_args if python_args is not None else ["-m", "coachwhip", *args]),
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=str(cwd),
            env=server_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{argv} did not exit within {timeout} s; output: {exc.output!r} {exc.stderr!r}"
        ) from None
    return CliResult(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_refused(host: str, port: int) -> bool:
    """True if a TCP connect to host:port is refused now (False if it is accepted)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


# --- a raw HTTP/1.1 client ------------------------------------------------------------------


class IncompleteResponse(AssertionError):
    """The connection ended before a whole response arrived."""

    def __init__(self, partial: bytes) -> None:
        super().__init__(
            f"connection closed after {len(partial)} bytes of an incomplete response: "
            + repr(partial[:300])
        )
        self.partial = partial


class MalformedResponse(AssertionError):
    pass


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) (\d{3}) ([^\r\n]*)")
HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*")


class RawConnection:
    """A TCP (or Unix) socket speaking HTTP/1.1 by hand, with a read buffer for pipelining."""

    def __init__(
        self, host: str = "", port: int = 0, *, uds: str | None = None, timeout: float = 5.0
    ) -> None:
        if uds is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(uds)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.received = bytearray()  # every byte read, for assertions on the raw stream
        self.eof = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; False at EOF (a reset counts as EOF)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no data within the deadline; buffered: {bytes(self.buf[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise TimeoutError(
                f"no data within the deadline; buffered: {bytes(self.buf[:300])!r}"
            ) from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += data
        return True

    def _take_line(self, deadline: float, start: int) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            if not self._fill(deadline):
                raise IncompleteResponse(bytes(self.received[start:]))

    def _take(self, count: int, deadline: float, start: int) -> bytes:
        while len(self.buf) < count:
            if not self._fill(deadline):
                raise IncompleteResponse(bytes(self.received[start:]))
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def read_head(self, timeout: float | None = None) -> RawResponse:
        """Status line and headers only; the body stays in the stream."""
        deadline = time.monotonic() + (timeout or self.timeout)
        start = len(self.received) - len(self.buf)
        if not self.buf and not self._fill(deadline):
            raise IncompleteResponse(b"")
        status_line = self._take_line(deadline, start)
        match = STATUS_LINE.fullmatch(status_line)
        if not match:
            raise MalformedResponse(f"bad status line {status_line!r}")
        headers: list[tuple[str, str]] = []
        while True:
            line = self._take_line(deadline, start)
            if not line:
                break
            hmatch = HEADER_LINE.fullmatch(line)
            if not hmatch:
                raise MalformedResponse(
                    f"bad header line {line!r} in response {bytes(self.received[start:])[:500]!r}"
                )
            headers.append((hmatch.group(1).decode().lower(), hmatch.group(2).decode("latin-1")))
        return RawResponse(
            match.group(1).decode(), int(match.group(2)), match.group(3).decode("latin-1"), headers
        )

    def read_response(self, *, head: bool = False, timeout: float | None = None) -> RawResponse:
        """One whole response (a 1xx counts as one). `head=True`: the request was HEAD."""
        deadline = time.monotonic() + (timeout or self.timeout)
        start = len(self.received) - len(self.buf)
        response = self.read_head(timeout)
        te = response.header("transfer-encoding")
        cl = response.header("content-length")
        if head or response.status < 200 or response.status in (204, 304):
            pass
        elif te is not None:
            if te.lower() != "chunked":
                raise MalformedResponse(f"unexpected transfer-encoding {te!r}")
            if cl is not None:
                raise MalformedResponse("response has both content-length and transfer-encoding")
            response.chunked = True
            response.body, response.trailers = self._read_chunked(deadline, start)
        elif cl is not None:
            if len(response.header_all("content-length")) != 1 or not cl.isdigit():
                raise MalformedResponse(
                    f"bad content-length {response.header_all('content-length')!r}"
                )
            response.body = self._take(int(cl), deadline, start)
        else:
            response.body = self.read_to_eof(max(0.1, deadline - time.monotonic()))
        response.raw = bytes(self.received[start : len(self.received) - len(self.buf)])
        return response

    def _read_chunked(self, deadline: float, start: int) -> tuple[bytes, list[tuple[str, str]]]:
        body = bytearray()
        while True:
            size_line = self._take_line(deadline, start)
            size_text = size_line.split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                raise MalformedResponse(f"bad chunk size line {size_line!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            body += self._take(size, deadline, start)
            if self._take(2, deadline, start) != b"\r\n":
                raise MalformedResponse("chunk data not followed by CRLF")
        trailers: list[tuple[str, str]] = []
        while True:
            line = self._take_line(deadline, start)
            if not line:
                return bytes(body), trailers
            name, _, value = line.partition(b":")
            trailers.append((name.decode().lower(), value.strip().decode("latin-1")))

    def read_to_eof(self, timeout: float = 2.0, limit: int = 64 * 1024 * 1024) -> bytes:
        """Everything until the peer closes (TimeoutError if it does not close in time)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) <= limit and self._fill(deadline):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def skip(self, count: int, timeout: float = 30.0) -> int:
        """Consume `count` body bytes without keeping them; returns how many arrived before EOF."""
        deadline = time.monotonic() + timeout
        taken = min(count, len(self.buf))
        del self.buf[:taken]
        view = bytearray(1024 * 1024)
        while taken < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {taken} of {count} bytes arrived in {timeout} s")
            self.sock.settimeout(remaining)
            got = self.sock.recv_into(view, min(len(view), count - taken))
            if got == 0:
                break
            taken += got
        return taken


def send_from(source: str, address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Sends `data` on a new connection made from the local address `source` (loopback has many:
    127.0.0.2, 127.0.0.3, ... tell clients and proxies apart) and returns everything received
    until the peer closes (or resets) it."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    received = b""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(address)
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def request(
    method: str,
    target: str,
    host: str = "test",
    headers: Sequence[str] = (),
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    """Bytes of one request; adds content-length when there is a body and none was given."""
    lines = [f"{method} {target} HTTP/{version}", f"Host: {host}", *headers]
    if body and not any(
        h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run_curl(*args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/usr/bin/curl", "--noproxy", "*", "-sS", *args], capture_output=True, timeout=timeout
    )
