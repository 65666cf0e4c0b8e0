"""`--interface auto|asgi3|asgi2|wsgi` (issue 15): what auto detects, what each choice serves, the
startup line that says so, and the refusals (RSGI, `--lifespan on` with WSGI).

The apps are in apps/interface_apps.py (every shape of WSGI and ASGI 3 app, and two whose
signature says nothing), apps/asgi2_app.py (an ASGI 2 class) and apps/wsgi_django (a Django
project: `mysite.wsgi:application` is a WSGIHandler). Each app's body names its interface, so a
test can tell which protocol served a request, not only what the log claims.

These tests are coachwhip's own: gunicorn has no --interface to check them against.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import APPS, HERE, CliResult, ServerProcess, run_cli

TIMEOUT = 10.0
IA = "apps.interface_apps"
ASGI2_APP = "apps.asgi2_app:App"
DJANGO_DIR = APPS / "wsgi_django"
LOG_WAIT = 5.0
INTERFACE = r"^INFO:\s+Interface: "
# The contract's one line is "coachwhip does not implement RSGI; use --interface asgi3 or wsgi":
# its two halves must be there, a prefix or an explanation between them may be too.
RSGI_REFUSAL = ("coachwhip does not implement RSGI", "use --interface asgi3 or wsgi")
# Hints in the error log, as regexes: the contract's words in its order, details (the route, the
# app's name) allowed in between.
WSGI_HINT = re.escape("is it a WSGI app? use --interface wsgi")
ASGI_HINT = re.escape("use --interface asgi3")
COROUTINE_HINT = r"returned a coroutine\b.*: it is an ASGI app\b.*; use --interface asgi3"
ASGI_LIFESPAN_RAN = "interface-apps: lifespan startup"


def undecided_warning(app: str) -> str:
    """The contract's WARNING; an explanation may follow "is ASGI or WSGI" before the colon."""
    return (
        rf"^WARNING:\s+could not tell whether '{re.escape(app)}' is ASGI or WSGI\b[^:]*: serving "
        r"it as ASGI 3; choose with --interface asgi3\|asgi2\|wsgi$"
    )


def interface_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.lines if re.search(INTERFACE, line)]


def the_interface_line(server: ServerProcess, pattern: str) -> str:
    """The startup line: exactly one `Interface:` line, and it matches `pattern` (after the
    `INFO:     Interface: ` prefix)."""
    line = server.wait_for_line(INTERFACE + pattern, timeout=LOG_WAIT).string
    found = interface_lines(server)
    assert found == [line], f"expected one Interface line, got {found}"
    return line


def get(server: ServerProcess, target: str = "/") -> httpx.Response:
    return httpx.get(server.url + target, timeout=TIMEOUT)


def django_env(tmp_path: Path) -> dict[str, str]:
    return {"WSGI_DJANGO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "mysite.settings"}


def non_info_lines(result: CliResult) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip() and "INFO:" not in line]


def assert_refused_with_one_line(result: CliResult, *needles: str) -> str:
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert "Listening on" not in result.output, result.output
    lines = non_info_lines(result)
    assert len(lines) == 1, f"expected one line of refusal:\n{result.output}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# --- auto: WSGI ----------------------------------------------------------------------------------

WSGI_APPS = [
    pytest.param(f"{IA}:flask_app", re.escape("Flask app"), "wsgi: flask_app", id="flask"),
    pytest.param(
        "mysite.wsgi:application",
        re.escape("Django WSGIHandler"),
        "hello from django",
        id="django",
    ),
    pytest.param(
        f"{IA}:wsgi_function",
        re.escape("a function of (environ, start_response)"),
        "wsgi: wsgi_function GET /",
        id="function",
    ),
    # the contract gives no wording for a callable instance: any detection that says wsgi
    pytest.param(f"{IA}:wsgi_instance", r".+", "wsgi: wsgi_instance GET /", id="instance"),
]


