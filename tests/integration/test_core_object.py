"""The native Server object used wrongly from Python: errors, never crashes.

Run in a subprocess (with the same environment as servers), so that the sanitizer run checks
these paths too.
"""

from __future__ import annotations

import subprocess
import sys

from harness import HERE, server_env

SCRIPT = """
import coachwhip._core as core
server = core.Server.__new__(core.Server)
for name in ("fileno", "on_readable", "run_scheduled", "stop_accepting", "close_all"):
    try:
        getattr(server, name)()
    except RuntimeError as exc:
        print(name, exc)
try:
    server.connection_count
except RuntimeError as exc:
    print("connection_count", exc)
try:
    core.Server(None, None, None, state=[])
except TypeError as exc:
    print("state", exc)
print("Exchange exposed", hasattr(core, "Exchange"))  # made by the engine only
"""


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=HERE,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_uninitialised_or_misused_server_raises_instead_of_crashing() -> None:
    done = run_script(SCRIPT)
    lines = done.stdout.splitlines()
    for name in (
        "fileno",
        "on_readable",
        "run_scheduled",
        "stop_accepting",
        "close_all",
        "connection_count",
    ):
        assert f"{name} Server is not initialised" in lines
    assert "state state must be a dict or None" in lines
    assert "Exchange exposed False" in lines


DELIVER_INSIDE_A_TASK = """
import asyncio, select, socket
import coachwhip._core as core
from coachwhip import _asgi

seen = []

async def app(scope, receive, send):
    seen.append(asyncio.current_task())
    await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from-task"})

async def main():
    loop = asyncio.get_running_loop()
    server = core.Server(app, loop, _asgi.report_failure)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    server.add_listener(listener)
    client = socket.create_connection(listener.getsockname())
    client.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
    # The engine's phases run from inside this coroutine's Task, not from a loop callback:
    # the request's own Task cannot be entered now, so it takes its first step from the loop.
    # Driven until the response is readable (a 5 s bound), yielding so that Task can run.
    deadline = loop.time() + 5
    while not select.select([client], [], [], 0)[0] and loop.time() < deadline:
        server.on_readable()
        server.run_scheduled()
        await asyncio.sleep(0)
    client.settimeout(2)
    data = client.recv(4096)
    print("response", data.split(b"\\r\\n")[0].decode(), data.endswith(b"from-task"))
    print("own task", len(seen) == 1 and seen[0] is not asyncio.current_task())

asyncio.run(main())
"""


def test_requests_delivered_from_inside_a_task_still_run_in_their_own_task() -> None:
    done = run_script(DELIVER_INSIDE_A_TASK)
    assert "response HTTP/1.1 200 OK True" in done.stdout, done.stdout + done.stderr
    assert "own task True" in done.stdout, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
