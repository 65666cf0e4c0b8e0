"""Creating the listening socket from --host/--port, --uds or --fd.

With --reuse-port the TCP socket carries SO_REUSEPORT, and `open_sibling()` binds more sockets
to the same address: the kernel then spreads new connections over them by a hash of the
client's address and port, each socket with its own accept queue.

TCP sockets we bind carry TCP_DEFER_ACCEPT (--no-defer-accept turns it off): the kernel queues a
connection for accept() only once the client's first bytes are in, so the server wakes once per
new connection (accept, with the request already readable) instead of twice. HTTP clients speak
first, so nothing waits on us. A client that connects and sends nothing is handed over anyway
after DEFER_ACCEPT_S, when the kernel's first SYN-ACK retransmission is answered. Sockets from
--fd or systemd keep the options they were made with (systemd: DeferAcceptSec=).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import stat
import struct

from coachwhip.config import Config, bind_kind, parse_host_port


class BindError(OSError):
    """The listening socket could not be created; the message says where and why."""


SD_LISTEN_FDS_START = 3  # systemd passes activated sockets from fd 3 on
DEFER_ACCEPT_S = 1  # the shortest the kernel offers: one SYN-ACK retransmission (~1 s)


def open_listeners(config: Config) -> list[socket.socket]:
    """Every listening socket: one per --bind, each systemd socket, or the one of
    --host/--port, --uds or --fd. The first one is the primary (the one --reuse-port copies)."""
    if config.bind:
        opened: list[socket.socket] = []
        try:
            for spec in config.bind:
                opened.append(open_bind(spec, config))
        except BindError:
            for sock in opened:
                close_listener(sock, config)
            raise
        return opened
    activated = _systemd_sockets() if config.fd is None else []
    if activated:
        if config.reuse_port:
            for sock in activated:
                sock.close()
            raise BindError(
                "--reuse-port cannot be used with systemd socket activation: systemd made the "
                "socket (set ReusePort= in the .socket unit instead, and drop --reuse-port)"
            )
        return activated
    return [open_listener(config)]


def open_bind(spec: str, config: Config) -> socket.socket:
    """One --bind address (gunicorn's syntax): HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N."""
    kind, value = bind_kind(spec)
    if kind == "unix":
        return _bind_unix(value, config.backlog, int(config.uds_mode, 8))
    if kind == "fd":
        return _from_fd(int(value))
    host, port = parse_host_port(value, "--bind")
    return _bind_tcp(host, port, config.backlog, config.reuse_port, config.defer_accept)


def open_listener(config: Config) -> socket.socket:
    if config.fd is not None:
        return _from_fd(config.fd)
    if config.uds is not None:
        return _bind_unix(config.uds, config.backlog, int(config.uds_mode, 8))
    return _bind_tcp(
        config.host, config.port, config.backlog, config.reuse_port, config.defer_accept
    )


def open_metrics_listener(spec: str, backlog: int) -> socket.socket:
    """The --metrics-bind socket (plain TCP, no TCP_DEFER_ACCEPT: scrapers are few)."""
    host, port = parse_host_port(spec, "--metrics-bind")  # (checked by Config already)
    try:
        return _bind_tcp(host, port, backlog, defer_accept=False)
    except BindError as exc:
        raise BindError(f"--metrics-bind: {exc}") from None


def open_sibling(sock: socket.socket, backlog: int) -> socket.socket:
    """Another SO_REUSEPORT listening socket on the address `sock` (made with --reuse-port) is
    bound to, with an accept queue of its own and the same TCP_DEFER_ACCEPT setting."""
    host, port = sock.getsockname()[:2]
    return _bind_tcp(host, port, backlog, reuse_port=True, defer_accept=defers_accept(sock))


# Linux <asm-generic/socket.h> and <linux/filter.h>.
SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68
_BPF_LD_W_ABS, _BPF_ALU_MOD_K, _BPF_RET_A = 0x20, 0x94, 0x16
_SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_RANDOM


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


def steer_reuseport(sock: socket.socket, first: int) -> None:
    """New connections to the SO_REUSEPORT group of `sock` go only to its first `first` sockets
    (in the order they joined the group), chosen at random, until `unsteer_reuseport()`.

    Used before a --reuse-port socket closes (SIGTTOU): the worker on it keeps accepting until
    its queue is empty, and nothing new arrives there, so closing it resets no connection. The
    program is classic BPF (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5+): `return random() % first`;
    an index it returns is a position in the group's socket array."""
    program = (_SockFilter * 3)(
        _SockFilter(_BPF_LD_W_ABS, 0, 0, _SKF_AD_RANDOM),
        _SockFilter(_BPF_ALU_MOD_K, 0, 0, first),
        _SockFilter(_BPF_RET_A, 0, 0, 0),
    )
    fprog = struct.pack("@HP", len(program), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def unsteer_reuseport(sock: socket.socket) -> None:
    """Back to the kernel's own choice (a hash of the client's address) over every socket."""
    with contextlib.suppress(OSError):  # ENOENT: no program attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)


def accept_queue_length(sock: socket.socket) -> int:
    """Connections waiting in a TCP listening socket's accept queue (TCP_INFO's tcpi_unacked,
    which Linux sets to the queue length for a listener); 0 for other sockets."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except OSError:
        return 0
    return struct.unpack_from("I", info, 24)[0] if len(info) >= 28 else 0


def defers_accept(sock: socket.socket) -> bool:
    """Whether the listening socket `sock` carries TCP_DEFER_ACCEPT."""
    if sock.family == socket.AF_UNIX or not hasattr(socket, "TCP_DEFER_ACCEPT"):
        return False
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) != 0


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """The URL (or path) a user can reach the server at."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def close_listener(sock: socket.socket, config: Config) -> None:
    path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    sock.close()
    ours = {config.uds} | {v for k, v in map(bind_kind, config.bind or []) if k == "unix"}
    if path and path in ours:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _bind_tcp(
    host: str, port: int, backlog: int, reuse_port: bool = False, defer_accept: bool = True
) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if defer_accept and hasattr(socket, "TCP_DEFER_ACCEPT"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_S)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (is another server running? pick another --port"
            hint += ", or give every server --reuse-port)" if reuse_port else ")"
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def _bind_unix(path: str, backlog: int, mode: int) -> socket.socket:
    # A stale socket file from a previous run would make bind() fail; remove only sockets.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix socket {path}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _systemd_sockets() -> list[socket.socket]:
    """The sockets systemd passed (socket activation: LISTEN_FDS and LISTEN_PID), if any: one
    per ListenStream= of the .socket unit, all served.

    The variables are removed once read, so that worker processes (or anything the app starts)
    do not take the sockets for their own.
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if not pid or not count or pid != str(os.getpid()):
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or not 1 <= int(count) <= 64:
        raise BindError(f"systemd passed LISTEN_FDS={count!r}; expected 1 to 64 sockets")
    return [_from_fd(SD_LISTEN_FDS_START + i) for i in range(int(count))]


def _from_fd(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"--fd {fd} is not a usable socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise BindError(f"--fd {fd} is not a stream socket")
    sock.setblocking(False)
    return sock