@pytest.mark.parametrize(("app", "detail", "body"), WSGI_APPS)
def test_auto_detects_wsgi_and_serves_it(
    serve: Serve, tmp_path: Path, app: str, detail: str, body: str
) -> None:
    django = app.startswith("mysite.")
    server = serve(
        app,
        "--threads", "3",
        cwd=DJANGO_DIR if django else HERE,
        env=django_env(tmp_path) if django else None,
    )  # fmt: skip
    the_interface_line(server, rf"wsgi \(detected: {detail}\), 3 threads$")
    assert server.find_line(r"could not tell whether") is None
    response = get(server, "/hello/" if django else "/")
    assert response.status_code == 200, response.text
    assert response.text.startswith(body), response.text


def test_wsgi_default_threads_are_in_the_startup_line(serve: Serve) -> None:
    server = serve(f"{IA}:wsgi_function")
    line = the_interface_line(
        server, r"wsgi \(detected: a function of \(environ, start_response\)\), \d+ threads$"
    )
    threads = re.search(r"(\d+) threads$", line)
    assert threads and int(threads.group(1)) >= 1, line


def test_threads_from_the_environment(serve: Serve) -> None:
    server = serve(f"{IA}:wsgi_function", env={"COACHWHIP_THREADS": "5"})
    the_interface_line(server, r"wsgi \(detected: .+\), 5 threads$")
    assert get(server).text.startswith("wsgi: wsgi_function")


def test_wsgi_app_reads_a_request_body(serve: Serve) -> None:
    server = serve(f"{IA}:wsgi_function")
    response = httpx.post(server.url + "/post", content=b"z" * 100_000, timeout=TIMEOUT)
    assert response.text == "wsgi: wsgi_function POST /post 100000"


# --- auto: ASGI 3 and ASGI 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "body"),
    [
        pytest.param(f"{IA}:asgi3_function", "asgi3: asgi3_function GET /", id="function"),
        pytest.param(f"{IA}:starlette_app", "asgi3: starlette_app", id="starlette"),
    ],
)
def test_auto_detects_asgi3_and_serves_it(serve: Serve, app: str, body: str) -> None:
    server = serve(app)
    the_interface_line(server, r"asgi3 \(detected: .+\)$")
    assert server.find_line(r"could not tell whether") is None
    response = get(server)
    assert response.status_code == 200, response.text
    assert response.text.startswith(body), response.text


def test_asgi3_lifespan_still_runs_under_auto(serve: Serve) -> None:
    server = serve(f"{IA}:asgi3_function")
    server.wait_for_line(re.escape(ASGI_LIFESPAN_RAN), timeout=LOG_WAIT)


def asgi2_json(server: ServerProcess, client: httpx.Client, target: str, body: bytes) -> dict:
    response = client.post(server.url + target, content=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param((), r"asgi2 \(detected: a class built with the scope\)$", id="auto"),
        pytest.param(("--interface", "asgi2"), r"asgi2 \(--interface asgi2\)$", id="forced"),
    ],
)
def test_asgi2_class_is_detected_and_serves_requests(
    serve: Serve, args: tuple[str, ...], line: str
) -> None:
    server = serve(ASGI2_APP, *args)
    the_interface_line(server, line)
    with httpx.Client(timeout=TIMEOUT) as client:  # keep-alive: a new instance per request
        for i in range(3):
            data = asgi2_json(server, client, f"/item/{i}?x={i}", b"b" * (1000 * i))
            assert data == {
                "interface": "asgi2",
                "method": "POST",
                "path": f"/item/{i}",
                "query": f"x={i}",
                "body_bytes": 1000 * i,
                "lifespan_started": True,
            }
        big = asgi2_json(server, client, "/big", b"B" * (3 * 1024 * 1024))
        assert big["body_bytes"] == 3 * 1024 * 1024
    server.wait_for_line(r"asgi2-app: lifespan startup", timeout=LOG_WAIT)


# --- forced, and the one line that says so -------------------------------------------------------


