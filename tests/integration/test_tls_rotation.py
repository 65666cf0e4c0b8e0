"""TLS with several workers (README "TLS"): certificate rotation by SIGHUP under load with zero
failed requests, and session resumption on whichever worker takes the next connection, also
across a rolling restart (the ticket keys come from a secret the supervisor hands every worker).
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Serve
from harness import ServerProcess, poll
from tlscerts import (
    TLS_APP,
    Certs,
    Leaf,
    client_context,
    fetch,
    wait_https,
)

pytestmark = pytest.mark.timeout(120)


def count(server: ServerProcess, text: str, since: int = 0) -> int:
    return sum(1 for line in server.lines[since:] if text in line)


def rolled(server: ServerProcess, workers: int, since: int) -> bool:
    return count(server, "exited (status 0)", since) >= workers


@dataclass
class TlsLoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    certs_seen: dict[bytes, int] = field(default_factory=dict)


class TlsLoad:
    """Threads that each make new TLS connections (one verified GET /hello each) until stopped.
    Every failure counts: a new connection has no excuse to fail."""

    def __init__(self, server: ServerProcess, ctx: ssl.SSLContext, threads: int = 3) -> None:
        self.server, self.ctx = server, ctx
        self.result = TlsLoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> TlsLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> TlsLoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)
        return self.result

    def wait_for(self, requests: int, timeout: float = 20.0) -> None:
        poll(lambda: self.result.ok >= requests, timeout, what=f"{requests} requests done")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = fetch(self.server, "/hello", self.ctx, timeout=10)
                problem = None if answer.status == 200 else f"status {answer.status}"
            except (OSError, AssertionError) as exc:
                answer, problem = None, repr(exc)
            with self._lock:
                if problem is not None or answer is None:
                    self.result.failures.append(problem or "no answer")
                    continue
                self.result.ok += 1
                der = answer.peer_der or b""
                self.result.certs_seen[der] = self.result.certs_seen.get(der, 0) + 1


def install(leaf: Leaf, cert: Path, key: Path) -> None:
    """Replaces the served files with `leaf`'s, each atomically (rename over the old one)."""
    for source, target in ((leaf.chain, cert), (leaf.key, key)):
        staged = target.with_suffix(".new")
        shutil.copy(source, staged)
        os.replace(staged, target)


def test_sighup_rotates_the_certificate_under_load_without_failures(
    serve: Serve, certs: Certs, tmp_path: Path
):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(certs.ecdsa, cert, key)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--workers", "2")
    server = wait_https(serve(TLS_APP, *args, "--no-access-log", ready=None))
    ctx = client_context(certs)
    # three rotations: to another ECDSA certificate, to an RSA one, and back to the first
    rounds = [
        (certs.rotated, r"TLS certificate.*CN=rotated\.localhost.*ECDSA"),
        (certs.rsa, r"TLS certificate.*CN=localhost.*RSA"),
        (certs.ecdsa, r"TLS certificate.*CN=localhost.*ECDSA"),
    ]
    with TlsLoad(server, ctx) as load:
        load.wait_for(50)
        for leaf, logged in rounds:
            install(leaf, cert, key)
            mark = server.mark()
            server.send_signal(signal.SIGHUP)
            poll(lambda m=mark: rolled(server, 2, m), 40, what="both workers replaced")
            # the log names what is now served, and every new connection gets it
            assert server.find_line(logged, mark), server.output_unlocked()
            for _ in range(5):
                assert fetch(server, "/hello", ctx).peer_der == leaf.der
            load.wait_for(load.result.ok + 50)
        result = load.stop()
    summary = f"{result.ok} ok, {len(result.failures)} failed"
    assert not result.failures, f"{summary}: {result.failures[:5]}"
    assert set(result.certs_seen) == {certs.ecdsa.der, certs.rotated.der, certs.rsa.der}, summary


