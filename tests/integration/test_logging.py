"""Logging people can route (issue 11 §3): --log-config in every format uvicorn reads, access
records that carry their fields (record.args as uvicorn's, and attributes), a JSON formatter
that needs no text parsing, --access-log-format with every gunicorn atom and granian's names,
colours, an access line for every response (the engine's own answers, cut-short ones), the
log noise issue 11 names, and receive()/send() marked as coroutine functions. Every error path
with its exact message. Real server processes throughout.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Serve
from harness import HERE, RawConnection, ServerProcess, poll, request, run_cli

APP = "apps.streams:app"
WSGI_APP = "apps.wsgi_app:app"
FIELDS = (
    "client_addr method path http_version status_code duration_ms bytes_sent request_id "
    "user_agent cut_short"
).split()


def json_log_config(tmp_path: Path, **extra: Any) -> Path:
    """A dictConfig (JSON) that writes coachwhip's records as JSON lines on stdout."""
    config = {
        "version": 1,
        "disable_existing_loggers": True,  # coachwhip's loggers must survive it
        "formatters": {"json": {"()": "apps.jsonlog.JsonFormatter"}},
        "handlers": {
            "out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {"coachwhip": {"handlers": ["out"], "level": "INFO", "propagate": False}},
        **extra,
    }
    config["handlers"]["out"]["formatter"] = "json"
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    return path


def json_lines(server: ServerProcess, since: int = 0) -> list[dict[str, Any]]:
    out = []
    for line in server.lines[since:]:
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def access_record(server: ServerProcess, path: str, since: int = 0) -> dict[str, Any]:
    """The JSON access record for `path`, once it is logged."""

    def found() -> dict[str, Any] | None:
        for rec in json_lines(server, since):
            if rec.get("logger") == "coachwhip.access" and rec.get("path") == path:
                return rec
        return None

    return poll(found, 10, what=f"the access record of {path}")


def access_line(server: ServerProcess, pattern: str, since: int = 0) -> str:
    return server.wait_for_line(pattern, 10, since).string


# --- --log-config -------------------------------------------------------------------------------


def test_json_log_config_gives_parseable_records_with_every_field(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(APP, "--log-config", str(json_log_config(tmp_path)))
    since = server.mark()
    headers = {"user-agent": "probe/1.0", "x-request-id": "req-42"}
    with httpx.Client(headers=headers) as client:
        assert client.get(server.url + "/ok?q=1&r=2").status_code == 200
        port = None
    rec = access_record(server, "/ok?q=1&r=2", since)
    assert set(FIELDS) <= set(rec), rec
    port = int(rec["client_addr"].rpartition(":")[2])
    assert rec["client_addr"] == f"127.0.0.1:{port}"
    assert (rec["method"], rec["http_version"], rec["status_code"]) == ("GET", "1.1", 200)
    assert (rec["request_id"], rec["user_agent"]) == ("req-42", "probe/1.0")
    assert rec["bytes_sent"] == 2 and rec["cut_short"] is False
    assert isinstance(rec["duration_ms"], float) and 0 <= rec["duration_ms"] < 5000
    # record.args exactly as uvicorn's access logger passes them, and its message
    assert rec["args"] == [f"127.0.0.1:{port}", "GET", "/ok?q=1&r=2", "1.1", 200]
    assert rec["message"] == f'127.0.0.1:{port} - "GET /ok?q=1&r=2 HTTP/1.1" 200'
    assert (rec["logger"], rec["level"]) == ("coachwhip.access", "INFO")
    # the server's own lines went through the config too
    assert any(r.get("message", "").startswith("Listening on") for r in json_lines(server))


def test_json_records_without_user_agent_or_request_id_say_null(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(APP, "--log-config", str(json_log_config(tmp_path)))
    since = server.mark()
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().status == 200
    rec = access_record(server, "/ok", since)
    assert rec["user_agent"] is None and rec["request_id"] is None


def test_json_log_config_with_a_wsgi_app(serve: Serve, tmp_path: Path) -> None:
    server = serve(WSGI_APP, "--interface", "wsgi", "--log-config", str(json_log_config(tmp_path)))
    since = server.mark()
    response = httpx.get(server.url + "/ok?x=1", headers={"user-agent": "wsgi-probe"})
    rec = access_record(server, "/ok?x=1", since)
    assert rec["status_code"] == response.status_code
    assert rec["user_agent"] == "wsgi-probe"
    assert rec["bytes_sent"] == len(response.content)
    assert rec["cut_short"] is False


def uvicorn_logging_config(tmp_path: Path) -> Path:
    """uvicorn 0.54's LOGGING_CONFIG, as a file."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "uvicorn.json"
    path.write_text(json.dumps(config))
    return path


def test_uvicorns_own_logging_config_works_unchanged(serve: Serve, tmp_path: Path) -> None:
    """uvicorn's LOGGING_CONFIG (uvicorn.logging formatters, uvicorn.* loggers) as a file: the
    records go where it sends uvicorn's, formatted by its formatters' classes (coachwhip.logs'
    same-named ones when uvicorn is not installed, as here)."""
    server = serve(APP, "--log-config", str(uvicorn_logging_config(tmp_path)))
    since = server.mark()
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/nothing-here"))
        assert conn.read_response().status == 404
        port = conn.local_port
    line = access_line(server, "nothing-here", since)
    assert line == f'INFO:     127.0.0.1:{port} - "GET /nothing-here HTTP/1.1" 404 Not Found'


def test_use_colors_reaches_a_uvicorn_configs_formatters(serve: Serve, tmp_path: Path) -> None:
    server = serve(APP, "--use-colors", "--log-config", str(uvicorn_logging_config(tmp_path)))
    since = server.mark()
    httpx.get(server.url + "/ok")
    line = access_line(server, r"GET /ok HTTP/1\.1", since)
    assert line.startswith("\x1b[32mINFO\x1b[0m:     127.0.0.1:"), repr(line)
    assert line.endswith('"\x1b[1mGET /ok HTTP/1.1\x1b[0m" \x1b[32m200 OK\x1b[0m'), repr(line)


def test_yaml_log_config(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "log.yaml"
    path.write_text(
        "version: 1\n"
        "formatters:\n"
        "  plain: {format: 'yaml %(name)s %(status_code)s %(bytes_sent)s %(message)s'}\n"
        "handlers:\n"
        "  out: {class: logging.StreamHandler, stream: ext://sys.stdout, formatter: plain}\n"
        "loggers:\n"
        "  coachwhip.access: {handlers: [out], level: INFO, propagate: false}\n"
    )
    server = serve(APP, "--log-config", str(path))
    since = server.mark()
    assert httpx.get(server.url + "/ok").status_code == 200
    line = access_line(server, r"^yaml ", since)
    assert re.fullmatch(
        r'yaml coachwhip\.access 200 2 127\.0\.0\.1:\d+ - "GET /ok HTTP/1\.1" 200', line
    )


def test_ini_log_config(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "log.ini"
    path.write_text(
        "[loggers]\nkeys=root,access\n\n"
        "[handlers]\nkeys=out,err\n\n"
        "[formatters]\nkeys=plain,access\n\n"
        "[logger_root]\nlevel=INFO\nhandlers=err\n\n"
        "[logger_access]\nlevel=INFO\nhandlers=out\nqualname=coachwhip.access\npropagate=0\n\n"
        "[handler_out]\nclass=StreamHandler\nformatter=access\nargs=(sys.stdout,)\n\n"
        "[handler_err]\nclass=StreamHandler\nformatter=plain\nargs=(sys.stderr,)\n\n"
        "[formatter_plain]\nformat=%(levelname)s %(message)s\n\n"
        "[formatter_access]\nformat=ini %(levelname)s %(method)s %(path)s %(duration_ms).3f\n"
    )
    server = serve(APP, "--log-config", str(path))
    since = server.mark()
    assert httpx.get(server.url + "/ok").status_code == 200
    assert re.fullmatch(
        r"ini INFO GET /ok \d+\.\d{3}", access_line(server, r"^ini INFO GET", since)
    )


def test_run_takes_uvicorns_log_config_mapping(serve: Serve, tmp_path: Path) -> None:
    """coachwhip.run(log_config={...}) as uvicorn.run() takes it."""
    script = tmp_path / "run_it.py"
    config = {
        "version": 1,
        "formatters": {"m": {"format": "mapped %(name)s %(message)s"}},
        "handlers": {"o": {"class": "logging.StreamHandler", "formatter": "m"}},
        "loggers": {"coachwhip": {"handlers": ["o"], "level": "INFO", "propagate": False}},
    }
    script.write_text(
        f"import coachwhip\ncoachwhip.run('apps.streams:app', port=0, log_config={config!r})\n"
    )
    server = ServerProcess("-", python_args=[str(script)], cwd=HERE)
    try:
        server.wait_ready(r"mapped coachwhip\.error Listening on http://([\d.]+):(\d+)")
    finally:
        server.kill()


# The error paths: one line each, status 2, naming the file and what to do.
LOG_CONFIG_ERRORS = [
    ("missing.json", None, "cannot read it (No such file or directory)"),
    ("empty.json", "", "the file is empty; write a logging config in it (a dictConfig in .json or "
     ".yaml, or an INI fileConfig)"),
    ("trunc.json", '{"version": 1, ', "not valid JSON: Expecting property name enclosed in "
     "double quotes at line 1, column 16"),
    ("list.json", "[1, 2]", 'expected a logging.config.dictConfig mapping with "version": 1 '
     "(https://docs.python.org/3/library/logging.config.html#logging-config-dictschema)"),
    ("class.json", '{"version": 1, "handlers": {"x": {"class": "nope.Handler"}}}',
     "logging.config.dictConfig refused it: Unable to configure handler 'x' (Cannot resolve "
     "'nope.Handler': No module named 'nope')"),
    ("bad.yaml", "a: [1, 2\n", "not valid YAML: expected ',' or ']', but got '<stream end>' at "
     "line 2, column 1"),
    ("bad.ini", "[loggers]\nkeys=root\n", "logging.config.fileConfig refused it (missing "
     "section or option 'formatters'); an INI logging config needs [loggers], [handlers] and "
     "[formatters] sections (or use a .json or .yaml dictConfig)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), LOG_CONFIG_ERRORS)
def test_log_config_errors(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    result = run_cli("--log-config", name, APP, cwd=tmp_path, timeout=15)
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [f"coachwhip: error: --log-config {name}: {message}"]


def test_yaml_log_config_without_pyyaml_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "log.yaml").write_text("version: 1\n")
    shadow = tmp_path / "shadow" / "yaml"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named yaml')\n")
    result = run_cli(
        "--log-config", "log.yaml", APP, cwd=tmp_path, env={"PYTHONPATH": str(shadow.parent)}
    )
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [
        "coachwhip: error: --log-config log.yaml: a YAML logging config needs PyYAML, which is "
        "not installed; pip install PyYAML, or write the config as JSON"
    ]


def test_log_config_with_logfile_flags_says_they_are_not_used(serve: Serve, tmp_path: Path) -> None:
    config = json_log_config(tmp_path)
    server = serve(APP, "--log-config", str(config), "--access-logfile", "-")
    server.wait_for_line(
        re.escape(
            f"--access-logfile - is not used with --log-config: the handlers of {config} decide "
            "where lines go (give them a FileHandler there)"
        ),
        5,
    )


# --- --access-log-format ------------------------------------------------------------------------

GUNICORN_EVERY_ATOM = (
    "h=%(h)s|l=%(l)s|u=%(u)s|t=%(t)s|r=%(r)s|s=%(s)s|m=%(m)s|U=%(U)s|q=%(q)s|H=%(H)s|b=%(b)s|"
    "B=%(B)s|f=%(f)s|a=%(a)s|T=%(T)s|D=%(D)s|M=%(M)s|L=%(L)s|p=%(p)s|i=%({x-test}i)s|"
    "o=%({content-type}o)s|o2=%({X-Served-By}o)s|e=%({CW_TEST_ENV}e)s|none=%({x-absent}i)s"
)


def test_every_gunicorn_atom(serve: Serve) -> None:
    server = serve(
        APP, "--access-log-format", GUNICORN_EVERY_ATOM, env={"CW_TEST_ENV": "env-value"}
    )
    since = server.mark()
    auth = base64.b64encode(b"alice:secret").decode()
    headers = {
        "x-test": 'quote"d',
        "referer": "http://ref.example/",
        "user-agent": "atoms/2",
        "authorization": f"Basic {auth}",
    }
    response = httpx.get(server.url + "/ok?a=b", headers=headers)
    assert response.status_code == 200
    line = access_line(server, r"^h=127\.0\.0\.1\|", since)
    atoms = dict(part.split("=", 1) for part in line.split("|"))
    assert atoms["h"] == "127.0.0.1" and atoms["l"] == "-" and atoms["u"] == "alice"
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", atoms["t"])
    assert atoms["r"] == "GET /ok?a=b HTTP/1.1"
    assert (atoms["s"], atoms["m"], atoms["U"], atoms["q"], atoms["H"]) == (
        "200", "GET", "/ok", "a=b", "HTTP/1.1",
    )  # fmt: skip
    assert (atoms["b"], atoms["B"]) == ("2", "2")
    assert atoms["f"] == "http://ref.example/" and atoms["a"] == "atoms/2"
    duration_us = int(atoms["D"])
    assert 0 <= duration_us < 5_000_000
    assert atoms["T"] == str(duration_us // 1_000_000)
    assert atoms["M"] == str(duration_us // 1000)
    seconds, micros = divmod(duration_us, 1_000_000)
    assert atoms["L"] == f"{seconds}.{micros:06d}"
    assert atoms["p"] == f"<{server.pid}>"
    assert atoms["i"] == 'quote\\"d'  # '"' escaped, as gunicorn does
    assert atoms["o"] == "text/plain" and atoms["o2"] == "streams"
    assert atoms["e"] == "env-value" and atoms["none"] == "-"


def test_gunicorns_default_format_via_its_flag(serve: Serve) -> None:
    """gunicorn's own spelling (--access-logformat) and default format: no level prefix."""
    fmt = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    server = serve(APP, "--access-logformat", fmt)
    since = server.mark()
    httpx.get(server.url + "/ok", headers={"user-agent": "gu"})
    line = access_line(server, r'"GET /ok HTTP/1\.1"', since)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /ok HTTP/1\.1" 200 2 "-" "gu"', line), (
        line
    )


def test_granians_names_via_its_flag(serve: Serve) -> None:
    fmt = (
        '[%(time)s] %(addr)s - "%(method)s %(path)s?%(query_string)s %(protocol)s" %(status)d '
        "%(dt_ms).3f %(header{user-agent})s"
    )
    server = serve(APP, "--access-log-fmt", fmt)
    since = server.mark()
    httpx.get(server.url + "/ok?z=9", headers={"user-agent": "gran"})
    line = access_line(server, r"127\.0\.0\.1 - ", since)
    assert re.fullmatch(
        r'\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] 127\.0\.0\.1 - "GET /ok\?z=9 HTTP/1\.1" '
        r"200 \d+\.\d{3} gran",
        line,
    ), line


def test_json_format(serve: Serve) -> None:
    server = serve(APP, "--access-log-format", "json")
    since = server.mark()
    httpx.get(server.url + "/ok?j=1", headers={"x-request-id": "rid", "user-agent": "js"})
    line = access_line(server, r'^\{"time"', since)
    rec = json.loads(line)
    assert list(rec) == ["time", *FIELDS]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    assert rec["path"] == "/ok?j=1" and rec["status_code"] == 200 and rec["bytes_sent"] == 2
    assert rec["request_id"] == "rid" and rec["user_agent"] == "js" and rec["cut_short"] is False


def test_json_lines_are_what_json_dumps_gives() -> None:
    """The JSON access line is made with one f-string (speed); it must be byte for byte what
    json.dumps(ensure_ascii=False) gives, escapes and the rounding of the milliseconds too."""
    import datetime
    import random

    from coachwhip.logs import json_text

    rnd = random.Random(11)
    chars = 'aé"\\\n\t\x00\x1f\x7f\u2028€😀/ ?=&'

    def text() -> str:
        return "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 8)))

    for i in range(20000):
        created = 1.7e9 + rnd.choice([rnd.random() * 1e8, rnd.randint(0, 999) / 1000, -1e-7])
        args = (
            *(text(), text(), text(), rnd.choice(["1.0", "1.1", "2"]), rnd.randint(100, 599)),
            *(rnd.random() * 10 ** rnd.randint(0, 6), rnd.randint(0, 2**40)),
            *(rnd.choice([None, text()]), rnd.choice([None, text()]), i % 2 == 0, created),
        )
        stamp = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        keys = "client_addr method path http_version status_code duration_ms bytes_sent"
        keys += " request_id user_agent cut_short"
        values = [*args[:5], round(args[5], 3), *args[6:10]]
        expected = {"time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        expected.update(zip(keys.split(), values, strict=True))
        assert json_text(*args) == json.dumps(expected, ensure_ascii=False), args


def test_json_format_into_an_access_logfile(serve: Serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(APP, "--access-log-format", "json", "--access-logfile", str(log))
    for i in range(3):
        httpx.get(server.url + f"/ok?n={i}")

    def three() -> list[dict[str, Any]] | None:
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(x) for x in lines] if len(lines) == 3 else None

    records = poll(three, 10, what="three JSON lines in the access log file")
    assert [r["path"] for r in records] == ["/ok?n=0", "/ok?n=1", "/ok?n=2"]


def test_unknown_atom_is_dash_with_a_warning(serve: Serve) -> None:
    server = serve(APP, "--access-log-format", "%(h)s %(nope)s")
    since = server.mark()
    server.wait_for_line(
        re.escape("--access-log-format: no atom is named 'nope'; it is logged as '-' "),
    )
    httpx.get(server.url + "/ok")
    assert access_line(server, r"^127\.0\.0\.1 ", since) == "127.0.0.1 -"


def test_a_broken_access_log_format_is_refused(tmp_path: Path) -> None:
    result = run_cli("--access-log-format", "%(h)s %(s", APP, cwd=HERE)
    assert result.returncode == 2, result.output
    assert result.stderr_lines == [
        "coachwhip: error: --access-log-format '%(h)s %(s': incomplete format key; write atoms "
        "as %(name)s, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s', or use 'json'"
    ]


# --- an access line for every response -----------------------------------------------------------


def raw_exchange(server: ServerProcess, data: bytes, rst: bool = False) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return received


@pytest.mark.parametrize(
    ("status", "data", "flags", "line"),
    [
        (400, b"GARBAGE\r\n\r\n", (), '"- - HTTP/-" 400'),
        (414, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (), '"- - HTTP/-" 414'),
        (431, b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n",
         ("--limit-request-fields", "2"), '"- - HTTP/-" 431'),
        (505, b"GET /v HTTP/3.0\r\nHost: x\r\n\r\n", (), '"- - HTTP/-" 505'),
        (413, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
         ("--limit-request-body", "100"), '"POST /up HTTP/1.1" 413'),
    ],
)  # fmt: skip
def test_engine_answers_have_access_lines(
    serve: Serve, status: int, data: bytes, flags: tuple[str, ...], line: str
) -> None:
    server = serve(APP, *flags)
    since = server.mark()
    answer = raw_exchange(server, data)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:100]
    found = access_line(server, re.escape(line), since)
    assert re.fullmatch(r"INFO: +127\.0\.0\.1:\d+ - " + re.escape(line), found), found


def test_probes_have_no_access_line(serve: Serve) -> None:
    """README, "Probes": the engine's /-/ answers are not logged (probes would flood it)."""
    server = serve(APP, "--health")
    since = server.mark()
    assert raw_exchange(server, request("GET", "/-/health", headers=["Connection: close"]))
    assert httpx.get(server.url + "/ok").status_code == 200
    access_line(server, r'"GET /ok HTTP/1\.1" 200$', since)
    assert not server.find_line("/-/health", since), server.output


def test_header_timeout_408_has_an_access_line(serve: Serve) -> None:
    server = serve(APP, "--timeout-request-header", "0.3")
    since = server.mark()
    answer = raw_exchange(server, b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    access_line(server, r'"- - HTTP/-" 408$', since)


def test_body_too_slow_408_is_the_requests_own_line(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-request-body", "0.3")
    since = server.mark()
    answer = raw_exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    )
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    access_line(server, r'"POST /echo HTTP/1\.1" 408$', since)


def test_concurrency_503_has_an_access_line(serve: Serve) -> None:
    server = serve(APP, "--limit-concurrency", "1")
    since = server.mark()
    with RawConnection(server.host, server.port) as slow:
        slow.send(request("GET", "/sleep?s=1"))
        poll(lambda: raw_exchange(server, request("GET", "/ok", headers=["Connection: close"]))
             .startswith(b"HTTP/1.1 503 "), 5, interval=0.05, what="a 503")  # fmt: skip
        assert slow.read_response().status == 200
    access_line(server, r'"GET /ok HTTP/1\.1" 503$', since)


def test_cut_short_streams_say_so_with_the_bytes_sent_and_no_error(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(APP, "--log-config", str(json_log_config(tmp_path)))
    since = server.mark()
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/stream?chunks=0"))
        conn.read_head()
        conn.skip(256 * 1024)
    rec = access_record(server, "/stream?chunks=0", since)
    assert rec["status_code"] == 200 and rec["cut_short"] is True
    assert 0 < rec["bytes_sent"], rec
    assert rec["message"].endswith(f" 200 (cut short: after {rec['bytes_sent']} bytes)")
    server.wait_for_line("EVENT stream send-raised-ClientDisconnected", 5, since)
    assert not [r for r in json_lines(server, since) if r["level"] == "ERROR"]


def test_an_sse_client_leaving_is_an_access_line_not_an_error(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/sse"))
        conn.read_head()
        conn.skip(30)
    line = access_line(server, r'"GET /sse HTTP/1\.1" 200', since)
    assert re.search(r"200 \(cut short: after \d+ bytes\)$", line), line
    server.wait_for_line("EVENT sse returned", 5, since)
    assert server.no_line_within("ERROR", 0.5, since), server.output


def test_a_response_the_app_abandons_is_cut_short(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    answer = raw_exchange(server, request("GET", "/fail-after-head"))
    assert answer.startswith(b"HTTP/1.1 200 ")
    access_line(
        server, r'"GET /fail-after-head HTTP/1\.1" 200 \(cut short: after 7 bytes\)$', since
    )
    server.wait_for_line("RuntimeError: failed after the head", 5, since)  # the app's own error


def h2_statuses(server: ServerProcess, requests: list[list[tuple[str, str]]]) -> list[int]:
    """Sends `requests` as streams 1, 3, ... of one h2c connection (prior knowledge) at once;
    returns their statuses in that order."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    conn.initiate_connection()
    statuses: dict[int, int] = {}
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        sent = False
        while len(statuses) < len(requests):
            data = sock.recv(65536)
            assert data, f"connection closed with {statuses}"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged) and not sent:
                    sent = True  # after the server's SETTINGS: extended CONNECT is allowed
                    for headers in requests:
                        stream = conn.get_next_available_stream_id()
                        conn.send_headers(stream, headers, end_stream=headers[0][1] != "CONNECT")
                elif isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[":status"])
            sock.sendall(conn.data_to_send())
    return [statuses[stream] for stream in sorted(statuses)]


def test_the_http2_engines_own_answers_have_access_lines(serve: Serve) -> None:
    server = serve(APP, "--http2-max-headers-size", "16384", "--limit-concurrency", "1")
    since = server.mark()
    get = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost")]
    websocket = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/ws"),
    ]
    statuses = h2_statuses(
        server,
        [
            [*get, (":path", "/sleep?s=0.5")],  # holds the one --limit-concurrency slot
            [*get, (":path", "/ok")],  # 503
            [*get, (":path", "/big"), ("x-big", "b" * 20000)],  # 431
            [(":method", "CONNECT"), (":authority", "example.com:443")],  # 501: no tunnels
            [*websocket, ("sec-websocket-version", "8")],  # 426
            [
                *websocket,
                ("sec-websocket-version", "13"),
                ("sec-websocket-extensions", 'permessage-deflate; x="unterminated'),
            ],  # 400
            [*websocket, ("sec-websocket-version", "13")],  # 503: no slot for the app either
        ],
    )
    assert statuses == [200, 503, 431, 501, 426, 400, 503]
    for pattern in (
        r'"GET /ok HTTP/2" 503$',
        r'"GET /big HTTP/2" 431$',
        r'"CONNECT - HTTP/2" 501$',
        r'"CONNECT /ws HTTP/2" 426$',
        r'"CONNECT /ws HTTP/2" 400$',
        r'"CONNECT /ws HTTP/2" 503$',
        r'"GET /sleep\?s=0\.5 HTTP/2" 200$',
    ):
        assert access_line(server, r"^INFO: +127\.0\.0\.1:\d+ - " + pattern, since)


def test_a_client_that_resets_before_the_response_is_499(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(request("GET", "/sleep?s=0.5"))
    server.wait_for_line("EVENT sleep entered", 5, since)  # (a reset before that is a 400)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    access_line(
        server, r'"GET /sleep\?s=0\.5 HTTP/1\.1" 499 \(cut short: no response sent\)$', since
    )


# --- noise --------------------------------------------------------------------------------------


def test_tls_on_the_plain_port_is_said_at_info_with_what_to_do(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    answer = raw_exchange(server, b"\x16\x03\x01\x00\x05hello")
    assert answer.startswith(b"HTTP/1.1 400 ")
    line = server.wait_for_line("a TLS handshake", 5, since).string
    assert line == (
        f"INFO:     a TLS handshake (an https:// client) from 127.0.0.1 on the plain HTTP port "
        f"{server.port} (answered 400): the client uses https:// while this port serves "
        "http://; use http:// URLs here, or serve HTTPS with --ssl-certfile and --ssl-keyfile"
    )
    access_line(server, r'"- - HTTP/-" 400$', since)


def test_an_h2_preface_with_http1_only_is_said_at_info(serve: Serve) -> None:
    server = serve(APP, "--http", "1")
    since = server.mark()
    raw_exchange(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    line = server.wait_for_line("an HTTP/2 client", 5, since).string
    assert line == (
        f"INFO:     an HTTP/2 client (h2c prior knowledge) from 127.0.0.1 on the plain HTTP "
        f"port {server.port} (answered 505): HTTP/2 is off (--http 1); use --http auto to "
        "serve it"
    )


# --- colours -------------------------------------------------------------------------------------


def test_use_colors_forces_colours_into_a_pipe(serve: Serve) -> None:
    server = serve(APP, "--use-colors")
    since = server.mark()
    httpx.get(server.url + "/missing")
    line = access_line(server, r'"GET /missing HTTP/1\.1"', since)
    assert line.startswith("\x1b[32mINFO\x1b[0m:     127.0.0.1:")
    assert line.endswith('"GET /missing HTTP/1.1" \x1b[31m404\x1b[0m')


def test_no_colours_into_a_pipe_by_default(serve: Serve) -> None:
    server = serve(APP)
    since = server.mark()
    httpx.get(server.url + "/missing")
    access_line(server, r'"GET /missing HTTP/1\.1" 404$', since)
    assert "\x1b[" not in server.output


# --- receive() and send() look like coroutine functions -------------------------------------------


def test_receive_and_send_are_marked_as_coroutine_functions(serve: Serve) -> None:
    server = serve(APP)
    marks = httpx.get(server.url + "/marks").json()
    assert marks["asyncio_receive"] is True and marks["asyncio_send"] is True
    assert marks["asgiref_warnings"] == []  # "async_to_sync was passed a non-async-marked..."
    if tuple(marks["python"]) >= (3, 12):
        assert marks["inspect_send"] is True


def test_the_access_log_off_sends_no_records(serve: Serve, tmp_path: Path) -> None:
    server = serve(APP, "--no-access-log", "--log-config", str(json_log_config(tmp_path)))
    since = server.mark()
    assert httpx.get(server.url + "/ok").status_code == 200
    assert server.no_line_within("coachwhip.access", 0.5, since)
