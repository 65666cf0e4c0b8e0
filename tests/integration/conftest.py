"""Fixtures for the end-to-end tests: a real coachwhip process per test (or per module)."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Protocol

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helpers module, whatever the import mode
    sys.path.insert(0, str(HERE))

from harness import LISTEN_RE, LIVE, ServerProcess  # noqa: E402
from tlscerts import Certs, session_certs  # noqa: E402

DEFAULT_TIMEOUT_S = 60


class Serve(Protocol):
    def __call__(
        self,
        app: str,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = 0,
        cwd: Path = HERE,
        pass_fds: tuple[int, ...] = (),
        ready: str | None = LISTEN_RE,
    ) -> ServerProcess: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here gets a timeout unless it sets its own."""
    for item in items:
        if (
            Path(str(item.fspath)).resolve().is_relative_to(HERE)
            and item.get_closest_marker("timeout") is None
        ):
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach what the running servers printed."""
    report = yield
    if report.failed:
        for server in LIVE:
            tail = "\n".join(server.lines[-150:])
            report.sections.append((f"coachwhip output (pid {server.pid})", tail))
    return report


def _start(
    app: str,
    *args: str,
    ready: str | None = LISTEN_RE,
    env: dict[str, str] | None = None,
    port: int | None = 0,
    cwd: Path = HERE,
    pass_fds: tuple[int, ...] = (),
) -> ServerProcess:
    server = ServerProcess(app, *args, env=env, port=port, cwd=cwd, pass_fds=pass_fds)
    if ready is not None:
        try:
            server.wait_ready(ready)
        except BaseException:
            server.kill()
            raise
    return server


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Factory: serve("apps.raw:app", "--flag", env={...}) -> a ready ServerProcess.

    `ready=None` returns at once; `port=None` passes no --port (for --uds, --fd, env tests).
    Every server it started is killed at teardown.
    """
    started: list[ServerProcess] = []

    def factory(
        app: str,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = 0,
        cwd: Path = HERE,
        pass_fds: tuple[int, ...] = (),
        ready: str | None = LISTEN_RE,
    ) -> ServerProcess:
        server = _start(app, *args, ready=ready, env=env, port=port, cwd=cwd, pass_fds=pass_fds)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def raw_server() -> Iterator[ServerProcess]:
    """One server for the raw ASGI app, shared by a module's tests that do not stop it."""
    server = _start("apps.raw:app")
    yield server
    server.kill()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The TLS test certificates (tlscerts.py), made once per test session."""
    return session_certs(tmp_path_factory)
