"""A WebSocket connection's outgoing frames, with a stand-in for the library's
connection: a queue only while there is something to write (issue 28: an idle
connection holds none; its writer waits on a bare future), at most ``queue_size``
frames queued,
4008 without the queued frames when a live connection overflows, the close after
them otherwise, and a resume that waits for room."""
from __future__ import annotations

import asyncio
import gc
import types
import weakref

from forwarders.pipeline.render import Renderer
from forwarders.websocket import protocol
from forwarders.websocket.connection import Connection
from forwarders.websocket.server import WebSocketSettings
from searchlight_forward.counters import Counters

TYPES = frozenset({"OS::Nova::Server"})


class FakeWs:
    """What Connection uses of a ``websockets`` ServerConnection; ``send`` waits
    while ``gate`` is clear (a client that does not read)."""

    def __init__(self):
        self.sent: list[str] = []
        self.closed: tuple | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.request = types.SimpleNamespace(headers={"X-Auth-Token": "t"})
        self.response = object()
        self.remote_address = ("127.0.0.1", 1)

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def connection(queue_size: int = 3) -> tuple[Connection, FakeWs]:
    server = types.SimpleNamespace(
        settings=WebSocketSettings(queue_size=queue_size), resource_types=TYPES,
        renderer=Renderer(()), vocabularies=None, holders=None, counters=Counters(),
        closes=Counters(), background=set())
    server._keep = server.background.add
    ws = FakeWs()
    return Connection(server, ws), ws


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_queue_only_while_frames_are_pending_and_one_writer():
    async def main():
        conn, ws = connection()
        assert conn.frames is None and conn.writer is None and conn.tasks is None
        conn.enqueue("a")
        conn.enqueue("b")
        assert conn.queued() == 2 and conn.writer is not None
        writer = conn.writer
        await settle()
        assert ws.sent == ["a", "b"]
        assert conn.frames is None                            # idle again: no queue,
        assert conn.writer is writer and not conn._wake.done()   # the writer waits
        conn.enqueue("c")
        await settle()
        assert ws.sent == ["a", "b", "c"] and conn.writer is writer
        assert conn.frames is None
        assert conn.server.counters["frames_sent"] == 3
    asyncio.run(main())


class Text(str):
    """A frame whose lifetime a weak reference can follow."""


def test_an_idle_writer_holds_neither_the_queue_nor_the_last_frame():
    async def main():
        conn, ws = connection()
        text = Text("the last frame")
        conn.enqueue(text)
        queue, sent = weakref.ref(conn.frames), weakref.ref(text)
        del text
        await settle()
        ws.sent.clear()
        gc.collect()
        assert queue() is None and sent() is None
        assert conn.writer is not None and not conn._wake.done()
    asyncio.run(main())


def test_a_frame_queued_while_the_last_one_is_written_is_written_too():
    async def main():
        conn, ws = connection()
        ws.gate.clear()
        conn.enqueue("a")
        await settle()                      # "a" taken, being written
        assert conn.queued() == 0 and conn.writer is not None
        conn.enqueue("b")
        ws.gate.set()
        await settle()
        assert ws.sent == ["a", "b"] and conn.frames is None
    asyncio.run(main())


def test_an_overflow_closes_with_4008_without_the_queued_frames():
    async def main():
        conn, ws = connection(queue_size=3)
        conn.session.state = protocol.State.LIVE
        ws.gate.clear()                     # the client reads nothing
        conn.enqueue("first")
        await settle()                      # being written: not counted
        for text in ("1", "2", "3"):
            conn.enqueue(text)
        assert conn.queued() == 3 and not conn.closing
        conn.enqueue("4")                   # one too many
        assert conn.closing and conn.server.counters["overflows"] == 1
        await settle()
        assert ws.closed[0] == protocol.TOO_SLOW
        assert conn.server.closes[protocol.TOO_SLOW] == 1
        conn.enqueue("5")                   # closing: dropped
        ws.gate.set()
        await settle()
        assert ws.sent == []                # the writer was cancelled mid-frame
    asyncio.run(main())


def test_a_close_goes_after_the_frames_already_queued():
    async def main():
        conn, ws = connection()
        conn.enqueue("a")
        conn.close(protocol.TOKEN_REVOKED, "revoked")
        conn.enqueue("after")               # closing: not sent
        await settle()
        assert ws.sent == ["a"] and ws.closed == (protocol.TOKEN_REVOKED, "revoked")
        assert conn.writer is None
    asyncio.run(main())


def test_a_resume_waits_for_room_instead_of_overflowing():
    async def main():
        conn, ws = connection(queue_size=2)
        ws.gate.clear()
        texts = [f"r{i}" for i in range(10)]

        async def resume():
            for text in texts:
                await conn._put(text)
        task = asyncio.get_running_loop().create_task(resume())
        await settle()
        assert not task.done() and conn.queued() == 2 and not conn.closing
        ws.gate.set()
        await asyncio.wait_for(task, 5)
        await settle()
        assert ws.sent == texts and not conn.closing
        assert conn.frames is None and conn._room is None
    asyncio.run(main())


def test_the_handshake_headers_are_dropped_once_the_token_is_read():
    from websockets.datastructures import Headers
    conn, ws = connection()
    ws.request = types.SimpleNamespace(headers=Headers({"X-Auth-Token": "t",
                                                        "User-Agent": "x" * 200}))
    conn._forget_handshake()
    assert len(ws.request.headers) == 0 and ws.response is None
