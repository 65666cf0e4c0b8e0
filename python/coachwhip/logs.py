"""Logging: uvicorn-style lines on stderr through the standard `logging` module, or whatever a
`--log-config` file says.

Loggers: `coachwhip.error` (server messages and app tracebacks) and `coachwhip.access` (one
record per response). Apps may attach their own handlers to either.

Access records carry their fields, so that no handler has to parse text: `record.args` is what
uvicorn's access logger passes, `(client_addr, method, full_path, http_version, status_code)`,
so uvicorn's formatters and log configs work unchanged, and the record has attributes for every
field (ACCESS_FIELDS), the duration, bytes sent, request id and user agent among them.
`--access-log-format` (gunicorn's atoms, granian's names, or `json`) makes the message the
formatted line, as gunicorn does.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import http
import json
import logging
import logging.config
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from coachwhip.config import ConfigError

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("coachwhip.error")
access_logger = logging.getLogger("coachwhip.access")

# The attributes every access record has (besides record.args).
ACCESS_FIELDS = (
    "client_addr",  # "host:port" ("[v6]:port"), "-" when unknown (uvicorn's)
    "method",  # "-" when the request line never parsed
    "path",  # the request target: path and query, as sent (uvicorn's full_path)
    "http_version",  # "1.1", "1.0", "2"
    "status_code",  # int; 499 when the connection closed before any response started
    "duration_ms",  # float, from the complete request head to the end of the response
    "bytes_sent",  # int: response body bytes that went out
    "request_id",  # the X-Request-ID request field, or None
    "user_agent",  # the User-Agent request field, or None
    "cut_short",  # bool: the response did not complete (the client left, the app failed)
)
ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access message; args as uvicorn's

# --- colours (uvicorn's, so that the lines look the same on a terminal) --------------------------

_COLOURS = {
    "red": 31,
    "green": 32,
    "yellow": 33,
    "blue": 34,
    "cyan": 36,
    "bright_red": 91,
    "bright_white": 97,
}


def _style(text: str, fg: str | None = None, bold: bool = False) -> str:
    prefix = (f"\033[{_COLOURS[fg]}m" if fg else "") + ("\033[1m" if bold else "")
    return f"{prefix}{text}\033[0m"


_LEVEL_COLOURS = {
    TRACE: "blue",
    logging.DEBUG: "cyan",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bright_red",
}
_STATUS_COLOURS = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}


def _status_text(status: int, colours: bool, phrase: bool) -> str:
    text = str(status)
    if phrase:
        try:
            text += " " + http.HTTPStatus(status).phrase
        except ValueError:
            text += " "
    fg = _STATUS_COLOURS.get(status // 100)
    return _style(text, fg) if colours and fg else text


class ColourizedFormatter(logging.Formatter):
    """uvicorn's ColourizedFormatter: `%(levelprefix)s` is the level name and a colon, padded
    to a common width, coloured on a terminal. `use_colors`: None colours when the stream the
    handler writes to is a terminal (uvicorn asks stdout's)."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = use_colors if use_colors in (True, False) else sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        fg = _LEVEL_COLOURS.get(level_no)
        return _style(level_name, fg) if fg else level_name

    def should_use_colors(self) -> bool:
        return True

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy.copy(record)
        levelname = recordcopy.levelname
        separator = " " * (8 - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, recordcopy.levelno)
            if "color_message" in recordcopy.__dict__:
                recordcopy.msg = recordcopy.__dict__["color_message"]
                recordcopy.__dict__["message"] = recordcopy.getMessage()
        recordcopy.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(recordcopy)


class DefaultFormatter(ColourizedFormatter):
    """uvicorn's DefaultFormatter."""

    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


class AccessFormatter(ColourizedFormatter):
    """uvicorn's AccessFormatter: `%(client_addr)s`, `%(request_line)s` and `%(status_code)s`
    (with its phrase, coloured by class on a terminal), from record.args."""

    def get_status_code(self, status_code: int) -> str:
        return _status_text(status_code, self.use_colors, phrase=True)

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy.copy(record)
        client_addr, method, full_path, http_version, status_code = recordcopy.args  # type: ignore[misc]
        request_line = f"{method} {full_path} HTTP/{http_version}"
        if self.use_colors:
            request_line = _style(request_line, bold=True)
        recordcopy.__dict__.update(
            client_addr=client_addr,
            request_line=request_line,
            status_code=self.get_status_code(int(status_code)),  # type: ignore[call-overload]
        )
        return super().formatMessage(recordcopy)


class _ServerFormatter(ColourizedFormatter):
    """coachwhip's own lines: `LEVEL:    message`; an access line's status coloured by class."""

    def __init__(self, use_colors: bool) -> None:
        super().__init__("%(levelprefix)s%(message)s", use_colors=use_colors)

    def formatMessage(self, record: logging.LogRecord) -> str:
        levelname = record.levelname
        prefix = (levelname + ":").ljust(10)
        message = record.message
        if self.use_colors:
            prefix = prefix.replace(levelname, self.color_level_name(levelname, record.levelno), 1)
            if _is_access(record) and len(record.args) == 5:  # type: ignore[arg-type]
                args = list(record.args)  # type: ignore[arg-type]
                args[4] = _status_text(args[4], True, phrase=False)
                message = str(record.msg).replace("%d", "%s", 1) % tuple(args)
        return prefix + message


# --- the access log's sink (called by the engine) ------------------------------------------------

_INFO = logging.INFO
_render: AccessFormat | None = None  # --access-log-format, compiled
_batched: list[_BatchedHandler] = []  # handlers that write once per engine batch
_direct: _BatchedHandler | None = None  # the access handler coachwhip installed, if any


def _message(status: int, size: int, cut_short: bool) -> str:
    if not cut_short:
        return ACCESS_MESSAGE
    why = "no response sent" if status == 499 else f"after {size} bytes"
    return ACCESS_MESSAGE + f" (cut short: {why})"


def access(
    client: str,
    method: str,
    target: str,
    version: str,
    status: int,
    duration_us: int,
    size: int,
    cut_short: bool,
    user_agent: str | None,
    request_id: str | None,
    request_fields: tuple[str | None, ...] | None,
    response_fields: tuple[str | None, ...] | None,
) -> None:
    """One response, from the engine (src/bridge/access_log.hpp): a record on coachwhip.access.

    While coachwhip's own handler is the only thing that would see the record (no other
    handler, no filter, no record factory: what `logging` would do is known), the line is
    formatted straight into it, without a LogRecord: that is most of the cost of a line (bench:
    scenario 1, bench/NOTES.md). Otherwise a record is made and handled as logging does, with
    record.args as uvicorn's; not through logger.info(), which would look up the caller's
    frame, and the caller is the engine."""
    logger = access_logger
    if not logger.isEnabledFor(_INFO):  # (False when the logger is disabled, too)
        return
    direct = _direct
    handlers = logger.handlers
    if (
        direct is not None
        and len(handlers) == 1
        and handlers[0] is direct
        and not logger.filters
        and not direct.filters
        and not logger.propagate
        and logging.getLogRecordFactory() is logging.LogRecord
    ):
        if _render is None:
            line = direct.text_line(client, method, target, version, status, size, cut_short)
        elif _render.json:
            line = json_text(client, method, target, version, status, duration_us / 1000.0,
                             size, request_id, user_agent, cut_short, time.time())  # fmt: skip
        else:
            line = _render(_fields(client, method, target, version, status, duration_us, size,
                                   cut_short, user_agent, request_id, request_fields,
                                   response_fields, time.time()))  # fmt: skip
        with direct.lock:  # type: ignore[union-attr]
            direct.pending.append(line)
        return
    record = logging.getLogRecordFactory()(
        "coachwhip.access",
        _INFO,
        __file__,
        0,
        _message(status, size, cut_short),
        (client, method, target, version, status),
        None,
    )
    fields = record.__dict__
    fields.update(
        _fields(client, method, target, version, status, duration_us, size, cut_short,
                user_agent, request_id, request_fields, response_fields, record.created)
    )  # fmt: skip
    if _render is not None:
        try:
            record.msg, record.args = _render(fields), ()
        except Exception:  # a broken format must not lose the line: uvicorn's message instead
            error_logger.exception("--access-log-format failed; logging the default line")
    logger.handle(record)


def _fields(
    client: str,
    method: str,
    target: str,
    version: str,
    status: int,
    duration_us: int,
    size: int,
    cut_short: bool,
    user_agent: str | None,
    request_id: str | None,
    request_fields: tuple[str | None, ...] | None,
    response_fields: tuple[str | None, ...] | None,
    created: float,
) -> dict[str, Any]:
    """An access record's attributes: ACCESS_FIELDS, `created`, and the field values a format
    names (private: only when it names some)."""
    fields = {
        "client_addr": client,
        "method": method,
        "path": target,
        "http_version": version,
        "status_code": status,
        "duration_ms": duration_us / 1000.0,
        "bytes_sent": size,
        "request_id": request_id,
        "user_agent": user_agent,
        "cut_short": cut_short,
        "created": created,
    }
    if request_fields is not None:
        fields["_request_fields"] = request_fields
    if response_fields is not None:
        fields["_response_fields"] = response_fields
    return fields


def _is_access(record: logging.LogRecord) -> bool:
    """A record of the access sink (not a line an app logged to coachwhip.access itself)."""
    return "cut_short" in record.__dict__ and isinstance(record.args, tuple)


def flush_access() -> None:
    """After each batch of access records: the batched handlers write what they hold."""
    for handler in _batched:
        handler.flush_batch()


# --- --access-log-format ------------------------------------------------------------------------

_FIELD_ATOM = re.compile(r"%\(\{([^}]+)\}([ioe])\)")
_GRANIAN_HEADER = re.compile(r"%\(header\{([^}]+)\}\)")
_ATOM_NAME = re.compile(r"%\(([^)]*)\)")
GUNICORN_ATOMS = "h l u t r s m U q H b B f a T D M L p".split()
GRANIAN_ATOMS = "addr time dt_ms status path query_string method scheme protocol".split()


class AccessFormat:
    """A compiled --access-log-format: gunicorn's atoms (%(h)s, %(r)s, %({name}i)s, ...), granian's
    names (%(addr)s, %(dt_ms).3f, %(header{name})s, ...), the record's own fields
    (%(duration_ms)s, ...), or "json"."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.json = fmt.strip().lower() == "json"
        request = [m.group(1).lower() for m in _FIELD_ATOM.finditer(fmt) if m.group(2) == "i"]
        request += [m.group(1).strip().lower() for m in _GRANIAN_HEADER.finditer(fmt)]
        if "%(f)" in fmt:
            request.append("referer")
        if "%(u)" in fmt:
            request.append("authorization")
        self.request_fields = list(dict.fromkeys(request))
        self.response_fields = list(
            dict.fromkeys(
                m.group(1).lower() for m in _FIELD_ATOM.finditer(fmt) if m.group(2) == "o"
            )
        )
        if not self.json:
            self._check()

    def unknown_atoms(self) -> list[str]:
        """Names in the format that no atom has: gunicorn prints them as '-', and so do we."""
        known = {*GUNICORN_ATOMS, *GRANIAN_ATOMS, *ACCESS_FIELDS}
        names = [m.group(1) for m in _ATOM_NAME.finditer(self.fmt)]
        return [
            n
            for n in names
            if n not in known and not re.fullmatch(r"\{[^}]+\}[ioe]|header\{[^}]+\}", n)
        ]

    def _check(self) -> None:
        sample = _fields(
            "127.0.0.1:1234", "GET", "/?q=1", "1.1", 200, 1500, 2, False, None, None,
            (None,) * len(self.request_fields), (None,) * len(self.response_fields), time.time(),
        )  # fmt: skip
        try:
            self(sample)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"--access-log-format {self.fmt!r}: {exc}; write atoms as %(name)s, e.g. "
                "'%(h)s \"%(r)s\" %(s)s %(b)s', or use 'json'"
            ) from None

    def __call__(self, fields: Mapping[str, Any]) -> str:
        """The line for an access record's fields (see _fields; a record's __dict__ has them)."""
        if self.json:
            return _json_line(fields)
        return self.fmt % _Atoms(fields, self)


def _json_line(d: Mapping[str, Any]) -> str:
    return json_text(
        d["client_addr"], d["method"], d["path"], d["http_version"], d["status_code"],
        d["duration_ms"], d["bytes_sent"], d["request_id"], d["user_agent"], d["cut_short"],
        d["created"],
    )  # fmt: skip


_quote = json.encoder.encode_basestring  # (C) a JSON string literal, non-ASCII kept as is
_stamp_second = -1  # the second _stamp_prefix is for
_stamp_prefix = ""  # "2026-11-28T03:45:12." (UTC)


def _stamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds, as datetime's isoformat(timespec="milliseconds") + "Z";
    the date and time part is made once per second."""
    global _stamp_second, _stamp_prefix
    second = int(created)
    micros = round((created - second) * 1e6)  # as datetime rounds it (half to even)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    if second != _stamp_second:
        moment = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
        _stamp_prefix = moment.strftime("%Y-%m-%dT%H:%M:%S.")
        _stamp_second = second
    return f"{_stamp_prefix}{micros // 1000:03d}Z"


