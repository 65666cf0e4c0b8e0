"""Settings: one table of options serves the command line, COACHWHIP_* variables and run().

Precedence: built-in default < environment variable < command-line flag (or run() keyword).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "COACHWHIP_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_CIPHERS = "ECDHE+AES128+AESGCM:ECDHE+AES256+AESGCM:ECDHE+CHACHA20"
_SSL_DEPENDENT = ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs")


class ConfigError(ValueError):
    """A setting or the app location is wrong; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its flag, type, default and help text."""

    name: str  # the flag without dashes, e.g. "timeout-keep-alive"
    kind: str  # "str", "int", "float", "bool", "choice" or "list" (flag repeats)
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    minimum: float | None = None
    separator: str = ","  # "list": how the environment variable separates items
    valued: bool = False  # "bool": the flag takes a value (--x true|false), not --x/--no-x

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()


OPTIONS: tuple[Option, ...] = (
    Option("host", "str", "127.0.0.1", "Bind to this address.", metavar="HOST"),
    Option(
        "port", "int", 8000, "Bind to this TCP port (0: any free port).", metavar="N", minimum=0
    ),
    Option("uds", "str", None, "Bind to this Unix domain socket instead.", metavar="PATH"),
    Option(
        "bind",
        "list",
        None,
        "Listen here (repeatable; gunicorn's syntax): HOST:PORT, [IPv6]:PORT, unix:PATH or "
        "fd://N. Replaces --host/--port.",
        metavar="ADDRESS",
    ),
    Option(
        "fd",
        "int",
        None,
        "Serve an inherited listening socket with this fd.",
        metavar="N",
        minimum=0,
    ),
    Option(
        "uds-mode", "str", "666", "File mode (octal) of the --uds socket file.", metavar="OCTAL"
    ),
    Option(
        "backlog", "int", 2048, "Maximum number of pending connections.", metavar="N", minimum=1
    ),
    Option(
        "reuse-port",
        "bool",
        False,
        "SO_REUSEPORT: each worker gets its own listening socket and the kernel spreads new "
        "connections evenly; with one process, other processes may bind the same port.",
    ),
    Option(
        "defer-accept",
        "bool",
        True,
        "TCP_DEFER_ACCEPT: the kernel hands a new connection over once its first bytes arrive "
        "(one wake-up less per connection); a client that sends nothing gets through after ~1 s.",
    ),
    Option(
        "workers",
        "int",
        1,
        "Worker processes (a supervisor runs them when more than 1; env WEB_CONCURRENCY too).",
        metavar="N",
        minimum=1,
    ),
    Option(
        "max-requests",
        "int",
        0,
        "Replace a worker after it served this many requests; 0: never.",
        metavar="N",
        minimum=0,
    ),
    Option(
        "max-requests-jitter",
        "int",
        0,
        "Add a random 0..J to each worker's --max-requests.",
        metavar="J",
        minimum=0,
    ),
    Option(
        "workers-max-rss",
        "int",
        0,
        "Replace a worker whose memory (RSS) exceeds this many MiB; 0: never.",
        metavar="MIB",
        minimum=0,
    ),
    Option(
        "timeout-worker-healthcheck",
        "float",
        30.0,
        "Replace a worker whose event loop has not answered for this many seconds; 0: never "
        "(gunicorn's -t/--timeout).",
        metavar="S",
        minimum=0,
    ),
    Option("app-dir", "str", ".", "Put this directory first on sys.path.", metavar="DIR"),
    Option(
        "chdir",
        "str",
        None,
        "Change to this directory before loading the app (gunicorn's --chdir).",
        metavar="DIR",
    ),
    Option(
        "env-file",
        "list",
        None,
        "Set the environment variables of this file (KEY=VALUE lines, as python-dotenv reads "
        "them) before reading the settings; variables already set win (repeatable).",
        metavar="PATH",
        separator=os.pathsep,
    ),
    Option("factory", "bool", False, "MODULE:ATTRIBUTE is a callable that returns the app."),
    Option(
        "root-path", "str", "", "ASGI root_path: the path the app is mounted at.", metavar="PATH"
    ),
    Option(
        "interface",
        "choice",
        "auto",
        "What the app speaks: auto detects it (and logs what it chose); asgi and asginl are "
        "granian's names (asginl: ASGI 3 without lifespan).",
        choices=("auto", "asgi3", "asgi2", "wsgi", "asgi", "asginl", "rsgi"),
        metavar="{auto,asgi3,asgi2,wsgi}",
    ),
    Option(
        "threads",
        "int",
        8,
        "WSGI: the threads per worker that run the app (gunicorn's --threads).",
        metavar="N",
        minimum=1,
    ),
    Option(
        "lifespan",
        "choice",
        "auto",
        "Run the ASGI lifespan protocol.",
        choices=("auto", "on", "off"),
    ),
    Option(
        "loop",
        "choice",
        "auto",
        "Event loop for the Python side.",
        choices=("auto", "asyncio", "uvloop", "none", "zuvloop", "rloop", "winloop"),
        metavar="{auto,asyncio,uvloop}",
    ),
    Option("log-level", "choice", "info", "Log level.", choices=LOG_LEVELS),
    Option("access-log", "bool", True, "Log one line per response."),
    Option(
        "access-logfile",
        "str",
        None,
        "Write the access log to this file instead of stderr ('-': stdout), as gunicorn does.",
        metavar="PATH",
    ),
    Option(
        "error-logfile",
        "str",
        None,
        "Write the server's log to this file instead of stderr ('-': stderr), as gunicorn does.",
        metavar="PATH",
    ),
    Option(
        "use-colors",
        "bool",
        None,
        "Colour the level names and access statuses (default: when writing to a terminal).",
    ),
    Option(
        "log-config",
        "str",
        None,
        "Configure logging from this file, as uvicorn does: a dictConfig in .json or .yaml, or a "
        "fileConfig .ini; coachwhip then installs no handler of its own.",
        metavar="FILE",
    ),
    Option(
        "access-log-format",
        "str",
        None,
        "The access line, with gunicorn's atoms (h, r, s, b, D, {name}i, ... written as in "
        "gunicorn's --access-logformat) or granian's names; 'json': one JSON object per line.",
        metavar="FORMAT",
    ),
    Option(
        "timeout-keep-alive",
        "float",
        5.0,
        "Close keep-alive connections idle for this many seconds.",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "timeout-graceful-shutdown",
        "float",
        30.0,
        "Seconds requests in flight may run after SIGTERM/SIGINT.",
        metavar="S",
        minimum=0,
    ),
    Option(
        "timeout-request-header",
        "float",
        20.0,
        "A request head must arrive within this many seconds (else 408).",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "timeout-request-body",
        "float",
        60.0,
        "Longest silence while waiting for request body bytes (else 408).",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "timeout-write",
        "float",
        60.0,
        "Close a connection whose client has read nothing for this many seconds.",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "min-request-body-rate",
        "int",
        240,
        "Least average rate, in bytes/s, at which a client must send a request body the app is "
        "waiting for, after --min-rate-grace (else 408); 0: no minimum.",
        metavar="BYTES",
        minimum=0,
    ),
    Option(
        "min-response-rate",
        "int",
        240,
        "Least average rate, in bytes/s, at which a client must read a response that is waiting "
        "for it, after --min-rate-grace (else the connection closes); 0: no minimum.",
        metavar="BYTES",
        minimum=0,
    ),
    Option(
        "min-rate-grace",
        "float",
        5.0,
        "Seconds of waiting on a client before the minimum rates are enforced.",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "limit-request-line",
        "int",
        8190,
        "Longest request line in bytes (else 414).",
        metavar="BYTES",
        minimum=64,
    ),
    Option(
        "limit-request-fields",
        "int",
        100,
        "Most header fields in a request (else 431).",
        metavar="N",
        minimum=1,
    ),
    Option(
        "limit-request-header-size",
        "int",
        65536,
        "Largest request head (line + fields) in bytes (else 431).",
        metavar="BYTES",
        minimum=256,
    ),
    Option(
        "limit-request-body",
        "int",
        0,
        "Largest request body in bytes; 0: no limit (413).",
        metavar="BYTES",
        minimum=0,
    ),
    Option(
        "limit-concurrency",
        "int",
        0,
        "Most requests in flight; more get 503. 0: no limit.",
        metavar="N",
        minimum=0,
    ),
    Option(
        "max-connections",
        "int",
        16384,
        "Most open connections; beyond it new ones wait in the listen queue.",
        metavar="N",
        minimum=1,
    ),
    Option(
        "reload", "bool", False, "Restart the workers when source files change (development only)."
    ),
    Option(
        "reload-dir",
        "list",
        None,
        "Directory to watch for --reload (repeatable; default: the current directory).",
        metavar="DIR",
        separator=os.pathsep,
    ),
    Option(
        "reload-include",
        "list",
        None,
        "File name pattern that triggers a reload (repeatable; default: *.py).",
        metavar="GLOB",
    ),
    Option(
        "reload-exclude",
        "list",
        None,
        "File name pattern that never triggers a reload (repeatable; default: .*, ~*, "
        ".sw.*, .py[cod]).",
        metavar="GLOB",
    ),
    Option(
        "proxy-headers",
        "bool",
        True,
        "Take the client address and scheme from X-Forwarded-For/-Proto or Forwarded when the "
        "peer is in --forwarded-allow-ips.",
    ),
    Option(
        "forwarded-allow-ips",
        "str",
        "127.0.0.1",
        "Peers trusted with proxy headers: IPs and CIDRs (IPv4, IPv6), 'unix:' for Unix-socket "
        "peers, or '*' (env FORWARDED_ALLOW_IPS too).",
        metavar="LIST",
    ),
    Option(
        "proxy-protocol",
        "bool",
        False,
        "Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy send-proxy "
        "and cloud load balancers send it), from a --forwarded-allow-ips peer; else it is closed.",
    ),
    Option(
        "ssl-certfile",
        "str",
        None,
        "Serve HTTPS with this certificate chain (PEM, leaf first).",
        metavar="PATH",
    ),
    Option(
        "ssl-keyfile",
        "str",
        None,
        "The certificate's private key (PEM, RSA or ECDSA); omit it when the certfile holds it.",
        metavar="PATH",
    ),
    Option(
        "ssl-keyfile-password", "str", None, "Password of an encrypted key.", metavar="PASSWORD"
    ),
    Option(
        "ssl-ca-certs",
        "str",
        None,
        "CA certificates (PEM) that client certificates are verified against.",
        metavar="PATH",
    ),
    Option(
        "ssl-cert-reqs",
        "int",
        0,
        "Client certificates: 0 not asked for, 1 optional (the app sees the verification "
        "error), 2 required.",
        metavar="{0,1,2}",
        minimum=0,
    ),
    Option(
        "ssl-ciphers",
        "str",
        DEFAULT_CIPHERS,
        "TLS 1.2 cipher suites in OpenSSL's syntax (TLS 1.3 suites are always on).",
        metavar="LIST",
    ),
    Option(
        "ssl-min-version",
        "choice",
        "1.2",
        "Oldest TLS version accepted (1.0 and 1.1 never are).",
        choices=("1.2", "1.3", "tls1.2", "tls1.3"),
        metavar="{1.2,1.3}",
    ),
    Option(
        "timeout-tls-handshake",
        "float",
        5.0,
        "Close a connection whose TLS handshake is not complete within this many seconds.",
        metavar="S",
        minimum=0.001,
    ),
    Option(
        "ws",
        "choice",
        "auto",
        "WebSocket: 'auto' serves upgrades with the engine's own RFC 6455 implementation; "
        "'none' treats them as plain HTTP requests. uvicorn's 'websockets', 'websockets-sansio' "
        "and 'wsproto' are accepted as 'auto'.",
        choices=("auto", "none", "websockets", "websockets-sansio", "wsproto"),
        metavar="{auto,none}",
    ),
    Option(
        "ws-max-size",
        "int",
        16777216,
        "Largest WebSocket message in bytes, after decompression (close 1009 above it).",
        metavar="BYTES",
        minimum=1,
    ),
    Option(
        "ws-max-queue",
        "int",
        32,
        "WebSocket messages waiting for the app's receive() before the engine stops reading.",
        metavar="N",
        minimum=1,
    ),
    Option(
        "ws-ping-interval",
        "float",
        20.0,
        "Send a WebSocket keepalive ping every this many seconds (0: never).",
        metavar="S",
        minimum=0,
    ),
    Option(
        "ws-ping-timeout",
        "float",
        20.0,
        "Close a WebSocket (1011) whose pong is this many seconds late (0: never).",
        metavar="S",
        minimum=0,
    ),
    Option(
        "ws-per-message-deflate",
        "bool",
        True,
        "Agree to WebSocket compression (permessage-deflate, RFC 7692) when the client offers it.",
        metavar="BOOL",
        valued=True,
    ),
    Option(
        "http",
        "choice",
        "auto",
        "Protocols on the app's listeners (granian's flag): 'auto' speaks HTTP/1.1 and HTTP/2 "
        "(h2 chosen by ALPN over TLS; h2c with prior knowledge on a plain port), '1' HTTP/1.1 "
        "only, '2' HTTP/2 only. uvicorn's 'h11', 'httptools' and 'zttp' are accepted as 'auto'.",
        choices=("auto", "1", "2", "h11", "httptools", "zttp"),
        metavar="{auto,1,2}",
    ),
    Option(
        "http2-max-concurrent-streams",
        "int",
        100,
        "HTTP/2: streams a client may have open at once on one connection.",
        metavar="N",
        minimum=1,
    ),
    Option(
        "http2-initial-stream-window-size",
        "int",
        262144,
        "HTTP/2: request body bytes a stream may send before its app reads them.",
        metavar="BYTES",
        minimum=1,
    ),
    Option(
        "http2-initial-connection-window-size",
        "int",
        1048576,
        "HTTP/2: request body bytes in flight on one connection, over all its streams.",
        metavar="BYTES",
        minimum=65535,
    ),
    Option(
        "http2-max-frame-size",
        "int",
        16384,
        "HTTP/2: the largest frame payload the client may send (16384-16777215).",
        metavar="BYTES",
        minimum=16384,
    ),
    Option(
        "http2-max-headers-size",
        "int",
        65536,
        "HTTP/2: the largest decoded request header list (431 above it).",
        metavar="BYTES",
        minimum=1,
    ),
    Option(
        "health",
        "bool",
        False,
        "Answer GET /-/health (200 while the worker's event loop runs) in the engine.",
    ),
    Option(
        "readiness",
        "bool",
        False,
        "Answer GET /-/ready in the engine: 503 until the app's startup completed and from the "
        "start of a graceful shutdown, 200 in between.",
    ),
    Option(
        "metrics",
        "bool",
        False,
        "Answer GET /-/metrics (Prometheus text) in the engine, summed over all workers.",
    ),
    Option(
        "metrics-bind",
        "str",
        None,
        "Serve /-/metrics on this HOST:PORT only (implies --metrics), not on the app's port.",
        metavar="HOST:PORT",
    ),
    Option(
        "shutdown-delay",
        "float",
        0.0,
        "On SIGTERM, keep serving this many seconds with /-/ready answering 503 before the "
        "graceful shutdown (Kubernetes rolling updates).",
        metavar="S",
        minimum=0,
    ),
    Option("server-header", "bool", True, "Send a 'server: coachwhip' header."),
    Option("date-header", "bool", True, "Send a 'date' header."),
    Option(
        "header",
        "list",
        None,
        "Add this field to every response, before the app's own (repeatable; uvicorn's flag), "
        "e.g. --header 'X-Frame-Options: DENY'; a server field replaces coachwhip's. The "
        "variable takes one NAME:VALUE per line.",
        metavar="NAME:VALUE",
        separator="\n",  # values have commas and spaces ("no-cache, no-store")
    ),
)

OPTION_BY_ATTR: dict[str, Option] = {o.attr: o for o in OPTIONS}

_H1 = "coachwhip's engine parses HTTP/1.1 itself; serving as --http auto (HTTP/1.1 and HTTP/2)"
# Values other servers give a coachwhip option: (option, value) -> (coachwhip's value, a note for
# the log, or "" when the meaning is the same).
SPELLINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("http", "h11"): ("auto", f"--http h11: uvicorn's choice of HTTP/1.1 parser; {_H1}"),
    ("http", "httptools"): (
        "auto",
        f"--http httptools: uvicorn's choice of HTTP/1.1 parser; {_H1}",
    ),
    ("http", "zttp"): ("auto", f"--http zttp: uvicorn's choice of HTTP parser; {_H1}"),
    ("loop", "none"): ("asyncio", ""),
    ("ssl_min_version", "tls1.2"): ("1.2", ""),
    ("ssl_min_version", "tls1.3"): ("1.3", ""),
}
# ... or refuse, saying what to use instead.
REFUSED_VALUES: dict[tuple[str, str], str] = {
    ("loop", "zuvloop"): "coachwhip runs on uvloop or asyncio; use --loop uvloop",
    ("loop", "rloop"): "coachwhip runs on uvloop or asyncio; use --loop uvloop",
    ("loop", "winloop"): "coachwhip runs on Linux only; use --loop uvloop",
    ("interface", "rsgi"): (
        "coachwhip does not implement RSGI (granian's own interface); use --interface asgi3 or wsgi"
    ),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass
class Config:
    """Everything one server needs. Build it with `Config.load()` or `Config(app=..., ...)`."""

    app: Any = None  # "module:attribute" or the ASGI callable itself
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    bind: list[str] | None = None
    fd: int | None = None
    uds_mode: str = "666"
    backlog: int = 2048
    reuse_port: bool = False
    defer_accept: bool = True
    workers: int = 1
    max_requests: int = 0
    max_requests_jitter: int = 0
    workers_max_rss: int = 0
    timeout_worker_healthcheck: float = 30.0
    app_dir: str = "."
    chdir: str | None = None
    env_file: list[str] | None = None
    factory: bool = False
    root_path: str = ""
    interface: str = "auto"
    threads: int = 8
    lifespan: str = "auto"
    loop: str = "auto"
    log_level: str = "info"
    access_log: bool = True
    access_logfile: str | None = None
    error_logfile: str | None = None
    use_colors: bool | None = None
    log_config: Any = None  # a file path, or (from run(), as uvicorn.run()) a dictConfig mapping
    access_log_format: str | None = None
    timeout_keep_alive: float = 5.0
    timeout_graceful_shutdown: float = 30.0
    timeout_request_header: float = 20.0
    timeout_request_body: float = 60.0
    timeout_write: float = 60.0
    min_request_body_rate: int = 240
    min_response_rate: int = 240
    min_rate_grace: float = 5.0
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_header_size: int = 65536
    limit_request_body: int = 0
    limit_concurrency: int = 0
    max_connections: int = 16384
    reload: bool = False
    reload_dir: list[str] | None = None
    reload_include: list[str] | None = None
    reload_exclude: list[str] | None = None
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1"
    proxy_protocol: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: str | None = None
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: int = 0
    ssl_ciphers: str = DEFAULT_CIPHERS
    ssl_min_version: str = "1.2"
    timeout_tls_handshake: float = 5.0
    ws: str = "auto"
    ws_max_size: int = 16777216
    ws_max_queue: int = 32
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True
    http: str = "auto"
    http2_max_concurrent_streams: int = 100
    http2_initial_stream_window_size: int = 262144
    http2_initial_connection_window_size: int = 1048576
    http2_max_frame_size: int = 16384
    http2_max_headers_size: int = 65536
    health: bool = False
    readiness: bool = False
    metrics: bool = False
    metrics_bind: str | None = None
    shutdown_delay: float = 0.0
    server_header: bool = True
    date_header: bool = True
    header: list[str] | None = None  # "NAME:VALUE" items, as --header takes them
    # What the first process logs once at startup (notes at INFO, warnings at WARNING): flags
    # accepted from other servers, files read. Not settings.
    notes: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        for attr, opt in OPTION_BY_ATTR.items():
            setattr(self, attr, check_value(opt, getattr(self, attr), f"--{opt.name}"))
            if opt.kind != "choice":
                continue
            value = getattr(self, attr)
            if (attr, value) in REFUSED_VALUES:
                raise ConfigError(f"--{opt.name} {value}: {REFUSED_VALUES[attr, value]}")
            if (attr, value) in SPELLINGS:
                value, note = SPELLINGS[attr, value]
                setattr(self, attr, value)
                if note:
                    self.notes.append(note)
        if self.uds is not None and self.fd is not None:
            raise ConfigError("--uds and --fd cannot be used together; choose one")
        if self.bind:
            if self.uds is not None or self.fd is not None:
                raise ConfigError(
                    "--bind names every address to listen on; put the "
                    + ("--uds path in it as unix:PATH" if self.uds is not None else "fd as fd://N")
                )
            for spec in self.bind:
                kind, value = bind_kind(spec)
                if kind == "tcp":
                    parse_host_port(value, "--bind")
                elif kind == "fd" and not value.isdigit():
                    raise ConfigError(f"--bind: fd://N needs a number, got {spec!r}")
                elif kind == "unix" and not value:
                    raise ConfigError(f"--bind: unix:PATH needs a path, got {spec!r}")
            if self.reuse_port and (len(self.bind) > 1 or bind_kind(self.bind[0])[0] != "tcp"):
                raise ConfigError(
                    "--reuse-port works with one listener; give one --bind or drop --reuse-port"
                )
        if self.reuse_port and (self.uds is not None or self.fd is not None):
            raise ConfigError(
                "--reuse-port binds TCP sockets from --host/--port; it cannot be combined with "
                + ("--uds" if self.uds is not None else "--fd")
            )
        try:
            if not 0 <= int(self.uds_mode, 8) <= 0o777:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"--uds-mode: expected an octal file mode like 660, got {self.uds_mode!r}"
            ) from None
        check_allow_ips(self.forwarded_allow_ips, "--forwarded-allow-ips")
        if self.chdir is not None:
            if not os.path.isdir(self.chdir):
                raise ConfigError(f"--chdir {self.chdir!r} is not a directory")
            self.chdir = os.path.abspath(self.chdir)
        # granian's spellings of --interface
        if self.interface == "asgi":
            self.interface = "asgi3"
        elif self.interface == "asginl":
            self.interface = "asgi3"
            self.lifespan = "off"
        for attr, top in (
            ("http2_initial_stream_window_size", 2**31 - 1),
            ("http2_initial_connection_window_size", 2**31 - 1),
            ("http2_max_frame_size", 2**24 - 1),
            ("http2_max_concurrent_streams", 2**32 - 1),
            ("http2_max_headers_size", 2**32 - 1),
        ):
            if getattr(self, attr) > top:
                raise ConfigError(
                    f"--{attr.replace('_', '-')}: at most {top} (RFC 9113 §6.5.2), "
                    f"got {getattr(self, attr)}"
                )
        if self.metrics_bind is not None:
            parse_host_port(self.metrics_bind, "--metrics-bind")
            self.metrics = True
        self._check_tls()
        if self.limit_request_line > self.limit_request_header_size:
            raise ConfigError(
                f"--limit-request-line ({self.limit_request_line}) cannot be larger than "
                f"--limit-request-header-size ({self.limit_request_header_size})"
            )

    def _check_tls(self) -> None:
        """What can be said without reading the files (the engine checks those)."""
        if self.ssl_cert_reqs > 2:
            raise ConfigError(
                f"--ssl-cert-reqs {self.ssl_cert_reqs}: use 0 (none), 1 (optional) or 2 (required)"
            )
        if self.ssl_certfile is None:
            given = [a for a in _SSL_DEPENDENT if getattr(self, a) is not None]
            if self.ssl_cert_reqs:
                given.append("ssl_cert_reqs")
            if given:
                flag = "--" + given[0].replace("_", "-")
                raise ConfigError(
                    f"{flag} needs --ssl-certfile: TLS is on only with a certificate; "
                    "add --ssl-certfile PATH (or drop the --ssl-* flags to serve plain HTTP)"
                )
            return
        if self.ssl_cert_reqs and self.ssl_ca_certs is None:
            raise ConfigError(
                f"--ssl-cert-reqs {self.ssl_cert_reqs} needs --ssl-ca-certs: the CA certificates "
                "client certificates are checked against"
            )

    @property
    def scheme(self) -> str:
        """How clients reach the app's listeners: "https" with TLS."""
        return "https" if self.ssl_certfile is not None else "http"

    def needs_supervisor(self) -> bool:
        """True when a supervisor process must run the workers."""
        return self.workers > 1 or self.max_requests > 0 or self.workers_max_rss > 0 or self.reload

    @classmethod
    def load(
        cls,
        explicit: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        lower: Mapping[str, Any] | None = None,
    ) -> Config:
        """Defaults, then `lower` (a config file's values), then COACHWHIP_* variables, then
        `explicit` (flags or keywords)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = dict(lower or {})
        app_env = environ.get(ENV_PREFIX + "APP")
        if app_env:
            values["app"] = app_env
        # uvicorn reads FORWARDED_ALLOW_IPS (and gunicorn does too); COACHWHIP_ wins over it.
        allow_source = ""  # the variable the value came from, if any, for the message
        if environ.get("FORWARDED_ALLOW_IPS") and not environ.get(
            ENV_PREFIX + "FORWARDED_ALLOW_IPS"
        ):
            allow_source = "FORWARDED_ALLOW_IPS"
            values["forwarded_allow_ips"] = environ["FORWARDED_ALLOW_IPS"]
        # WEB_CONCURRENCY is what PaaS platforms set, and what uvicorn and gunicorn read.
        web_concurrency = environ.get("WEB_CONCURRENCY")
        if web_concurrency and not environ.get(ENV_PREFIX + "WORKERS"):
            values["workers"] = parse_text(
                OPTION_BY_ATTR["workers"], web_concurrency, f"WEB_CONCURRENCY={web_concurrency!r}"
            )
        for opt in OPTIONS:
            raw = environ.get(opt.env)
            if raw is not None and raw != "":
                values[opt.attr] = parse_text(opt, raw, f"{opt.env}={raw!r}")
                if opt.attr == "forwarded_allow_ips":
                    allow_source = opt.env
                elif opt.attr == "header":
                    check_headers(values["header"], opt.env)  # name the variable
        for key, value in explicit.items():
            if key != "app" and key not in OPTION_BY_ATTR:
                raise ConfigError(f"unknown setting {key!r}{suggest(key, OPTION_BY_ATTR)}")
            values[key] = value
        allow = values.get("forwarded_allow_ips")
        if allow_source and "forwarded_allow_ips" not in explicit and isinstance(allow, str):
            check_allow_ips(allow, f"{allow_source}={allow!r}")  # name the variable it came from
        return cls(**values)


def check_allow_ips(value: str, where: str) -> None:
    """Checks a --forwarded-allow-ips list as the engine will read it (src/proxy/forwarded.hpp):
    `*`, `unix:`, IPv4/IPv6 addresses and CIDRs without host bits, or literals (no '/' or ':',
    not only digits and dots). `where` names the source in the message. Done here, in plain
    Python, so that the configuration never loads the engine (and the engine refuses the same
    values again, should the two ever disagree)."""
    for item in (part.strip() for part in value.split(",")):
        if not item or item in ("*", "unix:"):
            continue
        if "/" not in item and ":" not in item and not all(c.isdigit() or c == "." for c in item):
            continue  # a literal, matched as text
        prefix = item.partition("/")[2]
        try:
            if "%" in item or "[" in item or (prefix and (prefix[0] == "0" and prefix != "0")):
                raise ValueError(item)  # zones, brackets, "/08": refused by the engine too
            if "/" in item:
                ipaddress.ip_network(item, strict=True)
            else:
                ipaddress.ip_address(item)
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not an IP address or CIDR") from None


# RFC 9110 §5.6.2: token = 1*tchar.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DROP = "drop it"
# The fields the engine writes itself or that would break framing or a protocol switch, refused as
# --header with what to do instead. The engine refuses the same (src/http1/response.cpp,
# add_default_header).
_ENGINE_FIELDS = {
    "content-length": f"coachwhip frames each response itself (content-length or chunked); {_DROP}",
    "transfer-encoding": f"coachwhip frames each response itself (content-length or chunked); "
    f"{_DROP}",
    "upgrade": f"coachwhip answers protocol upgrades (WebSocket, h2c) itself; {_DROP}",
    "te": f"te is a request field; {_DROP}",
    "trailer": "trailer announces the trailer fields of one response; set it in the app, on the "
    "responses that send trailers",
    "date": f"coachwhip writes the current date on every response; {_DROP} (--no-date-header "
    "leaves it out)",
    "sec-websocket-": f"coachwhip answers the WebSocket handshake itself; {_DROP} (the app names "
    "its subprotocol in websocket.accept)",
    **{
        name: f"{name} is about the connection, which coachwhip manages (and HTTP/2 forbids the "
        f"field); {_DROP} (--timeout-keep-alive sets how long idle connections stay open)"
        for name in ("connection", "keep-alive", "proxy-connection")
    },
}


def split_header(item: str, where: str) -> tuple[str, str]:
    """One NAME:VALUE -> (the name lower-cased, the value), split at the first ':' (as uvicorn
    does) with the whitespace around each removed, checked as the engine will check it;
    `where` names the item in the messages, e.g. "--header 'X-A: 1'"."""
    name, colon, value = item.partition(":")
    name, value = name.strip(" \t"), value.strip(" \t")
    example = "e.g. --header 'X-Frame-Options: DENY'"
    if not colon:
        raise ConfigError(f"{where}: expected NAME:VALUE, with a ':' after the name; {example}")
    if not name:
        raise ConfigError(f"{where}: the name before ':' is empty; expected NAME:VALUE, {example}")
    if not set(name) <= _TCHAR:
        raise ConfigError(
            f"{where}: {name!r} is not a valid field name: use letters, digits and "
            "!#$%&'*+-.^_`|~ only, no spaces (RFC 9110 §5.1)"
        )
    for char in value:
        if (char < " " and char != "\t") or char == "\x7f":
            raise ConfigError(
                f"{where}: the value contains the control character {char!r}; a field value is "
                "one line of text (tabs allowed)"
            )
        if char > "\xff":
            raise ConfigError(
                f"{where}: the value contains {char!r}, which is not Latin-1 (the bytes HTTP "
                "fields carry); percent-encode it or write it in ASCII"
            )
    lower = name.lower()
    why = _ENGINE_FIELDS.get("sec-websocket-" if lower.startswith("sec-websocket-") else lower)
    if why:
        raise ConfigError(f"{where}: {why}")
    if lower == "server" and not value:
        raise ConfigError(
            f"{where}: server needs a value; --no-server-header sends no server field"
        )
    return lower, value


def check_headers(items: list[str], where: str) -> None:
    """Every NAME:VALUE of a header list (see split_header), and at most one server field;
    `where` is the flag, variable or file key they came from."""
    server = ""
    for item in items:
        name, _ = split_header(item, f"{where} {item!r}")
        if name == "server" and server:
            raise ConfigError(f"{where}: server is given twice ({server!r}, {item!r}); keep one")
        if name == "server":
            server = item


def bind_kind(spec: str) -> tuple[str, str]:
    """A --bind address: ("unix", PATH), ("fd", N) or ("tcp", HOST:PORT)."""
    if spec.startswith("unix:"):
        return "unix", spec[5:]
    if spec.startswith("fd://"):
        return "fd", spec[5:]
    return "tcp", spec


def parse_host_port(spec: str, option: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' or ':PORT' (every address) -> (host, port)."""
    host, sep, port_text = spec.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    bare_ipv6 = ":" in host and not bracketed
    if not sep or bare_ipv6 or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{option}: expected HOST:PORT, [IPv6]:PORT or :PORT, got {spec!r}")
    return host or "0.0.0.0", int(port_text)


