"""Real reverse proxies (Debian's HAProxy and nginx) in front of a coachwhip server.

    with haproxy(CFG, server, tmp_path=tmp_path) as proxy:
        with RawConnection(proxy.host, proxy.port) as conn: ...

Each proxy runs in the foreground as a child process (its own session), with its config, logs,
pid file and temp directories in a fresh directory under `tmp_path`, listening on 127.0.0.1
ports chosen here. Readiness is polled (every listen port is a listening socket owned by the
proxy process, and a connect to it succeeds); teardown stops the whole process group and reaps
it. `proxy.output` is everything the proxy logged (with `log stderr` in an HAProxy config, that
includes one line per request), and is added as a note to any exception that leaves the `with`.

A config is a template: `{{name}}` placeholders are replaced, unknown ones are an error.
    {{listen}}  {{listen_host}}  {{listen_port}}     the (first) address the proxy listens on
    {{listenN}} {{listenN_port}}                     with listen_ports=K > 1, N = 0..K-1
    {{backend}} {{backend_host}} {{backend_port}}    the first backend, "127.0.0.1:PORT" form
    {{backendN}} {{backendN_host}} {{backendN_port}} backend N (N = 0, 1, ...)
    {{dir}}                                          the proxy's own directory (absolute path)
plus any `values={...}` the caller passes. Nothing else in the text is touched, so HAProxy's
`{ path_beg /admin }` and nginx's `$host` or `{ ... }` blocks need no escaping.

If haproxy or nginx is not installed the test FAILS (never skips), naming the Debian package.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from harness import ServerProcess, free_port

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
BIND_ATTEMPTS = 5
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"  # not on a non-root user's PATH on Debian
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
BIND_FAILED = re.compile(r"cannot bind socket|Address already in use|bind\(\) to .* failed")

Backend = ServerProcess | tuple[str, int]

# A sensible start for HAProxy configs: logs every request to stderr (so into `proxy.output`),
# HTTP mode with HAProxy's defaults otherwise (keep-alive, no forwardfor), bounded timeouts.
HAPROXY_DEFAULTS = """\
global
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 10s
    timeout server 10s
