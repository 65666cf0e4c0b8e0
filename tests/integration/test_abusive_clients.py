"""Slow and abusive clients, and apps that break the rules (ATTACKS.md sections D and G).

Every abuse is bounded in time, and while it runs a watcher thread keeps asking the same server
for GET /ok on fresh connections: each answer must come within PROMPT_S. Memory is the server's
RSS (from /proc) and its open descriptors (from /proc/PID/fd), compared with a warmed-up
baseline. Measured numbers are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import json
import os
import re
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Serve
from harness import (
    IncompleteResponse,
    RawConnection,
    RawResponse,
    ServerProcess,
    descendants,
    poll,
    request,
)

MIB = 1024 * 1024
PROMPT_S = 0.5  # an ordinary client's GET /ok must complete within this while abuse runs
RSS_SLACK_KIB = 64 * 1024  # "bounded memory": growth while 1 GiB goes by must stay below this
LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT

pytestmark = pytest.mark.timeout(120)


# --- measuring the server -------------------------------------------------------------------


def fd_count(server: ServerProcess) -> int:
    total = 0
    for pid in [server.pid, *descendants(server.pid)]:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def settled(read: Callable[[], int], what: str, timeout: float = 10.0) -> int:
    """Poll `read()` until three readings in a row agree; returns that value."""
    history: list[int] = []

    def stable() -> int | None:
        history.append(read())
        return history[-1] if len(history) >= 3 and len(set(history[-3:])) == 1 else None

    return poll(stable, timeout, interval=0.05, what=what)


def get_ok(server: ServerProcess, timeout: float = 5.0) -> float:
    """One GET /ok on a fresh connection; returns how long it took."""
    start = time.monotonic()
    with RawConnection(server.host, server.port, timeout=timeout) as conn:
        conn.send(request("GET", "/ok"))
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"ok"), response.raw[:200]
    return time.monotonic() - start


class Watch:
    """While the abuse runs, GET /ok on a fresh connection every `interval` s, timing each."""

    def __init__(self, server: ServerProcess, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(get_ok(self.server, timeout=PROMPT_S * 4))
            except Exception as exc:  # every failure is reported by check()
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def check(self, min_samples: int = 5) -> None:
        assert not self.errors, f"ordinary clients failed during the abuse: {self.errors[:5]}"
        assert len(self.latencies) >= min_samples, f"only {len(self.latencies)} probes ran"
        worst = max(self.latencies)
        assert worst < PROMPT_S, (
            f"an ordinary GET /ok took {worst:.3f} s during the abuse "
            f"(median {sorted(self.latencies)[len(self.latencies) // 2]:.4f} s)"
        )

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        return (
            f"{len(ordered)} probes, median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms"
        )


def report(what: str) -> None:
    print(f"\n[abusive-clients] {what}", flush=True)


def progress(server: ServerProcess, key: str) -> dict[str, Any]:
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", f"/progress?id={key}"))
        data = json.loads(conn.read_response().body)
    assert isinstance(data, dict)
    return data


def events(server: ServerProcess, key: str) -> list[Any]:
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", f"/events?id={key}"))
        data = json.loads(conn.read_response().body)
    assert isinstance(data, list)
    return data


# --- D. slow clients --------------------------------------------------------------------------


def test_slowloris_connections_get_408_on_time_while_others_are_served(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-request-header", "1", "--no-access-log")
    count, pace = 300, 0.1
    head = request("GET", "/ok", headers=["X-Slow: " + "s" * 1000])[:-4]  # never finished
    socks = [socket.create_connection((server.host, server.port)) for _ in range(count)]
    sent = [0] * count
    first_byte = [0.0] * count
    answer = [b""] * count
    answered_after = [0.0] * count
    closed = [False] * count
    for sock in socks:
        sock.setblocking(False)
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    deadline = time.monotonic() + 6
    with Watch(server) as watch:
        while not all(closed) and time.monotonic() < deadline:
            now = time.monotonic()
            for i, sock in enumerate(socks):
                if answer[i] or closed[i] or sent[i] >= len(head):
                    continue
                try:
                    sent[i] += sock.send(head[sent[i] : sent[i] + 1])  # one byte per round
                except OSError:
                    closed[i] = True
                if sent[i] == 1:
                    first_byte[i] = now
            for key, _ in selector.select(pace):
                i = key.data
                try:
                    data = socks[i].recv(4096)
                except OSError:
                    data = b""
                if not answer[i]:
                    answered_after[i] = time.monotonic() - first_byte[i]
                answer[i] += data
                if not data:
                    closed[i] = True
                    selector.unregister(socks[i])
    selector.close()
    for sock in socks:
        sock.close()
    watch.check()
    assert all(closed), f"{closed.count(False)} slowloris connections still open after 6 s"
    wrong = [a[:40] for a in answer if not a.startswith(b"HTTP/1.1 408 ")]
    assert not wrong, f"{len(wrong)} connections got something else than 408: {wrong[:3]}"
    late = [round(t, 2) for t in answered_after if not 0.9 <= t <= 2.5]
    assert not late, f"408 outside 0.9-2.5 s of the first byte (deadline 1 s): {late[:10]}"
    report(
        f"slowloris: {count} connections trickling 1 byte/{pace} s got 408 after "
        f"{min(answered_after):.2f}-{max(answered_after):.2f} s; others: {watch.summary()}"
    )


def test_slow_body_is_kept_while_it_trickles_and_cut_off_when_it_stalls(serve: Serve) -> None:
    """The body deadline is an idle deadline: a byte every 0.2 s keeps a 0.5 s deadline from
    firing, so the trickled uploads complete and are answered; the ones that stop get 408 about
    0.5 s after their last byte."""
    server = serve("apps.raw:app", "--timeout-request-body", "0.5", "--no-access-log")
    count, pace, length, stall_after = 60, 0.2, 8, 3
    body = bytes(range(65, 65 + length))
    socks = [socket.create_connection((server.host, server.port)) for _ in range(count)]
    for sock in socks:
        sock.sendall(request("POST", "/echo", headers=[f"Content-Length: {length}"]))
        sock.setblocking(False)
    stalls = [i % 2 == 1 for i in range(count)]  # every other client stops after 3 bytes
    last_byte = [0.0] * count
    first_answer = [0.0] * count
    answers = [b""] * count
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    start = time.monotonic()
    deadline = start + length * pace + 2.0
    tick = 0
    with Watch(server) as watch:
        while time.monotonic() < deadline and not all(a.endswith((body, b"\n")) for a in answers):
            if tick < length and time.monotonic() >= start + tick * pace:  # the pacing clock
                for i, sock in enumerate(socks):
                    if not (stalls[i] and tick >= stall_after):
                        sock.send(body[tick : tick + 1])
                        last_byte[i] = time.monotonic()
                tick += 1
            wait = start + tick * pace - time.monotonic() if tick < length else 0.1
            for key, _ in selector.select(max(0.0, wait)):
                i = key.data
                data = socks[i].recv(4096)
                if data and not answers[i]:
                    first_answer[i] = time.monotonic()
                answers[i] += data
                if not data:
                    selector.unregister(socks[i])
    selector.close()
    for sock in socks:
        sock.close()
    watch.check()
    cut_off_after: list[float] = []
    for i in range(count):
        if stalls[i]:
            assert answers[i].startswith(b"HTTP/1.1 408 "), f"a stalled body: {answers[i][:60]!r}"
            cut_off_after.append(first_answer[i] - last_byte[i])
        else:
            assert answers[i].startswith(b"HTTP/1.1 200 ") and answers[i].endswith(body), (
                f"a trickled body got {answers[i][:60]!r}"
            )
            assert first_answer[i] >= last_byte[i], "answered before the body was complete"
    assert all(0.4 <= t <= 1.5 for t in cut_off_after), f"408 after {sorted(cut_off_after)}"
    report(
        f"slow body: {count // 2} bodies trickled at 1 byte/{pace} s completed over "
        f"{(length - 1) * pace:.1f} s with a 0.5 s idle deadline; {count // 2} stalled ones got "
        f"408 {min(cut_off_after):.2f}-{max(cut_off_after):.2f} s after their last byte; "
        f"others: {watch.summary()}"
    )


# --- D. bounded memory: responses nobody reads, uploads nobody reads ---------------------------


def test_client_that_never_reads_a_1gib_response(serve: Serve) -> None:
    server = serve("apps.raw:app", "--no-access-log")
    for _ in range(3):  # warm up: imports and first-request allocations of a big response
        with RawConnection(server.host, server.port, timeout=10) as conn:
            conn.send(request("GET", "/big?mib=4&id=warm"))
            assert conn.read_response().status == 200
    idle_fds = settled(lambda: fd_count(server), "the server's fd count to settle")
    baseline = server.rss_kib()
    key = "never-read"
    samples: list[int] = []
    conn = RawConnection(server.host, server.port, timeout=10)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    conn.send(request("GET", f"/big?mib=1024&id={key}"))
    history: list[int] = []

    def stalled() -> dict[str, Any] | None:
        data = progress(server, key)
        history.append(int(data["sent"]))
        samples.append(server.rss_kib())
        if data["done"] or (
            len(history) >= 15 and history[-1] > 0 and len(set(history[-15:])) == 1
        ):
            return data
        return None

    with Watch(server) as watch:
        stuck = poll(stalled, 20, interval=0.02, what="the app to block in send()")
        for _ in range(10):  # and it stays blocked, with memory flat
            samples.append(server.rss_kib())
            time.sleep(0.02)  # sampling pace, not a readiness wait
    watch.check()
    assert not stuck["done"], "the app sent 1 GiB to a client that reads nothing"
    accepted = int(stuck["sent"])
    assert accepted < 32 * MIB, f"send() accepted {accepted} bytes before waiting"
    growth = max(samples) - baseline
    assert growth < RSS_SLACK_KIB, f"server RSS grew by {growth} KiB"
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    conn.close()  # the client goes away: the app's pending send() must fail, the fd be freed
    outcome = poll(
        lambda: (lambda p: p if "error" in p else None)(progress(server, key)),
        10,
        what="the app's send() to fail after the client left",
    )
    assert outcome["oserror"] is True, outcome
    settled_fds = settled(lambda: fd_count(server), "the fd count to settle")
    assert settled_fds == idle_fds, f"fds {idle_fds} before, {settled_fds} after"
    report(
        f"never-read 1 GiB response: app blocked after {accepted / MIB:.2f} MiB sent; RSS growth "
        f"{growth} KiB (baseline {baseline} KiB); fds {idle_fds} -> {settled_fds}; "
        f"others: {watch.summary()}"
    )


def socket_buffer_bound() -> int:
    """What the kernel may hold of an upload the server is not reading: the largest send buffer
    of the client, twice the default receive buffer of the server's socket (it is not autotuned
    up while the server is not reading), and 1 MiB for per-packet accounting on loopback."""
    rmem = [int(x) for x in Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()]
    wmem = [int(x) for x in Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()]
    return wmem[2] + 2 * rmem[1] + MIB


def send_until_blocked(sock: socket.socket, limit: int, quiet_s: float = 0.5) -> int:
    """Send without blocking until the kernel takes nothing for `quiet_s` s; bounded."""
    sock.setblocking(False)
    block = b"u" * (256 * 1024)
    sent = 0
    last_progress = time.monotonic()
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_WRITE)
    while sent < limit and time.monotonic() - last_progress < quiet_s:
        try:
            sent += sock.send(block[: min(len(block), limit - sent)])
            last_progress = time.monotonic()
        except BlockingIOError:
            selector.select(0.05)  # wait for room (or the quiet period to pass)
    selector.close()
    return sent


def test_1gib_upload_to_an_app_that_never_reads_is_held_back(serve: Serve) -> None:
    """An app that does not call receive(): the server reads 64 KiB of the body and stops, so
    the client is blocked by TCP flow control after a few MiB instead of sending 1 GiB."""
    server = serve("apps.raw:app", "--no-access-log")
    assert get_ok(server) < 5
    idle_fds = settled(lambda: fd_count(server), "the server's fd count to settle")
    baseline = server.rss_kib()
    key = "upload-held"
    total = 1024 * MIB
    conn = RawConnection(server.host, server.port, timeout=10)
    conn.send(request("POST", f"/gate-read?id={key}", headers=[f"Content-Length: {total}"]))
    poll(lambda: "entered" in events(server, key), 5, what="the app to start")
    with Watch(server) as watch:
        sent = send_until_blocked(conn.sock, 256 * MIB)
        rss_blocked = server.rss_kib()
    watch.check(min_samples=3)
    bound = socket_buffer_bound() + 64 * 1024 + 16 * 1024 + 65536
    assert sent <= bound, f"the client sent {sent} bytes of a body nobody reads (bound {bound})"
    growth = rss_blocked - baseline
    assert growth < RSS_SLACK_KIB, f"server RSS grew by {growth} KiB"
    # The client gives up (reset). Once the app asks for the body it learns the client is gone,
    # and the connection is freed.
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    conn.close()
    with RawConnection(server.host, server.port) as opener:
        opener.send(request("GET", f"/open-gate?id={key}"))
        assert opener.read_response().body == b"opened"
    poll(lambda: "receiving" in events(server, key), 5, what="the app to read")
    after = settled(lambda: fd_count(server), "the fd count to settle")
    assert after == idle_fds, f"fds {idle_fds} before, {after} after the client left"
    report(
        f"never-read 1 GiB upload: client blocked after {sent / MIB:.2f} MiB "
        f"(bound {bound / MIB:.2f} MiB: socket buffers + 64 KiB body + 16 KiB read chunk "
        f"+ 64 KiB head); RSS growth {growth} KiB; fds back to {after}; "
        f"others: {watch.summary()}"
    )


def test_1gib_upload_to_an_app_that_answers_without_reading(serve: Serve) -> None:
    """/noread answers at once. The client, still uploading, reads the whole answer; the server
    then discards at most its linger budget of the body and closes, so the client's sending
    ends with a reset or a stall after a few MiB, never 1 GiB."""
    server = serve("apps.raw:app", "--no-access-log")
    idle_fds = settled(lambda: fd_count(server), "the server's fd count to settle")
    baseline = server.rss_kib()
    total = 1024 * MIB
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(request("POST", "/noread", headers=[f"Content-Length: {total}"]))
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    block = b"n" * (256 * 1024)
    sent, received = 0, b""
    fin = reset = False
    last_progress = time.monotonic()
    deadline = time.monotonic() + 15
    with Watch(server) as watch:
        while not reset and time.monotonic() < deadline and sent < total:
            if time.monotonic() - last_progress > 0.5:
                break  # the kernel has taken nothing for 0.5 s: held back
            for _, mask in selector.select(0.05):
                if mask & selectors.EVENT_READ and not fin:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data, reset = b"", True
                    received += data
                    if not data:
                        fin = True
                        selector.modify(sock, selectors.EVENT_WRITE)
                if mask & selectors.EVENT_WRITE and not reset:
                    try:
                        sent += sock.send(block)
                        last_progress = time.monotonic()
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        reset = True
    selector.close()
    sock.close()
    watch.check(min_samples=1)
    assert fin or reset, f"the server neither closed nor reset after {sent} bytes"
    assert received.startswith(b"HTTP/1.1 200 "), received[:100]
    assert received.endswith(b"did not read"), received[-100:]
    bound = socket_buffer_bound() + 256 * 1024 + 64 * 1024 + 16 * 1024
    assert sent <= bound, f"{sent} bytes were taken from a body nobody reads (bound {bound})"
    growth = server.rss_kib() - baseline
    assert growth < RSS_SLACK_KIB, f"server RSS grew by {growth} KiB"
    after = settled(lambda: fd_count(server), "the fd count to settle")
    assert after == idle_fds
    report(
        f"1 GiB upload to /noread: answer received, then {sent / MIB:.2f} MiB taken in all "
        f"before the client {'was reset' if reset else 'stalled'} (bound {bound / MIB:.2f} MiB: "
        f"socket buffers + 256 KiB linger + 64 KiB body + 16 KiB read chunk); RSS growth "
        f"{growth} KiB; fds back to {after}; others: {watch.summary()}"
    )


# --- D. connection floods ---------------------------------------------------------------------

CONNECT_CLOSE = r"""
import socket, struct, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
linger = struct.pack("ii", 1, 0)
failures = 0
start = time.monotonic()
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    try:
        s.connect((host, port))
    except OSError:
        failures += 1
    s.close()
