"""TLS in the engine (README "TLS"), with real clients: curl, httpx, `openssl s_client` and
Python's `ssl`. Versions, SNI, ALPN, mutual TLS, the ASGI TLS extension in the scope, RSA and
ECDSA keys, encrypted keys, the full chain, session resumption on one worker, the startup log
line, and every flag mistake (one `coachwhip: error:` line, non-zero exit, nothing served).

Certificates are made at test time (tests/integration/tlscerts.py); clients trust the root CA
only, so verification needs the intermediate that the server sends.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Serve
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from harness import RawConnection, ServerProcess, poll, request, run_cli, run_curl
from tlscerts import (
    PASSWORD,
    TLS_APP,
    Certs,
    Leaf,
    TlsConnection,
    client_context,
    client_hello,
    fetch,
    first_record_type,
    iana_suite,
    outcome,
    serve_tls,
    start_tls_server,
    wait_https,
)

pytestmark = pytest.mark.timeout(60)

ASGI_TLS_KEYS = {
    "server_cert",
    "client_cert_chain",
    "client_cert_name",
    "client_cert_error",
    "tls_version",
    "cipher_suite",
}
TLS_VERSION = {"1.2": 0x0303, "1.3": 0x0304}


@pytest.fixture(scope="module")
def servers(certs: Certs) -> Iterator[dict[str, ServerProcess]]:
    """One ECDSA and one RSA server with default TLS settings, shared by the module."""
    started = {"ecdsa": start_tls_server(certs.ecdsa), "rsa": start_tls_server(certs.rsa)}
    yield started
    for server in started.values():
        server.kill()


def tls_of(answer_body: bytes) -> dict[str, Any]:
    info = json.loads(answer_body)
    assert isinstance(info, dict)
    return info


def curl(server: ServerProcess, certs: Certs, path: str, *args: str, name: str = "localhost"):
    return run_curl(
        "--cacert",
        str(certs.ca),
        "--resolve",
        f"{name}:{server.port}:127.0.0.1",
        *args,
        f"https://{name}:{server.port}{path}",
    )


def s_client(server: ServerProcess, *args: str, data: bytes = b"") -> subprocess.CompletedProcess:
    """`openssl s_client` to the server; `data` is sent and the output read until it closes."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-ign_eof", *args],
        input=data,
        capture_output=True,
        timeout=20,
    )


GET_TLS = request("GET", "/tls", host="localhost", headers=["Connection: close"])


# --- real clients -------------------------------------------------------------------------------


def test_curl_verifies_the_chain_and_gets_https(servers: dict[str, ServerProcess], certs: Certs):
    server = servers["ecdsa"]
    done = curl(server, certs, "/tls", "-w", "\n%{http_code} %{ssl_verify_result}")
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.decode().rpartition("\n")
    assert status == "200 0", done.stdout
    info = tls_of(body.encode())
    assert info["scheme"] == "https"
    assert info["tls"]["server_name"] == "localhost"
    assert info["http_version"] == "2"  # curl offers h2 by ALPN, and --http auto takes it


