"""A bounded load generator for the process-model tests.

Each thread keeps one keep-alive connection and sends GETs until stopped. Like a browser or
urllib3 (RFC 9112 §9.3.1), it retries an idempotent request once on a new connection when the
old one was closed before any byte of the response arrived - the unavoidable race of HTTP/1.1
keep-alive when a server closes an idle connection. Retries are counted apart from failures.
"""

from __future__ import annotations

import http.client
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
    def __init__(self, host: str, port: int, path: str = "/ok", threads: int = 4) -> None:
        self.host, self.port, self.path = host, port, path
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
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            sent = time.monotonic()
            outcome, conn = self._one(conn, retry=True)
            with self._lock:
                if outcome.startswith("ok:"):
                    self.result.ok += 1
                    self.result.pids.add(outcome[3:])
                    self.result.timeline.append((sent, time.monotonic()))
                else:
                    self.result.failures.append(outcome)
                    self.result.timeline.append((sent, None))

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
