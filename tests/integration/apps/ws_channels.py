"""Django Channels consumers, served end to end: the layout of ws_star.py (see its docstring).

Django is configured here in code (no settings module, no project directory); the channel layer
is the in-memory one, so a room's broadcast is a group_send within this process. HTTP requests go
to Django's own ASGI handler (the /events and /rooms/<room>/members views).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="coachwhip-tests-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["channels"],
    MIDDLEWARE=[],
    USE_TZ=True,
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
)
django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.generic.websocket import (  # noqa: E402
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

SUPPORTED_SUBPROTOCOLS = ("chat.v2", "chat.v1")
EVENTS: list[dict[str, object]] = []
MEMBERS: dict[str, int] = {}
MEMBERS_LOCK = threading.Lock()  # sync consumers run in a thread pool


def record(tag: str, endpoint: str, code: int | None, reason: str | None) -> None:
    EVENTS.append({"tag": tag, "endpoint": endpoint, "code": code, "reason": reason})
    print(f"cw-ws: {endpoint} {tag} closed with {code}", flush=True)  # seen after a shutdown too


def query(scope: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)


def first(scope: dict[str, Any], key: str, default: str = "") -> str:
    return query(scope).get(key, [default])[0]


class EchoConsumer(WebsocketConsumer):
    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            self.send(text_data=text_data)
        else:
            self.send(bytes_data=bytes_data)

    def disconnect(self, code: int) -> None:
        record(first(self.scope, "tag"), "echo", code, None)


class JsonEchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = json.loads(text_data if text_data is not None else (bytes_data or b""))
        keys = sorted(data) if isinstance(data, dict) else []
        await self.send(text_data=json.dumps({"received": data, "keys": keys}))

    async def disconnect(self, code: int) -> None:
        record(first(self.scope, "tag"), "json", code, None)


class RoomConsumer(JsonWebsocketConsumer):
    """A chat room: group_add on connect, group_send of every message, group_discard on close."""

    def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.who = first(self.scope, "name", "anonymous")
        self.group = f"room.{self.room}"
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()
        with MEMBERS_LOCK:
            MEMBERS[self.room] = MEMBERS.get(self.room, 0) + 1
        self.send_json({"type": "welcome", "room": self.room, "name": self.who})

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        async_to_sync(self.channel_layer.group_send)(
            self.group,
            {"type": "chat.message", "room": self.room, "from": self.who, "text": content["text"]},
        )

    def chat_message(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "message", **{k: event[k] for k in ("room", "from", "text")}})

    def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)
            with MEMBERS_LOCK:
                MEMBERS[self.room] -= 1
            record(self.who, "room", code, None)


class ParamsConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        self.accept()
        self.send_json(
            {
                "item_id": self.scope["url_route"]["kwargs"]["item_id"],
                "query": query(self.scope),
                "path": self.scope["path"],
                "framework": "channels",
            }
        )
        self.close()


class SubprotoConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        offered = list(self.scope.get("subprotocols", []))
        chosen = next((p for p in offered if p in SUPPORTED_SUBPROTOCOLS), None)
        self.accept(subprotocol=chosen, headers=[(b"x-served-by", b"channels")])
        self.send_json({"offered": offered, "chosen": chosen})


class CloseConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.accept()
        self.send(text_data="closing")
        self.close(code=4000, reason="custom reason")


class DenyConsumer(WebsocketConsumer):
    def connect(self) -> None:
        if first(self.scope, "token") != "secret":
            self.close()  # before accept: the server answers 403
            return
        self.accept()
        self.send(text_data="welcome")
        self.close()


def events(request: HttpRequest) -> JsonResponse:
    tag = request.GET.get("tag")
    return JsonResponse([e for e in EVENTS if tag is None or e["tag"] == tag], safe=False)


def room_members(request: HttpRequest, room: str) -> JsonResponse:
    with MEMBERS_LOCK:
        return JsonResponse(MEMBERS.get(room, 0), safe=False)


urlpatterns = [
    path("events", events),
    path("rooms/<str:room>/members", room_members),
]

websocket_urlpatterns = [
    path("ws/echo", EchoConsumer.as_asgi()),
    path("ws/json", JsonEchoConsumer.as_asgi()),
    path("ws/rooms/<str:room>", RoomConsumer.as_asgi()),
    path("ws/params/<int:item_id>", ParamsConsumer.as_asgi()),
    path("ws/subproto", SubprotoConsumer.as_asgi()),
    path("ws/close", CloseConsumer.as_asgi()),
    path("ws/deny", DenyConsumer.as_asgi()),
]

app = ProtocolTypeRouter(
    {"http": get_asgi_application(), "websocket": URLRouter(websocket_urlpatterns)}
)
