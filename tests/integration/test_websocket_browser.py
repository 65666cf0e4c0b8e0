"""A real browser on the demo's WebSocket chat page (demo/app.py, /chat): headless Chromium from
Debian loads the page, its JavaScript connects over ws://, and the test types into the page and
reads what the page shows, through the DevTools protocol (a WebSocket itself, spoken here with
the `websockets` client).

Chromium is required, not optional: CI installs it (scripts/setup, Debian package `chromium`), so
a missing browser is a failure here, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.asyncio.client
from harness import ServerProcess, poll
from test_websocket_frameworks import UVICORN, start_server

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0

# Run in the page: wait (watching the DOM, not polling) until the chat has welcomed this page,
# then send `text` (if any) through the page's own form, then wait until a line ends with
# ": " + `waitFor` (if any); resolves with the page's status and log lines.
PAGE_SCRIPT = """
(async (text, waitFor) => {
  const lines = () => [...document.querySelectorAll("#log li")].map((li) => li.textContent);
  const status = () => document.getElementById("status").textContent;
  const until = (done) => new Promise((resolve, reject) => {
    const check = () => {
      if (done()) return resolve(), true;
      if (status().startsWith("closed")) {
        return reject(new Error(`the page's WebSocket is ${status()}; log: ${lines()}`)), true;
      }
      return false;
    };
    if (check()) return;
    const observer = new MutationObserver(() => { if (check()) observer.disconnect(); });
    observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  });
  await until(() => lines().some((line) => line.startsWith("you are ")));
  if (text !== null) {
    document.getElementById("text").value = text;
    document.getElementById("send").click();
  }
  if (waitFor !== null) await until(() => lines().some((line) => line.endsWith(": " + waitFor)));
  return {status: status(), lines: lines()};
})(%s, %s)
"""


def page_script(send: str | None, wait_for: str | None) -> str:
    return PAGE_SCRIPT % (json.dumps(send), json.dumps(wait_for))


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: the browser test needs Debian's `chromium` package "
            "(scripts/setup installs it when run as root)"
        )
    return path


@pytest.fixture
def demo() -> Iterator[ServerProcess]:
    server = start_server("demo.app:app", cwd=REPO)
    try:
        yield server
    finally:
        server.kill()


class DevTools:
    """The Chrome DevTools protocol over the browser's WebSocket: commands, replies, events."""

    def __init__(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[tuple[str | None, str]] = []  # (sessionId, method) seen so far
        self.event_seen = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message:
                future = self.replies.pop(message["id"])
                if "error" in message:
                    future.set_exception(AssertionError(f"DevTools error: {message['error']}"))
                else:
                    future.set_result(message.get("result", {}))
            else:
                self.events.append((message.get("sessionId"), message["method"]))
                self.event_seen.set()

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        return await future

    async def wait_event(self, session: str, method: str) -> None:
        while (session, method) not in self.events:
            self.event_seen.clear()
            await self.event_seen.wait()

    async def open_page(self, url: str) -> str:
        """A new tab showing `url`, loaded; returns its session id."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        session = str(attached["sessionId"])
        await self.call("Page.enable", session)
        await self.call("Page.navigate", session, url=url)
        await self.wait_event(session, "Page.loadEventFired")
        return session

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate",
            session,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"the page's script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Headless Chromium with a DevTools port; yields the process and its profile directory."""
    profile = tmp_path / "profile"
    log = tmp_path / "chromium.log"
    argv = [
        chromium_path(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        )
    try:
        yield proc, profile
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(10)
        if log.exists():  # shown by pytest on failure, without D-Bus complaints
            lines = log.read_text("utf-8", "replace").splitlines()
            print("\n".join(line for line in lines if "dbus" not in line)[-5000:])


@pytest.fixture
def browser_url(browser: tuple[subprocess.Popen[bytes], Path]) -> str:
    """The browser's DevTools WebSocket URL, once Chromium has written it (DevToolsActivePort)."""
    proc, profile = browser
    port_file = profile / "DevToolsActivePort"

    def ready() -> str | None:
        assert proc.poll() is None, f"chromium exited with status {proc.returncode}"
        try:
            port, path = port_file.read_text().split()[:2]
        except (OSError, ValueError):
            return None
        return f"ws://127.0.0.1:{port}{path}"

    return poll(ready, TIMEOUT, interval=0.05, what="chromium's DevToolsActivePort file")


@contextlib.asynccontextmanager
async def devtools(url: str) -> AsyncIterator[DevTools]:
    async with websockets.asyncio.client.connect(
        url, open_timeout=TIMEOUT, max_size=None, proxy=None
    ) as ws:
        tools = DevTools(ws)
        try:
            yield tools
        finally:
            tools.reader.cancel()


def test_browser_chat_page_echoes_over_websocket(demo: ServerProcess, browser_url: str) -> None:
    page = f"{demo.url}/chat"
    response = httpx.get(page, timeout=TIMEOUT)
    assert response.status_code == 200 and b"new WebSocket(" in response.content

    async def scenario() -> dict[str, Any]:
        async with devtools(browser_url) as tools:
            session = await tools.open_page(page)
            result: dict[str, Any] = await tools.evaluate(
                session, page_script("hello from chromium ✓", "hello from chromium ✓")
            )
            return result

    result = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert result["status"] == "connected"
    [welcome, echo] = result["lines"]
    assert welcome.startswith("you are guest ") and welcome.endswith(" online"), welcome
    assert echo == f"{welcome.split(';')[0].removeprefix('you are ')}: hello from chromium ✓"
    if not UVICORN:  # uvicorn logs a WebSocket as "WebSocket /ws/chat" [accepted]
        demo.wait_for_line(r'"GET /ws/chat HTTP/1\.1" 101', TIMEOUT)


def test_browser_chat_between_two_pages(demo: ServerProcess, browser_url: str) -> None:
    page = f"{demo.url}/chat"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with devtools(browser_url) as tools:
            first = await tools.open_page(page)
            second = await tools.open_page(page)
            await tools.evaluate(second, page_script(None, None))  # welcomed: in the room
            heard = asyncio.ensure_future(tools.evaluate(second, page_script(None, "hi, second")))
            said = await tools.evaluate(first, page_script("hi, second", "hi, second"))
            return said, await heard

    said, heard = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert said["lines"][-1].endswith(": hi, second")
    assert heard["lines"][-1] == said["lines"][-1]  # the same sender, the same text


def test_demo_http_routes_still_served(demo: ServerProcess) -> None:
    with httpx.Client(base_url=demo.url, timeout=TIMEOUT) as client:
        home = client.get("/")
        assert home.status_code == 200 and b'href="/chat"' in home.content
        assert client.get("/health").text == "ok\n"
        assert client.post("/echo", content=b"hello").json()["body"] == "hello"
        assert client.get("/stream").text == "".join(f"line {i}\n" for i in range(5))
        chat = client.get("/chat")
        assert chat.status_code == 200
        assert chat.headers["content-type"] == "text/html; charset=utf-8"
        # The WebSocket endpoint asked for as a plain HTTP request.
        assert client.get("/ws/chat").status_code == 426
