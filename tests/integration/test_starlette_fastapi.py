"""Starlette and FastAPI applications served end to end."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import LISTEN_RE, ServerProcess, poll


def start(app: str) -> Iterator[ServerProcess]:
    server = ServerProcess(app)
    try:
        server.wait_ready(LISTEN_RE)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def star() -> Iterator[ServerProcess]:
    yield from start("apps.star:app")


@pytest.fixture(scope="module")
def fast() -> Iterator[ServerProcess]:
    yield from start("apps.fast:app")


@pytest.fixture
def star_client(star: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=star.url, timeout=10) as client:
        yield client


@pytest.fixture
def fast_client(fast: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fast.url, timeout=10) as client:
        yield client


# --- Starlette ------------------------------------------------------------------------------------


def test_starlette_routing(star_client: httpx.Client) -> None:
    response = star_client.get("/")
    assert (response.status_code, response.text) == (200, "starlette home")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_starlette_path_and_query_params(star_client: httpx.Client) -> None:
    response = star_client.get(
        "/users/42", params=[("q", "hello world"), ("tag", "a"), ("tag", "b")]
    )
    assert response.status_code == 200
    assert response.json() == {"user_id": 42, "q": "hello world", "tags": ["a", "b"]}


def test_starlette_path_converter_mismatch_is_404(star_client: httpx.Client) -> None:
    assert star_client.get("/users/not-a-number").status_code == 404


def test_starlette_json_round_trip(star_client: httpx.Client) -> None:
    payload = {"name": "café ✓", "values": [1, 2.5, None, True], "nested": {"k": "v"}}
    response = star_client.post("/echo-json", json=payload)
    assert response.status_code == 201
    assert response.json() == {"received": payload, "keys": ["name", "nested", "values"]}


def test_starlette_method_not_allowed(star_client: httpx.Client) -> None:
    assert star_client.get("/echo-json").status_code == 405


def test_starlette_streaming_response(star_client: httpx.Client) -> None:
    with star_client.stream("GET", "/numbers", params={"n": 100}) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        lines = [line for line in response.iter_lines() if line]
    assert lines == [str(i) for i in range(100)]


def test_starlette_background_task(star_client: httpx.Client) -> None:
    response = star_client.post("/background/job-s1")
    assert (response.status_code, response.text) == (200, "scheduled job-s1")
    poll(
        lambda: "job-s1" in star_client.get("/background-done").json(),
        5,
        what="the background task",
    )


def test_starlette_lifespan_state(star_client: httpx.Client) -> None:
    assert star_client.get("/state").json() == {"greeting": "hello from starlette startup"}


def test_starlette_mount(star_client: httpx.Client) -> None:
    data = star_client.get("/sub/hello").json()
    assert data["path"] == "/sub/hello"


def test_starlette_404(star_client: httpx.Client) -> None:
    response = star_client.get("/missing")
    assert (response.status_code, response.text) == (404, "Not Found")


# --- FastAPI --------------------------------------------------------------------------------------


def test_fastapi_path_and_query_params(fast_client: httpx.Client) -> None:
    assert fast_client.get("/items/7").json() == {"item_id": 7, "q": None, "limit": 10}
    assert fast_client.get("/items/7", params={"q": "red shoes", "limit": 3}).json() == {
        "item_id": 7,
        "q": "red shoes",
        "limit": 3,
    }


def test_fastapi_validation_error_is_422(fast_client: httpx.Client) -> None:
    response = fast_client.get("/items/seven")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


def test_fastapi_pydantic_json_in_and_out(fast_client: httpx.Client) -> None:
    response = fast_client.post("/items", json={"name": "lamp", "price": 10.0, "tags": ["home"]})
    assert response.status_code == 201
    assert response.json() == {
        "name": "lamp",
        "price": 10.0,
        "tags": ["home"],
        "id": 42,
        "total": 12.0,
    }


def test_fastapi_invalid_json_body_is_422(fast_client: httpx.Client) -> None:
    response = fast_client.post("/items", json={"name": "lamp"})
    assert response.status_code == 422
    assert any(error["loc"] == ["body", "price"] for error in response.json()["detail"])


def test_fastapi_streaming_response(fast_client: httpx.Client) -> None:
    response = fast_client.get("/count", params={"n": 50})
    assert response.status_code == 200
    assert response.text == "".join(f"line {i}\n" for i in range(50))


def test_fastapi_background_task(fast_client: httpx.Client) -> None:
    response = fast_client.post("/tasks/report-1")
    assert (response.status_code, response.json()) == (202, {"scheduled": "report-1"})
    poll(lambda: "report-1" in fast_client.get("/tasks").json(), 5, what="the background task")


def test_fastapi_lifespan_state(fast_client: httpx.Client) -> None:
    assert fast_client.get("/state").json() == {"greeting": "hello from fastapi startup"}


def test_fastapi_openapi_and_404(fast_client: httpx.Client) -> None:
    spec = fast_client.get("/openapi.json").json()
    assert "/items/{item_id}" in spec["paths"]
    response = fast_client.get("/nope")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


def test_fastapi_small_upload(fast_client: httpx.Client) -> None:
    data = fast_client.post("/upload", content=b"abc").json()
    assert data["bytes"] == 3
    assert data["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_fastapi_concurrent_clients(fast: ServerProcess) -> None:
    import concurrent.futures

    def one(i: int) -> dict[str, object]:
        with httpx.Client(base_url=fast.url, timeout=10) as client:
            result = client.get(f"/items/{i}", params={"q": f"q{i}"}).json()
            assert isinstance(result, dict)
            return result

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert results == [{"item_id": i, "q": f"q{i}", "limit": 10} for i in range(40)]


def test_frameworks_shut_down_cleanly(star: ServerProcess, fast: ServerProcess) -> None:
    assert star.stop() == 0
    assert fast.stop() == 0
    assert star.find_line(r"cw-star: lifespan shutdown ran"), star.output
    assert fast.find_line(r"cw-fast: lifespan shutdown ran"), fast.output
