"""Certificates for the TLS tests, made at test time with `cryptography`, and TLS client helpers.

`make_certs(directory)` writes a small PKI: a root CA, an intermediate CA that signs the server
leaves (ECDSA P-256 and RSA 2048, for localhost / 127.0.0.1 / ::1), an encrypted copy of a key,
expired and not-yet-valid leaves, a leaf to rotate to, client certificates from the CA and from
another CA, and the broken files that the flag error paths need. Clients trust the root only, so
a server that does not send the intermediate fails verification.

`TlsConnection` is harness.RawConnection over an `ssl.SSLSocket` (same response parsing);
`fetch()` makes one request on a new TLS connection and reports what the handshake negotiated.
`serve_tls()` starts a server on the TLS app and waits for its `Listening on https://` line.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import RawConnection, RawResponse, ServerProcess, request

PASSWORD = "s3cret-pass"
TLS_APP = "apps.tls_app:app"
# The Listening line of a TLS server; group 1 is the scheme, so a wrong one is reported, not missed.
HTTPS_LISTEN_RE = r"Listening on (https?)://(\[[0-9a-fA-F:]+\]|[\d.]+):(\d+)"
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


# --- making certificates ----------------------------------------------------------------------


def new_key(kind: str = "ecdsa") -> CertificateIssuerPrivateKeyTypes:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert kind == "ecdsa", kind
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str, org: str = "coachwhip tests", unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


SERVER_SAN = x509.SubjectAlternativeName(
    [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
)


def issue(
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    usage: str = "server",
    san: x509.SubjectAlternativeName | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (cert, key), or self-signed without one."""
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        eku = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if usage == "server"
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signer, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: CertificateIssuerPrivateKeyTypes, password: str | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@dataclass(frozen=True)
class Leaf:
    """A certificate with its key on disk: `chain` is the leaf then its issuers (PEM)."""

    cert: x509.Certificate
    chain: Path
    key: Path

    @property
    def pem(self) -> str:
        return cert_pem(self.cert)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def args(self) -> tuple[str, str]:
        return ("--ssl-certfile", str(self.chain), "--ssl-keyfile", str(self.key))


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path  # the root CA (PEM): what clients trust, and the --ssl-ca-certs of mTLS tests
    ca_cert: x509.Certificate
    intermediate: x509.Certificate
    ecdsa: Leaf  # the leaves chain to the root through the intermediate
    rsa: Leaf
    encrypted_key: Path  # ecdsa's key, encrypted with PASSWORD
    combined: Path  # ecdsa's chain and key in one file
    expired: Leaf
    future: Leaf  # not valid yet
    rotated: Leaf  # another ECDSA leaf for localhost (CN=rotated.localhost), to rotate to
    client: Leaf  # signed by the root CA
    other_ca: Path
    other_client: Leaf  # signed by another CA
    other_key: Path  # a key that matches no certificate here
    not_pem: Path  # text without any PEM block
    key_only: Path  # a PEM private key, no certificate


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)

    def write(filename: str, *parts: str) -> Path:
        path = directory / filename
        path.write_text("".join(parts))
        return path

    def leaf(
        filename: str,
        subject: x509.Name,
        issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes],
        chain_tail: list[x509.Certificate],
        kind: str = "ecdsa",
        usage: str = "server",
        **validity: datetime.datetime,
    ) -> Leaf:
        key = new_key(kind)
        san = SERVER_SAN if usage == "server" else None
        cert = issue(subject, key, issuer, usage=usage, san=san, **validity)
        chain = write(f"{filename}.pem", cert_pem(cert), *map(cert_pem, chain_tail))
        return Leaf(cert, chain, write(f"{filename}.key", key_pem(key)))

    root_key = new_key()
    root = issue(name("coachwhip test root CA"), root_key, ca=True, not_after=NOW + 3650 * DAY)
    inter_key = new_key()
    inter = issue(
        name("coachwhip test intermediate CA"), inter_key, (root, root_key), ca=True, path_length=0
    )
    via_inter = (inter, inter_key)
    ecdsa = leaf("ecdsa", name("localhost"), via_inter, [inter])
    rsa_leaf = leaf("rsa", name("localhost"), via_inter, [inter], kind="rsa")
    encrypted = directory / "ecdsa-encrypted.key"
    encrypted.write_text(
        key_pem(serialization.load_pem_private_key(ecdsa.key.read_bytes(), None), PASSWORD)  # type: ignore[arg-type]
    )
    other_key = new_key()
    other_root = issue(name("some other CA", org="elsewhere"), other_key, ca=True)
    return Certs(
        dir=directory,
        ca=write("ca.pem", cert_pem(root)),
        ca_cert=root,
        intermediate=inter,
        ecdsa=ecdsa,
        rsa=rsa_leaf,
        encrypted_key=encrypted,
        combined=write("combined.pem", ecdsa.chain.read_text(), ecdsa.key.read_text()),
        expired=leaf(
            "expired", name("localhost"), via_inter, [inter],
            not_before=NOW - 60 * DAY, not_after=NOW - 30 * DAY,
        ),
        future=leaf(
            "future", name("localhost"), via_inter, [inter],
            not_before=NOW + 30 * DAY, not_after=NOW + 60 * DAY,
        ),
        rotated=leaf("rotated", name("rotated.localhost"), via_inter, [inter]),
        # a comma in the CN: client_cert_name must escape it as RFC 4514 says
        client=leaf(
            "client", name("Alice, tester", unit="clients"), (root, root_key), [], usage="client"
        ),
        other_ca=write("other-ca.pem", cert_pem(other_root)),
        other_client=leaf(
            "other-client", name("mallory", org="elsewhere"), (other_root, other_key), [],
            usage="client",
        ),
        other_key=write("other.key", key_pem(new_key())),
        not_pem=write("not-pem.txt", "this file holds no certificate and no key\n"),
        key_only=write("key-only.pem", key_pem(new_key())),
    )  # fmt: skip


