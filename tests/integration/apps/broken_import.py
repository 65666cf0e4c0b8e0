"""A module whose import fails: the server must show this file's own traceback."""

from __future__ import annotations


def _load_settings() -> dict[str, str]:
    raise ValueError("cw-broken-import-marker")


SETTINGS = _load_settings()


async def app(
    scope: object, receive: object, send: object
) -> None:  # pragma: no cover - never imported
    raise AssertionError("unreachable")
