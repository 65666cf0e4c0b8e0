"""Watching source files for --reload: Linux inotify through ctypes (no dependency, no polling).

Every directory under the watched roots gets a watch (new directories are added as they
appear). A change counts when its file name matches an include pattern and no exclude pattern;
the supervisor debounces changes (editors write a file in several steps) and then restarts the
workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import os
import struct
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x00004000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", ".py[cod]", ".sw.*", "~*", "*~")
SKIPPED_DIRS = {
    "__pycache__",
    ".git",
    ".hg",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
}


class WatchError(OSError):
    """inotify is not usable; the message says why and what to do."""


class FileWatcher:
    def __init__(self, roots: list[str], include: list[str], exclude: list[str]) -> None:
        self.include = include or list(DEFAULT_INCLUDE)
        self.exclude = exclude or list(DEFAULT_EXCLUDE)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise WatchError(f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}")
        self._dirs: dict[int, Path] = {}
        for root in roots:
            path = Path(root).resolve()
            if not path.is_dir():
                raise WatchError(f"--reload-dir {root!r} is not a directory")
            self._watch_tree(path)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)

    def read_changes(self) -> list[str]:
        """Paths of matching files changed since the last call (reads what inotify has)."""
        changed: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return changed
            offset = 0
            while offset + EVENT.size <= len(data):
                wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size : offset + EVENT.size + length].rstrip(b"\0")
                offset += EVENT.size + length
                self._on_event(wd, mask, os.fsdecode(name), changed)

    def _on_event(self, wd: int, mask: int, name: str, changed: list[str]) -> None:
        if mask & IN_Q_OVERFLOW:
            changed.append("(too many changes at once)")
            return
        directory = self._dirs.get(wd)
        if directory is None or not name:
            return
        path = directory / name
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO) and name not in SKIPPED_DIRS:
                self._watch_tree(path)
            return
        if self.matches(name):
            changed.append(str(path))

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.include) and not any(
            fnmatch.fnmatch(name, p) for p in self.exclude
        )

    def _watch_tree(self, root: Path) -> None:
        for directory, subdirs, _files in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
            if wd < 0:
                err = ctypes.get_errno()
                raise WatchError(
                    f"cannot watch {directory}: {os.strerror(err)}"
                    + (" (raise fs.inotify.max_user_watches)" if err == 28 else "")
                )
            self._dirs[wd] = Path(directory)
