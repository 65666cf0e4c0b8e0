"""TLS for the benchmarks: the certificate every server gets (ECDSA P-256, made with the openssl
CLI at bench time), nginx's configuration, the curl -k check that a server really speaks TLS,
and the tlsload load generator's build (bench/tlsload/)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TLSLOAD_DIR = BENCH_DIR / "tlsload"
TLSLOAD = TLSLOAD_DIR / "tlsload"
SUBJECT = "CN=coachwhip-bench"
SNI = "localhost"  # in the certificate's subjectAltName; tlsload sends it


@dataclass(frozen=True)
class TlsFiles:
    """The certificate and key every server is given, and a directory for generated configs."""

    cert: Path
    key: Path
    dir: Path


def make_cert(directory: Path) -> TlsFiles:
    """A fresh self-signed ECDSA P-256 certificate (PKCS#8 key, which granian requires)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "7",
            "-subj",
            f"/{SUBJECT}",
            "-addext",
            f"subjectAltName=DNS:{SNI},IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(cert, key, directory)


def describe_cert(files: TlsFiles) -> str:
    """One line for the report: subject, key type and curve, SHA-256 fingerprint."""
    out = subprocess.run(
        ["openssl", "x509", "-in", str(files.cert), "-noout", "-text", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    curve = re.search(r"NIST CURVE: (\S+)", out)
    finger = re.search(r"Fingerprint=(\S+)", out)
    return (
        f"{SUBJECT}, ECDSA {curve.group(1) if curve else '?'}, self-signed, SHA-256 "
        f"{finger.group(1)[:23] if finger else '?'}…"
    )


def openssl_version() -> str:
    """The openssl CLI's version ("OpenSSL 3.0.19"): Debian's libssl, which coachwhip, nginx,
    wrk and tlsload use (Python's ssl module too: see `ssl.OPENSSL_VERSION`)."""
    try:
        out = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    except OSError:
        return "not installed"
    return " ".join(out.split()[:2])


def nginx_version() -> str:
    try:
        run = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    except OSError:
        return "not installed"
    return (run.stderr or run.stdout).strip().removeprefix("nginx version: nginx/")


# The 13 bytes the hello app answers, so that every server sends the same body.
NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
error_log stderr notice;
pid {dir}/nginx.pid;
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout {keep_alive}s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port}{listen} backlog={backlog};
{tls}        default_type text/plain;
        location / {{
            return 200 "Hello, world!";
        }}
    }}
}}
"""


NGINX_TLS = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
"""


def nginx_conf(
    files: TlsFiles | None,
    port: int,
    backlog: int,
    keep_alive_s: int,
    nofile: int,
    http2: bool = False,
    directory: Path | None = None,
) -> Path:
    """Write nginx's configuration for one server on `port` (in `directory`, by default beside
    the certificate); return its path. nginx answers by itself (`return 200`): no app, the limit
    of what TLS termination costs. Over TLS unless `files` is None; with `http2`, `listen ...
    http2`: h2c with prior knowledge on a plain port, ALPN h2 (and http/1.1) over TLS. Its
    keep-alive settings apply to HTTP/2 connections too (nginx 1.19.7 and later)."""
    base = directory if directory is not None else files.dir if files is not None else None
    if base is None:
        raise ValueError("nginx_conf without TLS files needs a directory")
    kind = ("-h2" if files is not None else "-h2c") if http2 else ""
    directory = base / f"nginx{kind}-{port}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    tls = "" if files is None else NGINX_TLS.format(cert=files.cert, key=files.key)
    path.write_text(
        NGINX_CONF.format(
            dir=directory,
            port=port,
            listen=(" ssl" if files is not None else "") + (" http2" if http2 else ""),
            backlog=backlog,
            keep_alive=keep_alive_s,
            nofile=nofile,
            connections=nofile // 2,
            tls=tls,
        )
    )
    return path


@dataclass(frozen=True)
class CurlCheck:
    status: int
    body: bytes
    protocol: str  # e.g. "TLSv1.3 / TLS_AES_256_GCM_SHA384"
    subject: str


def curl_check(port: int, path: str, timeout_s: float = 10.0) -> CurlCheck:
    """One GET with `curl -k` (certificate not verified): status, body, and what curl says was
    negotiated and whose certificate it got. Raises OSError if curl fails."""
    run = subprocess.run(
        [
            "curl",
            "-k",
            "-sS",
            "-v",
            "--http1.1",
            "--max-time",
            str(timeout_s),
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            f"https://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
    )
    if run.returncode != 0:
        raise OSError(
            f"curl -k exited {run.returncode}: {run.stderr.decode(errors='replace')[-300:]}"
        )
    body, _, code = run.stdout.rpartition(b"\n")
    err = run.stderr.decode(errors="replace")
    protocol = re.search(r"SSL connection using (.+)", err)
    subject = re.search(r"subject: (.+)", err)
    return CurlCheck(
        int(code or 0),
        body,
        protocol.group(1).strip() if protocol else "",
        subject.group(1).strip() if subject else "",
    )


def ensure_tlsload() -> Path:
    """Build bench/tlsload/tlsload (bench/tlsload/build.sh) if it is missing or older than its
    source; return its path."""
    source = TLSLOAD_DIR / "tlsload.cpp"
    if not TLSLOAD.exists() or TLSLOAD.stat().st_mtime < source.stat().st_mtime:
        print("==> building bench/tlsload/tlsload", flush=True)
        run = subprocess.run(["sh", str(TLSLOAD_DIR / "build.sh")], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"bench/tlsload/build.sh failed:\n{run.stdout}{run.stderr}")
    return TLSLOAD
