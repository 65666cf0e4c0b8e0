"""User-space instructions per request for scenario 1, counted by callgrind (bench/NOTES.md,
"How to measure"): deterministic, so it shows a few hundred instructions that throughput noise
would hide, and it does not care what else the machine is doing.

    python3 bench/callgrind_cost.py [--python PY] [--header 'Name: value'] [-- FLAGS...]

Runs `PY -m coachwhip apps.hello:app FLAGS` under valgrind --tool=callgrind, sends 1,008
keep-alive GETs over 16 connections (warm-up), zeroes the counters, sends 10,000 more, dumps,
and prints the total divided by 10,000. `--python` picks the interpreter (and so the coachwhip
build) to measure: compare two builds by giving each its own venv. Needs valgrind.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CONNECTIONS = 16


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited (status {proc.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)  # valgrind starts slowly: polling the port
    raise SystemExit("the server did not start listening under valgrind")


def wait_dump(out_dir: Path, timeout: float = 120.0) -> int:
    """The instruction total of the first dump, once the server has written it whole (its
    `totals:` line comes last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dump in glob.glob(f"{out_dir}/callgrind.out.*.1"):
            match = re.search(r"^totals: (\d+)", Path(dump).read_text(), re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.1)  # polling for the dump file
    raise SystemExit("callgrind wrote no dump")


def send(port: int, requests: int, headers: list[str]) -> None:
    """`requests` GETs, one in flight per connection, each answer read to its end."""
    extra = "".join(f"{h}\r\n" for h in headers)
    data = f"GET / HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
    for i in range(requests):
        sock = socks[i % CONNECTIONS]
        sock.sendall(data)
        answer = b""
        while not answer.endswith(b"Hello, world!"):
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("the server closed a connection")
            answer += chunk
    for sock in socks:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("flags", nargs="*")
    args = parser.parse_args()
    args.python = str(Path(args.python).absolute())  # the server runs in bench/
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out_dir = Path(tempfile.mkdtemp(prefix="cw-callgrind-"))
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        args.python,
        "-m",
        "coachwhip",
        "apps.hello:app",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
        *args.flags,
    ]
    env = {**os.environ, "PYTHONPATH": str(BENCH_DIR)}
    proc = subprocess.Popen(argv, cwd=BENCH_DIR, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        send(port, 1008, args.header)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        send(port, args.requests, args.header)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        total = wait_dump(out_dir)
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"{total / args.requests:.0f} instructions per request ({' '.join(args.flags)})")


if __name__ == "__main__":
    main()
