"""The hostile-input corpus (tests/corpus/malformed.txt) against the live server, raw sockets.

Every case is sent on its own connection to one shared server started with the corpus's "@"
settings. The server must answer exactly the statuses the corpus lists (the last one for the bad
request, each with `connection: close`), then close the connection (FIN) without sending
anything more, and keep serving everyone else. The same file drives tests/cpp/test_corpus.cpp;
its format is described at its top.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import IncompleteResponse, RawConnection, RawResponse, ServerProcess, request

CORPUS_FILE = Path(__file__).resolve().parents[1] / "corpus" / "malformed.txt"
SERVE_EVERY = 20  # check that an ordinary client is served promptly after this many cases
PROMPT_S = 0.5
CLOSE_WITHIN_S = 3.0  # after its last answer the server closes; lingering is not waiting
PACE_S = 0.005  # between the first byte and the rest of a split case (pacing, not a readiness wait)
SPLIT_MAX = 64 * 1024  # cases up to this size are also sent split after their first byte


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    expect: tuple[int, ...]
    apps: int
    eof: bool
    wait: bool
    data: bytes


class CorpusError(ValueError):
    pass


ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "s": b" ", "\\": b"\\", "}": b"}"}


def unescape(text: str, start: int = 0, nested: bool = False) -> tuple[bytes, int]:
    """Decode an escaped piece from `start`; inside \\*N{...} stop after its closing brace.

    Returns the bytes and the index after the last character used.
    """
    out = bytearray()
    i = start
    while i < len(text):
        char = text[i]
        i += 1
        if char == "}" and nested:
            return bytes(out), i
        if char != "\\":
            out += char.encode("latin-1")
            continue
        if i == len(text):
            raise CorpusError("a lone backslash at the end of a piece")
        escape = text[i]
        i += 1
        if escape in ESCAPES:
            out += ESCAPES[escape]
        elif escape == "x":
            digits = text[i : i + 2]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise CorpusError("\\x needs two hex digits")
            out.append(int(digits, 16))
            i += 2
        elif escape == "*":
            match = re.compile(r"(\d{1,9})\{").match(text, i)
            if not match:
                raise CorpusError("\\* needs N{text}")
            unit, i = unescape(text, match.end(), nested=True)
            out += unit * int(match.group(1))
        else:
            raise CorpusError(f"unknown escape \\{escape}")
    if nested:
        raise CorpusError("\\*N{ without its closing }")
    return bytes(out), i


@dataclass
class CaseBuilder:
    name: str
    line: int
    expect: str = ""
    apps: int | None = None
    eof: bool = False
    wait: bool = False
    data: bytearray = field(default_factory=bytearray)

    def build(self) -> Case:
        expect = tuple(int(s) for s in self.expect.split())
        if not expect or not self.data:
            raise CorpusError(f"{self.name}: needs an expect line and bytes")
        apps = self.apps if self.apps is not None else sum(s // 100 == 2 for s in expect)
        return Case(self.name, self.line, expect, apps, self.eof, self.wait, bytes(self.data))


def load_corpus(path: Path) -> tuple[dict[str, str], list[Case]]:
    """The "@" settings and the cases of the corpus file (its format is described at its top).

    Read as latin-1, so every character of the file is one byte, as in the C++ reader.
    """
    settings: dict[str, str] = {}
    builders: list[CaseBuilder] = []
    for number, line in enumerate(path.read_text("latin-1").split("\n"), 1):
        where = f"{path.name}:{number}"
        if not line or line.startswith("#"):
            continue
        if line[-1] in " \t\r":
            raise CorpusError(f"{where}: ends in whitespace")
        current = builders[-1] if builders else None
        if line.startswith("@"):
            if current is not None:
                raise CorpusError(f"{where}: settings come before the first case")
            name, _, value = line[1:].partition(" ")
            settings[name] = value
        elif line.startswith("= "):
            if not re.fullmatch(r"[a-z0-9-]+", line[2:]):
                raise CorpusError(f"{where}: bad case name")
            builders.append(CaseBuilder(line[2:], number))
        elif current is None:
            raise CorpusError(f"{where}: a case line before the first '= name'")
        elif line.startswith("> "):
            try:
                current.data += unescape(line, 2)[0]
            except CorpusError as exc:
                raise CorpusError(f"{where}: {exc}") from None
        elif line.startswith("expect "):
            current.expect = line[7:]
        elif line.startswith("apps "):
            current.apps = int(line[5:])
        elif line == "eof":
            current.eof = True
        elif line == "wait":
            current.wait = True
        else:
            raise CorpusError(f"{where}: unknown line {line[:40]!r}")
    cases = [b.build() for b in builders]
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CorpusError(f"duplicate cases: {duplicates}")
    return settings, cases


SETTINGS, CASES = load_corpus(CORPUS_FILE)


@pytest.fixture(scope="module")
def corpus_server() -> Iterator[ServerProcess]:
    args = [part for name, value in SETTINGS.items() for part in (f"--{name}", value)]
    server = ServerProcess("apps.raw:app", *args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


def deadline_s(case: Case) -> float:
    """How long the server may take to answer and close: its own deadline if the case waits."""
    if not case.wait:
        return CLOSE_WITHIN_S
    timeouts = [float(SETTINGS[k]) for k in ("timeout-request-header", "timeout-request-body")]
    return max(timeouts) + CLOSE_WITHIN_S


def play(
    server: ServerProcess, case: Case, split: bool = False
) -> tuple[list[RawResponse], RawConnection]:
    """Send the case's bytes, then read responses until the server closes (or the deadline).

    `split`: the first byte goes alone, so the server reads the rest as a second segment.
    """
    conn = RawConnection(server.host, server.port, timeout=deadline_s(case))
    try:
        if split:
            conn.send(case.data[:1])
            time.sleep(PACE_S)
            conn.send(case.data[1:])
        else:
            conn.send(case.data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early and closed; what it sent is still readable
    if case.eof:
        conn.sock.shutdown(socket.SHUT_WR)
    responses: list[RawResponse] = []
    deadline = time.monotonic() + deadline_s(case)
    while True:
        remaining = deadline - time.monotonic()
        try:
            responses.append(conn.read_response(timeout=max(0.01, remaining)))
        except IncompleteResponse as exc:
            assert exc.partial == b"", f"{case.name}: a truncated response {exc.partial[:200]!r}"
            return responses, conn
        except TimeoutError:
            got = [r.status for r in responses]
            raise AssertionError(
                f"{case.name} (malformed.txt:{case.line}): after responses {got} the server "
                f"neither answered nor closed within {deadline_s(case)} s; expected "
                f"{list(case.expect)}"
            ) from None


def get_ok_promptly(server: ServerProcess) -> float:
    start = time.monotonic()
    with RawConnection(server.host, server.port, timeout=5) as conn:
        conn.send(request("GET", "/ok"))
        response = conn.read_response()
    elapsed = time.monotonic() - start
    assert (response.status, response.body) == (200, b"ok")
    assert elapsed < PROMPT_S, f"GET /ok took {elapsed:.3f} s"
    return elapsed


def check_case(server: ServerProcess, case: Case, split: bool) -> None:
    responses, conn = play(server, case, split)
    conn.close()
    statuses = [r.status for r in responses]
    how = "split after the first byte" if split else "sent whole"
    assert statuses == list(case.expect), (
        f"{case.name} (malformed.txt:{case.line}), {how}: got {statuses}, expected "
        f"{list(case.expect)}; received {bytes(conn.received)[:300]!r}"
    )
    last = responses[-1]
    assert last.header("connection") == "close", f"{case.name}: last response {last.raw[:300]!r}"
    assert server.running(), server.output
    if CASES.index(case) % SERVE_EVERY == 0:
        get_ok_promptly(server)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(corpus_server: ServerProcess, case: Case) -> None:
    check_case(corpus_server, case, split=False)


# The cases that wait for a deadline take a second each; the in-memory test splits those.
SPLIT_CASES = [c for c in CASES if 1 < len(c.data) <= SPLIT_MAX and not c.wait]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=[c.name for c in SPLIT_CASES])
def test_corpus_case_split_after_first_byte(corpus_server: ServerProcess, case: Case) -> None:
    check_case(corpus_server, case, split=True)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 150
    assert {"limit-request-body", "limit-request-line"} <= set(SETTINGS)


def test_escapes_decode() -> None:
    assert unescape(r"a\r\n\t\0\s\\\x41\xff")[0] == b"a\r\n\t\0 \\A\xff"
    assert unescape(r"\*3{ab}c")[0] == b"abababc"
    assert unescape(r"\*2{x\}\*2{y}}{}")[0] == b"x}yyx}yy{}"
    for bad in (r"\q", r"\*3{ab", r"\x4"):
        with pytest.raises(CorpusError):
            unescape(bad)


def test_server_keeps_serving_after_the_corpus(corpus_server: ServerProcess) -> None:
    """Runs after every case (file order): the server is up, prompt, and logged no crash."""
    assert corpus_server.running(), corpus_server.output
    for _ in range(5):
        get_ok_promptly(corpus_server)
    assert "Traceback" not in corpus_server.output, corpus_server.output[-3000:]
