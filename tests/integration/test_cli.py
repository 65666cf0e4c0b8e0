"""The command line: --version, --help, MODULE:ATTRIBUTE errors, flags, environment variables."""

from __future__ import annotations

import importlib.metadata
import json
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import (
    ACCESS_RE,
    HERE,
    RawConnection,
    ServerProcess,
    free_port,
    poll,
    request,
    run_cli,
    run_curl,
)

ALL_FLAGS = [
    "--host", "--port", "--uds", "--fd", "--backlog", "--app-dir", "--factory", "--root-path",
    "--lifespan", "--loop", "--log-level", "--access-log", "--no-access-log",
    "--timeout-keep-alive", "--timeout-graceful-shutdown", "--server-header", "--no-server-header",
    "--date-header", "--no-date-header", "--version", "--help",
]  # fmt: skip


def get_json(url: str) -> dict[str, object]:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


# --- --version and --help -----------------------------------------------------------------------


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version", timeout=10)
    assert result.returncode == 0, result.output
    assert importlib.metadata.version("coachwhip") in result.stdout
    assert "Traceback" not in result.output


def test_help_lists_every_flag() -> None:
    result = run_cli("--help", timeout=10)
    assert result.returncode == 0, result.output
    missing = [flag for flag in ALL_FLAGS if not re.search(re.escape(flag) + r"\b", result.stdout)]
    assert missing == [], f"--help does not mention {missing}:\n{result.stdout}"
    assert "MODULE:ATTRIBUTE" in result.stdout


# --- a wrong MODULE:ATTRIBUTE: one line, status 2, no traceback -----------------------------------


def assert_one_line_error(result_args: tuple[str, ...], *needles: str) -> str:
    result = run_cli("--port", "0", *result_args, timeout=15)
    assert result.returncode == 2, f"status {result.returncode}:\n{result.output}"
    assert len(result.stderr_lines) == 1, f"expected exactly one line on stderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    assert "Listening on" not in result.output
    line = result.stderr_lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def test_attribute_typo_suggests_the_close_name() -> None:
    line = assert_one_line_error(("apps.raw:ap",), "did you mean 'app'?")
    assert "'ap'" in line and "apps.raw" in line


def test_module_typo_suggests_the_close_name() -> None:
    line = assert_one_line_error(("apps.rwa:app",), "did you mean")
    assert "raw" in line.split("did you mean", 1)[1], line


def test_unknown_module_without_close_name() -> None:
    assert_one_line_error(("cw_zz_no_such_module_anywhere:app",), "cw_zz_no_such_module_anywhere")


@pytest.mark.parametrize(
    "target", ["apps.raw", "apps.raw:", ":app"], ids=["no-colon", "no-attribute", "no-module"]
)
def test_malformed_target_is_one_line_status_2(target: str) -> None:
    assert_one_line_error((target,))


def test_dotted_attribute_typo_is_one_line_status_2() -> None:
    assert_one_line_error(("apps.raw:holder.ap",), "ap")


def test_dotted_attribute_is_served(serve: Serve) -> None:
    server = serve("apps.raw:holder.app")
    assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_missing_target_argument_is_status_2() -> None:
    result = run_cli("--port", "0", timeout=10)
    assert result.returncode == 2, result.output
    assert result.stderr_lines, "no error message"
    assert "Traceback" not in result.output


# --- errors raised by the user's module -----------------------------------------------------------


def test_import_error_shows_the_users_traceback_and_exits_1() -> None:
    result = run_cli("--port", "0", "apps.broken_import:app", timeout=15)
    assert result.returncode == 1, result.output
    assert "Traceback" in result.output
    assert "broken_import.py" in result.output
    assert "ValueError: cw-broken-import-marker" in result.output
    assert "did you mean" not in result.output
    assert "Listening on" not in result.output


