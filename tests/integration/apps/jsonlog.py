"""A JSON log formatter as python-json-logger writes them (it is not a dependency of the
tests): the message, the level, the logger, record.args, and every attribute the record has
beyond a plain LogRecord's, so that whatever the server puts on its records shows up without
the formatter knowing the names."""

from __future__ import annotations

import json
import logging
from typing import Any

_PLAIN = set(logging.LogRecord("x", logging.INFO, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "logger": record.name,
            "level": record.levelname,
            "message": record.getMessage(),
            "args": list(record.args) if isinstance(record.args, tuple) else None,
        }
        for key, value in record.__dict__.items():
            if key not in _PLAIN and not key.startswith("_"):
                line[key] = value
        return json.dumps(line)