def test_forced_wsgi_startup_line(serve: Serve) -> None:
    server = serve(f"{IA}:wsgi_function", "--interface", "wsgi", "--threads", "8")
    the_interface_line(server, r"wsgi \(--interface wsgi\), 8 threads$")
    assert get(server).text.startswith("wsgi: wsgi_function")


def test_forced_asgi3_serves_an_asgi_app(serve: Serve) -> None:
    server = serve(f"{IA}:asgi3_function", "--interface", "asgi3")
    the_interface_line(server, r"asgi3\b")
    assert get(server).text.startswith("asgi3: asgi3_function")


# --- auto cannot tell ----------------------------------------------------------------------------


def test_undecidable_app_warns_and_is_served_as_asgi3(serve: Serve) -> None:
    app = f"{IA}:undecidable_asgi"
    server = serve(app)
    server.wait_for_line(undecided_warning(app), timeout=LOG_WAIT)
    the_interface_line(server, r"asgi3\b")
    response = get(server)
    assert response.status_code == 200, response.text
    assert response.text.startswith("asgi3: asgi3_function")


def test_undecidable_wsgi_app_fails_as_asgi3_with_the_hint(serve: Serve) -> None:
    app = f"{IA}:undecidable_wsgi"
    server = serve(app)
    server.wait_for_line(undecided_warning(app), timeout=LOG_WAIT)
    mark = server.mark()
    assert get(server).status_code == 500
    server.wait_for_line(WSGI_HINT, since=mark, timeout=LOG_WAIT)


@pytest.mark.parametrize(
    ("app", "interface", "body"),
    [
        pytest.param("undecidable_wsgi", "wsgi", "wsgi: wsgi_function GET /", id="wsgi"),
        pytest.param("undecidable_asgi", "asgi3", "asgi3: asgi3_function GET /", id="asgi3"),
    ],
)
def test_interface_from_the_environment(serve: Serve, app: str, interface: str, body: str) -> None:
    server = serve(f"{IA}:{app}", env={"COACHWHIP_INTERFACE": interface})
    the_interface_line(server, rf"{interface}\b")
    assert server.find_line(r"could not tell whether") is None
    response = get(server)
    assert response.status_code == 200, response.text
    assert response.text.startswith(body)


def test_interface_flag_wins_over_the_environment(serve: Serve) -> None:
    server = serve(
        f"{IA}:undecidable_wsgi", "--interface", "wsgi", env={"COACHWHIP_INTERFACE": "asgi3"}
    )
    the_interface_line(server, r"wsgi\b")
    assert get(server).text.startswith("wsgi: wsgi_function")


# --- the wrong interface forced: 500 and a hint in the log ---------------------------------------


@pytest.mark.parametrize(
    ("app", "hint"),
    [
        # called with (environ, start_response), `async def f(scope, receive, send)` raises
        # TypeError before any coroutine exists: the hint must still come with each failure
        pytest.param(f"{IA}:asgi3_function", ASGI_HINT, id="async-function"),
        pytest.param(f"{IA}:starlette_app", ASGI_HINT, id="starlette"),
        # this one accepts two arguments and returns a coroutine: the contract's very case
        pytest.param(f"{IA}:undecidable_asgi", COROUTINE_HINT, id="returns-a-coroutine"),
    ],
)
def test_asgi_app_forced_as_wsgi_is_500_with_the_hint(serve: Serve, app: str, hint: str) -> None:
    server = serve(app, "--interface", "wsgi")
    the_interface_line(server, r"wsgi \(--interface wsgi\), \d+ threads$")
    for _ in range(2):  # every request, and the server keeps serving
        mark = server.mark()
        response = get(server)
        assert response.status_code == 500, response.text
        server.wait_for_line(hint, since=mark, timeout=LOG_WAIT)
    assert server.find_line(r"^ERROR:") is not None, server.output


@pytest.mark.parametrize("app", [f"{IA}:flask_app", f"{IA}:wsgi_function"])
def test_wsgi_app_forced_as_asgi3_is_500_with_the_hint(serve: Serve, app: str) -> None:
    server = serve(app, "--interface", "asgi3")
    the_interface_line(server, r"asgi3\b")
    for _ in range(2):
        mark = server.mark()
        response = get(server)
        assert response.status_code == 500, response.text
        server.wait_for_line(WSGI_HINT, since=mark, timeout=LOG_WAIT)
    assert server.find_line(r"^ERROR:") is not None, server.output


