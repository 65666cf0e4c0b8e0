"""Entry point of a worker process started by the supervisor (coachwhip.supervisor).

    python -m coachwhip._worker      (never by hand)

The supervisor passes the settings as JSON in COACHWHIP_WORKER_CONFIG, the listening socket as
an inherited fd (Config.fd), and the write end of a pipe in COACHWHIP_WORKER_PIPE on which this
process reports one line per event:

    READY                the app started and the socket is being served
    BEAT <requests>      heartbeat from the event loop, with requests served so far
    RETIRE <reason>      this worker wants to be replaced (e.g. --max-requests reached)
    FAIL <reason>        startup failed; the process exits right after
"""

from __future__ import annotations

import json
import os
import sys

from coachwhip.config import Config, ConfigError


class SupervisorLink:
    """The worker's end of the pipe to the supervisor. Writes never raise (the supervisor may
    be gone, e.g. after SIGKILL): a worker without a supervisor still finishes its requests."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, line: str) -> None:
        data = (line.replace("\n", " ") + "\n").encode("utf-8", "replace")
        try:
            os.write(self.fd, data)
        except OSError:
            pass


def main() -> None:
    link = SupervisorLink(int(os.environ["COACHWHIP_WORKER_PIPE"]))
    try:
        config = Config(**json.loads(os.environ["COACHWHIP_WORKER_CONFIG"]))
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        link.send(f"FAIL bad worker settings: {exc}")
        sys.exit(2)
    from coachwhip.importer import print_user_traceback
    from coachwhip.server import StartupError, run

    try:
        status = run(config=config, supervisor=link)
    except ConfigError as exc:
        link.send(f"FAIL {exc}")
        sys.stderr.write(f"coachwhip: error: {exc}\n")
        sys.exit(2)
    except StartupError as exc:
        link.send(f"FAIL {exc}")
        sys.stderr.write(f"coachwhip: {exc}\n")
        sys.exit(3)
    except Exception as exc:
        print_user_traceback(exc)
        link.send(f"FAIL {type(exc).__name__}: {exc}")
        sys.exit(1)
    sys.exit(status)


if __name__ == "__main__":
    main()
