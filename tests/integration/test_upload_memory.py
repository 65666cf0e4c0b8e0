"""A 100 MB upload through FastAPI's request.stream(): the server's memory stays flat."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx
import pytest
from conftest import Serve
from harness import ServerProcess

pytestmark = pytest.mark.timeout(120)

MB = 1000 * 1000
BLOCK = 64 * 1024
MAX_GROWTH_KIB = 50 * 1024


def pattern_blocks(total: int) -> Iterator[bytes]:
    block = bytes(range(256)) * (BLOCK // 256)
    sent = 0
    while sent < total:
        piece = block[: min(BLOCK, total - sent)]
        sent += len(piece)
        yield piece


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_blocks(total):
        digest.update(piece)
    return digest.hexdigest()


class RssSampler:
    """Samples the server's RSS every 20 ms in a thread while an upload runs."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.rss_kib())
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(self.server.rss_kib())


def upload(server: ServerProcess, total: int, *, chunked: bool) -> dict[str, object]:
    headers = {} if chunked else {"content-length": str(total)}
    with httpx.Client(timeout=60) as client:
        response = client.post(
            server.url + "/upload", content=pattern_blocks(total), headers=headers
        )
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_upload_keeps_memory_flat(serve: Serve, chunked: bool) -> None:
    server = serve("apps.fast:app", "--no-access-log")
    upload(server, 2 * MB, chunked=chunked)  # warm up: imports, first-request allocations
    baseline = server.rss_kib()
    total = 100 * MB
    with RssSampler(server) as sampler:
        data = upload(server, total, chunked=chunked)
    assert data["bytes"] == total
    assert data["sha256"] == expected_digest(total)
    assert len(sampler.samples) >= 3
    growth = max(sampler.samples) - baseline
    assert growth < MAX_GROWTH_KIB, f"server RSS grew by {growth} KiB during a 100 MB upload"
    assert int(str(data["largest_chunk"])) <= 1024 * 1024, "the body was not streamed in pieces"