_MADE: dict[Path, Certs] = {}


def session_certs(tmp_path_factory: Any) -> Certs:
    """The certificates of this test session (made once, whichever module asks first)."""
    base = Path(tmp_path_factory.getbasetemp())
    if base not in _MADE:
        _MADE[base] = make_certs(tmp_path_factory.mktemp("tlscerts"))
    return _MADE[base]


# --- starting a TLS server ----------------------------------------------------------------------


def wait_https(server: ServerProcess, timeout: float = 15.0) -> ServerProcess:
    """Waits for the Listening line; sets server.host/port from it (and server.scheme)."""
    match = server.wait_for_line(HTTPS_LISTEN_RE, timeout)
    server.host = match.group(2).strip("[]")
    server.port = int(match.group(3))
    server.scheme = match.group(1)  # type: ignore[attr-defined]
    return server


def start_tls_server(leaf: Leaf, *args: str, app: str = TLS_APP) -> ServerProcess:
    """A server outside the `serve` fixture (for module-scoped fixtures): kill() it yourself."""
    server = ServerProcess(app, *leaf.args, *args)
    try:
        wait_https(server)
    except BaseException:
        server.kill()
        raise
    return server


def serve_tls(serve: Any, leaf: Leaf, *args: str, app: str = TLS_APP, **kw: Any) -> ServerProcess:
    """`serve` (the conftest fixture) with the leaf's certificate and key, ready to accept."""
    server: ServerProcess = serve(app, *leaf.args, *args, ready=None, **kw)
    return wait_https(server)


