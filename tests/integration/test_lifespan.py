"""The ASGI lifespan protocol (SPECS 1.3) and the --lifespan modes."""

from __future__ import annotations

import signal

import httpx
import pytest
from conftest import Serve
from harness import run_cli

FAIL_MESSAGE = "database unreachable: cw-startup-failed-7731"
RAISE_MESSAGE = "cw-startup-raised-5519"


def test_startup_state_reaches_requests(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:state_app")
    assert server.find_line(r"Application startup complete")
    data = httpx.get(server.url + "/", timeout=5).json()
    assert data == {"state": {"greeting": "hello from startup"}, "lifespan": "ran"}


def test_listening_is_printed_after_startup_completes(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:state_app")
    lines = server.lines
    startup = next(i for i, line in enumerate(lines) if "Application startup complete" in line)
    listening = next(i for i, line in enumerate(lines) if "Listening on" in line)
    assert startup < listening


@pytest.mark.parametrize(
    "mode", [(), ("--lifespan", "on"), ("--lifespan", "auto")], ids=["default", "on", "auto"]
)
def test_failed_startup_exits_3_without_serving(mode: tuple[str, ...]) -> None:
    result = run_cli("--port", "0", *mode, "apps.lifespan_apps:failing_startup", timeout=20)
    assert result.returncode == 3, result.output
    assert FAIL_MESSAGE in result.output
    assert "Listening on" not in result.output


def test_failed_startup_via_env_mode() -> None:
    result = run_cli(
        "--port", "0", "apps.lifespan_apps:failing_startup", env={"COACHWHIP_LIFESPAN": "on"}
    )
    assert result.returncode == 3, result.output
    assert FAIL_MESSAGE in result.output


def test_exception_in_startup_with_lifespan_on_exits_3() -> None:
    result = run_cli(
        "--port", "0", "--lifespan", "on", "apps.lifespan_apps:raising_startup", timeout=20
    )
    assert result.returncode == 3, result.output
    assert RAISE_MESSAGE in result.output
    assert "Listening on" not in result.output


def test_app_without_lifespan_and_lifespan_on_exits_3() -> None:
    result = run_cli(
        "--port", "0", "--lifespan", "on", "apps.lifespan_apps:no_lifespan", timeout=20
    )
    assert result.returncode == 3, result.output
    assert "Listening on" not in result.output


def test_exception_in_startup_with_auto_keeps_serving(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:raising_startup", "--lifespan", "auto")
    assert httpx.get(server.url + "/", timeout=5).json() == {"served": True}


def test_app_without_lifespan_support_is_served_in_auto_mode(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:no_lifespan")
    assert httpx.get(server.url + "/", timeout=5).json() == {"served": True}
    assert server.stop() == 0


def test_lifespan_off_skips_startup(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:failing_startup", "--lifespan", "off")
    data = httpx.get(server.url + "/", timeout=5).json()
    assert data["served"] is True
    assert FAIL_MESSAGE not in server.output
    assert server.find_line(r"Waiting for application startup") is None
    assert server.stop() == 0


def test_lifespan_off_via_env(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:failing_startup", env={"COACHWHIP_LIFESPAN": "off"})
    assert httpx.get(server.url + "/", timeout=5).json()["served"] is True


def test_shutdown_runs_on_sigterm(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:state_app")
    assert httpx.get(server.url + "/", timeout=5).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    assert server.find_line(r"cw-lifespan: shutdown ran"), server.output


def test_shutdown_runs_on_sigint(serve: Serve) -> None:
    server = serve("apps.raw:app")
    assert server.stop(signal.SIGINT) == 0
    assert server.find_line(r"cw-raw: lifespan shutdown ran"), server.output


def test_factory_app_gets_lifespan_too(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:create_app", "--factory")
    assert server.stop() == 0
    assert server.find_line(r"cw-factory: shutdown ran"), server.output
