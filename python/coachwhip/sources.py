"""Where the settings come from, in order of precedence:

1. a command-line flag (or a run() keyword);
2. an environment variable: COACHWHIP_<FLAG>, then the ones uvicorn and gunicorn read too
   (WEB_CONCURRENCY, FORWARDED_ALLOW_IPS), then uvicorn's UVICORN_<FLAG>, then granian's
   GRANIAN_<OPTION> (the command line only);
3. a config file: the TOML file of -c/--config, else [tool.coachwhip] in ./pyproject.toml
   (the command line only);
4. the default.

--env-file is read first: its variables count as environment variables (set ones win).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from coachwhip import compat, envfile, gunicornconf
from coachwhip.config import (
    ENV_PREFIX,
    OPTION_BY_ATTR,
    Config,
    ConfigError,
    check_allow_ips,
    check_value,
    parse_text,
    suggest,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GUNICORN_CONF = "gunicorn.conf.py"


def load(
    explicit: Mapping[str, Any],
    *,
    environ: MutableMapping[str, str] | None = None,
    config_file: str | None = None,
    project_dir: str | None = None,
    notes: Sequence[str] = (),
    environment: Mapping[str, Any] | None = None,
) -> Config:
    """The Config for `explicit` settings (flags or keywords) over the environment, over the
    file. `project_dir` (the command line's current directory) is where pyproject.toml is read
    and a gunicorn.conf.py is looked for. `environment`: settings the caller already took from
    variables of its own (granian's), ranked with UVICORN_*'s."""
    environ = os.environ if environ is None else environ
    said = list(notes)
    warnings: list[str] = []
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = read_config_file(Path(config_file))
        said.append(f"Settings read from {config_file}")
    elif project_dir is not None:
        file_values = _read_project(Path(project_dir) / "pyproject.toml", said, warnings)
    if project_dir is not None and (Path(project_dir) / GUNICORN_CONF).is_file():
        warnings.append(gunicornconf.message(Path(project_dir) / GUNICORN_CONF))
    environment = environment or {}
    _load_env_files(explicit, environ, {**file_values, **environment}, said, warnings)
    from_uvicorn, uvicorn_notes = compat.from_uvicorn_env(environ)
    said += uvicorn_notes
    lower = {**file_values, **environment, **from_uvicorn}
    config = Config.load(explicit, environ, lower=lower)
    config.notes[:0] = said
    config.warnings[:0] = warnings
    return config


# --- config files ---------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    """A -c/--config file: TOML whose keys are the long flags (dashes or underscores), at the
    top or under [tool.coachwhip]."""
    if path.suffix == ".py":
        raise ConfigError(
            f"-c {path}: coachwhip reads TOML config files, not gunicorn's Python ones; put its "
            f"settings on the command line or in a TOML file ({gunicornconf.translate(path)})"
        )
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"-c {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"-c {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    section = data.get("tool", {}).get("coachwhip") if isinstance(data.get("tool"), dict) else None
    if isinstance(section, dict):
        return file_settings(section, f"{path} [tool.coachwhip]")
    return file_settings(data, str(path))


def _read_project(path: Path, said: list[str], warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        warnings.append(f"{path.name} not read ({exc}): its [tool.coachwhip] settings are ignored")
        return {}
    tool = data.get("tool")
    section = tool.get("coachwhip") if isinstance(tool, dict) else None
    if section is None:
        return {}
    where = f"{path.name} [tool.coachwhip]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    said.append(f"Settings read from {where}")
    return file_settings(section, where)


def file_settings(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A config file's table -> settings, each checked with the file and key in the message."""
    settings: dict[str, Any] = {}
    for key, value in table.items():
        attr = key.replace("-", "_")
        at = f"{where}: {key}"
        if attr == "app":
            if not isinstance(value, str):
                raise ConfigError(f'{at}: expected "module:attribute", got {value!r}')
            settings["app"] = value
            continue
        foreign = compat.BY_LONG_FLAG.get(attr)
        if attr not in OPTION_BY_ATTR and foreign is not None and foreign.target:
            if foreign.const is not None:
                raise ConfigError(f"{at}: use {foreign.target.replace('_', '-')} = ...")
            attr = foreign.target
        opt = OPTION_BY_ATTR.get(attr)
        if opt is None:
            names = [name.replace("_", "-") for name in OPTION_BY_ATTR]
            raise ConfigError(f"{at}: unknown setting{suggest(key.replace('_', '-'), names)}")
        if isinstance(value, str) and opt.kind not in ("str", "list"):
            value = parse_text(opt, value, f"{at} = {value!r}")
        elif opt.kind == "list" and isinstance(value, str):
            value = [value]
        elif (
            opt.kind == "choice" and isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            value = parse_text(opt, str(value), f"{at} = {value!r}")  # http = 2
        settings[attr] = check_value(opt, value, at)
        if attr == "forwarded_allow_ips":
            check_allow_ips(settings[attr], at)
    return settings


# --- --env-file -----------------------------------------------------------------------------


def _load_env_files(
    explicit: Mapping[str, Any],
    environ: MutableMapping[str, str],
    file_values: Mapping[str, Any],
    said: list[str],
    warnings: list[str],
) -> None:
    paths: list[str] | None = explicit.get("env_file")
    where = "--env-file"
    if not paths:
        for name in (ENV_PREFIX + "ENV_FILE", "UVICORN_ENV_FILE"):
            if environ.get(name):
                paths = parse_text(OPTION_BY_ATTR["env_file"], environ[name], name)
                where = name
                break
    if not paths:
        paths = file_values.get("env_file")
    for path in paths or []:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where} {path}: {exc.strerror}") from None
        found, problems = envfile.parse(text, environ)
        warnings += [f"{where} {path}: {problem}" for problem in problems]
        fresh = {k: v for k, v in found.items() if k not in environ}
        environ.update(fresh)
        kept = len(found) - len(fresh)
        said.append(
            f"Loaded {len(fresh)} environment variable(s) from {path}"
            + (f" ({kept} already set, kept)" if kept else "")
        )
