"""The `coachwhip` command: flags (and COACHWHIP_* variables, and a config file) -> Config -> run().

Other servers' flags are accepted too (coachwhip.compat): hidden from --help, listed in the
README's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import shlex
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, NoReturn

from coachwhip import __version__, compat, granianenv, sources
from coachwhip.config import OPTION_BY_ATTR, OPTIONS, Config, ConfigError, Option, parse_text

USAGE_EPILOG = """\
Every flag can also be set with an environment variable COACHWHIP_<FLAG> (upper case, dashes
as underscores, e.g. COACHWHIP_TIMEOUT_KEEP_ALIVE=10), or in a config file (-c FILE, or
[tool.coachwhip] in ./pyproject.toml). A flag wins over a variable, a variable over the file.
The app itself may be given as COACHWHIP_APP. uvicorn's, gunicorn's and granian's flags are
accepted where coachwhip has the same setting (see README.md).

exit status: 0 after a clean shutdown, 1 on an error in the app's import or at run time,
2 for a usage error (bad flag, bad MODULE:ATTRIBUTE), 3 if the app's lifespan startup failed,
130 after a forced exit (a second Ctrl+C)."""

NOTES = "_notes"  # where flags accepted without effect leave their note
CONFIG_FILE = "_config_file"
ENV = "_env"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's default prints the whole usage block; one line says enough.
        self.exit(2, f"coachwhip: error: {message} (see coachwhip --help)\n")


@dataclasses.dataclass
class Parsed:
    """A command line, parsed: settings given as flags, and what is not a setting."""

    settings: dict[str, Any]
    notes: list[str]
    config_file: str | None
    env: list[str]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coachwhip",
        usage="coachwhip [OPTIONS] MODULE:ATTRIBUTE",
        description="Serve an ASGI or WSGI application with coachwhip's C++ engine.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so that only flags actually given override env
        allow_abbrev=False,  # --worker is a typo, not --workers
    )
    parser.add_argument("app", nargs="?", metavar="MODULE:ATTRIBUTE", help="the app, e.g. main:app")
    for opt in OPTIONS:
        _add_option(parser, opt, (f"--{opt.name}",))
    parser.add_argument(
        "-c",
        "--config",
        dest=CONFIG_FILE,
        metavar="FILE",
        help="Read settings from this TOML file (keys: the long flags); without it, "
        "[tool.coachwhip] in ./pyproject.toml is read [env: COACHWHIP_CONFIG]",
    )
    parser.add_argument(
        "-e",
        "--env",
        dest=ENV,
        action="append",
        metavar="KEY=VALUE",
        help="Set an environment variable (repeatable; gunicorn's flag)",
    )
    for foreign in compat.FOREIGN:
        if foreign.flags:
            _add_foreign(parser, foreign)
    parser.add_argument(
        "-v",
        "--version",
        action="version",
        version=f"coachwhip {__version__} (Python {sys.version.split()[0]})",
    )
    return parser


def _add_option(
    parser: argparse.ArgumentParser, opt: Option, flags: tuple[str, ...], hidden: bool = False
) -> None:
    env = f" [env: {opt.env}]"
    default = f" (default: {opt.default})" if opt.default not in (None, "") else ""
    if opt.kind == "bool" and not opt.valued:
        parser.add_argument(
            *flags,
            dest=opt.attr,
            action=argparse.BooleanOptionalAction,
            help=argparse.SUPPRESS if hidden else opt.help + default + env,
        )
        return
    if opt.kind == "list":
        parser.add_argument(
            *flags,
            dest=opt.attr,
            action="append",
            metavar=opt.metavar,
            help=argparse.SUPPRESS if hidden else opt.help + env,
        )
        return
    parser.add_argument(
        *flags,
        dest=opt.attr,
        metavar=opt.metavar or "{" + ",".join(opt.choices) + "}",
        type=lambda raw, opt=opt, flag=flags[0]: _typed(opt, flag, raw),
        help=argparse.SUPPRESS if hidden else opt.help + default + env,
    )


def _typed(opt: Option, flag: str, raw: str) -> Any:
    try:
        return parse_text(opt, raw, f"{flag} {raw!r}")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _ForeignAction(argparse.Action):
    """A flag of another server with no coachwhip setting: refused, or noted."""

    def __init__(self, *args: Any, foreign: compat.Foreign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.foreign = foreign

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        flag = option_string or self.option_strings[0]
        foreign = self.foreign
        try:
            if foreign.refuse:
                raise ConfigError(f"{flag}: {foreign.refuse}")
            note = foreign.check(flag, values) if foreign.check else foreign.note
        except ConfigError as exc:
            parser.exit(2, f"coachwhip: error: {exc}\n")
        if note:
            notes = getattr(namespace, NOTES, [])
            setattr(namespace, NOTES, [*notes, note.replace(foreign.flags[0], flag, 1)])


def _add_foreign(parser: argparse.ArgumentParser, foreign: compat.Foreign) -> None:
    if foreign.target and foreign.const is None:
        _add_option(parser, OPTION_BY_ATTR[foreign.target], foreign.flags, hidden=True)
    elif foreign.target:
        parser.add_argument(
            *foreign.flags,
            dest=foreign.target,
            action="store_const",
            const=foreign.const,
            help=argparse.SUPPRESS,
        )
    else:
        parser.add_argument(
            *foreign.flags,
            dest=NOTES,
            action=_ForeignAction,
            foreign=foreign,
            nargs=None if foreign.value else 0,
            help=argparse.SUPPRESS,
        )


def _bare_ws(args: list[str]) -> list[str]:
    """granian's `--ws` takes no value (uvicorn's does): a bare --ws means --ws auto."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ws":
            following = out[i + 1] if i + 1 < len(out) else None
            if following is None or following.startswith("-") or ":" in following:
                out[i] = "--ws=auto"
    return out