def test_sighup_with_a_broken_new_key_keeps_serving_the_old_certificate(
    serve: Serve, certs: Certs, tmp_path: Path
):
    # README (Workers): a rolling restart whose new worker fails keeps the old workers serving
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(certs.ecdsa, cert, key)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--workers", "2")
    server = wait_https(serve(TLS_APP, *args, "--no-access-log", ready=None))
    ctx = client_context(certs)
    with TlsLoad(server, ctx, threads=2) as load:
        load.wait_for(20)
        shutil.copy(certs.rotated.chain, cert)  # a new certificate, but the old key: no match
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        error = server.wait_for_line(r"(?i)error|fail", timeout=20, since=mark)
        assert "key.pem" in error.string and "match" in error.string, error.string
        load.wait_for(load.result.ok + 100)
        assert set(load.result.certs_seen) == {certs.ecdsa.der}
        # once the files are right, the next SIGHUP rotates
        install(certs.rotated, cert, key)
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        poll(lambda: rolled(server, 2, mark), 40, what="both workers replaced")
        assert fetch(server, "/hello", ctx).peer_der == certs.rotated.der
        load.wait_for(load.result.ok + 50)
        result = load.stop()
    assert not result.failures, result.failures[:5]
    assert server.running()


# --- session resumption across workers --------------------------------------------------------


def pid_of(answer_headers: list[tuple[str, str]]) -> str:
    return next(value for name, value in answer_headers if name == "x-pid")


@pytest.mark.parametrize("sockets", [(), ("--reuse-port",)], ids=["shared-socket", "reuse-port"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_session_resumes_on_every_worker(
    serve: Serve, certs: Certs, version: str, sockets: tuple[str, ...]
):
    server = wait_https(serve(TLS_APP, *certs.ecdsa.args, "--workers", "2", *sockets, ready=None))
    ctx = client_context(certs, version=version)
    first = fetch(server, "/hello", ctx)
    assert first.session is not None
    pids = {pid_of(first.response.headers)}
    made = 0
    deadline = time.monotonic() + 30
    while made < 20 or len(pids) < 2:
        assert time.monotonic() < deadline, f"{made} connections, workers seen: {pids}"
        answer = fetch(server, "/hello", ctx, session=first.session)
        made += 1
        pid = pid_of(answer.response.headers)
        assert answer.session_reused, f"connection {made} (worker {pid}) did not resume"
        pids.add(pid)
    assert len(pids) == 2


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_session_resumes_across_a_rolling_restart(serve: Serve, certs: Certs, version: str):
    server = wait_https(serve(TLS_APP, *certs.ecdsa.args, "--workers", "2", ready=None))
    ctx = client_context(certs, version=version)
    first = fetch(server, "/hello", ctx)
    old_pids = {pid_of(first.response.headers)}
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    poll(lambda: rolled(server, 2, mark), 40, what="both workers replaced")
    for i in range(10):
        answer = fetch(server, "/hello", ctx, session=first.session)
        assert pid_of(answer.response.headers) not in old_pids
        assert answer.session_reused, f"connection {i} after SIGHUP did not resume"


# --- a single process reloads in place ----------------------------------------------------------


def test_single_process_sighup_reloads_the_certificate_in_place(
    serve: Serve, certs: Certs, tmp_path: Path
):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(certs.ecdsa, cert, key)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--no-access-log")
    server = wait_https(serve(TLS_APP, *args, ready=None))
    ctx = client_context(certs)
    first = fetch(server, "/hello", ctx)
    pid = first.response.header("x-pid")
    with TlsLoad(server, ctx, threads=2) as load:
        load.wait_for(20)
        # a broken pair first: logged, and the old certificate stays
        shutil.copy(certs.rotated.chain, cert)
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        error = server.wait_for_line(r"SIGHUP ignored", timeout=20, since=mark)
        assert "key.pem" in error.string and "match" in error.string, error.string
        assert fetch(server, "/hello", ctx).peer_der == certs.ecdsa.der
        install(certs.rotated, cert, key)
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"TLS certificate.*CN=rotated\.localhost", timeout=20, since=mark)
        assert fetch(server, "/hello", ctx).peer_der == certs.rotated.der
        # (a resumed session shows the certificate of the session, not the one now served)
        after = fetch(server, "/hello", ctx, session=first.session)
        assert after.session_reused, "the ticket secret survives a reload"
        load.wait_for(load.result.ok + 50)
        result = load.stop()
    assert not result.failures, result.failures[:5]
    assert after.response.header("x-pid") == pid  # the same process throughout
    assert server.running()
