"""WSGI frameworks served end to end (issue 15): Flask and a Django project, as users run them.

- Flask (apps/wsgi_flask.py): routing with a path parameter, JSON, error handlers (404, a custom
  exception, abort(500), a crash), `stream_with_context` chunks that reach the client one by one,
  `send_file` of a real file through `wsgi.file_wrapper`, and a 100 MB upload read from
  `request.stream` while the server's memory stays flat; driven by httpx and curl.
- Django (apps/wsgi_django, `mysite.wsgi:application`): migrated once per module into a temporary
  sqlite database, a superuser logs in to /admin/ with CSRF and adds a user, a form post with
  CSRF, a static file served while DEBUG is on, a file upload.
- A WSGI app under two workers keeps every request while SIGHUP replaces the workers under load.

The servers are started the way the contract says users start them (`coachwhip app:app`,
`--interface auto`). WSGI_TEST_SERVER=gunicorn runs the same tests against gunicorn (gthread
worker, 8 threads), to check the tests themselves: it is found in WSGI_TEST_GUNICORN, next to
this Python, or in bench/.venv (`bench/.venv/bin/pip install gunicorn flask django`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import (
    APPS,
    HERE,
    RawConnection,
    ServerProcess,
    free_port,
    poll,
    request,
    run_curl,
)
from loadgen import Load

pytestmark = pytest.mark.timeout(120)

SERVER = os.environ.get("WSGI_TEST_SERVER", "coachwhip")
if SERVER not in ("coachwhip", "gunicorn"):
    raise ValueError(f"WSGI_TEST_SERVER must be coachwhip or gunicorn, not {SERVER!r}")
COACHWHIP = SERVER == "coachwhip"
SANITIZED = bool(os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD"))
REPO = HERE.parents[1]
FLASK_APP = "apps.wsgi_flask:app"
DJANGO_DIR = APPS / "wsgi_django"
DJANGO_APP = "mysite.wsgi:application"
GUNICORN_THREADS = 8
TIMEOUT = 10.0
KIB = 1024
MIB = 1024 * 1024
MB = 1000 * 1000
BLOCK = 64 * KIB
UPLOAD_TOTAL = 100 * MB
# The server may grow this much while a 100 MB body streams through it (as test_upload_memory).
UPLOAD_GROWTH_MIB = 50 + (48 if SANITIZED else 0)  # ASan: quarantine, an allocator that keeps
ADMIN_USER, ADMIN_PASSWORD = "admin", "s3cret-Pa55word"
EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"


# --- starting the server under test --------------------------------------------------------------


def gunicorn_path() -> str:
    candidates = [
        os.environ.get("WSGI_TEST_GUNICORN", ""),
        str(Path(sys.executable).parent / "gunicorn"),
        str(REPO / "bench" / ".venv" / "bin" / "gunicorn"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(f"no gunicorn among {candidates}; see the module docstring")


@functools.cache
def gunicorn_quiet_args() -> tuple[str, ...]:
    """Recent gunicorn (27) opens a control socket at one path per user: off, where it exists."""
    done = subprocess.run([gunicorn_path(), "--help"], capture_output=True, timeout=30)
    return ("--no-control-socket",) if b"--no-control-socket" in done.stdout else ()


def start_gunicorn(app: str, cwd: Path, env: dict[str, str] | None, workers: int) -> ServerProcess:
    port = free_port()
    argv = [
        gunicorn_path(),
        "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread",
        "--threads", str(GUNICORN_THREADS),
        "--workers", str(workers),
        "--chdir", str(cwd),
        *gunicorn_quiet_args(),
        app,
    ]  # fmt: skip
    server = ServerProcess(app, cwd=cwd, env=env, python_args=["-c", EXEC, *argv])
    try:
        server.wait_ready(r"Listening at: http://")
        poll(
            lambda: sum("Booting worker" in line for line in server.lines) >= workers,
            15,
            what=f"{workers} gunicorn worker(s)",
        )
    except BaseException:
        server.kill()
        raise
    server.host, server.port = "127.0.0.1", port
    return server


def coachwhip_args(workers: int) -> tuple[str, ...]:
    return ("--no-access-log", *(("--workers", str(workers)) if workers > 1 else ()))


def start_server(
    app: str, *, cwd: Path = HERE, env: dict[str, str] | None = None, workers: int = 1
) -> ServerProcess:
    """The server under test serving `app`, ready (for module fixtures: the caller kills it)."""
    if not COACHWHIP:
        return start_gunicorn(app, cwd, env, workers)
    server = ServerProcess(app, *coachwhip_args(workers), cwd=cwd, env=env)
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    return server


Launch = Callable[..., ServerProcess]


@pytest.fixture
def launch(serve: Serve) -> Iterator[Launch]:
    """Factory like start_server for one test: coachwhip through `serve`, else gunicorn."""
    started: list[ServerProcess] = []

    def factory(
        app: str, *, cwd: Path = HERE, env: dict[str, str] | None = None, workers: int = 1
    ) -> ServerProcess:
        if COACHWHIP:
            return serve(app, *coachwhip_args(workers), cwd=cwd, env=env)
        server = start_gunicorn(app, cwd, env, workers)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill()


def still_serving(server: ServerProcess, target: str = "/ok") -> None:
    response = httpx.get(server.url + target, timeout=TIMEOUT)
    assert response.status_code == 200, (response.status_code, response.text)


# --- Flask ---------------------------------------------------------------------------------------


@dataclass
class FlaskSite:
    server: ServerProcess
    files: Path
    blob: bytes  # the content of files/blob.bin

    def url(self, target: str) -> str:
        return self.server.url + target


@pytest.fixture(scope="module")
def flask_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = tmp_path_factory.mktemp("flask-files")
    (files / "blob.bin").write_bytes(os.urandom(8 * MIB + 123))
    (files / "small.txt").write_text("a small text file\n")
    return files


@pytest.fixture(scope="module")
def flask_site(flask_files: Path) -> Iterator[FlaskSite]:
    server = start_server(FLASK_APP, env={"WSGI_FLASK_FILES": str(flask_files)})
    try:
        yield FlaskSite(server, flask_files, (flask_files / "blob.bin").read_bytes())
    finally:
        server.kill()


def test_flask_route_with_a_path_parameter(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/users/42?q=caf%C3%A9&tag=a&tag=b"), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"user_id": 42, "q": "café", "tags": ["a", "b"]}
    # the converter refuses what is not an int: Flask's own 404, through the handler
    response = httpx.get(flask_site.url("/users/forty-two"), timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json() == {"error": "not found", "path": "/users/forty-two"}


def test_flask_route_with_curl(flask_site: FlaskSite) -> None:
    done = run_curl("-i", flask_site.url("/users/7?q=curl"))
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert re.search(rb"(?im)^content-type: application/json\r?$", head), head
    assert httpx.Response(200, content=body).json() == {"user_id": 7, "q": "curl", "tags": []}


def test_flask_json_post(flask_site: FlaskSite) -> None:
    payload = {"name": "Zoë", "items": [1, 2, 3], "nested": {"ok": True}, "emoji": "🐍"}
    response = httpx.post(flask_site.url("/echo"), json=payload, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    assert response.json() == {"received": payload, "content_type": "application/json"}


def test_flask_404_goes_through_the_error_handler(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/no/such/page"), timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json() == {"error": "not found", "path": "/no/such/page"}


def test_flask_custom_exception_handler(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/teapot"), timeout=TIMEOUT)
    assert response.status_code == 418
    assert response.json() == {"error": "teapot", "detail": "short and stout"}


def test_flask_abort_500_uses_the_500_handler(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/abort"), timeout=TIMEOUT)
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "description": "aborted on purpose",
        "original": None,
    }
    still_serving(flask_site.server)


def test_flask_crash_is_a_500_and_its_traceback_is_logged(flask_site: FlaskSite) -> None:
    server = flask_site.server
    mark = server.mark()
    response = httpx.get(flask_site.url("/crash"), timeout=TIMEOUT)
    assert response.status_code == 500
    assert response.json()["original"] == "ZeroDivisionError"
    # Flask logs the exception to wsgi.errors (its default handler), with the route in it
    line = server.wait_for_line(r"Exception on /crash \[GET\]", since=mark).string
    server.wait_for_line(r"ZeroDivisionError", since=mark)
    if COACHWHIP:  # wsgi.errors lines go to the coachwhip.error logger at ERROR
        assert line.startswith("ERROR:"), line
    still_serving(server)


def release(site: FlaskSite, key: str) -> None:
    response = httpx.get(site.url("/release"), params={"id": key}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def test_flask_stream_with_context_chunks_arrive_one_by_one(flask_site: FlaskSite) -> None:
    """Each chunk after the first is produced only once the client has received the previous
    one and called /release: a server that buffered the stream would never deliver chunk 0."""
    key, count = f"httpx-{time.monotonic_ns()}", 4
    timeout = httpx.Timeout(TIMEOUT, read=5.0)
    with httpx.Client(timeout=timeout) as client:
        with client.stream("GET", flask_site.url("/stream"), params={"id": key, "n": count}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert "content-length" not in r.headers
            assert r.headers.get("transfer-encoding") == "chunked"
            lines = r.iter_lines()
            for i in range(count):
                assert next(lines) == f"chunk {i} of {key}"
                if i + 1 < count:
                    release(flask_site, key)
            assert list(lines) == []


def test_flask_stream_with_context_reaches_curl_incrementally(flask_site: FlaskSite) -> None:
    key, count = f"curl-{time.monotonic_ns()}", 3
    argv = ["/usr/bin/curl", "--noproxy", "*", "-sS", "-N", "--max-time", "30"]
    url = f"{flask_site.url('/stream')}?id={key}&n={count}"
    with subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as curl:
        assert curl.stdout is not None
        try:
            for i in range(count):
                assert curl.stdout.readline() == f"chunk {i} of {key}\n".encode()
                if i + 1 < count:
                    release(flask_site, key)
            assert curl.wait(TIMEOUT) == 0
            assert curl.stdout.read() == b""
        finally:
            if curl.poll() is None:
                curl.kill()


def assert_went_through_the_file_wrapper(response: httpx.Response) -> None:
    assert response.headers["x-has-file-wrapper"] == "True"
    # werkzeug.wsgi.FileWrapper is werkzeug's fallback when the server offers no file_wrapper
    assert response.headers["x-body-type"] != "werkzeug.wsgi.FileWrapper", response.headers


def test_flask_send_file_bytes_are_identical(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/files/blob.bin"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(flask_site.blob))
    assert response.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(flask_site.blob).digest()
    assert_went_through_the_file_wrapper(response)
    small = httpx.get(flask_site.url("/files/small.txt"), timeout=TIMEOUT)
    assert small.content == b"a small text file\n"
    assert small.headers["content-type"].startswith("text/plain")


def test_flask_send_file_with_curl(flask_site: FlaskSite, tmp_path: Path) -> None:
    out = tmp_path / "downloaded.bin"
    done = run_curl(
        "-o", str(out), "-w", "%{http_code} %{size_download}", flask_site.url("/files/blob.bin")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"200 {len(flask_site.blob)}"
    assert out.read_bytes() == flask_site.blob


def test_flask_send_file_head_range_and_conditional(flask_site: FlaskSite) -> None:
    url = flask_site.url("/files/blob.bin")
    with httpx.Client(timeout=TIMEOUT) as client:
        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(flask_site.blob))
        assert head.content == b""
        ranged = client.get(url, headers={"Range": "bytes=1000-1999"})
        assert ranged.status_code == 206
        assert ranged.headers["content-range"] == f"bytes 1000-1999/{len(flask_site.blob)}"
        assert ranged.content == flask_site.blob[1000:2000]
        etag = head.headers["etag"]
        cached = client.get(url, headers={"If-None-Match": etag})
        assert cached.status_code == 304
        assert cached.content == b""
        # the connection still works after a HEAD, a 206 and a 304 on it
        assert client.get(flask_site.url("/files/small.txt")).content == b"a small text file\n"


def test_flask_missing_file_is_404(flask_site: FlaskSite) -> None:
    response = httpx.get(flask_site.url("/files/nope.bin"), timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


def test_flask_expect_100_continue_then_body(flask_site: FlaskSite) -> None:
    body = b"x" * 100_000
    head = request(
        "POST",
        "/upload",
        host=f"{flask_site.server.host}:{flask_site.server.port}",
        headers=["Expect: 100-continue", f"Content-Length: {len(body)}"],
    )
    with RawConnection(flask_site.server.host, flask_site.server.port) as conn:
        conn.send(head)
        interim = conn.read_response()
        assert interim.status == 100, interim
        conn.send(body)
        final = conn.read_response()
    assert final.status == 200, final
    data = httpx.Response(200, content=final.body).json()
    assert data["bytes"] == len(body)
    assert data["sha256"] == hashlib.sha256(body).hexdigest()


# --- Flask: a 100 MB upload with the server's memory flat ----------------------------------------


def pattern_blocks(total: int) -> Iterator[bytes]:
    block = bytes(range(256)) * (BLOCK // 256)
    sent = 0
    while sent < total:
        piece = block[: min(BLOCK, total - sent)]
        sent += len(piece)
        yield piece


def pattern_digest(total: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_blocks(total):
        digest.update(piece)
    return digest.hexdigest()


class RssPeak:
    """The server's RSS before an upload and its highest value while it runs (every 20 ms)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = server.rss_kib()
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.rss_kib())
            self._stop.wait(0.02)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(self.server.rss_kib())

    @property
    def growth_mib(self) -> float:
        return (max(self.samples) - self.baseline) / KIB


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "body.bin"
    with path.open("wb") as out:
        for piece in pattern_blocks(UPLOAD_TOTAL):
            out.write(piece)
    return path


