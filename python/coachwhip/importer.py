"""Finding the app named by MODULE:ATTRIBUTE, with errors a user can act on."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
import traceback
from types import TracebackType
from typing import Any

from coachwhip.config import ConfigError, suggest
from coachwhip.logs import error_logger


def import_app(spec: str, app_dir: str = ".", factory: bool = False) -> Any:
    """Imports and returns the app named by `spec` ("module:attr", "module:a.b", or gunicorn's
    "module" for module:application). With `factory`, or when the attribute is a function that
    takes no arguments (said in a warning, as uvicorn does), it is called to build the app.

    Raises ConfigError (one line, with a suggestion) when the name is wrong or a factory is not
    one. An exception raised by the user's own module while it is imported propagates unchanged
    (print_user_traceback() shows it without coachwhip's frames).
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep and module_name and not module_name.startswith("."):
        attr_path = GUNICORN_DEFAULT  # gunicorn's `myproject.wsgi` means myproject.wsgi:application
    elif not sep or not module_name or not attr_path:
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
            if not sep:
                raise ConfigError(
                    f'the app must be given as "module:attribute" (e.g. main:app), got "{spec}" '
                    f"(and module '{module_name}' has no '{GUNICORN_DEFAULT}', gunicorn's "
                    f"default){_suggest_app(module, names, module_name)}"
                ) from None
            raise ConfigError(
                f"module '{walked}' has no attribute '{part}'{suggest(part, names)}"
            ) from None
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    name = f"{module_name}:{attr_path}"
    if factory:
        app = _call_factory(app, name)
    elif _is_factory(app):
        error_logger.warning(
            "'%s' is a function without parameters: taken as an app factory and called to build "
            "the app; say so with --factory",
            name,
        )
        app = _call_factory(app, name)
    if not callable(app):
        raise ConfigError(
            f"'{name}' is not an ASGI app: expected a callable, got {type(app).__name__}"
            + ("" if factory else " (if it builds the app, use --factory)")
        )
    return app


GUNICORN_DEFAULT = "application"


def _suggest_app(module: Any, names: list[str], module_name: str) -> str:
    apps = [n for n in names if n in ("app", "application", "api", "asgi_app", "wsgi_app")]
    return f"; did you mean {module_name}:{apps[0]}?" if apps else ""


def _is_factory(app: Any) -> bool:
    """A plain function that takes no arguments builds the app (uvicorn detects it too): an app
    takes (scope, receive, send), (scope) or (environ, start_response)."""
    if not inspect.isfunction(app) or inspect.iscoroutinefunction(app):
        return False
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind == p.VAR_KEYWORD for p in params)


def _call_factory(factory: Any, name: str) -> Any:
    if not callable(factory):
        raise ConfigError(f"--factory: '{name}' is not callable, got {type(factory).__name__}")
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None  # no signature to check (a builtin): call it and see
    if signature is not None:
        try:
            signature.bind()
        except TypeError:
            params = ", ".join(signature.parameters)
            raise ConfigError(
                f"--factory: '{name}' takes ({params}), so it is the app itself, not a factory "
                "(one is called without arguments); drop --factory"
            ) from None
    if inspect.iscoroutinefunction(factory):
        raise ConfigError(
            f"--factory: '{name}' is an async function; the factory must be a plain function "
            "that returns the app"
        )
    app = factory()
    if app is None or not callable(app):
        raise ConfigError(
            f"--factory: '{name}()' returned {type(app).__name__}, not an app; the factory must "
            "return the ASGI or WSGI callable"
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


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """`tb` without its leading frames of coachwhip, importlib and runpy: where the user's code
    starts. All of it when no user frame is left (then the error is coachwhip's own)."""
    here = os.path.dirname(os.path.abspath(__file__))
    start = tb
    while start is not None:
        filename = start.tb_frame.f_code.co_filename
        ours = filename.startswith(here + os.sep) or filename.startswith("<frozen ")
        if not ours and "importlib" not in filename and "runpy" not in filename:
            return start
        start = start.tb_next
    return tb


def print_user_traceback(exc: BaseException) -> None:
    """Prints an error the app raised while it was imported or built, as its own traceback."""
    traceback.print_exception(type(exc), exc, _user_frames(exc.__traceback__))
