"""A WebSocketServer on its own event loop in a thread: for tests, bench and
embedding (``from devtools.websocket_thread import ServerThread``)."""
from __future__ import annotations

import asyncio
import threading

from forwarders.websocket.server import WebSocketServer


class ServerThread:
    """A WebSocketServer on its own event loop in a thread (tests, embedding)."""

    def __init__(self, server: WebSocketServer):
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="ws-server")

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the WebSocket server did not start")
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.server.settings.host}:{self.server.port}"

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.stop()
        asyncio.run(main())

    def call(self, fn, *args, timeout: float = 10.0):
        """Run ``fn(*args)`` in the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