@pytest.fixture(scope="module")
def upload_digest() -> str:
    return pattern_digest(UPLOAD_TOTAL)


def upload_with_httpx(server: ServerProcess, total: int, chunked: bool) -> dict[str, object]:
    headers = {"content-type": "application/octet-stream"}
    if not chunked:
        headers["content-length"] = str(total)
    with httpx.Client(timeout=60) as client:
        response = client.post(
            server.url + "/upload", content=pattern_blocks(total), headers=headers
        )
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


def upload_with_curl(server: ServerProcess, path: Path, chunked: bool) -> dict[str, object]:
    args = [
        "-X",
        "POST",
        "--upload-file",
        str(path),
        "-H",
        "Content-Type: application/octet-stream",
    ]
    if chunked:
        args += ["-H", "Transfer-Encoding: chunked"]
    done = run_curl(*args, "-w", "\n%{http_code}", server.url + "/upload", timeout=90)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition(b"\n")
    assert status == b"200", done.stdout[:500]
    data = httpx.Response(200, content=body).json()
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("client", ["httpx", "curl"])
def test_flask_100mb_upload_through_request_stream_keeps_memory_flat(
    launch: Launch, upload_file: Path, upload_digest: str, client: str, chunked: bool
) -> None:
    server = launch(FLASK_APP)
    upload_with_httpx(server, 2 * MB, chunked)  # warm up: imports, first-request allocations
    with RssPeak(server) as rss:
        if client == "httpx":
            data = upload_with_httpx(server, UPLOAD_TOTAL, chunked)
        else:
            data = upload_with_curl(server, upload_file, chunked)
    assert data["bytes"] == UPLOAD_TOTAL
    assert data["sha256"] == upload_digest
    assert data["content_length"] == (None if chunked else UPLOAD_TOTAL)
    assert len(rss.samples) >= 3
    assert rss.growth_mib < UPLOAD_GROWTH_MIB, f"the server grew {rss.growth_mib:.0f} MiB"
    still_serving(server)


