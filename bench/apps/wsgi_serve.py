"""Starts the WSGI servers that have no command line of their own fit for the bench (bjoern has
none; fastwsgi's cannot set the listen backlog), one process, one thread:

    python -m apps.wsgi_serve bjoern|fastwsgi MODULE:ATTRIBUTE --port N [--host H] [--backlog B]

Run from bench/ (the runner does), so that `apps.*` imports. Prints one line once it listens."""

from __future__ import annotations

import argparse
import importlib
from typing import Any


def load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module)
    for name in attribute.split("."):
        found = getattr(found, name)
    return found


def serve_bjoern(app: Any, host: str, port: int, backlog: int) -> None:
    import bjoern

    bjoern.listen(app, host, port, listen_backlog=backlog)
    print(f"bjoern listening on http://{host}:{port}", flush=True)
    try:
        bjoern.run()
    except KeyboardInterrupt:  # the runner stops servers with SIGINT
        pass


def serve_fastwsgi(app: Any, host: str, port: int, backlog: int) -> None:
    import fastwsgi

    server = fastwsgi.server
    server.backlog = backlog
    server.init(app, host, port)
    print(f"fastwsgi listening on http://{host}:{port}", flush=True)
    server.run()


SERVERS = {"bjoern": serve_bjoern, "fastwsgi": serve_fastwsgi}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m apps.wsgi_serve")
    p.add_argument("server", choices=sorted(SERVERS))
    p.add_argument("app", help="MODULE:ATTRIBUTE")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=2048)
    args = p.parse_args()
    SERVERS[args.server](load(args.app), args.host, args.port, args.backlog)


if __name__ == "__main__":
    main()