def json_text(
    client: str,
    method: str,
    path: str,
    version: str,
    status: int,
    duration_ms: float,
    size: int,
    request_id: str | None,
    user_agent: str | None,
    cut_short: bool,
    created: float,
) -> str:
    """An access record as one JSON object: exactly what json.dumps(..., ensure_ascii=False)
    gives for these keys in this order, made with one f-string (json.dumps with any option
    builds a JSONEncoder per call, and the dict, the datetime and the encoder were most of the
    line's cost: bench/NOTES.md)."""
    rid = "null" if request_id is None else _quote(request_id)
    agent = "null" if user_agent is None else _quote(user_agent)
    return (
        f'{{"time": "{_stamp(created)}", "client_addr": {_quote(client)}, '
        f'"method": {_quote(method)}, "path": {_quote(path)}, '
        f'"http_version": {_quote(version)}, "status_code": {status}, '
        f'"duration_ms": {round(duration_ms, 3)!r}, "bytes_sent": {size}, '
        f'"request_id": {rid}, "user_agent": {agent}, '
        f'"cut_short": {"true" if cut_short else "false"}}}'
    )


def _split_client(client: str) -> str:
    """The address of "host:port" / "[v6]:port" (gunicorn's %(h)s has no port)."""
    if client.startswith("["):
        return client[1 : client.index("]")] if "]" in client else client
    host, sep, port = client.rpartition(":")
    return host if sep and port.isdigit() else client