# --- Django --------------------------------------------------------------------------------------


@dataclass
class DjangoSite:
    server: ServerProcess
    data_dir: Path

    def url(self, target: str) -> str:
        return self.server.url + target


def django_env(data_dir: Path) -> dict[str, str]:
    return {"WSGI_DJANGO_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "mysite.settings"}


def manage(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """`manage.py ARGS` with this Python (Django is a dev requirement), bounded in time."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD")}
    full_env.update(django_env(data_dir), **(env or {}))
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DJANGO_DIR,
        env=full_env,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"manage.py {args} failed:\n{done.stdout!r}\n{done.stderr!r}"


@pytest.fixture(scope="module")
def django_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with a superuser, made once per module."""
    data_dir = tmp_path_factory.mktemp("django-data")
    manage(data_dir, "migrate", "--noinput")
    manage(
        data_dir,
        "createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "admin@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
    )  # fmt: skip
    return data_dir


@pytest.fixture(scope="module")
def django_site(django_data: Path) -> Iterator[DjangoSite]:
    server = start_server(DJANGO_APP, cwd=DJANGO_DIR, env=django_env(django_data))
    try:
        yield DjangoSite(server, django_data)
    finally:
        server.kill()


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_form_token(client: httpx.Client, url: str) -> str:
    """GET a page with a form: the csrftoken cookie is set and the form carries the token."""
    page = client.get(url)
    assert page.status_code == 200, page.text[:500]
    assert "csrftoken" in client.cookies, page.headers
    match = CSRF_INPUT.search(page.text)
    assert match, page.text[:1000]
    return match.group(1)


def django_client(site: DjangoSite) -> httpx.Client:
    return httpx.Client(base_url=site.server.url, timeout=TIMEOUT, follow_redirects=False)


def admin_login(client: httpx.Client, password: str = ADMIN_PASSWORD) -> httpx.Response:
    token = csrf_form_token(client, "/admin/login/?next=/admin/")
    return client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token,
            "username": ADMIN_USER,
            "password": password,
            "next": "/admin/",
        },
    )


