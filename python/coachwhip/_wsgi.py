"""The Python parts of the WSGI bridge (PEP 3333): the environ keys every request shares,
wsgi.errors, wsgi.file_wrapper, and reporting an app's exceptions.

The per-request work (environ, wsgi.input, start_response, sending) is C++: src/bridge/wsgi/.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any

from coachwhip._asgi import caused_by_disconnect
from coachwhip.logs import error_logger


class ErrorStream:
    """wsgi.errors: what the app writes goes to the "coachwhip.error" logger, line by line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial = ""

    def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes a str, got {type(text).__name__}")
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            error_logger.error("%s", line)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            error_logger.error("%s", partial)


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks; close() closes it."""

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize if blksize > 0 else 8192
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


def base_environ(root_path: str, threads: int, multiprocess: bool) -> dict[str, Any]:
    """The environ keys that are the same for every request of this worker."""
    return {
        "SCRIPT_NAME": root_path.rstrip("/"),
        "wsgi.version": (1, 0),
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": threads > 1,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": "coachwhip",
    }


def report_failure(exc: BaseException, where: str) -> None:
    """Called by the WSGI bridge when the app (or its iterable) raised `exc` serving `where`
    ("GET /path")."""
    if caused_by_disconnect(exc):
        error_logger.debug("client disconnected from %s while the WSGI app ran: %r", where, exc)
    elif isinstance(exc, TypeError) and "positional argument" in str(exc):
        # An ASGI app called as WSGI fails here on every request: say what to do.
        error_logger.error(
            "Exception in WSGI application (%s) (calling it with (environ, start_response) "
            "failed: is it an ASGI app? use --interface asgi3)",
            where,
            exc_info=exc,
        )
    else:
        error_logger.error("Exception in WSGI application (%s)", where, exc_info=exc)


def thread_name(index: int) -> str:
    return f"coachwhip-wsgi-{os.getpid()}-{index}"