# --- granian's spellings -------------------------------------------------------------------------


def test_granian_asgi_is_asgi3_with_lifespan(serve: Serve) -> None:
    server = serve(f"{IA}:asgi3_function", "--interface", "asgi")
    the_interface_line(server, r"asgi3\b")
    server.wait_for_line(re.escape(ASGI_LIFESPAN_RAN), timeout=LOG_WAIT)
    assert get(server).text.startswith("asgi3: asgi3_function")


def test_granian_asginl_is_asgi3_without_lifespan(serve: Serve) -> None:
    server = serve(f"{IA}:asgi3_function", "--interface", "asginl")
    the_interface_line(server, r"asgi3\b")
    assert get(server).text.startswith("asgi3: asgi3_function")
    assert server.find_line(re.escape(ASGI_LIFESPAN_RAN)) is None, server.output
    assert server.find_line(r"Waiting for application startup") is None, server.output


@pytest.mark.parametrize("how", ["flag", "env"])
def test_rsgi_is_refused_with_one_line(how: str) -> None:
    app = f"{IA}:asgi3_function"
    if how == "flag":
        result = run_cli("--port", "0", "--interface", "rsgi", app, timeout=15)
    else:
        result = run_cli("--port", "0", app, env={"COACHWHIP_INTERFACE": "rsgi"}, timeout=15)
    line = assert_refused_with_one_line(result, *RSGI_REFUSAL)
    assert line.index(RSGI_REFUSAL[0]) < line.index(RSGI_REFUSAL[1]), line


def test_unknown_interface_is_refused_with_one_line() -> None:
    result = run_cli("--port", "0", "--interface", "cgi", f"{IA}:wsgi_function", timeout=15)
    assert result.returncode == 2, result.output
    assert_refused_with_one_line(result, "--interface")


def test_bad_interface_in_the_environment_names_the_variable() -> None:
    result = run_cli(
        "--port", "0", f"{IA}:wsgi_function", env={"COACHWHIP_INTERFACE": "cgi"}, timeout=15
    )
    assert result.returncode == 2, result.output
    assert_refused_with_one_line(result, "COACHWHIP_INTERFACE")


def test_help_lists_interface_and_threads() -> None:
    result = run_cli("--help", timeout=10)
    assert result.returncode == 0, result.output
    for flag in ("--interface", "--threads"):
        assert re.search(re.escape(flag) + r"\b", result.stdout), result.stdout


# --- lifespan and threads across interfaces ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((f"{IA}:wsgi_function",), id="auto"),
        pytest.param(("--interface", "wsgi", f"{IA}:wsgi_function"), id="forced"),
        pytest.param((f"{IA}:flask_app",), id="flask"),
    ],
)
def test_lifespan_on_with_a_wsgi_app_is_refused(args: tuple[str, ...]) -> None:
    result = run_cli("--port", "0", "--lifespan", "on", *args, timeout=20)
    line = assert_refused_with_one_line(result)
    assert "lifespan" in line.lower() and "wsgi" in line.lower(), line


def test_lifespan_off_with_a_wsgi_app_serves(serve: Serve) -> None:
    server = serve(f"{IA}:wsgi_function", "--lifespan", "off")
    assert get(server).text.startswith("wsgi: wsgi_function")


def test_threads_with_an_asgi_app_are_ignored_with_an_info_line(serve: Serve) -> None:
    server = serve(f"{IA}:asgi3_function", "--threads", "4")
    the_interface_line(server, r"asgi3\b")
    server.wait_for_line(r"^INFO:.*\bthreads?\b", timeout=LOG_WAIT)
    assert server.find_line(r"^(WARNING|ERROR):") is None, server.output
    assert get(server).text.startswith("asgi3: asgi3_function")
