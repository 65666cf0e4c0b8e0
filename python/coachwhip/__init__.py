"""coachwhip: an ASGI application server for Python with a C++20 engine."""

from __future__ import annotations

__version__ = "0.1.0"

from coachwhip.config import Config, ConfigError
from coachwhip.server import StartupError, run

__all__ = ["ClientDisconnected", "Config", "ConfigError", "StartupError", "__version__", "run"]


def __getattr__(name: str) -> object:
    # Imported lazily so that `coachwhip --help` works even before the extension is built.
    if name == "ClientDisconnected":
        from coachwhip._core import ClientDisconnected

        return ClientDisconnected
    raise AttributeError(f"module 'coachwhip' has no attribute {name!r}")
