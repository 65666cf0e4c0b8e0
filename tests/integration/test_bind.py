"""Several listeners (issue 10 §4): --bind, repeatable, in gunicorn's syntax — HOST:PORT,
[IPv6]:PORT, unix:PATH, fd://N — and several systemd sockets. Every worker serves every
listener, across SIGHUP and respawns.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import RawConnection, ServerProcess, poll, request
from loadgen import Load

pytestmark = pytest.mark.timeout(90)


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def pids_over(url: str, count: int = 40) -> set[str]:
    return {httpx.get(url + "/ok", headers={"connection": "close"}).text for _ in range(count)}


def via_unix(path: Path) -> int:
    with RawConnection(uds=str(path)) as conn:
        conn.send(request("GET", "/ok"))
        return conn.read_response().status


def test_every_bind_is_served(serve: Serve, tmp_path: Path) -> None:
    first, second, v6 = free_port(), free_port(), free_port(socket.AF_INET6, "::1")
    path = tmp_path / "cw.sock"
    server = serve(
        "apps.workers:app",
        "--bind",
        f"127.0.0.1:{first}",
        "--bind",
        f"[::1]:{v6}",
        "--bind",
        f"unix:{path}",
        "--bind",
        f"127.0.0.1:{second}",
        port=None,
        ready=r"Listening on http://([\d.]+):(\d+)",
    )
    line = next(line for line in server.lines if "Listening on" in line)
    assert f"http://[::1]:{v6}" in line and f"unix:{path}" in line, line
    for url in (f"http://127.0.0.1:{first}", f"http://[::1]:{v6}", f"http://127.0.0.1:{second}"):
        assert httpx.get(url + "/ok").status_code == 200, url
    assert via_unix(path) == 200
    server.stop()
    assert not path.exists(), "the unix socket file was left behind"


def test_every_worker_serves_every_bind_across_sighup(serve: Serve, tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    path = tmp_path / "w.sock"
    server = serve(
        "apps.workers:app",
        "--workers",
        "2",
        "--no-access-log",
        "--bind",
        f"127.0.0.1:{first}",
        "--bind",
        f"127.0.0.1:{second}",
        "--bind",
        f"unix:{path}",
        port=None,
        ready=r"Listening on http://([\d.]+):(\d+)",
    )
    assert len(pids_over(f"http://127.0.0.1:{first}")) == 2
    assert len(pids_over(f"http://127.0.0.1:{second}")) == 2
    with Load("127.0.0.1", first, mode="close") as a, Load("127.0.0.1", second) as b:
        a.wait_for(50)
        b.wait_for(50)
        for round_ in (1, 2):
            server.send_signal(signal.SIGHUP)
            poll(
                lambda r=round_: sum("exited (status 0)" in line for line in server.lines) >= 2 * r,
                20,
                what=f"roll {round_}",
            )
        a.wait_for(a.result.ok + 50)
        b.wait_for(b.result.ok + 50)
    assert not a.stop().failures and not b.stop().failures
    assert len(pids_over(f"http://127.0.0.1:{second}")) == 2
    assert via_unix(path) == 200


def test_fd_bind_serves_an_inherited_socket(serve: Serve) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    os.set_inheritable(sock.fileno(), True)
    try:
        serve(
            "apps.workers:app",
            "--bind",
            f"fd://{sock.fileno()}",
            "--bind",
            f"127.0.0.1:{free_port()}",
            port=None,
            pass_fds=(sock.fileno(),),
        )
        assert httpx.get(f"http://127.0.0.1:{port}/ok").status_code == 200
    finally:
        sock.close()


SYSTEMD_TWO = """
import os, socket, sys
socks = []
for target in (3, 4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    os.dup2(s.fileno(), target)
    os.set_inheritable(target, True)
    socks.append(s)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid())
print("activated ports", *(s.getsockname()[1] for s in socks), flush=True)
os.execv(sys.executable, [sys.executable, "-m", "coachwhip", *sys.argv[1:]])
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_passes_two_sockets(workers: str) -> None:
    server = ServerProcess(
        "apps.workers:app",
        python_args=["-c", SYSTEMD_TWO, "--workers", workers, "apps.workers:app"],
    )
    try:
        match = server.wait_for_line(r"activated ports (\d+) (\d+)", 10)
        server.wait_for_line(r"Listening on", 15)
        for port in match.groups():
            assert httpx.get(f"http://127.0.0.1:{port}/ok").status_code == 200
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bind", "8000"), "--bind: expected HOST:PORT"),
        (("--bind", "fd://x"), "fd://N needs a number"),
        (("--bind", "unix:"), "unix:PATH needs a path"),
        (("--bind", "127.0.0.1:0", "--uds", "/tmp/x.sock"), "put the --uds path in it"),
        (
            ("--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--reuse-port"),
            "--reuse-port works with one listener",
        ),
    ],
    ids=["no-host", "fd-text", "unix-empty", "with-uds", "reuse-port"],
)
def test_bad_binds_are_usage_errors(serve: Serve, args: tuple[str, ...], message: str) -> None:
    server = serve("apps.workers:app", *args, port=None, ready=None)
    assert server.wait_exit(10) == 2
    assert any(message in line for line in server.lines), server.lines[-3:]


def test_bind_in_use_says_where(serve: Serve) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = serve(
            "apps.workers:app",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--bind",
            f"127.0.0.1:{port}",
            port=None,
            ready=None,
        )
        assert server.wait_exit(10) != 0
    assert any(f"cannot listen on 127.0.0.1:{port}" in line for line in server.lines)
