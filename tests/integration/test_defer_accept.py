"""TCP_DEFER_ACCEPT on the listening socket (README "Options", --defer-accept).

The kernel hands a connection to the server once the client's first bytes arrive. Seen from a
client: a request on a new connection is answered at once, and a connection that stays silent
reaches the server (and so its keep-alive timeout) only after the kernel's first SYN-ACK
retransmission, about a second later. With --no-defer-accept it reaches the server at once.
"""

from __future__ import annotations

import socket
import time

import pytest
from coachwhip.config import Config
from coachwhip.sockets import defers_accept, open_listener, open_sibling
from conftest import Serve
from harness import ServerProcess

KEEP_ALIVE = "0.3"  # an accepted silent connection is closed this long after it got through


def seconds_until_closed_while_silent(server: ServerProcess) -> float:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b"", "the server sent something to a silent client"
        return time.monotonic() - start


def seconds_to_first_response(server: ServerProcess) -> float:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        return time.monotonic() - start


def test_silent_connection_gets_through_after_about_a_second(serve: Serve) -> None:
    server = serve("apps.raw:app", "--timeout-keep-alive", KEEP_ALIVE)
    waited = seconds_until_closed_while_silent(server)
    assert 0.9 <= waited < 5, f"closed after {waited:.2f} s; deferred accept should add ~1 s"
    assert seconds_to_first_response(server) < 0.5  # a client that speaks is not held back


@pytest.mark.parametrize("how", ["flag", "env"])
def test_turned_off_the_server_sees_the_connection_at_once(serve: Serve, how: str) -> None:
    args = ["--timeout-keep-alive", KEEP_ALIVE]
    env = None
    if how == "flag":
        args.append("--no-defer-accept")
    else:
        env = {"COACHWHIP_DEFER_ACCEPT": "false"}
    server = serve("apps.raw:app", *args, env=env)
    waited = seconds_until_closed_while_silent(server)
    assert waited < 0.9, f"closed after {waited:.2f} s; without deferred accept ~{KEEP_ALIVE} s"


def test_reuse_port_siblings_copy_the_setting() -> None:
    for defer in (True, False):
        first = open_listener(Config(port=0, reuse_port=True, defer_accept=defer))
        sibling = open_sibling(first, 16)
        try:
            assert sibling.getsockname() == first.getsockname()
            assert defers_accept(first) is defer
            assert defers_accept(sibling) is defer
        finally:
            first.close()
            sibling.close()
