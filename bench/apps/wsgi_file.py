"""Scenario "wsgi-file": GET answered with a 10 MiB file through `wsgi.file_wrapper` (a server
may send it with sendfile). A server without `wsgi.file_wrapper` gets PEP 3333's fallback: the
file read and yielded in blocks of the same size. The response header `X-Sent-With` says which
of the two ran (`file_wrapper` or `iteration`).

The file is made at import, once per machine, in the temp directory: 10 MiB of the bytes 0..255
repeated, written under a unique name and renamed into place, so that servers starting together
never see half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

SIZE = 10 * 1024 * 1024
BLOCK = 64 * 1024  # the file_wrapper's blksize, and the fallback's read size
PATH = Path(tempfile.gettempdir()) / "coachwhip-bench-file-10mib.bin"


def content() -> bytes:
    """What the file holds (and what the scenario's check expects)."""
    return bytes(range(256)) * (SIZE // 256)


def _ensure_file() -> None:
    want = content()
    try:
        if PATH.read_bytes() == want:
            return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=PATH.parent, prefix=PATH.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(want)
    os.replace(tmp, PATH)


_ensure_file()


class _Blocks:
    """PEP 3333's fallback when the server has no wsgi.file_wrapper: read in blocks; close()
    closes the file."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self._f.read(BLOCK), b"")

    def close(self) -> None:
        self._f.close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    f = PATH.open("rb")
    wrapper = environ.get("wsgi.file_wrapper")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(os.fstat(f.fileno()).st_size)),
            ("X-Sent-With", "file_wrapper" if wrapper is not None else "iteration"),
        ],
    )
    if wrapper is not None:
        return wrapper(f, BLOCK)
    return _Blocks(f)
