"""--reload: edits are picked up, a syntax error does not kill the server, streams do not block."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request

pytestmark = pytest.mark.timeout(60)

APP = """
import asyncio

VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    if scope["path"] == "/stream":  # never ends on its own
        while True:
            await send({{"type": "http.response.body", "body": b"tick\\n", "more_body": True}})
            await asyncio.sleep(0.05)
    await send({{"type": "http.response.body", "body": VERSION.encode()}})
"""


def write_app(directory: Path, version: str) -> None:
    path = directory / "live_app.py"
    path.write_text(APP.format(version=version))


def version(server: ServerProcess) -> str | None:
    try:
        return httpx.get(server.url + "/", timeout=2).text
    except httpx.HTTPError:
        return None


def start(serve: Serve, directory: Path) -> ServerProcess:
    return serve(
        "live_app:app",
        "--reload",
        "--reload-dir",
        str(directory),
        "--app-dir",
        str(directory),
        cwd=directory,
    )


def test_an_edited_file_is_served_after_reload(serve: Serve, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    server = start(serve, tmp_path)
    assert version(server) == "v1"
    write_app(tmp_path, "v2")
    poll(lambda: version(server) == "v2", 10, what="v2 served")
    server.wait_for_line(r"Reloading: changed .*live_app\.py", 5)
    (tmp_path / "notes.txt").write_text("not python")  # not *.py: no reload
    (tmp_path / ".hidden.py").write_text("x = 1")  # excluded: no reload
    assert server.no_line_within(r"Reloading: changed .*(notes|hidden)", 1.0)


def test_a_syntax_error_is_shown_and_the_server_waits(serve: Serve, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    server = start(serve, tmp_path)
    (tmp_path / "live_app.py").write_text("def broken(:\n")
    server.wait_for_line(r"SyntaxError", 10)
    server.wait_for_line(r"Keeping the 1 old worker\(s\)", 10)
    assert version(server) == "v1"  # the old code keeps serving meanwhile
    write_app(tmp_path, "v3")
    poll(lambda: version(server) == "v3", 10, what="v3 served after the fix")
    assert server.running()


def test_a_syntax_error_at_first_start_waits_for_a_fix(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "live_app.py").write_text("def broken(:\n")
    server = start_unready(serve, tmp_path)
    server.wait_for_line(r"Waiting for the next change", 15)
    assert server.running()
    write_app(tmp_path, "fixed")
    server.wait_for_line(r"Listening on http://([\d.]+):(\d+)", 15)
    server.wait_ready()
    assert version(server) == "fixed"


def test_reload_does_not_hang_on_an_open_stream(serve: Serve, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    server = start(serve, tmp_path)
    with RawConnection(server.host, server.port, timeout=10) as stream:
        stream.send(request("GET", "/stream"))
        stream.read_head()
        edited = time.monotonic()
        write_app(tmp_path, "v2")
        poll(lambda: version(server) == "v2", 10, what="v2 served with a stream open")
        assert time.monotonic() - edited < 5.0


def start_unready(serve: Serve, directory: Path) -> ServerProcess:
    return serve(
        "live_app:app",
        "--reload",
        "--reload-dir",
        str(directory),
        "--app-dir",
        str(directory),
        cwd=directory,
        ready=None,
    )