def test_missing_dependency_inside_user_module_is_a_traceback_not_a_typo() -> None:
    result = run_cli("--port", "0", "apps.missing_dependency:app", timeout=15)
    assert result.returncode == 1, result.output
    assert "Traceback" in result.output
    assert "missing_dependency.py" in result.output
    assert "cw_not_installed_dependency" in result.output
    assert "did you mean" not in result.output


# --- bad flag values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "abc"),
        ("--port", "0", "--lifespan", "sometimes"),
        ("--port", "0", "--loop", "tokio"),
        ("--port", "0", "--log-level", "loud"),
        ("--port", "0", "--timeout-keep-alive", "soon"),
        ("--port", "0", "--timeout-graceful-shutdown", "x"),
        ("--port", "0", "--backlog", "many"),
        ("--port", "0", "--no-such-flag"),
        ("--port", "0", "--ws", "ws4py"),
        ("--port", "0", "--ws-per-message-deflate", "maybe"),
        ("--port", "0", "--ws-max-size", "0"),
        ("--port", "0", "--ws-ping-interval", "-1"),
    ],
    ids=[
        "port",
        "lifespan",
        "loop",
        "log-level",
        "keep-alive",
        "graceful",
        "backlog",
        "unknown-flag",
        "ws",
        "ws-per-message-deflate",
        "ws-max-size",
        "ws-ping-interval",
    ],
)
def test_bad_flag_value_is_status_2(args: tuple[str, ...]) -> None:
    result = run_cli(*args, "apps.raw:app", timeout=10)
    assert result.returncode == 2, result.output
    assert result.stderr_lines, "no error message on stderr"
    assert "Traceback" not in result.output
    assert "Listening on" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("COACHWHIP_PORT", "abc", ()),
        ("COACHWHIP_LIFESPAN", "sometimes", ("--port", "0")),
        ("COACHWHIP_ACCESS_LOG", "maybe", ("--port", "0")),
        ("COACHWHIP_TIMEOUT_KEEP_ALIVE", "soon", ("--port", "0")),
        ("COACHWHIP_LOG_LEVEL", "loud", ("--port", "0")),
    ],
)
def test_bad_environment_value_names_the_variable(
    variable: str, value: str, args: tuple[str, ...]
) -> None:
    result = run_cli(*args, "apps.raw:app", env={variable: value}, timeout=10)
    assert result.returncode == 2, result.output
    assert variable in result.stderr, result.output
    assert "Traceback" not in result.output
    assert "Listening on" not in result.output


def test_port_in_use_fails_without_serving() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("--port", str(port), "apps.raw:app", timeout=15)
    assert result.returncode != 0, result.output
    assert "Listening on" not in result.output
    assert re.search(r"(?i)in use|EADDRINUSE|errno 98", result.output), result.output


def test_bad_fd_fails_without_serving() -> None:
    result = run_cli("--fd", "987", "apps.raw:app", timeout=15)
    assert result.returncode != 0, result.output
    assert "Listening on" not in result.output


# --- environment variables and flags --------------------------------------------------------------


def test_env_port_is_used(serve: Serve) -> None:
    port = free_port()
    server = serve("apps.raw:app", port=None, env={"COACHWHIP_PORT": str(port)})
    assert server.port == port
    assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_port_flag_wins_over_env(serve: Serve) -> None:
    with socket.socket() as holder:  # the env port is taken: only the flag can make this work
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        server = serve("apps.raw:app", env={"COACHWHIP_PORT": str(taken)})
        assert server.port != taken
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_host_flag(serve: Serve) -> None:
    server = serve("apps.raw:app", "--host", "127.0.0.2")
    assert server.host == "127.0.0.2"
    scope = get_json(server.url + "/scope")
    assert scope["server"] == ["127.0.0.2", server.port]


def test_env_root_path_is_reflected_in_scope(serve: Serve) -> None:
    server = serve("apps.raw:app", env={"COACHWHIP_ROOT_PATH": "/from-env"})
    assert get_json(server.url + "/scope")["root_path"] == "/from-env"