def _unknown(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """The message for what argparse could not place: the flag (never its value)."""
    flag = next((e for e in extras if e.startswith("-") and e != "-"), None)
    if flag is None:
        return f"unexpected argument {extras[0]!r}: give one MODULE:ATTRIBUTE"
    name = flag.split("=", 1)[0]
    known = [s for action in parser._actions for s in action.option_strings]
    wanted = "--" + name.lstrip("-").replace("_", "-") if name.startswith("--") else name
    if wanted in known and wanted != name:
        return f"unknown flag {name}; did you mean {wanted}?"
    longs = [s for s in known if s.startswith("--")]
    close = difflib.get_close_matches(wanted, longs, n=1, cutoff=0.8)
    return f"unknown flag {name}" + (f"; did you mean {close[0]}?" if close else "")


def parse(argv: Sequence[str] | None = None, where: str = "") -> Parsed:
    """Parses a command line (sys.argv[1:] by default); a usage error exits with status 2, or,
    for flags that came from somewhere else (`where`, e.g. a variable), is a ConfigError that
    names it."""
    parser = build_parser()
    if where:

        def refuse(status: int = 0, message: str | None = None) -> NoReturn:
            text = (message or "").strip().removeprefix("coachwhip: error: ")
            if text.startswith("argument ") and ": " in text:  # argparse's "argument --port: "
                text = text.split(": ", 1)[1]
            raise ConfigError(f"{where}: {text.removesuffix(' (see coachwhip --help)')}")

        parser.exit = refuse  # type: ignore[method-assign]
    args = _bare_ws(list(sys.argv[1:] if argv is None else argv))
    namespace, extras = parser.parse_known_args(args)
    if extras:
        parser.error(_unknown(parser, extras))
    values = vars(namespace)
    return Parsed(
        settings={k: v for k, v in values.items() if not k.startswith("_")},
        notes=values.get(NOTES, []),
        config_file=values.get(CONFIG_FILE),
        env=values.get(ENV, []),
    )


def load_config(
    argv: Sequence[str] | None = None,
    environ: MutableMapping[str, str] | None = None,
    directory: str | None = None,
) -> Config:
    """The Config a command line gives: flags > environment > config file > defaults.
    `directory` is where ./pyproject.toml and a gunicorn.conf.py are looked for."""
    parsed = parse(argv)
    environ = os.environ if environ is None else environ
    gunicorn_args = environ.get("GUNICORN_CMD_ARGS")
    if gunicorn_args:  # gunicorn's: flags that rank below the command line's own
        lower = parse(shlex.split(gunicorn_args))
        parsed = Parsed(
            settings={**lower.settings, **parsed.settings},
            notes=[*lower.notes, *parsed.notes, "Flags read from GUNICORN_CMD_ARGS"],
            config_file=parsed.config_file or lower.config_file,
            env=[*lower.env, *parsed.env],
        )
    from_granian: dict[str, Any] = {}
    for variable in granianenv.variables(environ):
        found = parse(variable.argv, where=f"{variable.name}={variable.raw!r}")
        from_granian.update(found.settings)
        parsed.notes.extend(note + f" (from {variable.name})" for note in found.notes)
    for item in parsed.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"-e {item!r}: expected KEY=VALUE")
        environ[key] = value
    return sources.load(
        parsed.settings,
        environ=environ,
        config_file=parsed.config_file or environ.get("COACHWHIP_CONFIG") or None,
        project_dir=os.getcwd() if directory is None else directory,
        notes=parsed.notes,
        environment=from_granian,
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from coachwhip.importer import print_user_traceback
    from coachwhip.server import StartupError, run

    try:
        config = load_config(argv)
        if not config.app:
            raise ConfigError("no app given: coachwhip [OPTIONS] MODULE:ATTRIBUTE (e.g. main:app)")
        status = run(config=config)
    except ConfigError as exc:
        sys.stderr.write(f"coachwhip: error: {exc}\n")
        sys.exit(2)
    except StartupError as exc:
        sys.stderr.write(f"coachwhip: {exc}\n")
        sys.exit(3)
    except Exception as exc:  # the app's own error, at import: its frames, not coachwhip's
        print_user_traceback(exc)
        sys.exit(1)
    sys.exit(status)