class _Atoms(dict):  # type: ignore[type-arg]
    """gunicorn's atoms (and granian's names) of one access record, made as the format asks for
    them; unknown names are '-' and '"' in values is escaped, as gunicorn's SafeAtoms does."""

    def __init__(self, fields: Mapping[str, Any], fmt: AccessFormat) -> None:
        super().__init__()
        self.fields = fields
        self.format = fmt

    def __missing__(self, key: str) -> Any:
        value = self._atom(key)
        if isinstance(value, str):
            value = value.replace('"', '\\"')
        self[key] = value
        return value

    def _field(self, names: list[str], values: tuple[str | None, ...] | None, name: str) -> str:
        if values is None or name not in names:
            return "-"
        value = values[names.index(name)]
        return "-" if value is None else value

    def _atom(self, key: str) -> Any:
        d = self.fields
        target: str = d["path"]
        path, _, query = target.partition("?")
        duration_us = round(d["duration_ms"] * 1000)
        protocol = f"HTTP/{d['http_version']}"
        if key.startswith("{") and key[-2:-1] == "}" and key[-1] in "ioe":
            name = key[1:-2].lower()
            if key[-1] == "i":
                return self._field(self.format.request_fields, d.get("_request_fields"), name)
            if key[-1] == "o":
                return self._field(self.format.response_fields, d.get("_response_fields"), name)
            return os.environ.get(key[1:-2], os.environ.get(name.upper(), "-"))
        if key.startswith("header{") and key.endswith("}"):
            name = key[7:-1].strip().lower()
            return self._field(self.format.request_fields, d.get("_request_fields"), name)
        if key in ("h", "addr"):
            return _split_client(d["client_addr"])
        if key == "l":
            return "-"
        if key == "u":
            return self._user()
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(d["created"]))
        if key == "time":
            return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(d["created"]))
        if key == "r":
            return f"{d['method']} {target} {protocol}"
        if key in ("s", "status"):
            return d["status_code"]
        if key == "m" or key == "method":
            return d["method"]
        if key == "U":
            return path
        if key == "path":
            return path
        if key in ("q", "query_string"):
            return query
        if key in ("H", "protocol"):
            return protocol
        if key == "scheme":
            return "-"
        if key == "b":
            return str(d["bytes_sent"])
        if key == "B":
            return d["bytes_sent"]
        if key == "f":
            return self._field(self.format.request_fields, d.get("_request_fields"), "referer")
        if key == "a":
            return d["user_agent"] or "-"
        if key == "T":
            return duration_us // 1_000_000
        if key == "D":
            return duration_us
        if key == "M":
            return duration_us // 1000
        if key == "L":
            seconds, micros = divmod(duration_us, 1_000_000)
            return f"{seconds}.{micros:06d}"
        if key == "dt_ms":
            return d["duration_ms"]
        if key == "p":
            return f"<{os.getpid()}>"
        if key in ACCESS_FIELDS:
            value = d[key]
            return "-" if value is None else value
        return "-"

    def _user(self) -> str:
        auth = self._field(
            self.format.request_fields, self.fields.get("_request_fields"), "authorization"
        )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "basic" or not token:
            return "-"
        try:
            user = base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return "-"
        return user.split(":", 1)[0] or "-"