print(count, failures, time.monotonic() - start)
"""


def listen_queue_drops() -> int:
    """TcpExt ListenOverflows + ListenDrops of this network namespace (connects the listen queue
    had no room for: the client then waits for a SYN retransmit)."""
    head, values = Path("/proc/net/netstat").read_text().splitlines()[:2]
    fields = dict(zip(head.split()[1:], (int(v) for v in values.split()[1:]), strict=True))
    return fields["ListenOverflows"] + fields["ListenDrops"]


def connect_close(server: ServerProcess, total: int, processes: int) -> tuple[int, float]:
    """`total` connect-then-reset cycles from `processes` client processes; (failures, seconds)."""
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONNECT_CLOSE, server.host, str(server.port),
             str(total // processes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]  # fmt: skip
    failures = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out
        failures += int(out.split()[1])
    return failures, time.monotonic() - start


def test_100k_connect_close_cycles_leave_fds_and_memory_flat(serve: Serve) -> None:
    server = serve("apps.raw:app", "--no-access-log")
    assert get_ok(server) < 5
    idle_fds = settled(lambda: fd_count(server), "the server's fd count to settle")
    connect_close(server, 5_000, 1)  # warm up: allocator pools, listen queue, connection lists
    warm_fds = settled(lambda: fd_count(server), "the fd count to settle after the warm-up")
    assert warm_fds == idle_fds
    warm_rss = settled(server.rss_kib, "the RSS to settle after the warm-up")
    total = 100_000
    drops = listen_queue_drops()
    with Watch(server, interval=0.1) as watch:
        failures, seconds = connect_close(server, total, 2)
    drops = listen_queue_drops() - drops
    watch.check()
    end_fds = settled(lambda: fd_count(server), "the fd count to settle")
    end_rss = settled(server.rss_kib, "the RSS to settle")
    assert failures == 0, f"{failures} of {total} connects failed"
    assert end_fds == idle_fds, f"fds {idle_fds} before, {end_fds} after {total} cycles"
    assert end_rss - warm_rss < 4 * 1024, f"RSS {warm_rss} KiB after warm-up, {end_rss} KiB after"
    report(
        f"{total} connect+reset cycles in {seconds:.1f} s ({total / seconds:.0f}/s, 2 client "
        f"processes; listen-queue drops {drops}); fds {idle_fds} -> {end_fds}; RSS {warm_rss} -> "
        f"{end_rss} KiB "
        f"({end_rss - warm_rss:+d}); others: {watch.summary()}"
    )


@pytest.fixture
def many_files() -> Iterator[int]:
    """Raise this process's open-files limit to the hard limit for the test; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_10k_idle_keep_alive_connections(serve: Serve, many_files: int) -> None:
    count = 10_000
    assert many_files >= count + 500, f"the hard open-files limit {many_files} is too low"
    server = serve("apps.raw:app", "--timeout-keep-alive", "120", "--no-access-log")
    for _ in range(50):
        get_ok(server)
    idle_fds = settled(lambda: fd_count(server), "the server's fd count to settle")
    baseline = settled(server.rss_kib, "the RSS to settle")
    conns: list[RawConnection] = []
    start = time.monotonic()
    try:
        for _ in range(count // 500):  # 500 at a time, so the listen queue never overflows
            batch = [RawConnection(server.host, server.port, timeout=10) for _ in range(500)]
            for conn in batch:
                conn.send(request("GET", "/ok"))
            for conn in batch:
                assert conn.read_response().body == b"ok"
            conns.extend(batch)
        opened = time.monotonic() - start
        open_fds = settled(lambda: fd_count(server), "the fd count to settle")
        assert open_fds == idle_fds + count, f"{open_fds - idle_fds} server fds for {count}"
        held = settled(server.rss_kib, "the RSS to settle")
        per_conn = (held - baseline) / count
        latencies = [get_ok(server) for _ in range(20)]
        assert max(latencies) < PROMPT_S, f"GET /ok took {max(latencies):.3f} s"
        for conn in conns[:: count // 100]:  # the idle ones are still served, in sync
            conn.send(request("GET", "/ok"))
            assert conn.read_response().body == b"ok"
        assert per_conn < 16, f"{per_conn:.1f} KiB of server RSS per idle connection"
    finally:
        for conn in conns:
            conn.close()
    after = settled(lambda: fd_count(server), "the fd count to settle after closing")
    assert after == idle_fds, f"fds {idle_fds} before, {after} after closing them all"
    report(
        f"{count} idle keep-alive connections opened (each served once) in {opened:.1f} s; "
        f"server RSS {baseline} -> {held} KiB = {per_conn:.2f} KiB per idle connection; "
        f"GET /ok meanwhile max {max(latencies) * 1000:.1f} ms; fds back to {after}"
    )


# --- G. log injection -------------------------------------------------------------------------

INJECTIONS = [
    b"GET /ok\x1b[31m HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /ok HTTP/1.1\r\nHost: a\r\nUser-Agent: \x1b]0;pwned\x07\r\n\r\n",
    b"GET /ok HTTP/1.1\r\nHost: a\r\nX: a\rINFO:     forged-by-cr\r\n\r\n",
    b"GET /ok\r\nINFO:     forged-by-crlf HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /ok\x00\x08\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
    b"G\x1b[2JET /ok HTTP/1.1\r\nHost: a\r\n\r\n",
]


def test_control_bytes_in_requests_never_reach_the_log(serve: Serve) -> None:
    server = serve("apps.raw:app", "--log-level", "trace")
    since = server.mark()
    for raw in INJECTIONS:
        with RawConnection(server.host, server.port) as conn:
            conn.send(raw)
            assert conn.read_response().status == 400
    # Escaped forms are accepted, and logged escaped (as the client sent them).
    encoded = "/ok?%1b%5b31m%0d%0aINFO:%20forged-by-encoding"
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", encoded))
        assert conn.read_response().status == 200
    server.wait_for_line(re.escape(encoded), 5, since)
    assert get_ok(server) < PROMPT_S
    lines = list(server.lines[since:])
    bad = [line for line in lines if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line)]
    assert not bad, f"control bytes reached the log: {bad[:3]!r}"
    forged = [line for line in lines if re.match(r"\s*(INFO|ERROR|WARNING):\s+forged", line)]
    assert not forged, f"a forged log line: {forged!r}"
    assert not [line for line in lines if "pwned" in line]


# --- G. apps that break the rules (not already in test_asgi_errors.py) -------------------------


@pytest.fixture(scope="module")
def hostile() -> Iterator[ServerProcess]:
    server = ServerProcess("apps.hostile:app")
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


def exchange(
    server: ServerProcess, raw: bytes, *, head: bool = False
) -> tuple[RawResponse | None, RawConnection]:
    """Send `raw` + GET /ok on one connection; the first response (None if the connection
    closed before a whole one), with the connection for further reads."""
    conn = RawConnection(server.host, server.port, timeout=5)
    conn.send(raw + request("GET", "/ok"))
    try:
        return conn.read_response(head=head), conn
    except IncompleteResponse:
        return None, conn


def assert_consistent_after(conn: RawConnection, first: RawResponse | None) -> None:
    """After the first response the connection either closes cleanly (nothing more, or at most
    a closed stream) or answers the pipelined GET /ok exactly; never stray bytes."""
    try:
        if first is not None and first.header("connection") != "close":
            following = conn.read_response()
            assert (following.status, following.body) == (200, b"ok"), following.raw[:300]
        else:
            rest = conn.read_to_eof(3)
            assert rest == b"", f"bytes after a closing response: {rest[:200]!r}"
    finally:
        conn.close()


def still_serving(server: ServerProcess) -> None:
    assert server.running(), server.output[-3000:]
    assert get_ok(server) < PROMPT_S


@pytest.mark.parametrize("status", [204, 304])
def test_body_on_204_or_304_is_refused_with_500(hostile: ServerProcess, status: int) -> None:
    key = f"nobody-{status}"
    first, conn = exchange(
        hostile, request("GET", f"/no-body-status-with-body?status={status}&id={key}")
    )
    assert first is not None and first.status == 500, conn.received[:300]
    assert b"FORBIDDEN-BODY" not in conn.received
    assert_consistent_after(conn, first)
    raised = [e for e in events(hostile, key) if isinstance(e, dict)]
    assert raised, "send() accepted a body on a status that has none"
    still_serving(hostile)


REFUSAL_RULES = {
    "body-on-204": ("/no-body-status-with-body?status=204", r"204 or 304 response cannot have"),
    "header-name": ("/bad-header?h=name-space", r"header name is not a valid token"),
}


@pytest.mark.parametrize("case", list(REFUSAL_RULES))
def test_refused_send_names_the_rule(hostile: ServerProcess, case: str) -> None:
    """The exception the app gets (and the server logs) says which rule the response broke."""
    target, rule = REFUSAL_RULES[case]
    key = f"rule-{case}"
    since = hostile.mark()
    first, conn = exchange(hostile, request("GET", f"{target}&id={key}"))
    assert first is not None and first.status == 500
    assert_consistent_after(conn, first)
    raised = [e for e in events(hostile, key) if isinstance(e, dict)]
    assert raised, "send() accepted it"
    assert re.search(rule, raised[0]["msg"]), f"send() raised {raised[0]}: the rule is not named"
    hostile.wait_for_line(re.escape(raised[0]["msg"]), 5, since)


def test_body_on_head_is_dropped_and_the_stream_stays_in_sync(hostile: ServerProcess) -> None:
    first, conn = exchange(hostile, request("HEAD", "/body-on-head"), head=True)
    assert first is not None and first.status == 200
    assert b"HEAD-BODY" not in conn.received
    assert first.header("transfer-encoding") is None
    assert_consistent_after(conn, first)
    still_serving(hostile)


@pytest.mark.parametrize("status", [100, 101, 103])
def test_informational_status_as_the_final_response_is_refused(
    hostile: ServerProcess, status: int
) -> None:
    """RFC 9110 §15.2: a 1xx response is interim; the client keeps waiting for the final one,
    so a 1xx sent as the app's only response makes the next response on the connection (here
    the pipelined GET /ok) the answer to this request. 101 also tells the client the protocol
    switched. The app broke the rules: 500 (or close), never a bare 1xx."""
    key = f"interim-{status}"
    first, conn = exchange(hostile, request("GET", f"/interim-status?status={status}&id={key}"))
    assert not conn.received.startswith(b"HTTP/1.1 1"), (
        f"a {status} went out as the final response: {bytes(conn.received)[:300]!r}"
    )
    assert first is None or first.status == 500, conn.received[:300]
    assert_consistent_after(conn, first)
    still_serving(hostile)


@pytest.mark.parametrize("status", [600, 999])
def test_status_outside_100_to_599_is_refused(hostile: ServerProcess, status: int) -> None:
    """RFC 9110 §15: status codes outside 100..599 are invalid on the wire."""
    first, conn = exchange(hostile, request("GET", f"/odd-status?status={status}&id=odd{status}"))
    assert first is None or first.status == 500, conn.received[:300]
    assert_consistent_after(conn, first)
    still_serving(hostile)


BAD_HEADER_CASES = [
    "str-value-non-latin1", "str-name", "name-space", "name-colon", "name-empty", "name-utf8",
    "value-esc", "value-del", "value-vt", "cl-letters", "cl-negative", "cl-list", "cl-plus",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_HEADER_CASES)
def test_invalid_response_header_is_refused_with_500(hostile: ServerProcess, case: str) -> None:
    key = f"header-{case}"
    first, conn = exchange(hostile, request("GET", f"/bad-header?h={case}&id={key}"))
    assert first is not None and first.status == 500, conn.received[:300]
    assert first.header("connection") == "close"
    assert b"bad" not in (first.body or b"")
    assert_consistent_after(conn, first)
    raised = [e for e in events(hostile, key) if isinstance(e, dict)]
    assert raised, "send() accepted an invalid header"
    still_serving(hostile)


def test_two_different_content_lengths_from_the_app_are_500(hostile: ServerProcess) -> None:
    first, conn = exchange(hostile, request("GET", "/two-content-lengths?id=two-cl"))
    assert first is not None and first.status == 500, conn.received[:300]
    assert_consistent_after(conn, first)
    still_serving(hostile)


def test_obs_text_header_value_goes_out_as_is(hostile: ServerProcess) -> None:
    first, conn = exchange(hostile, request("GET", "/obs-text-header"))
    assert first is not None and first.status == 200
    assert b"\r\nx-latin: caf\xe9\r\n" in conn.received
    assert_consistent_after(conn, first)


@pytest.mark.parametrize("target", ["/app-transfer-encoding", "/app-connection-header"])
def test_framing_and_connection_headers_stay_the_servers(
    hostile: ServerProcess, target: str
) -> None:
    first, conn = exchange(hostile, request("GET", target))
    assert first is not None and first.status == 200, conn.received[:300]
    assert first.header("transfer-encoding") is None
    assert first.header("connection") is None, "the app's connection header went out"
    assert first.header("content-length") == str(len(first.body))
    assert_consistent_after(conn, first)


def test_concurrent_send_calls_never_garble_the_stream(hostile: ServerProcess) -> None:
    first, conn = exchange(hostile, request("GET", "/concurrent-sends?id=concurrent"))
    if first is not None:  # a complete response, or a 500 before anything went out
        assert first.status in (200, 500), conn.received[:300]
    else:
        assert conn.received == b"" or conn.received.startswith(b"HTTP/1.1 200 ")
    assert_consistent_after(conn, first)
    still_serving(hostile)


def test_receive_after_the_response_is_disconnect_at_once(hostile: ServerProcess) -> None:
    key = "late-receive"
    first, conn = exchange(hostile, request("GET", f"/receive-after-response?id={key}"))
    assert first is not None and first.body == b"done"
    assert_consistent_after(conn, first)
    # (an empty list is a result to poll(): "or None" keeps waiting until the app recorded it)
    late = poll(lambda: events(hostile, key) or None, 5, what="the late receive()")
    assert late == ["http.disconnect"]


def test_exception_after_a_complete_response_keeps_the_connection(
    hostile: ServerProcess,
) -> None:
    since = hostile.mark()
    first, conn = exchange(hostile, request("GET", "/raise-after-response"))
    assert first is not None and (first.status, first.body) == (200, b"done")
    assert_consistent_after(conn, first)
    hostile.wait_for_line(r"RuntimeError: cw-hostile-after-complete-response", 5, since)
    still_serving(hostile)


def test_return_value_after_a_complete_response(hostile: ServerProcess) -> None:
    """ASGI apps return None. The server logs it; the connection stays consistent (the complete
    response either arrives whole or not at all, and nothing else follows)."""
    since = hostile.mark()
    first, conn = exchange(hostile, request("GET", "/return-value-after-response"))
    if first is not None:
        assert (first.status, first.body) == (200, b"done")
    else:
        assert conn.received == b"", conn.received[:300]
    assert_consistent_after(conn, first)
    hostile.wait_for_line(r"should return None, but returned 'cw-hostile-return-value'", 5, since)
    still_serving(hostile)


@pytest.mark.parametrize(
    "target",
    ["/body-before-start", "/start-without-status", "/status-as-string", "/headers-not-pairs",
     "/message-not-dict"],
)  # fmt: skip
def test_malformed_send_message_is_500(hostile: ServerProcess, target: str) -> None:
    key = target.strip("/")
    since = hostile.mark()
    first, conn = exchange(hostile, request("GET", f"{target}?id={key}"))
    assert first is not None and first.status == 500, conn.received[:300]
    assert_consistent_after(conn, first)
    raised = [e for e in events(hostile, key) if isinstance(e, dict)]
    assert raised, "send() accepted a malformed message"
    hostile.wait_for_line(re.escape(raised[0]["msg"]), 5, since)
    still_serving(hostile)


def test_ten_thousand_response_headers_go_out_intact(hostile: ServerProcess) -> None:
    first, conn = exchange(hostile, request("GET", "/huge-header-count"))
    assert first is not None and (first.status, first.body) == (200, b"many")
    assert len(first.header_all("x-h")) == 10_000
    assert_consistent_after(conn, first)
