"""granian's GRANIAN_<OPTION> variables, read as the granian flags they stand for.

granian's command line is click with auto_envvar_prefix="GRANIAN": every option can be set by
GRANIAN_ + its parameter name in upper case (GRANIAN_WORKERS=4, GRANIAN_WEBSOCKETS=false for
--no-ws). A user who moves from granian keeps these in a Dockerfile or a systemd unit, so each
is turned back into the flag it stands for and goes through the same table as the flags
(coachwhip.compat): the same setting, a note, or a refusal that names the variable.

They rank as environment variables: below the command line and COACHWHIP_*, above a config
file. The table is granian 2.8's option list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from coachwhip.config import ConfigError

PREFIX = "GRANIAN_"


@dataclasses.dataclass(frozen=True)
class _Flag:
    flag: str  # the flag as granian spells it
    off: str = ""  # a boolean flag's negative form ("--no-ws"), if it has one
    boolean: bool = False
    multiple: bool = False  # click splits a repeatable option's variable on whitespace


def _value(flag: str) -> _Flag:
    return _Flag(flag)


def _switch(flag: str, off: str = "") -> _Flag:
    return _Flag(flag, off=off, boolean=True)


def _many(flag: str) -> _Flag:
    return _Flag(flag, multiple=True)


# granian's parameter name -> its flag (granian 2.8, `granian --help`).
OPTIONS: dict[str, _Flag] = {
    "host": _value("--host"),
    "port": _value("--port"),
    "uds": _value("--uds"),
    "uds_permissions": _value("--uds-permissions"),
    "interface": _value("--interface"),
    "http": _value("--http"),
    "websockets": _switch("--ws", "--no-ws"),
    "workers": _value("--workers"),
    "blocking_threads": _value("--blocking-threads"),
    "blocking_threads_idle_timeout": _value("--blocking-threads-idle-timeout"),
    "runtime_threads": _value("--runtime-threads"),
    "runtime_blocking_threads": _value("--runtime-blocking-threads"),
    "runtime_mode": _value("--runtime-mode"),
    "loop": _value("--loop"),
    "task_impl": _value("--task-impl"),
    "backlog": _value("--backlog"),
    "backpressure": _value("--backpressure"),
    "http1_buffer_size": _value("--http1-buffer-size"),
    "http1_header_read_timeout": _value("--http1-header-read-timeout"),
    "http1_keep_alive": _switch("--http1-keep-alive", "--no-http1-keep-alive"),
    "http1_pipeline_flush": _switch("--http1-pipeline-flush", "--no-http1-pipeline-flush"),
    "http2_adaptive_window": _switch("--http2-adaptive-window", "--no-http2-adaptive-window"),
    "http2_initial_connection_window_size": _value("--http2-initial-connection-window-size"),
    "http2_initial_stream_window_size": _value("--http2-initial-stream-window-size"),
    "http2_keep_alive_interval": _value("--http2-keep-alive-interval"),
    "http2_keep_alive_timeout": _value("--http2-keep-alive-timeout"),
    "http2_max_concurrent_streams": _value("--http2-max-concurrent-streams"),
    "http2_max_frame_size": _value("--http2-max-frame-size"),
    "http2_max_headers_size": _value("--http2-max-headers-size"),
    "http2_max_send_buffer_size": _value("--http2-max-send-buffer-size"),
    "log_enabled": _switch("--log", "--no-log"),
    "log_level": _value("--log-level"),
    "log_config": _value("--log-config"),
    "log_access_enabled": _switch("--access-log", "--no-access-log"),
    "log_access_fmt": _value("--access-log-fmt"),
    "ssl_certificate": _value("--ssl-certificate"),
    "ssl_keyfile": _value("--ssl-keyfile"),
    "ssl_keyfile_password": _value("--ssl-keyfile-password"),
    "ssl_protocol_min": _value("--ssl-protocol-min"),
    "ssl_ca": _value("--ssl-ca"),
    "ssl_crl": _many("--ssl-crl"),
    "ssl_client_verify": _switch("--ssl-client-verify", "--no-ssl-client-verify"),
    "url_path_prefix": _value("--url-path-prefix"),
    "respawn_failed_workers": _switch("--respawn-failed-workers", "--no-respawn-failed-workers"),
    "respawn_interval": _value("--respawn-interval"),
    "rss_sample_interval": _value("--rss-sample-interval"),
    "rss_samples": _value("--rss-samples"),
    "workers_lifetime": _value("--workers-lifetime"),
    "workers_max_rss": _value("--workers-max-rss"),
    "workers_kill_timeout": _value("--workers-kill-timeout"),
    "factory": _switch("--factory", "--no-factory"),
    "working_dir": _value("--working-dir"),
    "env_files": _many("--env-files"),
    "static_path_route": _many("--static-path-route"),
    "static_path_mount": _many("--static-path-mount"),
    "static_path_dir_to_file": _value("--static-path-dir-to-file"),
    "static_path_expires": _value("--static-path-expires"),
    "metrics_enabled": _switch("--metrics", "--no-metrics"),
    "metrics_scrape_interval": _value("--metrics-scrape-interval"),
    "metrics_address": _value("--metrics-address"),
    "metrics_port": _value("--metrics-port"),
    "reload": _switch("--reload", "--no-reload"),
    "reload_paths": _many("--reload-paths"),
    "reload_ignore_dirs": _many("--reload-ignore-dirs"),
    "reload_ignore_patterns": _many("--reload-ignore-patterns"),
    "reload_ignore_paths": _many("--reload-ignore-paths"),
    "reload_tick": _value("--reload-tick"),
    "reload_ignore_worker_failure": _switch(
        "--reload-ignore-worker-failure", "--no-reload-ignore-worker-failure"
    ),
    "process_name": _value("--process-name"),
    "pid_file": _value("--pid-file"),
}

# click's boolean words (BoolParamType), case-insensitive.
_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("0", "false", "f", "no", "n", "off")


@dataclasses.dataclass(frozen=True)
class Variable:
    """A GRANIAN_* variable that is set, and the command line it stands for."""

    name: str
    raw: str
    argv: list[str]


def variables(environ: Mapping[str, str]) -> list[Variable]:
    """The GRANIAN_* variables of `environ` as granian flags, in the table's order. An empty
    variable counts as unset and other GRANIAN_ names are ignored (as click has it); a bad
    boolean is a ConfigError that names the variable."""
    found: list[Variable] = []
    for param, option in OPTIONS.items():
        name = PREFIX + param.upper()
        raw = environ.get(name, "")
        if not raw:
            continue
        found.append(Variable(name, raw, _argv(name, raw, option)))
    return found


def _argv(name: str, raw: str, option: _Flag) -> list[str]:
    if option.boolean:
        word = raw.strip().lower()
        if word in _TRUE:
            return [option.flag]
        if word in _FALSE:
            return [option.off] if option.off else []
        raise ConfigError(
            f"{name}={raw!r}: expected a boolean (1/0, true/false, yes/no, on/off), "
            f"as for granian's {option.flag}"
        )
    if option.multiple:
        return [arg for value in raw.split() for arg in (option.flag, value)]
    return [option.flag, raw]
