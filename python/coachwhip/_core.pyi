"""Type stubs for coachwhip's native engine (src/bridge)."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

ENGINE: str

class ClientDisconnected(OSError): ...

class Exchange:
    @property
    def task(self) -> Any: ...
    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: dict[str, Any]) -> Awaitable[None]: ...
    def _finish(self, result: object) -> None: ...
    def _fail(self) -> None: ...

class Channel:
    """The app's receive() or send(): a C callable, marked as a coroutine function."""

    _is_coroutine: object
    _is_coroutine_marker: object
    def __call__(self, *args: Any) -> Awaitable[Any]: ...

class Runner:
    """The coroutine a request's Task runs (see src/bridge/asgi/runner.hpp)."""

    def send(self, value: Any) -> Any: ...
    def throw(self, *args: Any) -> Any: ...
    def close(self) -> None: ...

WORKER_START_REASONS: tuple[str, ...]
WORKER_EXIT_REASONS: tuple[str, ...]

class TlsContext:
    """The --ssl-* settings, loaded and checked; ValueError names the file that is wrong."""

    def __init__(
        self,
        certfile: str,
        *,
        keyfile: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        cert_reqs: int = 0,
        ciphers: str | None = None,
        min_version: str | None = None,
        ticket_secret: bytes | None = None,
    ) -> None: ...
    @property
    def description(self) -> str: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...
    @property
    def server_cert(self) -> str: ...

class MetricsRegion:
    def __init__(self, slots: int) -> None: ...
    @property
    def fd(self) -> int: ...
    @property
    def slots(self) -> int: ...
    def fold(self, slot: int) -> None: ...
    def count_start(self, reason: int) -> None: ...
    def count_exit(self, reason: int) -> None: ...
    def render(self) -> str: ...

class Server:
    def __init__(
        self,
        app: Any,
        loop: Any,
        report_failure: Callable[[BaseException], None],
        *,
        root_path: str = "",
        state: dict[str, Any] | None = None,
        keep_alive: float = 5.0,
        server_header: bool = True,
        date_header: bool = True,
        headers: Sequence[tuple[str, str]] | None = None,
        access_log: Callable[..., None] | None = None,
        error_log: Callable[[int, str], None] | None = None,
        log_level: int = 20,
        timeout_request_header: float = 20.0,
        timeout_request_body: float = 60.0,
        timeout_write: float = 60.0,
        limit_request_line: int = 8190,
        limit_request_fields: int = 100,
        limit_request_header_size: int = 65536,
        limit_request_body: int = 0,
        limit_concurrency: int = 0,
        max_connections: int = 0,
        request_limit: int = 0,
        on_request_limit: Callable[[], None] | None = None,
        min_request_body_rate: int = 0,
        min_response_rate: int = 0,
        min_rate_grace: float = 5.0,
        health: bool = False,
        readiness: bool = False,
        metrics: bool = False,
        hold_requests: bool = False,
        forwarded_allow_ips: str | None = None,
        proxy_headers: bool = False,
        proxy_protocol: bool = False,
        metrics_fd: int = -1,
        metrics_slot: int = 0,
        tls: TlsContext | None = None,
        timeout_tls_handshake: float = 5.0,
        websocket: bool = True,
        ws_max_size: int = 16777216,
        ws_max_queue: int = 32,
        ws_ping_interval: float = 20.0,
        ws_ping_timeout: float = 20.0,
        ws_per_message_deflate: bool = True,
        wsgi_environ: dict[str, Any] | None = None,
        http1: bool = True,
        http2: bool = True,
        http2_max_concurrent_streams: int = 100,
        http2_initial_stream_window_size: int = 262144,
        http2_initial_connection_window_size: int = 1048576,
        http2_max_frame_size: int = 16384,
        http2_max_headers_size: int = 65536,
        access_log_flush: Callable[[], None] | None = None,
        access_log_request_fields: list[str] | None = None,
        access_log_response_fields: list[str] | None = None,
    ) -> None: ...
    def add_listener(self, sock: Any) -> None: ...
    def fileno(self) -> int: ...
    def on_readable(self) -> None: ...
    def run_scheduled(self) -> None: ...
    def stop_accepting(self) -> None: ...
    def set_tls(self, context: TlsContext) -> None: ...
    def set_ready(self, ready: bool) -> None: ...
    def release_requests(self) -> None: ...
    def shutdown_connections(self) -> None: ...
    def close_all(self) -> None: ...
    def cancel_all(self) -> None: ...
    @property
    def connection_count(self) -> int: ...
    @property
    def active_requests(self) -> int: ...
    @property
    def requests_total(self) -> int: ...