# --- clients ------------------------------------------------------------------------------------

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(
    certs: Certs | None,
    *,
    version: str | None = None,
    client: Leaf | None = None,
    check_hostname: bool = True,
    ciphers: str | None = None,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """A client context trusting the test root CA (`certs=None`: verifying nothing)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if certs is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(certs.ca))
        ctx.check_hostname = check_hostname
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    if client is not None:
        ctx.load_cert_chain(str(client.chain), str(client.key))
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def iana_suite(openssl_name: str) -> int:
    """The IANA number of a cipher suite named the OpenSSL way (as SSLSocket.cipher() says)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    for suite in ctx.get_ciphers():
        if suite["name"] == openssl_name:
            return int(suite["id"]) & 0xFFFF
    raise AssertionError(f"unknown cipher suite {openssl_name!r}")


class TlsConnection(RawConnection):
    """RawConnection over TLS: the handshake is done in the constructor (and may raise)."""

    def __init__(
        self,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        *,
        server_hostname: str | None = "localhost",
        session: ssl.SSLSession | None = None,
        timeout: float = 5.0,
        ragged_eofs: bool = True,
    ) -> None:
        """`ragged_eofs=False`: a close without close_notify raises SSLEOFError on read."""
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.tls = ctx.wrap_socket(
                raw,
                server_hostname=server_hostname,
                session=session,
                suppress_ragged_eofs=ragged_eofs,
            )
        except BaseException:
            raw.close()
            raise
        self.sock = self.tls
        self.timeout = timeout
        self.buf = bytearray()
        self.received = bytearray()
        self.eof = False


@dataclass
class Answer:
    response: RawResponse
    version: str | None
    cipher: str
    alpn: str | None
    session: ssl.SSLSession | None
    session_reused: bool
    peer_der: bytes | None

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def body(self) -> bytes:
        return self.response.body


def fetch(
    server: ServerProcess,
    path: str = "/hello",
    ctx: ssl.SSLContext | None = None,
    *,
    server_hostname: str | None = "localhost",
    session: ssl.SSLSession | None = None,
    timeout: float = 5.0,
    method: str = "GET",
    body: bytes = b"",
) -> Answer:
    """One request (`Connection: close`) on a new TLS connection to `server`."""
    ctx = ctx if ctx is not None else client_context(None)
    with TlsConnection(
        server.host,
        server.port,
        ctx,
        server_hostname=server_hostname,
        session=session,
        timeout=timeout,
    ) as conn:
        host = server_hostname or server.host
        host = f"[{host}]" if ":" in host else host
        conn.send(request(method, path, host=host, headers=["Connection: close"], body=body))
        response = conn.read_response()
        tls = conn.tls
        cipher = tls.cipher()
        return Answer(
            response=response,
            version=tls.version(),
            cipher=cipher[0] if cipher else "",
            alpn=tls.selected_alpn_protocol(),
            session=tls.session,
            session_reused=tls.session_reused,
            peer_der=tls.getpeercert(binary_form=True),
        )


def outcome(server: ServerProcess, path: str, ctx: ssl.SSLContext, **kw: Any) -> str:
    """ "ok <status>" or "error <exception>": for attempts that a server should refuse."""
    try:
        answer = fetch(server, path, ctx, **kw)
    except (OSError, EOFError, AssertionError) as exc:  # SSLError is an OSError
        return f"error {exc!r}"
    return f"ok {answer.status}"


# --- hand-made ClientHellos, for the hostile tests ----------------------------------------------


def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def _vec16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def client_hello(version: str = "1.3", server_name: str = "localhost") -> bytes:
    """One TLS record holding a ClientHello offering `version` ("1.0", "1.1", "1.2", "1.3").

    1.0/1.1/1.2 put the version in the legacy field (no supported_versions extension, as old
    clients do); 1.3 offers 1.3 and 1.2 through supported_versions, with an X25519 key share."""
    legacy = {"1.0": 0x0301, "1.1": 0x0302}.get(version, 0x0303)
    if version == "1.3":
        suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    elif version == "1.2":
        suites = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    else:  # what a TLS 1.0 client offers: ECDHE with CBC
        suites = [0xC009, 0xC013, 0xC00A, 0xC014, 0x002F, 0x0035]
    host = server_name.encode()
    extensions = _ext(0, _vec16(b"\x00" + _vec16(host)))  # server_name
    extensions += _ext(10, _vec16(struct.pack("!HH", 0x001D, 0x0017)))  # x25519, P-256
    extensions += _ext(11, b"\x01\x00")  # ec_point_formats: uncompressed
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201, 0x0203]
    extensions += _ext(13, _vec16(b"".join(struct.pack("!H", s) for s in sigalgs)))
    extensions += _ext(0xFF01, b"\x00")  # renegotiation_info (initial handshake)
    if version == "1.3":
        extensions += _ext(43, b"\x04\x03\x04\x03\x03")  # supported_versions: 1.3, 1.2
        share = struct.pack("!HH", 0x001D, 32) + bytes(range(1, 33))
        extensions += _ext(51, _vec16(share))  # key_share
    body = struct.pack("!H", legacy) + bytes(range(32))  # client random
    body += b"\x20" + bytes(range(100, 132))  # legacy session id
    body += _vec16(b"".join(struct.pack("!H", s) for s in suites))
    body += b"\x01\x00"  # compression methods: null only
    body += _vec16(extensions)
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    record_version = 0x0301  # what clients put in the first record
    return b"\x16" + struct.pack("!HH", record_version, len(handshake)) + handshake


def first_record_type(answer: bytes) -> str:
    """What the server's first bytes are: "handshake" (a ServerHello), "alert", "none" or other."""
    if not answer:
        return "none"
    return {0x16: "handshake", 0x15: "alert"}.get(answer[0], f"other {answer[:16]!r}")
