"""A module that imports a package which is not installed.

The ModuleNotFoundError comes from the user's code, not from a wrong MODULE name: the server
must show the traceback (exit 1), not a "did you mean" line (exit 2).
"""

from __future__ import annotations

import cw_not_installed_dependency  # noqa: F401


async def app(
    scope: object, receive: object, send: object
) -> None:  # pragma: no cover - never imported
    raise AssertionError("unreachable")
