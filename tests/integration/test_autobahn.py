"""The Autobahn|Testsuite against coachwhip: all 517 cases in one kosoku run (fuzzingclient
mode, autobahn.py) on the echo app (apps/ws_echo.py), permessage-deflate on as by default (so
12.* and 13.* run instead of ending UNIMPLEMENTED).

Every case must pass: behavior and close behaviour OK, NON-STRICT or INFORMATIONAL. The cases
allowed to do otherwise are listed in ALLOWED with the reason. A failure names each failing
case with its description, kosoku's verdict and what the server sent.

Keepalive pings are off (--ws-ping-interval 0): an Autobahn case takes any ping it did not ask
for as an event and ends there, so every case longer than the ping interval (20 s by default;
the longest here, 12.5.15, takes 15 s on a busy 2-core machine) would fail for the harness's
sake, not the server's.

Reference runs of the same app on this 2-core machine (kosoku 0.1.0, other jobs running):
- coachwhip, -p 2: 504-507 OK, 7-10 NON-STRICT, 3 INFORMATIONAL, 0 FAILED in 216-223 s.
- hypercorn 0.18 (wsproto), -p 2: 505 OK, 9 NON-STRICT, 3 INFORMATIONAL, 0 FAILED in 416 s.
- uvicorn 0.54 --ws websockets, -p 1: 501 OK, 9 NON-STRICT, 3 INFORMATIONAL, 4 FAILED
  (9.3.1, 9.3.2, 9.4.1, 9.4.2: 4 MiB in 64- or 256-byte fragments, closed 1009 "too many
  fragments") in 353 s.
The time goes to 12.* and 13.* (permessage-deflate, 1,000 messages a case): 9.* takes 4-6 s in
all. The NON-STRICT cases (3.2-3.4, 4.1.3-4.1.5, 4.2.3-4.2.5, 5.15) vary with timing: the bad
frame arrives with the good message before it, and the connection is failed before its echo.
Rerun by hand against any server with `python tests/integration/autobahn.py --port N`.
"""

from __future__ import annotations

import os
from pathlib import Path

import autobahn
import pytest
from conftest import Serve

PARALLELISM = 2  # cases at once: the server and kosoku share the 2 cores
# Under scripts/test-sanitizers the server runs with ASan+UBSan, several times slower. There the
# bulk permessage-deflate cases (12.2-12.5, 13.2-13.7: the same 18 message sizes 1,000 times each
# per parameter set, nearly all of the run's time) are left out, so that CI stays within its
# time: 12.1.* and 13.1.* still take compression through every message size under the
# sanitizers, and the full 517 run in the plain pass.
SANITIZED = bool(os.environ.get("COACHWHIP_TEST_SERVER_PRELOAD"))
BULK_DEFLATE = tuple(f"12.{g}.*" for g in range(2, 6)) + tuple(f"13.{g}.*" for g in range(2, 8))
EXCLUDED = BULK_DEFLATE if SANITIZED else ()
EXPECTED_CASES = autobahn.SUITE_SIZE - 18 * len(EXCLUDED)
KOSOKU_TIMEOUT_S = 720.0 if SANITIZED else 480.0
pytestmark = pytest.mark.timeout(KOSOKU_TIMEOUT_S + 60)

# Case id -> why it may end other than OK / NON-STRICT / INFORMATIONAL.
ALLOWED: dict[str, str] = {}


def test_all_autobahn_cases_pass(serve: Serve, tmp_path: Path) -> None:
    server = serve("apps.ws_echo:app", "--ws-ping-interval", "0")
    result = autobahn.run(
        server.host,
        server.port,
        tmp_path / "autobahn",
        parallelism=PARALLELISM,
        timeout=KOSOKU_TIMEOUT_S,
        exclude=EXCLUDED,
    )
    print(result.summary())
    failing = [case for case in result.not_passed() if case.case_id not in ALLOWED]
    assert not failing, (
        f"{len(failing)} Autobahn case(s) failed: {', '.join(c.case_id for c in failing)}\n\n"
        + "\n".join(case.explain() for case in failing)
        + f"\n\n{result.summary()}\nreport: {result.report_dir / 'index.html'}"
    )
    assert len(result.cases) == EXPECTED_CASES, result.summary()
    assert server.running(), "the server exited during the run"
    errors = [line for line in server.lines if line.startswith("ERROR") or "Traceback" in line]
    assert not errors, "the server logged errors during the run:\n" + "\n".join(errors)
