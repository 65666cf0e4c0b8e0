"""A bounded load generator for the process-model tests, in three load shapes.

- "keepalive" (default): each thread keeps one keep-alive connection and sends GETs until
  stopped. Like a browser or urllib3 (RFC 9112 §9.3.1), it retries an idempotent request once on
  a new connection when the old one was closed before any byte of the response arrived - the
  race of HTTP/1.1 keep-alive when a server closes an idle connection. Retries are counted apart
  from failures.
- "close": a new connection for every request (`Connection: close`), one after another as fast
  as they are answered. No retry: a fresh connection that fails is a failure.
- "pipeline": each thread writes 8 GETs at once on a keep-alive connection, then reads the 8
  responses. Requests left unanswered when the server ends the connection (a response said
  `connection: close`, or the connection closed after a complete response) are sent again on a
  new connection, as RFC 9112 §9.3.2 tells a pipelining client to; they count as retried. Any
  other outcome (a reset or EOF in the middle of a response, a wrong status) is a failure.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    ok: int = 0
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    pids: set[str] = field(default_factory=set)
    # (time sent, time answered or None) for each request, to reason about signal timing
    timeline: list[tuple[float, float | None]] = field(default_factory=list)


class Load:
    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/ok",
        threads: int = 4,
        mode: str = "keepalive",
    ) -> None:
        assert mode in ("keepalive", "close", "pipeline"), mode
        self.host, self.port, self.path, self.mode = host, port, path, mode
        self.result = Result()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> Result:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        return self.result

    def wait_for(self, requests: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.result.ok < requests:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.result.ok} requests done in {timeout} s")
            time.sleep(0.01)

    def _run(self) -> None:
        if self.mode == "close":
            return self._run_close()
        if self.mode == "pipeline":
            return self._run_pipeline()
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            sent = time.monotonic()
            outcome, conn = self._one(conn, retry=True)
            self._record(sent, outcome)

    def _one(
        self, conn: http.client.HTTPConnection | None, retry: bool
    ) -> tuple[str, http.client.HTTPConnection | None]:
        fresh = conn is None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            if retry and not fresh:  # closed while idle: retry once on a new connection
                with self._lock:
                    self.result.retried += 1
                return self._one(None, retry=False)
            return f"error: {exc!r}", None
        except OSError as exc:
            conn.close()
            return f"error: {exc!r}", None
        if response.status != 200:
            return f"status {response.status}", conn
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = None
        return "ok:" + body.decode(), conn

    def _record(self, sent: float, outcome: str) -> None:
        with self._lock:
            if outcome.startswith("ok:"):
                self.result.ok += 1
                self.result.pids.add(outcome[3:])
                self.result.timeline.append((sent, time.monotonic()))
            else:
                self.result.failures.append(outcome)
                self.result.timeline.append((sent, None))

    def _request_bytes(self, close: bool) -> bytes:
        extra = "Connection: close\r\n" if close else ""
        return f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}\r\n".encode()

    def _run_close(self) -> None:
        request = self._request_bytes(close=True)
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                with socket.create_connection((self.host, self.port), timeout=10) as sock:
                    sock.sendall(request)
                    reader = _Responses(sock)
                    status, _, body = reader.next()
                outcome = f"ok:{body.decode()}" if status == 200 else f"status {status}"
            except (OSError, EOFError) as exc:
                outcome = f"error: {exc!r}"
            self._record(sent, outcome)

    def _run_pipeline(self, depth: int = 8) -> None:
        request = self._request_bytes(close=False)
        pending = depth  # requests still to be answered in this round
        sock: socket.socket | None = None
        while not self._stop.is_set():
            sent = time.monotonic()
            if sock is None:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=10)
                except OSError as exc:
                    self._record(sent, f"error: connect: {exc!r}")
                    continue
                reader = _Responses(sock)
            try:
                sock.sendall(request * pending)
            except OSError:  # the server closed as we wrote: nothing of this round was answered
                sock.close()
                sock = None
                with self._lock:
                    self.result.retried += pending
                continue
            answered, reason = 0, ""
            while answered < pending:
                try:
                    status, headers, body = reader.next()
                except EOFError as exc:  # closed between two responses: a clean end
                    reason = "" if exc.args[0] == 0 else f"error: {exc}"
                    break
                except OSError as exc:
                    reason = f"error: {exc!r}" if reader.started else "reset between responses"
                    break
                answered += 1
                self._record(sent, f"ok:{body.decode()}" if status == 200 else f"status {status}")
                if headers.get("connection", "").lower() == "close":
                    break
            if answered == pending:
                pending = depth
                continue
            sock.close()
            sock = None
            if reason.startswith("error"):
                self._record(sent, reason)
            else:  # the server ended the connection cleanly: send the rest again (§9.3.2)
                with self._lock:
                    self.result.retried += pending - answered
            pending = pending - answered if not reason.startswith("error") else depth
        if sock is not None:
            sock.close()


class _Responses:
    """Reads HTTP/1.1 responses with a content-length, one after another, from a socket.

    `next()` raises EOFError(0) when the connection ends before a response starts and
    EOFError(n) when it ends n bytes into one; `started` says whether the last call had begun
    reading a response when it failed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer, self.started = sock, b"", False

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(len(self.buffer))
        self.buffer += data

    def next(self) -> tuple[int, dict[str, str], bytes]:
        self.started = bool(self.buffer)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
            self.started = True
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        self.started = False
        return status, headers, body