def test_django_plain_view(django_site: DjangoSite) -> None:
    response = httpx.get(django_site.url("/hello/"), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.text.startswith("hello from django, pid ")
    assert response.headers["content-type"] == "text/plain"


def test_django_admin_redirects_to_login_when_anonymous(django_site: DjangoSite) -> None:
    response = httpx.get(django_site.url("/admin/"), timeout=TIMEOUT)
    assert response.status_code == 302
    assert response.headers["location"] == "/admin/login/?next=/admin/"


def test_django_admin_login_with_csrf_then_add_a_user(django_site: DjangoSite) -> None:
    with django_client(django_site) as client:
        response = admin_login(client)
        assert response.status_code == 302, response.text[:2000]
        assert response.headers["location"] == "/admin/"
        assert "sessionid" in client.cookies
        index = client.get("/admin/")
        assert index.status_code == 200
        assert "Site administration" in index.text
        # a second form through the admin, with the token of its own page
        username = f"user{time.monotonic_ns()}"
        token = csrf_form_token(client, "/admin/auth/user/add/")
        added = client.post(
            "/admin/auth/user/add/",
            data={
                "csrfmiddlewaretoken": token,
                "username": username,
                "usable_password": "true",
                "password1": "An0ther-passw0rd",
                "password2": "An0ther-passw0rd",
                "_save": "Save",
            },
        )
        assert added.status_code == 302, added.text[:3000]
        assert re.fullmatch(r"/admin/auth/user/\d+/change/", added.headers["location"])
        listing = client.get("/admin/auth/user/")
        assert listing.status_code == 200
        assert username in listing.text and ADMIN_USER in listing.text


def test_django_admin_login_with_a_wrong_password(django_site: DjangoSite) -> None:
    with django_client(django_site) as client:
        response = admin_login(client, password="wrong")
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.text
        assert "sessionid" not in client.cookies


def test_django_login_post_without_the_csrf_token_is_403(django_site: DjangoSite) -> None:
    with django_client(django_site) as client:
        csrf_form_token(client, "/admin/login/")  # the cookie, but no token in the form
        response = client.post(
            "/admin/login/", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        assert response.status_code == 403
        assert "CSRF" in response.text


def test_django_form_post_with_csrf(django_site: DjangoSite) -> None:
    with django_client(django_site) as client:
        token = csrf_form_token(client, "/contact/")
        fields = {"name": "Zoë Ådahl", "email": "zoe@example.com", "message": "déjà vu\nline 2 🐍"}
        response = client.post("/contact/", data={"csrfmiddlewaretoken": token, **fields})
        assert response.status_code == 200, response.text[:2000]
        assert response.json() == {"received": fields}
        invalid = client.post(
            "/contact/",
            data={"csrfmiddlewaretoken": token, **fields, "email": "not an address"},
        )
        assert invalid.status_code == 400
        assert "Enter a valid email address." in invalid.text
        forged = client.post("/contact/", data=fields)
        assert forged.status_code == 403


def test_django_static_file_in_debug(django_site: DjangoSite) -> None:
    with django_client(django_site) as client:
        response = client.get("/static/mysite/hello.txt")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        expected = (DJANGO_DIR / "mysite" / "static" / "mysite" / "hello.txt").read_bytes()
        assert response.content == expected
        assert response.headers["content-length"] == str(len(expected))
        css = client.get("/static/admin/css/base.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert len(css.content) > 1000 and b"body" in css.content
        assert client.get("/static/mysite/missing.txt").status_code == 404


@pytest.mark.parametrize("size", [10 * KIB, 3 * MIB + 7], ids=["in-memory", "temporary-file"])
def test_django_file_upload(django_site: DjangoSite, size: int) -> None:
    content = os.urandom(size)
    with django_client(django_site) as client:
        token = csrf_form_token(client, "/upload/")
        response = client.post(
            "/upload/",
            data={"csrfmiddlewaretoken": token, "title": "a report"},
            files={"file": ("report ü.bin", content, "application/octet-stream")},
        )
    assert response.status_code == 200, response.text[:2000]
    handler = "InMemoryUploadedFile" if size < MIB else "TemporaryUploadedFile"
    assert response.json() == {
        "title": "a report",
        "name": "report ü.bin",
        "size": size,
        "sha256": hashlib.sha256(content).hexdigest(),
        "handler": handler,
    }


# --- workers: SIGHUP under load loses no request -------------------------------------------------


ROLLS = 5


def worker_pids(server: ServerProcess) -> set[int]:
    """The live (not zombie) children of the server's main process."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == server.pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def roll(server: ServerProcess, workers: int, load: Load) -> None:
    """SIGHUP, then wait until every old worker has exited and a new one has answered."""

    def all_up() -> set[int] | None:
        pids = worker_pids(server)
        return pids if len(pids) >= workers else None

    old = poll(all_up, 20, what=f"{workers} workers")
    server.send_signal(signal.SIGHUP)

    def replaced() -> set[int] | None:
        now = worker_pids(server)
        return now - old if not (now & old) and len(now - old) >= workers else None

    new = poll(replaced, 30, interval=0.05, what="the workers to be replaced")
    poll(
        lambda: any(str(pid) in body for pid in new for body in list(load.result.pids)),
        15,
        what="a new worker to answer",
    )


@pytest.mark.parametrize(
    ("app", "shape"),
    [
        pytest.param("flask", "keepalive", id="flask-keepalive"),
        pytest.param("flask", "close", id="flask-close"),
        pytest.param("flask", "pipeline", id="flask-pipeline"),
        pytest.param("django", "keepalive", id="django-keepalive"),
    ],
)
def test_wsgi_workers_sighup_under_load_loses_no_request(
    launch: Launch, django_data: Path, app: str, shape: str
) -> None:
    workers = 2
    if app == "flask":
        server = launch(FLASK_APP, workers=workers)
        path, slow_path = "/ok", "/slow?s=0.3"
    else:
        server = launch(DJANGO_APP, cwd=DJANGO_DIR, env=django_env(django_data), workers=workers)
        path, slow_path = "/hello/", None
    fast = Load(server.host, server.port, path=path, threads=4, mode=shape)
    slow = Load(server.host, server.port, path=slow_path or path, threads=2)
    with fast, slow:
        fast.wait_for(50)
        for _ in range(ROLLS):
            roll(server, workers, fast)
            fast.wait_for(fast.result.ok + 20)
        slow_result = slow.stop()
        result = fast.stop()
    for name, got in (("fast", result), ("slow", slow_result)):
        summary = f"{name}: {got.ok} ok, {got.retried} retried, {len(got.failures)} failed"
        assert not got.failures, f"{summary}: {got.failures[:5]}"
    assert result.ok > ROLLS * 20
    assert slow_result.ok >= ROLLS, f"slow: {slow_result.ok} ok"
    assert len(result.pids) > workers, result.pids