# --- handlers -------------------------------------------------------------------------------------


class _BatchedHandler(logging.Handler):
    """Holds the formatted access lines of one engine batch and writes them with one write():
    a burst of responses costs one system call, not one each. Lines not from the engine (an
    app logging to coachwhip.access itself) are written at once."""

    terminator = "\n"

    def __init__(self, stream: TextIO | None = None, path: str | None = None) -> None:
        super().__init__()
        self.pending: list[str] = []
        self.prefix = "INFO:     "  # (access records are INFO)
        self.colours = False
        self.path = path
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.device: tuple[int, int] | None = None
        if path is not None:
            self._open()

    @classmethod
    def open(cls, path: str | None, dash: TextIO, flag: str) -> _BatchedHandler:
        """A handler for stderr (no path), `dash` ('-') or a file (`flag` names it in errors)."""
        stream = dash if path == "-" else sys.stderr if path is None else None
        try:
            return cls(stream, None if stream is not None else path)
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: {exc.strerror}") from None

    def _open(self) -> None:
        assert self.path is not None
        self.stream = open(self.path, "a", encoding="utf-8")
        st = os.fstat(self.stream.fileno())
        self.device = (st.st_dev, st.st_ino)

    def _reopen_if_moved(self) -> None:
        """As WatchedFileHandler: logrotate moved the file, so write to a new one."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self.device
        except FileNotFoundError:
            moved = True
        if moved:
            self.stream.close()
            self._open()

    def use_colours(self, colours: bool) -> None:
        self.colours = colours
        self.prefix = (
            ColourizedFormatter(use_colors=True).color_level_name("INFO", _INFO) + ":     "
        )
        if not colours:
            self.prefix = "INFO:     "
        self.setFormatter(_ServerFormatter(colours))

    def text_line(
        self,
        client: str,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        cut_short: bool,
    ) -> str:
        """The line _ServerFormatter makes of an access record, made without the record."""
        code = _status_text(status, True, phrase=False) if self.colours else status
        line = f'{self.prefix}{client} - "{method} {target} HTTP/{version}" {code}'
        return line + _message(status, size, True)[len(ACCESS_MESSAGE) :] if cut_short else line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if _is_access(record):
                self.pending.append(line)
            else:
                self._write(line + self.terminator)
        except Exception:
            self.handleError(record)

    def flush_batch(self) -> None:
        if not self.pending:
            return
        with self.lock:  # type: ignore[union-attr]
            lines, self.pending = self.pending, []
        try:
            self._write(self.terminator.join(lines) + self.terminator)
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "access log write failed"}))

    def _write(self, text: str) -> None:
        self._reopen_if_moved()
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        self.flush_batch()
        if self.path is not None:
            self.stream.close()
        super().close()


def _handler(path: str | None, dash: TextIO, flag: str) -> logging.Handler:
    stream = dash if path == "-" else sys.stderr if path is None else None
    if stream is not None:
        return logging.StreamHandler(stream)
    try:
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")  # type: ignore[arg-type]
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror}") from None


def _colours(handler: logging.Handler, use_colors: bool | None) -> bool:
    if use_colors is not None:
        return use_colors
    stream = getattr(handler, "stream", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def _install(logger: logging.Logger, handler: logging.Handler | None) -> None:
    for old in [h for h in logger.handlers if getattr(h, "_coachwhip", False)]:
        logger.removeHandler(old)
        if old in _batched:
            _batched.remove(old)  # type: ignore[arg-type]
        old.close()
    if handler is not None:
        handler._coachwhip = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        if isinstance(handler, _BatchedHandler):
            _batched.append(handler)


# --- configure() ----------------------------------------------------------------------------------


def configure(
    level_name: str,
    access_log: bool,
    access_logfile: str | None = None,
    error_logfile: str | None = None,
    *,
    log_config: str | dict[str, Any] | None = None,
    use_colors: bool | None = None,
    access_log_format: str | None = None,
) -> AccessFormat | None:
    """Sets up coachwhip's loggers; returns the compiled --access-log-format (or None).

    Without `log_config`: lines go to stderr, or as gunicorn's --error-logfile/--access-logfile
    say: a path (a file, reopened when logrotate moves it) or '-' (stderr for the server's log,
    stdout for the access log); colours on a terminal unless `use_colors` says otherwise.
    With `log_config`: that file configures logging (see load_log_config), and coachwhip
    installs no handler. Called again, it replaces the handlers it installed."""
    global _render, _direct
    level = TRACE if level_name == "trace" else getattr(logging, level_name.upper())
    fmt = AccessFormat(access_log_format) if access_log_format else None
    _render = fmt
    _direct = None
    parent = logging.getLogger("coachwhip")
    if log_config is not None:
        for logger in (parent, error_logger, access_logger):
            _install(logger, None)
        load_log_config(log_config, use_colors)
        _route_foreign_loggers()
        for logger in (parent, error_logger, access_logger):
            logger.disabled = False  # a config's disable_existing_loggers would silence them
        if parent.level == logging.NOTSET:
            parent.setLevel(level)  # the file's levels win where it sets them
        if not error_logger.hasHandlers():
            # A config that routes only the access log: the server's own lines stay on stderr
            # (where nothing handles them, logging would drop all but warnings).
            handler = _handler(None, sys.stderr, "")
            handler.setFormatter(_ServerFormatter(_colours(handler, use_colors)))
            _install(error_logger, handler)
        ignored = (("--error-logfile", error_logfile), ("--access-logfile", access_logfile))
        for flag, value in ignored:
            if value is not None:
                error_logger.warning(
                    "%s %s is not used with --log-config: the handlers of %s decide where "
                    "lines go (give them a FileHandler there)",
                    flag,
                    value,
                    log_config if isinstance(log_config, str) else "the logging config",
                )
    else:
        handler = _handler(error_logfile, sys.stderr, "--error-logfile")
        handler.setFormatter(_ServerFormatter(_colours(handler, use_colors)))
        _install(parent, handler)
        parent.setLevel(level)
        parent.propagate = False
        if access_logfile is not None or fmt is not None:
            # Its own handler: a file, or a format whose lines have no level prefix (gunicorn's
            # and granian's access lines have none).
            target = access_logfile if access_logfile is not None else error_logfile
            dash = sys.stdout if access_logfile is not None else sys.stderr
            access_handler = _BatchedHandler.open(target, dash, "--access-logfile")
            if fmt is not None:
                access_handler.setFormatter(logging.Formatter("%(message)s"))
            else:
                access_handler.use_colours(_colours(access_handler, use_colors))
        else:
            access_handler = _BatchedHandler.open(error_logfile, sys.stderr, "--error-logfile")
            access_handler.use_colours(_colours(access_handler, use_colors))
        _install(access_logger, access_handler)
        access_logger.propagate = False
        _direct = access_handler
    access_logger.disabled = not access_log
    if fmt is not None:
        _warn_unknown_atoms(fmt)
    return fmt


def use_access_format(access_log_format: str | None) -> AccessFormat | None:
    """Renders access records with `access_log_format` from now on, into whatever handlers the
    access logger has (the gunicorn worker's: they are gunicorn's, not configure()'s); warns
    about atoms it does not know. Returns the compiled format."""
    global _render
    _render = AccessFormat(access_log_format) if access_log_format else None
    if _render is not None:
        _warn_unknown_atoms(_render)
    return _render


def _warn_unknown_atoms(fmt: AccessFormat) -> None:
    for name in fmt.unknown_atoms():
        error_logger.warning(
            "--access-log-format: no atom is named %r; it is logged as '-' (gunicorn's "
            "atoms: %s; granian's: %s)",
            name,
            " ".join(GUNICORN_ATOMS),
            " ".join(GRANIAN_ATOMS),
        )


# uvicorn's and gunicorn's and granian's logger names: a log config written for one of them
# routes coachwhip's records the same way when it does not name coachwhip's loggers.
_FOREIGN = {
    "coachwhip": ("uvicorn", "gunicorn", "granian"),
    "coachwhip.error": ("uvicorn.error", "gunicorn.error", "_granian"),
    "coachwhip.access": ("uvicorn.access", "gunicorn.access", "granian.access"),
}


def _configured(logger: logging.Logger) -> bool:
    return bool(logger.handlers) or logger.level != logging.NOTSET or not logger.propagate


def _route_foreign_loggers() -> None:
    known = logging.Logger.manager.loggerDict
    for ours_name, theirs_names in _FOREIGN.items():
        ours = logging.getLogger(ours_name)
        if _configured(ours):
            continue
        for name in theirs_names:
            theirs = known.get(name)
            if isinstance(theirs, logging.Logger) and _configured(theirs):
                ours.handlers = list(theirs.handlers)
                ours.setLevel(theirs.level)
                ours.propagate = theirs.propagate
                ours.filters = list(theirs.filters)
                error_logger.debug("--log-config: %s logs as %s is configured", ours_name, name)
                break


def _substitute_uvicorn(node: Any) -> Any:
    """uvicorn.logging's formatter classes, named by a config written for uvicorn, are
    coachwhip.logs' same-named ones when uvicorn is not installed."""
    if isinstance(node, dict):
        return {k: _substitute_uvicorn(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_uvicorn(v) for v in node]
    if isinstance(node, str) and node.startswith("uvicorn.logging."):
        name = node.rpartition(".")[2]
        if name in ("ColourizedFormatter", "DefaultFormatter", "AccessFormatter"):
            try:
                import uvicorn.logging  # noqa: F401
            except ImportError:
                return f"coachwhip.logs.{name}"
    return node


def _apply_colours(config: dict[str, Any], use_colors: bool | None) -> None:
    """--use-colors / --no-use-colors reach the formatters that take `use_colors`, as uvicorn
    sets them on its config's formatters."""
    if use_colors is None:
        return
    for spec in (config.get("formatters") or {}).values():
        if isinstance(spec, dict) and str(spec.get("()", "")).endswith(
            ("ColourizedFormatter", "DefaultFormatter", "AccessFormatter")
        ):
            spec["use_colors"] = use_colors


def load_log_config(path: str | dict[str, Any], use_colors: bool | None = None) -> None:
    """--log-config FILE, as uvicorn reads it: a dictConfig in JSON (.json, or text that
    starts with '{', which is what gunicorn's --log-config-json gives) or YAML (.yaml, .yml:
    needs PyYAML), else a fileConfig INI file; or (run(log_config={...}), as uvicorn.run()) a
    dictConfig mapping. Every failure is a ConfigError naming the file and what to do."""
    if isinstance(path, dict):
        return _dict_config(copy.deepcopy(path), "log_config", use_colors)
    where = f"--log-config {path}"
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    if not text.strip():
        raise ConfigError(
            f"{where}: the file is empty; write a logging config in it (a dictConfig in .json "
            "or .yaml, or an INI fileConfig)"
        )
    config: Any
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"{where}: a YAML logging config needs PyYAML, which is not installed; "
                "pip install PyYAML, or write the config as JSON"
            ) from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}: not valid YAML: {problem}{at}") from None
    elif path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    else:
        _file_config(path, where)
        return
    _dict_config(config, where, use_colors)