def test_root_path_flag_wins_over_env(serve: Serve) -> None:
    server = serve(
        "apps.raw:app", "--root-path", "/from-flag", env={"COACHWHIP_ROOT_PATH": "/from-env"}
    )
    scope = get_json(server.url + "/scope/x")
    assert scope["root_path"] == "/from-flag"
    assert scope["path"] in ("/scope/x", "/from-flag/scope/x")


def test_no_server_and_no_date_header_flags(serve: Serve) -> None:
    server = serve("apps.raw:app", "--no-server-header", "--no-date-header")
    response = httpx.get(server.url + "/ok", timeout=5)
    assert response.status_code == 200
    assert "server" not in response.headers
    assert "date" not in response.headers


@pytest.mark.parametrize("value", ["0", "false", "no", "off"])
def test_boolean_env_turns_server_header_off(serve: Serve, value: str) -> None:
    server = serve(
        "apps.raw:app", env={"COACHWHIP_SERVER_HEADER": value, "COACHWHIP_DATE_HEADER": value}
    )
    response = httpx.get(server.url + "/ok", timeout=5)
    assert "server" not in response.headers
    assert "date" not in response.headers


def test_boolean_flag_wins_over_env(serve: Serve) -> None:
    server = serve("apps.raw:app", "--server-header", env={"COACHWHIP_SERVER_HEADER": "0"})
    assert httpx.get(server.url + "/ok", timeout=5).headers.get("server") == "coachwhip"


