"""coachwhip's demo app: plain ASGI, no framework needed.

    coachwhip demo.app:app        (or: bash scripts/demo)

Routes: /            a greeting
        /echo        echoes the request body (POST) and headers as JSON
        /stream      a streamed (chunked) response, five lines
        /health      "ok"
        /chat        a chat page: its JavaScript talks to /ws/chat over a WebSocket
        /ws/chat     the WebSocket: each text message goes to every open chat page (so a page
                     alone hears its own echo)
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

HTML = b"""<!doctype html><title>coachwhip</title>
<h1>coachwhip is serving this page</h1>
<p>An ASGI server with a C++ engine. Try <a href="/stream">/stream</a>, the WebSocket
<a href="/chat">chat</a> (open it in two tabs) or
<code>curl -d hello http://127.0.0.1:8000/echo</code>.</p>
"""

CHAT_HTML = b"""<!doctype html><meta charset="utf-8"><title>coachwhip chat</title>
<h1>coachwhip chat</h1>
<p>Status: <span id="status">connecting</span>. Every message goes to every open chat page.</p>
<form id="form"><input id="text" autocomplete="off" maxlength="500" autofocus>
<button id="send">Send</button></form>
<ul id="log"></ul>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const input = document.getElementById("text");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws/chat`);
function show(text, kind) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  log.appendChild(item);
}
ws.onopen = () => { status.textContent = "connected"; };
ws.onclose = (event) => { status.textContent = `closed (${event.code})`; };
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "welcome") {
    show(`you are ${message.you}; ${message.online} online`, "info");
  } else {
    show(`${message.from}: ${message.text}`, "message");
  }
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  if (input.value && ws.readyState === WebSocket.OPEN) {
    ws.send(input.value);
    input.value = "";
  }
};
</script>
"""

CHAT: dict[str, Any] = {}  # name -> the `send` of each open chat WebSocket
GUESTS = itertools.count(1)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await chat(scope, receive, send)
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        await respond(send, 200, json.dumps(payload, indent=2).encode(), b"application/json")
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        for i in range(5):
            await send(
                {"type": "http.response.body", "body": f"line {i}\n".encode(), "more_body": True}
            )
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/health":
        await respond(send, 200, b"ok\n", b"text/plain")
    elif path == "/":
        await respond(send, 200, HTML, b"text/html; charset=utf-8")
    elif path == "/chat":
        await respond(send, 200, CHAT_HTML, b"text/html; charset=utf-8")
    elif path == "/ws/chat":
        await respond(send, 426, b"this is a WebSocket endpoint\n", b"text/plain")
    else:
        await respond(send, 404, b"not found\n", b"text/plain")


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def chat(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The chat WebSocket: a text message from one page goes to every open page."""
    await receive()  # websocket.connect
    if scope["path"] != "/ws/chat":
        await send({"type": "websocket.close"})  # before accept: the server answers 403
        return
    name = f"guest {next(GUESTS)}"
    await send({"type": "websocket.accept"})
    CHAT[name] = send
    try:
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps({"type": "welcome", "you": name, "online": len(CHAT)}),
            }
        )
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            payload = json.dumps({"type": "message", "from": name, "text": text[:500]})
            for other, other_send in list(CHAT.items()):
                try:
                    await other_send({"type": "websocket.send", "text": payload})
                except OSError:  # that page has just gone; its own handler cleans up
                    CHAT.pop(other, None)
    finally:
        CHAT.pop(name, None)
