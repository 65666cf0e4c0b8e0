"""Process model (README "Workers"): a supervisor and worker processes, under real load.

Every test counts outcomes of a bounded load (tests/integration/loadgen.py) instead of trusting
impressions; see loadgen.py for the one retry a keep-alive client is entitled to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import (
    RawConnection,
    ServerProcess,
    connection_refused,
    descendants,
    poll,
    request,
)
from loadgen import Load

pytestmark = pytest.mark.timeout(90)


def workers_of(server: ServerProcess) -> set[int]:
    """Pids of the supervisor's live worker processes."""
    return {pid for pid in descendants(server.pid) if "coachwhip._worker" in cmdline(pid)}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def count_lines(server: ServerProcess, pattern: str) -> int:
    return sum(1 for line in server.lines if pattern in line)


def listening_sockets(pid: int) -> set[int]:
    """Inodes of the listening TCP sockets process `pid` holds open."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(int(fields[9]))
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                held.add(int(link[8:-1]))
    return held & listening


REUSE_PORT = [
    pytest.param((), id="shared-socket"),
    pytest.param(("--reuse-port",), id="reuse-port"),
]


def test_two_workers_serve_and_share_the_load(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log")
    assert len(workers_of(server)) == 2
    with Load(server.host, server.port, threads=6) as load:
        load.wait_for(300)
    assert not load.stop().failures
    # New connections go to whichever worker accepts first: both must get some.
    served = {httpx.get(server.url + "/ok").text for _ in range(200)}
    assert served == {str(p) for p in workers_of(server)}, "one worker got no connections"


def test_sigterm_under_load_finishes_accepted_requests_then_refuses(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log")
    load = Load(server.host, server.port, path="/slow?s=0.3", threads=6)
    with load:
        load.wait_for(12)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        poll(lambda: connection_refused(server.host, server.port), 2, what="refused connects")
        code = server.wait_exit(15)
        result = load.stop()
    assert code == 0
    in_flight = [(sent, done) for sent, done in result.timeline if sent < signalled]
    assert in_flight and all(done is not None for _, done in in_flight), (
        f"a request sent before SIGTERM failed: {result.failures[:3]}"
    )
    # After the signal nothing hangs: later attempts fail fast (refused), none is left waiting.
    assert all("timed out" not in f for f in result.failures), result.failures[:3]


@pytest.mark.parametrize("mode", REUSE_PORT)
def test_sighup_rolls_workers_with_zero_failed_requests(serve: Serve, mode: tuple[str]) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log", *mode)
    before = workers_of(server)
    with Load(server.host, server.port, threads=4) as load:
        load.wait_for(100)
        server.send_signal(signal.SIGHUP)
        poll(lambda: count_lines(server, "exited (status 0)") >= 2, 15, what="both workers rolled")
        served = load.result.ok
        load.wait_for(served + 100)
    result = load.stop()
    assert not result.failures, result.failures[:5]
    after = workers_of(server)
    assert len(after) == 2 and not (after & before), f"pids {before} -> {after}"
    # (keep-alive connections stay with whichever new worker accepted them first)
    assert {str(p) for p in after} & result.pids, "the new workers served nothing"


def test_twenty_reloads_do_not_leak_supervisor_fds(serve: Serve) -> None:
    server = serve(
        "apps.workers:app", "--workers", "1", "--max-requests", "1000000", "--no-access-log"
    )
    baseline = fd_count(server.pid)
    for round_ in range(1, 21):
        server.send_signal(signal.SIGHUP)
        poll(
            lambda r=round_: count_lines(server, "exited (status 0)") >= r,
            10,
            what=f"reload {round_}",
        )
        assert httpx.get(server.url + "/ok").status_code == 200
    assert fd_count(server.pid) == baseline


@pytest.mark.parametrize("mode", REUSE_PORT)
def test_sigkill_of_a_worker_mid_request_is_respawned_quickly(
    serve: Serve, mode: tuple[str]
) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--no-access-log", *mode)
    victim = min(workers_of(server))
    with Load(server.host, server.port, path="/slow?s=0.05", threads=4) as load:
        load.wait_for(40)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        poll(lambda: len(workers_of(server) - {victim}) == 2, 3, what="a respawned worker")
        respawn_s = time.monotonic() - killed
        failed_so_far = len(load.result.failures)
        load.wait_for(load.result.ok + 60)
    result = load.stop()
    assert respawn_s < 1.0, f"respawned after {respawn_s:.2f} s"
    # Only requests on the killed worker's own connections may fail (at most one per thread);
    # everything after the respawn succeeds.
    assert failed_so_far <= 4, result.failures
    assert len(result.failures) == failed_so_far, result.failures


def test_max_requests_recycles_workers_without_failed_requests(serve: Serve) -> None:
    server = serve(
        "apps.workers:app",
        "--workers",
        "2",
        "--max-requests",
        "100",
        "--max-requests-jitter",
        "20",
        "--no-access-log",
    )
    first = workers_of(server)
    with Load(server.host, server.port, threads=4) as load:
        # Three recycles under continuous load (each waits for its replacement to be ready), and
        # both first workers among them. The 4 keep-alive connections can sit unevenly on the
        # workers (the shared socket does not balance them), so one slot may recycle three times
        # before the other reaches its limit: wait for the state itself, not a count.
        poll(
            lambda: (
                count_lines(server, "exited (status 0)") >= 3 and not (workers_of(server) & first)
            ),
            30,
            what="3 recycled workers, both first workers replaced",
        )
    result = load.stop()
    assert not result.failures, result.failures[:5]
    assert count_lines(server, "max-requests (") >= 3
    assert not (workers_of(server) & first)


def test_failing_startup_exits_nonzero_without_a_respawn_storm(serve: Serve) -> None:
    server = serve("apps.workers:failing_startup", "--workers", "2", ready=None)
    code = server.wait_exit(20)
    assert code == 3
    assert "database is unreachable" in server.output
    assert count_lines(server, "Started worker") <= 2
    assert "Listening on" not in server.output


def test_stuck_worker_is_replaced_by_the_heartbeat(serve: Serve) -> None:
    server = serve(
        "apps.workers:app",
        "--workers",
        "2",
        "--timeout-worker-healthcheck",
        "1",
        "--timeout-graceful-shutdown",
        "1",
    )
    before = workers_of(server)
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/block?s=1000", timeout=httpx.Timeout(3.0))
    line = server.wait_for_line(r"Worker \[(\d+)\] is stuck: no heartbeat", 10)
    stuck = int(line.group(1))
    assert stuck in before
    poll(
        lambda: len(workers_of(server)) == 2 and stuck not in workers_of(server),
        5,
        what="the stuck worker replaced",
    )
    for _ in range(10):
        assert httpx.get(server.url + "/ok", timeout=3).status_code == 200


def test_worker_over_its_memory_limit_is_replaced_gracefully(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "1", "--workers-max-rss", "200")
    before = workers_of(server)
    httpx.get(server.url + "/hog?mib=300", timeout=10)
    server.wait_for_line(r"Replacing worker \[\d+\]: memory \d+ MiB > --workers-max-rss 200", 10)
    poll(
        lambda: bool(workers_of(server)) and not (workers_of(server) & before),
        10,
        what="a fresh worker",
    )
    assert httpx.get(server.url + "/ok").status_code == 200


@pytest.mark.parametrize("mode", REUSE_PORT)
def test_ttin_and_ttou_change_the_number_of_workers(serve: Serve, mode: tuple[str]) -> None:
    server = serve("apps.workers:app", "--workers", "2", *mode)
    sockets = 2 if mode else 1
    assert len(listening_sockets(server.pid)) == sockets
    server.send_signal(signal.SIGTTIN)
    poll(lambda: len(workers_of(server)) == 3, 10, what="a third worker")
    assert len(listening_sockets(server.pid)) == (3 if mode else 1)
    # One at a time: two identical signals sent together may arrive as one (POSIX).
    server.send_signal(signal.SIGTTOU)
    poll(lambda: len(workers_of(server)) == 2, 10, what="two workers left")
    server.send_signal(signal.SIGTTOU)
    poll(lambda: len(workers_of(server)) == 1, 10, what="one worker left")
    # --reuse-port: the retired slots' sockets are closed, so no new connection is steered
    # to a queue nobody serves.
    poll(lambda: len(listening_sockets(server.pid)) == 1, 5, what="one listening socket left")
    with httpx.Client() as client:  # a fresh connection (new source port) per request
        for _ in range(50):
            response = client.get(server.url + "/ok", headers={"connection": "close"}, timeout=3)
            assert response.status_code == 200


def test_reuse_port_gives_each_worker_its_own_socket(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--reuse-port", "--no-access-log")
    workers = workers_of(server)
    per_worker = [listening_sockets(pid) for pid in workers]
    assert all(len(held) == 1 for held in per_worker), per_worker
    assert per_worker[0] != per_worker[1], "both workers serve the same socket"
    assert listening_sockets(server.pid) == per_worker[0] | per_worker[1]
    # The kernel spreads new connections by a hash of the client's port: both get a fair share.
    served: dict[str, int] = {}
    for _ in range(200):
        pid = httpx.get(server.url + "/ok", headers={"connection": "close"}).text
        served[pid] = served.get(pid, 0) + 1
    assert set(served) == {str(p) for p in workers}
    assert min(served.values()) >= 50, served


def test_reuse_port_lets_two_servers_share_a_port(serve: Serve) -> None:
    first = serve("apps.workers:app", "--reuse-port")
    second = serve("apps.workers:app", "--reuse-port", port=first.port)
    assert second.port == first.port
    served = {httpx.get(first.url + "/ok", headers={"connection": "close"}).text for _ in range(60)}
    assert served == {str(first.pid), str(second.pid)}
    # Without the flag on the newcomer the port is taken, and the message says what to do.
    third = serve("apps.workers:app", port=first.port, ready=None)
    assert third.wait_exit(10) == 1
    assert "Address already in use (is another server running?" in third.output


@pytest.mark.parametrize("flag", [("--uds", "/tmp/cw-reuse.sock"), ("--fd", "3")])
def test_reuse_port_with_uds_or_fd_is_a_usage_error(serve: Serve, flag: tuple[str, str]) -> None:
    server = serve("apps.workers:app", "--reuse-port", *flag, port=None, ready=None)
    assert server.wait_exit(10) == 2
    assert (
        f"--reuse-port binds TCP sockets from --host/--port; it cannot be combined with {flag[0]}"
        in server.output
    )


def test_sigquit_stops_at_once(serve: Serve) -> None:
    server = serve("apps.workers:app", "--workers", "2", "--timeout-graceful-shutdown", "30")
    slow = [RawConnection(server.host, server.port) for _ in range(2)]
    for conn in slow:  # requests the graceful path would wait 20 s for
        conn.send(request("GET", "/slow?s=20"))
    assert httpx.get(server.url + "/ok").status_code == 200  # so both were read by now
    start = time.monotonic()
    server.send_signal(signal.SIGQUIT)
    code = server.wait_exit(5)
    assert time.monotonic() - start < 4.0
    assert code != 0
    for conn in slow:
        conn.close()


def test_web_concurrency_sets_the_worker_count(serve: Serve) -> None:
    server = serve("apps.workers:app", env={"WEB_CONCURRENCY": "2"})
    assert len(workers_of(server)) == 2


SYSTEMD_WRAPPER = """
import os, socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)  # survives exec, as systemd passes it
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid, as systemd expects
print("activated port", sock.getsockname()[1], flush=True)
os.execv(sys.executable, [sys.executable, "-m", "coachwhip", *sys.argv[1:]])
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activation(workers: str) -> None:
    server = ServerProcess(
        "apps.workers:app",
        python_args=["-c", SYSTEMD_WRAPPER, "--workers", workers, "apps.workers:app"],
    )
    try:
        port = server.wait_for_line(r"activated port (\d+)", 10).group(1)
        listening = server.wait_for_line(r"Listening on http://([\d.]+):(\d+)", 15)
        assert listening.group(2) == port, "did not serve the socket systemd passed"
        assert httpx.get(f"http://127.0.0.1:{port}/ok").status_code == 200
    finally:
        server.kill()


def test_uds_mode_sets_the_socket_file_permissions(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = serve(
        "apps.workers:app",
        "--uds",
        str(path),
        "--uds-mode",
        "600",
        port=None,
        ready=r"Listening on unix:",
    )
    assert path.stat().st_mode & 0o777 == 0o600
    with RawConnection(uds=str(path)) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read_response().status == 200
    server.stop()
    assert not path.exists(), "the socket file was left behind"


def test_bad_uds_mode_is_a_usage_error(serve: Serve) -> None:
    server = serve("apps.workers:app", "--uds-mode", "999", ready=None)
    assert server.wait_exit(10) == 2
    assert "--uds-mode: expected an octal file mode like 660" in server.output
