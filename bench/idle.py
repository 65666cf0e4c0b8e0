"""Idle keep-alive connections: open N, each after one complete GET, and leave them open; plain
or over TLS (each after a full handshake, the certificate not verified)."""

from __future__ import annotations

import select
import socket
import ssl
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def _read_response(sock: socket.socket) -> None:
    """Read one response with a content-length body (the hello app's), or raise."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response: {head[:40]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def open_idle(port: int, count: int, timeout_s: float, tls: bool = False) -> list[socket.socket]:
    """Open `count` connections one after another, each sending one GET and reading the answer.
    With `tls`, each does a full handshake first (no session is offered). Raises TimeoutError
    past `timeout_s` (the sockets opened so far are closed)."""
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout_s
    ctx = _client_context() if tls else None
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened only {len(socks)} of {count} in {timeout_s:.0f} s")
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if ctx is not None:
                try:
                    sock = ctx.wrap_socket(sock, server_hostname="localhost")
                except BaseException:
                    sock.close()
                    raise
            socks.append(sock)
            sock.sendall(REQUEST)
            _read_response(sock)
    except OSError as e:
        close_all(socks)
        raise OSError(f"connection {len(socks)} of {count}: {e}") from e
    except BaseException:
        close_all(socks)
        raise
    return socks


def count_closed(socks: list[socket.socket]) -> int:
    """How many the server has closed (readable at EOF, or in error) while they sat idle."""
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    return len(poller.poll(0))


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()
