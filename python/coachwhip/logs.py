"""Logging set-up: uvicorn-style lines on stderr, through the standard `logging` module.

Loggers: `coachwhip.error` (server messages and app tracebacks) and `coachwhip.access` (one line
per response). Apps may attach their own handlers to either.
"""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("coachwhip.error")
access_logger = logging.getLogger("coachwhip.access")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(10)
        return super().format(record)


def configure(level_name: str, access_log: bool) -> None:
    level = TRACE if level_name == "trace" else getattr(logging, level_name.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(levelprefix)s%(message)s"))
    parent = logging.getLogger("coachwhip")
    if not any(getattr(h, "_coachwhip", False) for h in parent.handlers):
        handler._coachwhip = True  # type: ignore[attr-defined]
        parent.addHandler(handler)
    parent.setLevel(level)
    parent.propagate = False
    access_logger.disabled = not access_log


def engine_log(level: int, message: str) -> None:
    """Sink for the C++ engine's messages (level is a `logging` level number)."""
    error_logger.log(level, message)