def parse_text(opt: Option, raw: str, where: str) -> Any:
    """Converts the text of a flag or variable to the option's type."""
    text = raw.strip()
    if opt.kind == "list":
        return [item.strip() for item in raw.split(opt.separator) if item.strip()]
    if opt.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{where}: expected one of 1/0, true/false, yes/no, on/off")
    if opt.kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise ConfigError(f"{where}: expected a whole number") from None
    if opt.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected a number of seconds") from None
    if opt.kind == "choice" and text.lower() not in opt.choices:
        raise ConfigError(f"{where}: expected one of {', '.join(opt.choices)}")
    return text.lower() if opt.kind == "choice" else raw


def check_value(opt: Option, value: Any, where: str) -> Any:
    """Validates a value given in Python (run() keywords or a parsed flag)."""
    if value is None and opt.default is None:
        return None
    if opt.attr == "log_config" and isinstance(value, dict):
        return value  # uvicorn.run(log_config={...}): applied as it is
    if opt.kind == "list":
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if opt.attr == "header":
            check_headers(value, where)
        return list(value)
    expected: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str),
        "choice": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }
    if not expected[opt.kind](value):
        raise ConfigError(f"{where}: expected {opt.kind}, got {type(value).__name__} {value!r}")
    if opt.kind == "choice" and value.lower() not in opt.choices:
        raise ConfigError(f"{where}: expected one of {', '.join(opt.choices)}, got {value!r}")
    if opt.minimum is not None and value < opt.minimum:
        raise ConfigError(f"{where}: must be at least {opt.minimum:g}, got {value!r}")
    if opt.kind == "float":
        return float(value)
    return value.lower() if opt.kind == "choice" else value


def suggest(word: str, candidates: Mapping[str, Any] | list[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    import difflib

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""
