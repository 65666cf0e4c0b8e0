"""A TLS scanner against the live server: sslyze (6.x, in .venv) checks what a client could
negotiate and the classic vulnerabilities. Expected (README "TLS"): no SSL 2/3, TLS 1.0 or 1.1;
every TLS 1.2 suite ECDHE with an AEAD cipher; no compression; no client-initiated
renegotiation; nothing found by the Heartbleed, ROBOT and CCS-injection probes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Serve
from tlscerts import Certs, serve_tls

pytestmark = pytest.mark.timeout(150)

SCANS = [
    "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
    "--compression", "--reneg", "--heartbleed", "--robot", "--openssl_ccs", "--fallback",
]  # fmt: skip


def sslyze(port: int, out: Path) -> dict[str, Any]:
    """Runs the sslyze CLI against localhost:port (on 127.0.0.1), returns the scan results."""
    argv = [sys.executable, "-m", "sslyze", *SCANS, "--quiet", "--json_out", str(out)]
    done = subprocess.run(
        [*argv, f"localhost:{port}{{127.0.0.1}}"], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]
    report = json.loads(out.read_text())
    (target,) = report["server_scan_results"]
    assert target["scan_status"] == "COMPLETED", target
    assert target["connectivity_status"] == "COMPLETED", target.get("connectivity_error_trace")
    results: dict[str, Any] = {}
    for name, attempt in target["scan_result"].items():
        if attempt["status"] == "NOT_SCHEDULED":
            continue
        assert attempt["status"] == "COMPLETED", (name, attempt.get("error_trace"))
        results[name] = attempt["result"]
    return results


def accepted(results: dict[str, Any], version: str) -> list[str]:
    return [s["cipher_suite"]["name"] for s in results[version]["accepted_cipher_suites"]]


def check_scan(results: dict[str, Any]) -> list[str]:
    """Everything wrong in a scan, as sentences (empty: nothing)."""
    problems = []
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        suites = accepted(results, f"{old}_cipher_suites")
        if suites or results[f"{old}_cipher_suites"]["is_tls_version_supported"]:
            problems.append(f"{old} accepted: {suites}")
    tls12 = accepted(results, "tls_1_2_cipher_suites")
    tls13 = accepted(results, "tls_1_3_cipher_suites")
    if not tls12 or not tls13:
        problems.append(f"TLS 1.2 or 1.3 not negotiated at all: {tls12} {tls13}")
    for suite in tls12:
        aead = "_GCM_" in suite or "CHACHA20_POLY1305" in suite
        if not suite.startswith("TLS_ECDHE_") or not aead:
            problems.append(f"weak TLS 1.2 suite accepted: {suite}")
    if results["tls_compression"]["supports_compression"]:
        problems.append("TLS compression supported")
    reneg = results["session_renegotiation"]
    if reneg["is_vulnerable_to_client_renegotiation_dos"]:
        problems.append(f"client-initiated renegotiation accepted: {reneg}")
    if not reneg["supports_secure_renegotiation"]:
        problems.append("no secure renegotiation indication (RFC 5746)")
    if results["heartbleed"]["is_vulnerable_to_heartbleed"]:
        problems.append("Heartbleed")
    if results["openssl_ccs_injection"]["is_vulnerable_to_ccs_injection"]:
        problems.append("CCS injection")
    robot = results["robot"]["robot_result"]
    if robot not in ("NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED"):
        problems.append(f"ROBOT: {robot}")
    if not results["tls_fallback_scsv"]["supports_fallback_scsv"]:
        problems.append("no TLS_FALLBACK_SCSV")
    return problems


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_sslyze_finds_nothing_weak(serve: Serve, certs: Certs, tmp_path: Path, kind: str):
    server = serve_tls(serve, getattr(certs, kind), "--no-access-log")
    results = sslyze(server.port, tmp_path / "scan.json")
    problems = check_scan(results)
    assert problems == [], "\n".join(problems)
    if kind == "rsa":  # ECDHE only: no RSA key exchange for ROBOT to probe
        assert results["robot"]["robot_result"] == "NOT_VULNERABLE_RSA_NOT_SUPPORTED"
    # the server is still fine after the scanner's hundreds of odd handshakes
    assert server.running()