def test_httpx_keeps_alive_downloads_and_uploads(servers: dict[str, ServerProcess], certs: Certs):
    server = servers["ecdsa"]
    with httpx.Client(verify=client_context(certs), trust_env=False, timeout=20) as client:
        base = f"https://localhost:{server.port}"
        for _ in range(3):
            response = client.get(base + "/tls")
            assert response.status_code == 200
            assert response.json()["scheme"] == "https"
            assert response.http_version == "HTTP/1.1"
        big = client.get(base + "/big?mib=8&id=httpx")
        assert big.status_code == 200
        assert big.content == bytes(range(256)) * (8 * 1024 * 1024 // 256)
        upload = bytes(range(251)) * 20_000  # ~5 MB, not a multiple of any record size
        echoed = client.post(base + "/echo", content=upload).json()
        assert echoed == {"bytes": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}


def test_openssl_s_client_verifies_and_sees_the_whole_chain(
    servers: dict[str, ServerProcess], certs: Certs
):
    server = servers["ecdsa"]
    args = ["-servername", "localhost", "-CAfile", str(certs.ca), "-verify_return_error"]
    done = s_client(server, *args, "-showcerts", "-alpn", "http/1.1", data=GET_TLS)
    out = done.stdout.decode("latin-1")
    err = done.stderr.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out, out + err
    assert "ALPN protocol: http/1.1" in out
    assert "HTTP/1.1 200 " in out
    # The chain as s_client prints it, before the response (whose JSON quotes the leaf again).
    handshake = out.split("HTTP/1.1 200 ")[0]
    sent = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", handshake, re.S)
    pems = [x509.load_pem_x509_certificate(p.encode()) for p in sent]
    assert pems == [certs.ecdsa.cert, certs.intermediate], "leaf then intermediate, no more"
    # s_client exits 1 ("unexpected eof while reading") when the server closes without close_notify
    assert done.returncode == 0, err


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_server_closes_with_close_notify(
    servers: dict[str, ServerProcess], certs: Certs, version: str
):
    """RFC 8446 6.1 / RFC 5246 7.2.1: close_notify before closing the write side."""
    server = servers["ecdsa"]
    ctx = client_context(certs, version=version)
    with TlsConnection(server.host, server.port, ctx, ragged_eofs=False) as conn:
        conn.send(GET_TLS)
        response = conn.read_response()
        assert response.status == 200 and response.header("connection") == "close"
        assert not conn.buf, bytes(conn.buf)
        conn.tls.settimeout(5)
        try:
            rest = conn.tls.recv(65536)  # b"" only after a close_notify
        except (ssl.SSLEOFError, ConnectionResetError) as exc:
            raise AssertionError(f"closed without close_notify: {exc!r}") from None
        assert rest == b""


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_large_response_arrives_whole(
    servers: dict[str, ServerProcess], certs: Certs, version: str, framing: str
):
    mib = 8
    length = "1" if framing == "content-length" else "0"
    ctx = client_context(certs, version=version)
    with TlsConnection(servers["rsa"].host, servers["rsa"].port, ctx, timeout=30) as conn:
        conn.send(
            request(
                "GET",
                f"/big?mib={mib}&length={length}&id=whole-{version}-{framing}",
                host="localhost",
            )
        )
        response = conn.read_response(timeout=30)
    assert response.status == 200
    assert response.chunked == (framing == "chunked")
    assert len(response.body) == mib * 1024 * 1024
    assert response.body == bytes(range(256)) * (mib * 1024 * 1024 // 256)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_python_ssl_negotiates_each_version(
    servers: dict[str, ServerProcess], certs: Certs, version: str
):
    answer = fetch(servers["ecdsa"], "/tls", client_context(certs, version=version))
    assert answer.status == 200
    assert answer.version == f"TLSv{version}"
    assert tls_of(answer.body)["tls"]["tls_version"] == TLS_VERSION[version]


# --- versions -----------------------------------------------------------------------------------


def old_version_context(version: str) -> ssl.SSLContext:
    """A client that offers TLS 1.0 or 1.1 only (it can: the same context talks to servers
    that allow them, such as `openssl s_server -min_protocol TLSv1`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        pinned = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1}[version]
        ctx.minimum_version = ctx.maximum_version = pinned
    return ctx


def raw_hello_answer(server: ServerProcess, version: str) -> bytes:
    """What the server answers a hand-made ClientHello for `version` (up to 5 s, or its close)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(client_hello(version))
        answer = b""
        try:
            while len(answer) < 5:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_tls_1_0_and_1_1_are_refused(servers: dict[str, ServerProcess], certs: Certs, version: str):
    for kind in ("ecdsa", "rsa"):
        server = servers[kind]
        assert first_record_type(raw_hello_answer(server, version)) in ("alert", "none")
        result = outcome(server, "/hello", old_version_context(version))
        assert result.startswith("error"), f"{kind}: TLS {version} was accepted: {result}"
        flag = {"1.0": "-tls1", "1.1": "-tls1_1"}[version]
        done = s_client(server, flag, "-cipher", "DEFAULT:@SECLEVEL=0", data=GET_TLS)
        assert done.returncode != 0 and b"HTTP/1.1" not in done.stdout, done.stdout[-600:]
        # control: the same hand-made ClientHello for 1.2 gets a ServerHello
        assert first_record_type(raw_hello_answer(server, "1.2")) == "handshake"


def test_min_version_1_3_refuses_tls_1_2(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--ssl-min-version", "1.3")
    assert first_record_type(raw_hello_answer(server, "1.2")) in ("alert", "none")
    assert outcome(server, "/hello", client_context(certs, version="1.2")).startswith("error")
    answer = fetch(server, "/tls", client_context(certs, version="1.3"))
    assert answer.version == "TLSv1.3"
    assert first_record_type(raw_hello_answer(server, "1.3")) == "handshake"


# --- cipher suites ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suite", "number"),
    [
        ("ecdsa", "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA9),
        ("ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02B),
        ("rsa", "ECDHE-RSA-AES256-GCM-SHA384", 0xC030),
        ("rsa", "ECDHE-RSA-CHACHA20-POLY1305", 0xCCA8),
    ],
)
def test_cipher_suite_in_scope_is_the_negotiated_one(
    servers: dict[str, ServerProcess], certs: Certs, kind: str, suite: str, number: int
):
    answer = fetch(servers[kind], "/tls", client_context(certs, version="1.2", ciphers=suite))
    assert answer.cipher == suite
    assert tls_of(answer.body)["tls"]["cipher_suite"] == number


def test_server_prefers_its_own_cipher_order(servers: dict[str, ServerProcess], certs: Certs):
    # The client prefers AES-256; the default order puts AES-128 first (Mozilla intermediate).
    offer = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
    answer = fetch(servers["ecdsa"], "/tls", client_context(certs, version="1.2", ciphers=offer))
    assert answer.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    # TLS 1.3 likewise, whatever order Python's client offers its suites in.
    answer = fetch(servers["ecdsa"], "/tls", client_context(certs, version="1.3"))
    assert answer.cipher == "TLS_AES_128_GCM_SHA256"


@pytest.mark.parametrize(
    ("kind", "offer"),
    [
        ("ecdsa", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"),  # CBC
        ("rsa", "AES128-GCM-SHA256:AES256-GCM-SHA384"),  # no forward secrecy
        ("rsa", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"),  # CBC
    ],
)
def test_weak_tls_1_2_suites_are_refused(
    servers: dict[str, ServerProcess], certs: Certs, kind: str, offer: str
):
    ctx = client_context(certs, version="1.2", ciphers=offer + ":@SECLEVEL=0")
    result = outcome(servers[kind], "/hello", ctx)
    assert result.startswith("error"), f"{offer} accepted: {result}"
    assert "No cipher can be selected" not in result, "the client could not even offer it"


def test_ssl_ciphers_flag_limits_tls_1_2_suites(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--ssl-ciphers", "ECDHE+CHACHA20")
    answer = fetch(server, "/tls", client_context(certs, version="1.2"))
    assert answer.cipher == "ECDHE-ECDSA-CHACHA20-POLY1305"
    gcm_only = client_context(certs, version="1.2", ciphers="ECDHE+AESGCM")
    assert outcome(server, "/hello", gcm_only).startswith("error")
    assert fetch(server, "/hello", client_context(certs, version="1.3")).status == 200


# --- SNI ----------------------------------------------------------------------------------------


def test_one_certificate_whatever_the_name(servers: dict[str, ServerProcess], certs: Certs):
    server = servers["ecdsa"]
    # a client that checks the hostname fails for a wrong name...
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(server, "/tls", client_context(certs), server_hostname="wrong.example")
    # ...and succeeds for the right one
    right = fetch(server, "/tls", client_context(certs), server_hostname="localhost")
    assert tls_of(right.body)["tls"]["server_name"] == "localhost"
    # the same certificate is served for the wrong name, and the app sees that name
    loose = client_context(certs, check_hostname=False)
    wrong = fetch(server, "/tls", loose, server_hostname="wrong.example")
    assert wrong.peer_der == right.peer_der == certs.ecdsa.der
    assert tls_of(wrong.body)["tls"]["server_name"] == "wrong.example"


def test_curl_with_a_wrong_name(servers: dict[str, ServerProcess], certs: Certs):
    server = servers["ecdsa"]
    refused = curl(server, certs, "/tls", name="wrong.example")
    assert refused.returncode == 60, (refused.returncode, refused.stderr)  # peer cert mismatch
    insecure = curl(server, certs, "/tls", "-k", name="wrong.example")
    assert insecure.returncode == 0, insecure.stderr
    assert tls_of(insecure.stdout)["tls"]["server_name"] == "wrong.example"


def test_ip_address_verifies_against_the_ip_san_without_sni(
    servers: dict[str, ServerProcess], certs: Certs
):
    answer = fetch(servers["ecdsa"], "/tls", client_context(certs), server_hostname="127.0.0.1")
    assert answer.status == 200
    assert tls_of(answer.body)["tls"].get("server_name") is None  # no SNI for an IP (RFC 6066)


def test_ipv6_loopback(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--host", "::1")
    assert server.host == "::1"
    answer = fetch(server, "/tls", client_context(certs), server_hostname="::1")
    assert tls_of(answer.body)["scheme"] == "https"


# --- ALPN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "selected"),
    [
        (["http/1.1"], "http/1.1"),
        (["spdy/3.1", "http/1.1"], "http/1.1"),
        (None, None),
        (["coachwhip/0"], None),  # neither http/1.1 nor h2: still HTTP/1.1 (README)
    ],
    ids=["http1.1", "spdy-then-http1.1", "no-alpn", "unknown-only"],
)
def test_alpn(
    servers: dict[str, ServerProcess], certs: Certs, offer: list[str] | None, selected: str | None
):
    answer = fetch(servers["ecdsa"], "/tls", client_context(certs, alpn=offer))
    assert answer.alpn == selected
    assert answer.status == 200
    assert tls_of(answer.body)["http_version"] == "1.1"


# --- the ASGI TLS extension ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_scope_holds_the_asgi_tls_extension(
    servers: dict[str, ServerProcess], certs: Certs, kind: str, version: str
):
    leaf: Leaf = getattr(certs, kind)
    answer = fetch(servers[kind], "/tls", client_context(certs, version=version))
    info = tls_of(answer.body)
    assert info["scheme"] == "https"
    assert info["extensions_type"] == "dict"
    tls = info["tls"]
    assert isinstance(tls, dict), info
    assert ASGI_TLS_KEYS <= set(tls) <= ASGI_TLS_KEYS | {"server_name"}, sorted(tls)
    assert info["tls_types"]["server_cert"] == "str"
    assert tls["server_cert"].strip() == leaf.pem.strip()
    assert info["tls_types"]["client_cert_chain"] == "tuple"
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert info["tls_types"]["tls_version"] == "int"
    assert tls["tls_version"] == TLS_VERSION[version]
    assert info["tls_types"]["cipher_suite"] == "int"
    assert tls["cipher_suite"] == iana_suite(answer.cipher), answer.cipher
    assert tls["server_name"] == "localhost"
    # the key type really is what was asked for
    peer = x509.load_der_x509_certificate(answer.peer_der or b"")
    expected_key = ec.EllipticCurvePublicKey if kind == "ecdsa" else rsa.RSAPublicKey
    assert isinstance(peer.public_key(), expected_key)
    if version == "1.2":
        assert answer.cipher.startswith("ECDHE-" + kind.upper() + "-"), answer.cipher


def test_plain_http_server_has_no_tls_extension(serve: Serve):
    server = serve(TLS_APP)
    info = tls_of(httpx.get(server.url + "/tls", trust_env=False).content)
    assert info["scheme"] == "http"
    assert info["tls"] is None


# --- mutual TLS ---------------------------------------------------------------------------------


def mtls_server(serve: Serve, certs: Certs, reqs: str) -> ServerProcess:
    return serve_tls(serve, certs.ecdsa, "--ssl-ca-certs", str(certs.ca), "--ssl-cert-reqs", reqs)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_required_client_certificate(serve: Serve, certs: Certs, version: str):
    server = mtls_server(serve, certs, "2")
    # no certificate, or one from another CA: refused in the handshake (in TLS 1.3 the client
    # learns it from the server's alert when it reads)
    for client in (None, certs.other_client):
        result = outcome(server, "/tls", client_context(certs, version=version, client=client))
        assert result.startswith("error"), f"client cert {client and client.chain}: {result}"
    answer = fetch(server, "/tls", client_context(certs, version=version, client=certs.client))
    info = tls_of(answer.body)
    tls = info["tls"]
    assert info["tls_types"]["client_cert_chain"] == "tuple"
    assert info["chain_item_types"] == ["str"]
    assert tls["client_cert_chain"][0].strip() == certs.client.pem.strip()
    assert x509.Name.from_rfc4514_string(tls["client_cert_name"]) == certs.client.cert.subject
    assert "Alice\\, tester" in tls["client_cert_name"]  # the comma escaped, RFC 4514
    assert tls["client_cert_error"] is None


def test_required_client_certificate_with_curl(serve: Serve, certs: Certs):
    server = mtls_server(serve, certs, "2")
    without = curl(server, certs, "/tls")
    assert without.returncode != 0 and b"scheme" not in without.stdout
    done = curl(
        server, certs, "/tls", "--cert", str(certs.client.chain), "--key", str(certs.client.key)
    )
    assert done.returncode == 0, done.stderr
    assert tls_of(done.stdout)["tls"]["client_cert_error"] is None


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_optional_client_certificate(serve: Serve, certs: Certs, version: str):
    server = mtls_server(serve, certs, "1")
    none = tls_of(fetch(server, "/tls", client_context(certs, version=version)).body)["tls"]
    assert none["client_cert_chain"] == []
    assert none["client_cert_name"] is None
    assert none["client_cert_error"] is None

    good_ctx = client_context(certs, version=version, client=certs.client)
    good = tls_of(fetch(server, "/tls", good_ctx).body)["tls"]
    assert good["client_cert_chain"][0].strip() == certs.client.pem.strip()
    assert good["client_cert_error"] is None

    bad_ctx = client_context(certs, version=version, client=certs.other_client)
    bad = tls_of(fetch(server, "/tls", bad_ctx).body)
    tls = bad["tls"]
    assert bad["tls_types"]["client_cert_error"] == "str" and tls["client_cert_error"], tls
    assert tls["client_cert_chain"][0].strip() == certs.other_client.pem.strip()
    assert x509.Name.from_rfc4514_string(tls["client_cert_name"]) == certs.other_client.cert.subject


def test_no_client_certificate_asked_by_default(servers: dict[str, ServerProcess], certs: Certs):
    ctx = client_context(certs, client=certs.client)
    tls = tls_of(fetch(servers["ecdsa"], "/tls", ctx).body)["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None


# --- keys and certificate files -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "env"])
def test_encrypted_key_with_the_right_password(serve: Serve, certs: Certs, how: str):
    if how == "flag":
        args = ("--ssl-keyfile-password", PASSWORD)
        env = None
    else:
        args = ()
        env = {"COACHWHIP_SSL_KEYFILE_PASSWORD": PASSWORD}
    server = serve(
        TLS_APP,
        "--ssl-certfile",
        str(certs.ecdsa.chain),
        "--ssl-keyfile",
        str(certs.encrypted_key),
        *args,
        env=env,
        ready=None,
    )
    wait_https(server)
    answer = fetch(server, "/tls", client_context(certs))
    assert answer.peer_der == certs.ecdsa.der
    assert PASSWORD not in server.output


def test_certfile_holding_the_key_needs_no_keyfile(serve: Serve, certs: Certs):
    server = wait_https(serve(TLS_APP, "--ssl-certfile", str(certs.combined), ready=None))
    assert fetch(server, "/hello", client_context(certs)).body == b"hello"


def test_certificate_files_from_the_environment(serve: Serve, certs: Certs):
    env = {
        "COACHWHIP_SSL_CERTFILE": str(certs.rsa.chain),
        "COACHWHIP_SSL_KEYFILE": str(certs.rsa.key),
    }
    server = wait_https(serve(TLS_APP, env=env, ready=None))
    assert fetch(server, "/hello", client_context(certs)).peer_der == certs.rsa.der


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_startup_log_names_the_certificate(
    servers: dict[str, ServerProcess], certs: Certs, kind: str
):
    server = servers[kind]
    assert server.scheme == "https", server.output  # type: ignore[attr-defined]
    match = server.find_line(r"TLS certificate")
    assert match, server.output
    line = match.string
    leaf: Leaf = getattr(certs, kind)
    expiry = leaf.cert.not_valid_after_utc.strftime("%Y-%m-%d")
    for needle in ("CN=localhost", "DNS:localhost", "127.0.0.1", expiry, kind.upper()):
        assert needle in line, f"{needle!r} not in {line!r}"


@pytest.mark.parametrize("which", ["expired", "future"])
def test_expired_and_not_yet_valid_certificates_serve_with_a_warning(
    serve: Serve, certs: Certs, which: str
):
    leaf: Leaf = getattr(certs, which)
    server = serve_tls(serve, leaf)
    answer = fetch(server, "/tls", client_context(None))
    assert answer.status == 200 and answer.peer_der == leaf.der
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(server, "/tls", client_context(certs))
    warning = server.find_line(r"(?i)warn.*certificate|certificate.*warn")
    assert warning, server.output
    keyword = r"expired" if which == "expired" else r"not yet valid|not valid (yet|before)|future"
    assert re.search(keyword, warning.string.lower()), warning.string


# --- session resumption (one worker; several workers: test_tls_rotation.py) ----------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_resumption(servers: dict[str, ServerProcess], certs: Certs, version: str):
    ctx = client_context(certs, version=version)
    first = fetch(servers["ecdsa"], "/hello", ctx)
    assert not first.session_reused and first.session is not None
    for _ in range(3):
        again = fetch(servers["ecdsa"], "/hello", ctx, session=first.session)
        assert again.session_reused, f"TLS {version} session not resumed"
        assert again.status == 200


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_each_resumption_brings_a_fresh_ticket(
    servers: dict[str, ServerProcess], certs: Certs, version: str
):
    """Clients use a TLS 1.3 ticket once (RFC 8446 C.4), as browsers and OpenSSL's s_client do:
    every resumed connection must carry the next ticket, or every other one is a full handshake."""
    ctx = client_context(certs, version=version)
    session = fetch(servers["ecdsa"], "/hello", ctx).session
    for hop in range(5):
        answer = fetch(servers["ecdsa"], "/hello", ctx, session=session)
        assert answer.session_reused, f"hop {hop}: not resumed"
        assert answer.session is not None, f"hop {hop}: no session"
        assert answer.session.id != session.id, f"hop {hop}: no fresh ticket"
        session = answer.session


# --- keep-alive over TLS ------------------------------------------------------------------------


def test_keep_alive_requests_then_idle_close(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--timeout-keep-alive", "1")
    with TlsConnection(server.host, server.port, client_context(certs)) as conn:
        for _ in range(3):
            conn.send(request("GET", "/hello", host="localhost"))
            assert conn.read_response().body == b"hello"
        assert conn.read_to_eof(timeout=4) == b""  # closed by the server after ~1 s idle


# --- flag mistakes: one line, non-zero exit, nothing served -------------------------------------

MISSING = r"no such file|not found|does not exist|doesn't exist|missing|cannot open|can't open"
UNREADABLE = (
    r"permission|denied|readable|cannot read|can't read|could not read|directory|not a file"
    r"|not a regular file"
)
BAD_VALUE = (
    r"invalid|choice|must|one of|expected|unsupported|not supported|never|not allowed|\buse\b"
)


def unreadable_copy(source: Path, directory: Path) -> Path:
    """A path that cannot be read: mode 000, or (as root, who reads anything) a directory."""
    path = directory / f"locked-{source.name}"
    shutil.copy(source, path)
    path.chmod(0)
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return path
    path.unlink()
    path.mkdir()
    return path


@dataclass
class Mistake:
    args: list[str]
    names: list[str]  # regexes that must all be found in the error line (the file or the flag)
    keyword: str | None  # a regex for what is wrong, looked for with the paths and flags removed
    env: dict[str, str] = field(default_factory=dict)


def mistake(certs: Certs, tmp: Path, case: str) -> Mistake:
    cert, key, ca = str(certs.ecdsa.chain), str(certs.ecdsa.key), str(certs.ca)
    pair = list(certs.ecdsa.args)
    encrypted = ["--ssl-certfile", cert, "--ssl-keyfile", str(certs.encrypted_key)]
    if case.endswith("-unreadable"):
        what = case.split("-")[0]
        source = {"certfile": certs.ecdsa.chain, "keyfile": certs.ecdsa.key, "ca": certs.ca}
        path = str(unreadable_copy(source[what], tmp))
        args = {
            "certfile": ["--ssl-certfile", path, "--ssl-keyfile", key],
            "keyfile": ["--ssl-certfile", cert, "--ssl-keyfile", path],
            "ca": [*pair, "--ssl-ca-certs", path, "--ssl-cert-reqs", "2"],
        }
        return Mistake(args[what], [re.escape(Path(path).name)], UNREADABLE)
    table = {
        "certfile-missing": Mistake(
            ["--ssl-certfile", str(tmp / "absent.pem"), "--ssl-keyfile", key],
            [r"absent\.pem"],
            MISSING,
        ),
        "keyfile-missing": Mistake(
            ["--ssl-certfile", cert, "--ssl-keyfile", str(tmp / "absent.key")],
            [r"absent\.key"],
            MISSING,
        ),
        "ca-missing": Mistake(
            [*pair, "--ssl-ca-certs", str(tmp / "absent-ca.pem"), "--ssl-cert-reqs", "2"],
            [r"absent-ca\.pem"],
            MISSING,
        ),
        "certfile-no-certificate": Mistake(
            ["--ssl-certfile", str(certs.not_pem), "--ssl-keyfile", key],
            [r"not-pem\.txt"],
            "certificate",
        ),
        "certfile-only-a-key": Mistake(
            ["--ssl-certfile", str(certs.key_only), "--ssl-keyfile", key],
            [r"key-only\.pem"],
            "certificate",
        ),
        "keyfile-no-key": Mistake(
            ["--ssl-certfile", cert, "--ssl-keyfile", str(certs.not_pem)], [r"not-pem\.txt"], "key"
        ),
        "no-keyfile-and-no-key-in-certfile": Mistake(
            ["--ssl-certfile", cert], [r"ecdsa\.pem|--ssl-keyfile"], "key"
        ),
        "key-does-not-match": Mistake(
            ["--ssl-certfile", cert, "--ssl-keyfile", str(certs.other_key)],
            [r"other\.key|--ssl-keyfile"],
            "match",
        ),
        "wrong-password": Mistake(
            [*encrypted, "--ssl-keyfile-password", "not-the-password"],
            [r"ecdsa-encrypted\.key|--ssl-keyfile"],
            r"wrong|decrypt|password",
        ),
        "missing-password": Mistake(encrypted, [r"ecdsa-encrypted\.key|--ssl-keyfile"], "password"),
        "ca-no-certificate": Mistake(
            [*pair, "--ssl-ca-certs", str(certs.not_pem), "--ssl-cert-reqs", "2"],
            [r"not-pem\.txt"],
            "certificate",
        ),
        "cert-reqs-1-without-ca": Mistake(
            [*pair, "--ssl-cert-reqs", "1"], ["--ssl-cert-reqs", "--ssl-ca-certs"], None
        ),
        "cert-reqs-2-without-ca": Mistake(
            [*pair, "--ssl-cert-reqs", "2"], ["--ssl-cert-reqs", "--ssl-ca-certs"], None
        ),
        "cert-reqs-3": Mistake(
            [*pair, "--ssl-ca-certs", ca, "--ssl-cert-reqs", "3"], ["--ssl-cert-reqs"], BAD_VALUE
        ),
        "min-version-1.1": Mistake(
            [*pair, "--ssl-min-version", "1.1"], ["--ssl-min-version"], BAD_VALUE
        ),
        "min-version-1.0": Mistake(
            [*pair, "--ssl-min-version", "1.0"], ["--ssl-min-version"], BAD_VALUE
        ),
        "min-version-banana": Mistake(
            [*pair, "--ssl-min-version", "banana"], ["--ssl-min-version"], BAD_VALUE
        ),
        "min-version-from-env": Mistake(
            pair, ["COACHWHIP_SSL_MIN_VERSION"], BAD_VALUE, {"COACHWHIP_SSL_MIN_VERSION": "1.1"}
        ),
        "keyfile-without-certfile": Mistake(
            ["--ssl-keyfile", key], ["--ssl-keyfile", "--ssl-certfile"], "needs"
        ),
        "ca-certs-without-certfile": Mistake(
            ["--ssl-ca-certs", ca, "--ssl-cert-reqs", "2"],
            ["--ssl-ca-certs", "--ssl-certfile"],
            "needs",
        ),
        "bad-ciphers": Mistake(
            [*pair, "--ssl-ciphers", "NOT-A-CIPHER:ALSO-NOT"],
            ["--ssl-ciphers"],
            r"invalid|unknown|no cipher|matches no|unsupported|bad|not",
        ),
    }
    return table[case]


ERROR_CASES = [
    "certfile-missing", "keyfile-missing", "ca-missing",
    "certfile-unreadable", "keyfile-unreadable", "ca-unreadable",
    "certfile-no-certificate", "certfile-only-a-key", "keyfile-no-key",
    "no-keyfile-and-no-key-in-certfile", "key-does-not-match", "wrong-password",
    "missing-password", "ca-no-certificate", "cert-reqs-1-without-ca", "cert-reqs-2-without-ca",
    "cert-reqs-3", "min-version-1.1", "min-version-1.0", "min-version-banana",
    "min-version-from-env", "keyfile-without-certfile", "ca-certs-without-certfile", "bad-ciphers",
]  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES)
def test_flag_mistake_is_one_error_line_before_serving(certs: Certs, tmp_path: Path, case: str):
    wrong = mistake(certs, tmp_path, case)
    result = run_cli("--port", "0", *wrong.args, TLS_APP, env=wrong.env, timeout=20)
    assert result.returncode != 0, result.output
    assert "Listening on" not in result.output and "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr_lines if line.startswith("coachwhip: error:")]
    assert len(errors) == 1, f"expected one coachwhip: error: line:\n{result.stderr}"
    line = errors[0]
    for name in wrong.names:
        assert re.search(name, line), f"{name!r} not in {line!r}"
    if wrong.keyword is not None:
        # the keyword must say what is wrong: not be part of a path or of a flag's name
        rest = re.sub(r"\S*/\S*|--ssl-[\w-]+|COACHWHIP_\w+", " ", line).lower()
        assert re.search(wrong.keyword, rest), f"{wrong.keyword!r} not in {line!r}"
    # and nothing else on stderr: the error is the one line printed (README "Mistakes")
    assert result.stderr_lines == [line], f"expected one line on stderr:\n{result.stderr}"


# --- plain HTTP on the TLS port: the short version (more in test_tls_hostile.py) ------------------


def test_plain_http_to_the_tls_port_gets_400(servers: dict[str, ServerProcess]):
    server = servers["ecdsa"]
    with RawConnection(server.host, server.port) as conn:
        conn.send(request("GET", "/hello", host="localhost"))
        response = conn.read_response()
        assert response.status == 400
        assert b"https" in response.body.lower()
        assert conn.read_to_eof(timeout=3) == b""
    poll(lambda: fetch(server, "/hello").status == 200, 5, what="TLS still served")


# --- metrics ------------------------------------------------------------------------------------


def metric(server: ServerProcess, ctx: ssl.SSLContext, name: str, label: str) -> int:
    text = fetch(server, "/-/metrics", ctx).body.decode()
    match = re.search(rf"^{name}\{{{label}\}} (\d+)$", text, re.M)
    assert match, text
    return int(match.group(1))


def test_metrics_count_handshakes_and_refusals(serve: Serve, certs: Certs):
    server = serve_tls(serve, certs.ecdsa, "--metrics", "--timeout-tls-handshake", "0.5")
    ctx = client_context(certs)
    first = fetch(server, "/hello", ctx)
    fetch(server, "/hello", ctx, session=first.session)
    for data in (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"\x16\x03\x01\xff\xffgarbage"):
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
    with socket.create_connection((server.host, server.port), timeout=5) as silent:
        assert silent.recv(1) == b""  # closed by the handshake deadline
    handshakes = "coachwhip_tls_handshakes_total"
    # The scrapes themselves are full handshakes: at least the first request and this one.
    assert metric(server, ctx, handshakes, 'session="full"') >= 2
    assert metric(server, ctx, handshakes, 'session="resumed"') == 1
    refused = "coachwhip_refused_total"
    assert metric(server, ctx, refused, 'reason="tls_plain_http"') == 1
    assert metric(server, ctx, refused, 'reason="tls_handshake"') == 1
    assert metric(server, ctx, refused, 'reason="tls_timeout"') == 1
