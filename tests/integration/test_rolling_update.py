"""A rolling update the way an orchestrator does it (issue 10 §5), on this machine.

Two coachwhip instances behind a real HAProxy that health-checks /-/ready. Each instance in
turn gets SIGTERM (with --shutdown-delay: /-/ready turns 503 at once, the instance keeps serving
while HAProxy takes it out of rotation, then drains), exits, and is replaced by a new instance on
the same port, which HAProxy puts back once its /-/ready says 200. The test's own load generator
counts every request through HAProxy: zero may fail. The HAProxy settings are the ones shipped
in deploy/haproxy.cfg plus `retries 0`: HAProxy would otherwise retry a refused connection on
its own and hide an instance that stopped accepting while still in rotation (without
--shutdown-delay, this test fails).
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest
from conftest import Serve
from harness import ServerProcess, poll
from loadgen import Load
from proxies import HAPROXY_DEFAULTS, haproxy

pytestmark = pytest.mark.timeout(120)

HAPROXY_READY_CHECKS = (
    HAPROXY_DEFAULTS
    + """
frontend fe
    bind {{listen}}
    default_backend app

backend app
    retries 0
    option httpchk GET /-/ready
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
    server a {{backend0}} check
    server b {{backend1}} check
"""
)

INSTANCE_ARGS = ("--readiness", "--health", "--shutdown-delay", "1.5", "--no-access-log")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("shape", ["keepalive", "close"])
def test_rolling_update_behind_haproxy_loses_no_request(
    serve: Serve, tmp_path: Path, shape: str
) -> None:
    ports = [free_port(), free_port()]
    instances: list[ServerProcess] = [
        serve("apps.workers:app", *INSTANCE_ARGS, port=port) for port in ports
    ]
    with haproxy(HAPROXY_READY_CHECKS, *instances, tmp_path=tmp_path) as front:
        with Load(front.host, front.port, threads=4, mode=shape) as load:
            load.wait_for(200)
            for i, port in enumerate(ports):
                old = instances[i]
                old.send_signal(signal.SIGTERM)
                assert old.wait_exit(20) == 0
                new = instances[i] = serve("apps.workers:app", *INSTANCE_ARGS, port=port)
                poll(lambda p=port: ready(p), 10, what=f"instance {i} ready again")
                # HAProxy's next check puts it back: the new process answers through HAProxy.
                poll(
                    lambda pid=str(new.pid): httpx.get(front.url + "/ok").text == pid,
                    10,
                    what=f"HAProxy to send traffic to instance {i} again",
                )
                load.wait_for(load.result.ok + 200)
            result = load.stop()
        log = front.describe()
    summary = f"{result.ok} ok, {result.retried} retried, {len(result.failures)} failed"
    assert not result.failures, f"{summary}: {result.failures[:5]}\n{log}"
    assert result.ok > 600, summary
