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


def test_uninitialised_or_misused_server_raises_instead_of_crashing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=HERE,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
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