def _dict_config(config: Any, where: str, use_colors: bool | None) -> None:
    if not isinstance(config, dict) or "version" not in config:
        raise ConfigError(
            f'{where}: expected a logging.config.dictConfig mapping with "version": 1 '
            "(https://docs.python.org/3/library/logging.config.html#logging-config-dictschema)"
        )
    config = _substitute_uvicorn(config)
    _apply_colours(config, use_colors)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc}" + (
            f" ({cause})" if cause is not None and str(cause) not in str(exc) else ""
        )
        raise ConfigError(f"{where}: logging.config.dictConfig refused it: {detail}") from None


def _file_config(path: str, where: str) -> None:
    import configparser

    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except (
        configparser.Error,
        KeyError,
        ValueError,
        TypeError,
        ImportError,
        AttributeError,
    ) as exc:
        what = f"missing section or option {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(
            f"{where}: logging.config.fileConfig refused it ({what}); an INI logging config "
            "needs [loggers], [handlers] and [formatters] sections (or use a .json or .yaml "
            "dictConfig)"
        ) from None
    except RuntimeError as exc:  # fileConfig: "... is an invalid or empty file"
        raise ConfigError(f"{where}: {exc}; write an INI logging config in it") from None


def engine_log(level: int, message: str) -> None:
    """Sink for the C++ engine's messages (level is a `logging` level number)."""
    error_logger.log(level, message)