def test_factory_flag(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:create_app", "--factory")
    assert get_json(server.url + "/") == {"made_by": "factory"}


def test_factory_env(serve: Serve) -> None:
    server = serve("apps.lifespan_apps:create_app", env={"COACHWHIP_FACTORY": "true"})
    assert get_json(server.url + "/") == {"made_by": "factory"}


APP_DIR_MODULE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    headers = [(b"content-length", b"8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"from-dir"})
"""


def test_app_dir_flag(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "cw_appdir_module.py").write_text(APP_DIR_MODULE)
    server = serve("cw_appdir_module:app", "--app-dir", str(tmp_path))
    assert httpx.get(server.url + "/", timeout=5).text == "from-dir"


def test_app_dir_env(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "cw_appdir_env_module.py").write_text(APP_DIR_MODULE)
    server = serve("cw_appdir_env_module:app", env={"COACHWHIP_APP_DIR": str(tmp_path)})
    assert httpx.get(server.url + "/", timeout=5).text == "from-dir"


def test_uds(serve: Serve) -> None:
    with tempfile.TemporaryDirectory(prefix="cw") as directory:  # short path: sun_path is 108 bytes
        path = str(Path(directory) / "s.sock")
        ready = r"Listening on \S*" + re.escape(path)
        server = serve("apps.raw:app", "--uds", path, port=None, ready=ready)
        poll(lambda: Path(path).is_socket(), 5, what="the socket file")
        done = run_curl("--unix-socket", path, "http://localhost/ok")
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"ok"
        scope = json.loads(run_curl("--unix-socket", path, "http://localhost/scope").stdout)
        assert scope["server"][0] == path
        assert scope["server"][1] is None
        assert server.stop() == 0


def test_fd_serves_an_inherited_listening_socket(serve: Serve) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    try:
        server = serve("apps.raw:app", "--fd", str(fd), port=None, pass_fds=(fd,))
    finally:
        listener.close()  # the server holds its own copy now
    assert server.port == port, "the Listening line should show the inherited socket's port"
    assert httpx.get(f"http://127.0.0.1:{port}/ok", timeout=5).text == "ok"
    assert server.stop() == 0


def test_backlog_loop_and_log_level_flags_are_accepted(serve: Serve) -> None:
    server = serve("apps.raw:app", "--backlog", "16", "--loop", "asyncio", "--log-level", "debug")
    assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_log_level_warning_hides_info_lines(serve: Serve) -> None:
    port = free_port()
    server = serve("apps.raw:app", "--log-level", "warning", port=port, ready=None)

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ok", timeout=1).text == "ok"
        except httpx.TransportError:
            assert server.running(), server.output
            return False

    poll(answers, 15, interval=0.05, what="the server to answer")
    assert server.no_line_within(r"INFO", 0.3), server.output


# --- access log -----------------------------------------------------------------------------------


def test_access_log_line_format(serve: Serve) -> None:
    server = serve("apps.raw:app")
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().status == 200
        port = conn.local_port
    line = server.wait_for_line(rf'127\.0\.0\.1:{port} - "GET /ok HTTP/1\.1" 200', timeout=5).string
    assert re.fullmatch(rf'INFO: +127\.0\.0\.1:{port} - "GET /ok HTTP/1\.1" 200\b.*', line), line


def test_access_log_shows_404_status(serve: Serve) -> None:
    server = serve("apps.raw:app")
    assert httpx.get(server.url + "/nope", timeout=5).status_code == 404
    server.wait_for_line(r'127\.0\.0\.1:\d+ - "GET /nope HTTP/1\.1" 404', timeout=5)


def test_no_access_log_flag(serve: Serve) -> None:
    server = serve("apps.raw:app", "--no-access-log")
    since = server.mark()
    assert httpx.get(server.url + "/ok", timeout=5).status_code == 200
    assert server.no_line_within(ACCESS_RE, 0.5, since), server.output


def test_access_log_env_off(serve: Serve) -> None:
    server = serve("apps.raw:app", env={"COACHWHIP_ACCESS_LOG": "false"})
    since = server.mark()
    assert httpx.get(server.url + "/ok", timeout=5).status_code == 200
    assert server.no_line_within(ACCESS_RE, 0.5, since), server.output


# --- coachwhip.run() ------------------------------------------------------------------------------


def run_script(script: str) -> ServerProcess:
    server = ServerProcess("", python_args=["-c", script], cwd=HERE)
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    return server


def test_run_with_an_import_string() -> None:
    server = run_script("import coachwhip\ncoachwhip.run('apps.raw:app', port=0)\n")
    try:
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"
        assert server.stop() == 0
    finally:
        server.kill()


def test_run_with_an_app_object_and_keyword_options() -> None:
    script = (
        "import coachwhip\nfrom apps.raw import app\n"
        "coachwhip.run(app, host='127.0.0.1', port=0, server_header=False, root_path='/kw')\n"
    )
    server = run_script(script)
    try:
        response = httpx.get(server.url + "/scope", timeout=5)
        assert response.status_code == 200
        assert "server" not in response.headers
        assert response.json()["root_path"] == "/kw"
        assert server.stop() == 0
    finally:
        server.kill()


def test_configuration_never_loads_the_engine() -> None:
    """Config and the CLI parser stay pure Python: the sanitizer run imports them in the test
    process, where an ASan-built engine cannot load (it needs its runtime preloaded)."""
    code = (
        "import sys\n"
        "from coachwhip.cli import build_parser\n"
        "from coachwhip.config import Config\n"
        "Config(forwarded_allow_ips='10.0.0.0/8, ::1, unix:', metrics_bind=':9100')\n"
        "build_parser().parse_args(['--bind', '127.0.0.1:0', 'main:app'])\n"
        "assert 'coachwhip._core' not in sys.modules, 'the engine was loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_ws_per_message_deflate_takes_a_value_as_in_uvicorn(serve: Serve, value: str) -> None:
    # uvicorn spells it `--ws-per-message-deflate BOOLEAN`; the app comes after the value.
    from websockets.sync.client import connect

    server = serve("apps.ws_app:app", "--ws-per-message-deflate", value)
    with connect(server.url.replace("http", "ws", 1) + "/echo") as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers
