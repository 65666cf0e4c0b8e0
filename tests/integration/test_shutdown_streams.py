"""Shutdown with long-lived responses (issue 11 §4): an event stream open at SIGTERM no longer
holds the shutdown for the whole graceful timeout, streamed downloads still finish, the tasks an
app leaves running are cancelled and awaited as asyncio.run() does, and SIGHUP on a single
process says what it does instead of ending the process. Real server processes throughout.
"""

from __future__ import annotations

import re
import signal
import time

import httpx
from conftest import Serve
from harness import RawConnection, ServerProcess, request
from tlscerts import Certs

APP = "apps.streams:app"
DESTROYED = "Task was destroyed but it is pending"


def open_stream(server: ServerProcess, path: str) -> RawConnection:
    conn = RawConnection(server.host, server.port, timeout=10)
    conn.send(request("GET", path))
    head = conn.read_head()
    assert head.status == 200
    return conn


def stop_timed(server: ServerProcess, timeout: float = 15.0) -> tuple[int, float]:
    started = time.monotonic()
    status = server.stop(signal.SIGTERM, timeout)
    return status, time.monotonic() - started


# --- event streams ------------------------------------------------------------------------------


def test_sigterm_ends_an_event_stream_at_once_and_cleanly(serve: Serve) -> None:
    """The app hears http.disconnect as the shutdown begins, returns, and the stream ends with
    its last chunk (the client sees a complete response, and reconnects elsewhere)."""
    server = serve(APP, "--timeout-graceful-shutdown", "30")
    conn = open_stream(server, "/sse")
    conn.sock.recv(64)  # the stream runs
    since = server.mark()
    status, took = stop_timed(server)
    assert status == 0, server.output
    assert took < 3, f"the shutdown took {took:.1f}s; output:\n{server.output}"
    rest = conn.read_to_eof(timeout=5)
    assert rest.endswith(b"\r\n0\r\n\r\n"), rest[-40:]
    assert server.find_line("EVENT sse disconnect", since)
    line = server.find_line(r'"GET /sse HTTP/1\.1" 200', since)
    assert line is not None and line.string.endswith(" 200"), server.output  # not cut short
    assert not server.find_line(r"ERROR|WARNING", since), server.output
    conn.close()


def test_sigterm_ends_a_starlette_event_stream(serve: Serve) -> None:
    """Starlette's StreamingResponse (and sse-starlette) listen for http.disconnect too."""
    server = serve("apps.streams:starlette_app", "--timeout-graceful-shutdown", "30")
    conn = open_stream(server, "/events")
    conn.sock.recv(64)
    status, took = stop_timed(server)
    assert status == 0 and took < 3, f"{took:.1f}s; output:\n{server.output}"
    conn.read_to_eof(timeout=5)
    assert not server.find_line(r"ERROR", 0), server.output
    conn.close()


def test_an_event_stream_that_never_listens_ends_at_once_too(serve: Serve) -> None:
    """An app that only sends learns it from send(), which raises as if the client had left
    (ClientDisconnected, an OSError, as ASGI 2.4 says); the client still sees a clean end."""
    server = serve(APP, "--timeout-graceful-shutdown", "30")
    conn = open_stream(server, "/sse-deaf")
    conn.sock.recv(64)
    since = server.mark()
    status, took = stop_timed(server)
    assert status == 0 and took < 3, f"{took:.1f}s; output:\n{server.output}"
    assert conn.read_to_eof(timeout=5).endswith(b"\r\n0\r\n\r\n")
    assert not server.find_line(r"ERROR|WARNING", since), server.output
    conn.close()


def test_an_endless_download_is_cancelled_at_the_graceful_timeout(serve: Serve) -> None:
    """Not an event stream: it may be a download about to finish, so it gets the graceful
    timeout, as every request in flight does."""
    server = serve(APP, "--timeout-graceful-shutdown", "1")
    conn = open_stream(server, "/stream?chunks=0")
    since = server.mark()
    status, took = stop_timed(server)
    assert status == 0, server.output
    assert 0.9 < took < 4, f"{took:.1f}s; output:\n{server.output}"
    assert server.find_line("Graceful shutdown timed out after 1s: cancelling 1 request", since)
    assert server.find_line(r'"GET /stream\?chunks=0 HTTP/1\.1" 200 \(cut short: after \d+ bytes\)')
    conn.close()


def test_a_streamed_download_in_flight_still_finishes(serve: Serve) -> None:
    """Only event streams are ended: a finite stream (here 40 chunks over ~1 s) completes."""
    server = serve(APP, "--timeout-graceful-shutdown", "30")
    conn = RawConnection(server.host, server.port, timeout=10)
    conn.send(request("GET", "/stream?chunks=40"))
    head = conn.read_head()
    assert head.status == 200
    server.send_signal(signal.SIGTERM)
    data = conn.read_to_eof(timeout=10)
    assert data.endswith(b"\r\n0\r\n\r\n"), data[-40:]
    assert server.wait_exit(10) == 0
    assert server.find_line("EVENT stream complete-40"), server.output
    conn.close()


# --- tasks the app left running ----------------------------------------------------------------


def test_tasks_left_running_are_cancelled_and_awaited_at_exit(serve: Serve) -> None:
    server = serve(APP)
    assert httpx.get(server.url + "/spawn").text == "spawned"
    status = server.stop(signal.SIGTERM)
    assert status == 0, server.output
    finished = server.find_line(r"Finished server process")
    assert finished is not None, server.output
    lines = server.lines
    end = lines.index(finished.string)
    cleaned = [x for x in lines[end:] if x.startswith("EVENT") and x.endswith("cleaned-up")]
    assert sorted(cleaned) == ["EVENT lifespan-task cleaned-up", "EVENT request-task cleaned-up"]
    assert DESTROYED not in server.output


def test_a_task_that_ignores_cancellation_is_named_and_left(serve: Serve) -> None:
    server = serve(APP)
    assert httpx.get(server.url + "/stubborn").text == "stubborn"
    started = time.monotonic()
    status = server.stop(signal.SIGTERM, timeout=20)
    took = time.monotonic() - started
    assert status == 0, server.output
    assert 4.5 < took < 10, took
    line = server.wait_for_line("still running", 1).string
    assert re.fullmatch(
        r"WARNING:  1 task\(s\) still running 5s after they were cancelled at exit \(Task-\d+\): "
        r"they catch asyncio.CancelledError and carry on; exiting without them",
        line,
    ), line
    assert DESTROYED not in server.output


# --- SIGHUP on a single process ------------------------------------------------------------------

SIGHUP_NOTE = (
    "the app's code is not reloaded by a single process; for rolling restarts on SIGHUP run "
    "coachwhip with --workers 2 or more (its supervisor starts new workers before the old ones "
    "stop)"
)


def test_sighup_on_a_single_process_says_so_and_keeps_serving(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    server.send_signal(signal.SIGHUP)
    line = server.wait_for_line("SIGHUP", 5, since).string
    assert line == f"WARNING:  SIGHUP: {SIGHUP_NOTE}"
    assert server.running()
    assert httpx.get(server.url + "/ok").text == "ok"
    assert server.stop() == 0


def test_sighup_with_tls_reloads_the_certificate_and_says_the_rest(
    serve: Serve, certs: Certs
) -> None:
    server = serve(
        APP,
        "--ssl-certfile",
        str(certs.combined),
        ready=r"Listening on https://([\d.]+):(\d+)",
    )
    since = server.mark()
    server.send_signal(signal.SIGHUP)
    line = server.wait_for_line("SIGHUP", 5, since).string
    assert line == f"INFO:     SIGHUP: the TLS certificate was read again; {SIGHUP_NOTE}"
    assert server.running()
    assert server.stop() == 0
