"""The ASGI lifespan protocol (lifespan spec 2.0): startup before serving, shutdown after."""

from __future__ import annotations

import asyncio
from typing import Any

from coachwhip.logs import error_logger

STARTUP_EVENTS = ("lifespan.startup.complete", "lifespan.startup.failed")
SHUTDOWN_EVENTS = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


class Lifespan:
    """Runs the app's lifespan scope in its own Task for the whole life of the server.

    mode "on": any failure stops the server. mode "auto": an app that raises before answering
    startup is taken not to support lifespan, and the server carries on without it.
    """

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = True
        self.failure: str | None = None  # why startup or shutdown failed
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sent: list[str] = []

    async def startup(self) -> bool:
        """True when the server may serve; False when startup failed (see `failure`)."""
        error_logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self.failure is not None:
            error_logger.error("Application startup failed. %s", self.failure)
            return False
        if self.supported:
            error_logger.info("Application startup complete.")
        return True

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        error_logger.info("Waiting for application shutdown.")
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self.failure is not None:
            error_logger.error("Application shutdown failed. %s", self.failure)
        else:
            error_logger.info("Application shutdown complete.")

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self.failure is None and not self._sent:
                self.supported = False
                if self.mode == "on":
                    self.failure = f"Exception in 'lifespan' protocol: {exc!r}"
                    error_logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                else:
                    error_logger.info("ASGI 'lifespan' protocol appears unsupported.")
            elif self.failure is None:
                self.failure = f"Exception in 'lifespan' protocol: {exc!r}"
                error_logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if not self._startup_done.is_set() and self.mode == "on":
                self.failure = "the app returned from the lifespan scope before startup completed"
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        expected = SHUTDOWN_EVENTS if self._startup_done.is_set() else STARTUP_EVENTS
        if kind not in expected or kind in self._sent:
            raise RuntimeError(f"Expected ASGI message one of {expected}, but got {kind!r}")
        self._sent.append(kind)
        if kind.endswith(".failed"):
            self.failure = str(message.get("message", "") or "")
            self.failure = self.failure or "(the app gave no message)"
        if kind.startswith("lifespan.startup"):
            self._startup_done.set()
        else:
            self._shutdown_done.set()
