"""Finding the app named by MODULE:ATTRIBUTE, with errors a user can act on."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Any

from coachwhip.config import ConfigError, suggest


def import_app(spec: str, app_dir: str = ".", factory: bool = False) -> Any:
    """Imports and returns the ASGI app named by `spec` ("module:attr" or "module:a.b").

    Raises ConfigError (one line, with a suggestion) when the name is wrong. An exception raised
    by the user's own module while it is imported propagates unchanged, with its traceback.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(
            f'the app must be given as "module:attribute" (e.g. main:app), got "{spec}"'
        )
    directory = os.path.abspath(app_dir)
    if not os.path.isdir(directory):
        raise ConfigError(f"--app-dir {app_dir!r} is not a directory")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = _import_module(module_name, directory)
    app: Any = module
    walked = module_name
    for part in attr_path.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            names = [n for n in dir(app) if not n.startswith("__")]
            raise ConfigError(
                f"module '{walked}' has no attribute '{part}'{suggest(part, names)}"
            ) from None
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    if factory:
        if not callable(app):
            raise ConfigError(f"--factory: '{spec}' is not callable, got {type(app).__name__}")
        app = app()
    if not callable(app):
        raise ConfigError(
            f"'{spec}' is not an ASGI app: expected a callable, got {type(app).__name__}"
            + ("" if factory else " (if it builds the app, use --factory)")
        )
    return app


def _import_module(name: str, directory: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only a missing module we were asked for (or one of its parent packages) is a typo;
        # an import that fails inside the user's code is the user's error: let it propagate.
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            parent, _, leaf = missing.rpartition(".")
            where = _module_names(parent, directory)
            hint = suggest(leaf, where)
            raise ConfigError(
                f"could not import module '{missing}' (looked in {directory} and sys.path){hint}"
            ) from None
        raise


def _module_names(parent: str, directory: str) -> list[str]:
    if parent:
        try:
            paths = list(importlib.import_module(parent).__path__)
        except Exception:
            return []
    else:
        paths = [directory]
    return [m.name for m in pkgutil.iter_modules(paths)]