"""

# An nginx http-context snippet: a plain reverse proxy to the first backend, HTTP/1.1 upstream.
NGINX_PROXY = """\
server {
    listen {{listen}};
    location / {
        proxy_pass http://{{backend}};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
"""


def find_binary(name: str, package: str) -> str:
    """Absolute path of a proxy executable; fails the test (no skip) when it is missing."""
    found = shutil.which(name) or shutil.which(name, path=SBIN_PATH)
    if found is None:
        pytest.fail(
            f"{name} is not installed: these tests run a real {name}. Install the Debian "
            f"package {package!r} (apt-get install {package}; scripts/setup does it as root).",
            pytrace=False,
        )
    return found


def render(template: str, values: Mapping[str, object]) -> str:
    """Replace every {{name}} in `template`; an unknown name raises KeyError listing the known."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(
                f"config placeholder {{{{{name}}}}} is not defined; known: {sorted(values)}"
            )
        return str(values[name])

    return PLACEHOLDER.sub(substitute, template)


def backend_address(backend: Backend) -> tuple[str, int]:
    if isinstance(backend, ServerProcess):
        if not backend.port:
            raise ValueError("the backend ServerProcess is not ready (no port yet)")
        return backend.host, backend.port
    return backend


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP sockets in LISTEN state on 127.0.0.1:`port` (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1] == wanted and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def owns_socket(pid: int, inodes: set[str]) -> bool:
    """True if process `pid` has a file descriptor on one of the socket `inodes`."""
    if not inodes:
        return False
    links = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in links:
                return True
    return False


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProxyStartError(AssertionError):
    def __init__(self, message: str, bind_failed: bool) -> None:
        super().__init__(message)
        self.bind_failed = bind_failed


class ProxyProcess:
    """One running proxy: its ports, files and process; `stop()` ends and reaps it."""

    def __init__(
        self,
        kind: str,
        argv: list[str],
        directory: Path,
        config_text: str,
        ports: list[int],
        log_files: Sequence[Path] = (),
    ) -> None:
        self.kind = kind
        self.argv = argv
        self.dir = directory
        self.config_text = config_text
        self.host = "127.0.0.1"
        self.ports = ports
        self.console = directory / "console.log"  # the process's stdout and stderr
        self.log_files = [self.console, *log_files]
        with open(self.console, "wb") as console:
            self.proc = subprocess.Popen(
                argv,
                cwd=str(directory),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        LIVE_PROXIES.append(self)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def output(self) -> str:
        """Everything the proxy wrote: console, then its own log files (nginx)."""
        parts = []
        for path in self.log_files:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {path.name} ---\n{text.rstrip()}")
        return "\n".join(parts)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def describe(self) -> str:
        return (
            f"{self.kind} (pid {self.pid}, {'running' if self.running() else 'exited'}) "
            f"on {self.host}:{self.ports}, config {self.dir / 'proxy.conf'}; output:\n"
            + self.tail()
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while pending:
            if not self.running():
                output = self.output
                raise ProxyStartError(
                    f"{self.kind} exited with code {self.proc.returncode} before listening on "
                    f"{self.host}:{pending}; argv {self.argv}; output:\n{output}\n"
                    f"--- config ---\n{self.config_text}",
                    bind_failed=bool(BIND_FAILED.search(output)),
                )
            port = pending[0]
            inodes = listening_inodes(port)
            owned = any(owns_socket(pid, inodes) for pid in [self.pid, *child_pids(self.pid)])
            if owned and can_connect(self.host, port):
                pending.pop(0)
                continue
            if time.monotonic() >= deadline:
                raise ProxyStartError(
                    f"{self.kind} not listening on {self.host}:{pending} after {timeout} s; "
                    f"output:\n{self.output}\n--- config ---\n{self.config_text}",
                    bind_failed=False,
                )
            time.sleep(0.01)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Stop the proxy (SIGTERM, then SIGKILL to its process group) and reap it."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # The session holds nginx's workers too: nothing of it may outlive the test.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout)
        if self in LIVE_PROXIES:
            LIVE_PROXIES.remove(self)
        return code


LIVE_PROXIES: list[ProxyProcess] = []  # started and not yet stopped
# Builds a (not yet ready) proxy from its directory, template values and listen ports.
Build = Callable[[Path, dict[str, object], list[int]], ProxyProcess]


@atexit.register
def _kill_leftovers() -> None:
    for proxy in list(LIVE_PROXIES):
        with contextlib.suppress(Exception):
            proxy.stop(1.0)


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def template_values(
    backends: Sequence[Backend], ports: list[int], directory: Path, extra: Mapping[str, object]
) -> dict[str, object]:
    values: dict[str, object] = {"dir": str(directory)}
    for i, port in enumerate(ports):
        values.update({f"listen{i}": f"127.0.0.1:{port}", f"listen{i}_port": port})
    values.update(listen=f"127.0.0.1:{ports[0]}", listen_host="127.0.0.1", listen_port=ports[0])
    for i, backend in enumerate(backends):
        host, port = backend_address(backend)
        values.update(
            {f"backend{i}": f"{host}:{port}", f"backend{i}_host": host, f"backend{i}_port": port}
        )
        if i == 0:
            values.update(backend=f"{host}:{port}", backend_host=host, backend_port=port)
    values.update(extra)
    return values


def next_dir(tmp_path: Path, kind: str) -> Path:
    for n in range(1000):
        directory = tmp_path / f"{kind}-{n}"
        try:
            directory.mkdir(parents=True)
        except FileExistsError:
            continue
        return directory.resolve()
    raise RuntimeError(f"too many {kind} directories under {tmp_path}")


@contextlib.contextmanager
def _run(
    kind: str,
    build: Build,
    backends: Sequence[Backend],
    tmp_path: Path,
    listen_ports: int,
    values: Mapping[str, object],
    ready_timeout: float,
) -> Iterator[ProxyProcess]:
    proxy: ProxyProcess | None = None
    for attempt in range(BIND_ATTEMPTS):
        directory = next_dir(tmp_path, kind)
        ports = distinct_free_ports(listen_ports)
        candidate = build(directory, template_values(backends, ports, directory, values), ports)
        try:
            candidate.wait_ready(ready_timeout)
        except ProxyStartError as exc:
            candidate.stop()
            if exc.bind_failed and attempt + 1 < BIND_ATTEMPTS:
                continue
            raise
        except BaseException:
            candidate.stop()
            raise
        proxy = candidate
        break
    assert proxy is not None
    try:
        yield proxy
    except BaseException as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(proxy.describe())
        raise
    finally:
        proxy.stop()


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def haproxy(
    cfg_text: str,
    *backends: Backend,
    tmp_path: Path,
    listen_ports: int = 1,
    values: Mapping[str, object] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> contextlib.AbstractContextManager[ProxyProcess]:
    """Run `haproxy -db -f CONFIG` with `cfg_text` (a whole config; see HAPROXY_DEFAULTS)."""
    binary = find_binary("haproxy", "haproxy")

    def build(directory: Path, tvalues: dict[str, object], ports: list[int]) -> ProxyProcess:
        text = render(cfg_text, tvalues)
        config = directory / "proxy.conf"
        config.write_text(text)
        return ProxyProcess("haproxy", [binary, "-db", "-f", str(config)], directory, text, ports)

    return _run("haproxy", build, backends, tmp_path, listen_ports, values or {}, ready_timeout)


def nginx(
    cfg_text: str,
    *backends: Backend,
    tmp_path: Path,
    whole_config: bool = False,
    listen_ports: int = 1,
    values: Mapping[str, object] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> contextlib.AbstractContextManager[ProxyProcess]:
    """Run `nginx -g 'daemon off;' -c CONFIG` in the foreground.

    By default `cfg_text` is the content of the `http { }` block (server and upstream blocks;
    see NGINX_PROXY): it is wrapped in a config that puts the pid file, error log (level info),
    access log and every temp directory in the proxy's own directory, runs one worker, and adds
    `user root root;` when running as root (so workers can use those directories). With
    `whole_config=True`, `cfg_text` is the whole config; it can use {{nginx_main}} (the
    main-context lines) and {{nginx_http}} (the http-context paths) for that boilerplate.
    """
    binary = find_binary("nginx", "nginx-light")  # in Debian 12 it pulls in "nginx" itself

    def build(directory: Path, tvalues: dict[str, object], ports: list[int]) -> ProxyProcess:
        main = nginx_main(directory)
        http = nginx_http(directory)
        if whole_config:
            text = render(cfg_text, {**tvalues, "nginx_main": main, "nginx_http": http})
        else:
            body = render(cfg_text, tvalues)
            events = "events {\n    worker_connections 256;\n}\n"
            text = f"{main}\n{events}\nhttp {{\n{http}\n{body}}}\n"
        config = directory / "proxy.conf"
        config.write_text(text)
        argv = [
            binary,
            "-p",
            f"{directory}/",
            "-e",
            str(directory / "error.log"),
            "-c",
            str(config),
            "-g",
            "daemon off;",
        ]
        logs = [directory / "error.log", directory / "access.log"]
        return ProxyProcess("nginx", argv, directory, text, ports, logs)

    return _run("nginx", build, backends, tmp_path, listen_ports, values or {}, ready_timeout)


def nginx_main(directory: Path) -> str:
    lines = [
        "worker_processes 1;",
        f"pid {directory}/nginx.pid;",
        f"error_log {directory}/error.log info;",
    ]
    if os.geteuid() == 0:  # else workers run as `nobody` and cannot use the temp directories
        user = pwd.getpwuid(0).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lines.insert(0, f"user {user} {group};")
    return "\n".join(lines) + "\n"


def nginx_http(directory: Path) -> str:
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "temp" / sub).mkdir(parents=True, exist_ok=True)
    return (
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {directory}/temp/client_body;\n"
        f"    proxy_temp_path {directory}/temp/proxy;\n"
        f"    fastcgi_temp_path {directory}/temp/fastcgi;\n"
        f"    uwsgi_temp_path {directory}/temp/uwsgi;\n"
        f"    scgi_temp_path {directory}/temp/scgi;\n"
    )
