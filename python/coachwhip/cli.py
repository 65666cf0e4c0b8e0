"""The `coachwhip` command: flags (and COACHWHIP_* variables) -> Config -> run()."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from coachwhip import __version__
from coachwhip.config import OPTIONS, Config, ConfigError, Option, parse_text

USAGE_EPILOG = """\
Every flag can also be set with an environment variable COACHWHIP_<FLAG> (upper case, dashes
as underscores, e.g. COACHWHIP_TIMEOUT_KEEP_ALIVE=10); a flag on the command line wins.
The app itself may be given as COACHWHIP_APP.

exit status: 0 after a clean shutdown, 1 on an error in the app's import or at run time,
2 for a usage error (bad flag, bad MODULE:ATTRIBUTE), 3 if the app's lifespan startup failed,
130 after a forced exit (a second Ctrl+C)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's default prints the whole usage block; one line says enough.
        self.exit(2, f"coachwhip: error: {message} (see coachwhip --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coachwhip",
        usage="coachwhip [OPTIONS] MODULE:ATTRIBUTE",
        description="Serve an ASGI application with coachwhip's C++ engine.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so that only flags actually given override env
    )
    parser.add_argument(
        "app", nargs="?", metavar="MODULE:ATTRIBUTE", help="the ASGI app, e.g. main:app"
    )
    for opt in OPTIONS:
        _add_option(parser, opt)
    parser.add_argument(
        "--version",
        action="version",
        version=f"coachwhip {__version__} (Python {sys.version.split()[0]})",
    )
    return parser


def _add_option(parser: argparse.ArgumentParser, opt: Option) -> None:
    env = f" [env: {opt.env}]"
    default = f" (default: {opt.default})" if opt.default not in (None, "") else ""
    if opt.kind == "bool" and not opt.valued:
        parser.add_argument(
            f"--{opt.name}",
            dest=opt.attr,
            action=argparse.BooleanOptionalAction,
            help=opt.help + default + env,
        )
        return
    if opt.kind == "list":
        parser.add_argument(
            f"--{opt.name}",
            dest=opt.attr,
            action="append",
            metavar=opt.metavar,
            help=opt.help + env,
        )
        return
    parser.add_argument(
        f"--{opt.name}",
        dest=opt.attr,
        metavar=opt.metavar or "{" + ",".join(opt.choices) + "}",
        type=lambda raw, opt=opt: _typed(opt, raw),
        help=opt.help + default + env,
    )


def _typed(opt: Option, raw: str) -> Any:
    try:
        return parse_text(opt, raw, f"--{opt.name} {raw!r}")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from coachwhip.server import StartupError, run

    args = vars(build_parser().parse_args(argv))
    try:
        config = Config.load(args)
        if not config.app:
            raise ConfigError("no app given: coachwhip [OPTIONS] MODULE:ATTRIBUTE (e.g. main:app)")
        status = run(config=config)
    except ConfigError as exc:
        sys.stderr.write(f"coachwhip: error: {exc}\n")
        sys.exit(2)
    except StartupError as exc:
        sys.stderr.write(f"coachwhip: {exc}\n")
        sys.exit(3)
    sys.exit(status)
