"""One WebSocket connection's I/O: its queue of outgoing frames and writer task,
its timers, token validation, and its resume, around two sans-I/O cores: the
protocol's ``Session`` (what the connection may see, which frames) and the change
log's ``Follower`` (catch up from the cursor, then go live, with no gap).

An idle connection is the common case (thousands per process, most of them
waiting for a change of their project), so it holds as little as it can: no
outgoing queue while nothing is to be sent (it comes with a frame and goes when
the last one is written; the writer waits on a bare future meanwhile), no handshake
headers once the token is read, no set of tasks while none runs (issue 28;
bench/ws_memory.py measures it).

Resumes are paced by their own client (they wait for queue room), while the live
changes that arrive meanwhile are held aside by the follower and handed over once
the resume is done; if too many arrive, the resume simply runs again from where it
got to (``MAX_RESUME_ROUNDS`` rounds, then 4008).
"""
from __future__ import annotations

import asyncio
import collections
import logging

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

from forwarders.websocket import protocol
from forwarders.websocket.auth import InvalidToken, ValidatorUnavailable
from forwarders.websocket.protocol import (Close, Resume, Send, Session,
                                           Subscription, Validate)
from searchlight_forward.changelog import follower as core
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import IndexGone, Page, Selection
from searchlight_forward.changelog.snapshot import TooBroad, take as take_snapshot
from searchlight_forward.tokenbucket import TokenBucket

LOG = logging.getLogger(__name__)

MAX_RESUME_ROUNDS = 8
_CLOSE = object()


class Connection:
    """The I/O half of one connection: queue, writer, timers, resume."""

    def __init__(self, server, ws: ServerConnection):
        self.server = server
        self.ws = ws
        s = server.settings
        self.session = Session(server.resource_types, server.renderer, s.admin_role,
                               s.max_errors,
                               frame_rate=TokenBucket(s.max_frame_rate, s.frame_burst),
                               vocabularies=server.vocabularies,
                               holders=server.holders, owner=self)
        self.token: str | None = None        # the accepted token in force (re-checks)
        self.user: str | None = None         # set once admitted (per-user limit)
        #: outgoing frames not yet written (None: none, the idle state); at most
        #: ``queue_size`` of them, the frame being written not counted
        self.frames: collections.deque | None = None
        #: the subscription's way through the change log (None: not subscribed)
        self.follower: core.Follower | None = None
        self.closing = False
        #: validation and resume tasks running (None: none)
        self.tasks: set[asyncio.Task] | None = None
        #: writes ``frames`` out (started by the first frame)
        self.writer: asyncio.Task | None = None
        #: what the writer waits on while there is nothing to write
        self._wake: asyncio.Future | None = None
        #: a resume waiting for room in ``frames``
        self._room: asyncio.Future | None = None
        self.auth_timer: asyncio.TimerHandle | None = None
        self.expiry_timers: list[asyncio.TimerHandle] = []
        self.peer = getattr(ws, "remote_address", None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.auth_timer = loop.call_later(self.server.settings.auth_timeout,
                                          self._auth_deadline)
        ws = self.ws
        try:
            token = ws.request.headers.get("X-Auth-Token") if ws.request else None
            self._forget_handshake()
            if token:
                self.perform(self.session.header_token(token))
            del token
            while True:
                message = await ws.recv()
                if not self.closing:       # (else drain until the close handshake ends)
                    self.perform(self.session.receive(message))
                del message                # not kept while waiting for the next one
        except websockets.ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - a bug here must not reach other clients
            LOG.exception("connection %s failed", self.peer)
            self.close(protocol.INTERNAL_ERROR, "internal error", flush=False)
        finally:
            if not self.closing:
                # Closed by the client, or by the library (1009 too big, ping timeout):
                # count the code the server sent (it echoes the client's).
                sent = getattr(self.ws.protocol, "close_sent", None)
                code = sent.code if sent is not None else self.ws.close_code
                if code is not None:
                    self.server.closes.add(code)
            self.session.closed()
            self.token = None
            for timer in [self.auth_timer, *self.expiry_timers]:
                if timer is not None:
                    timer.cancel()
            self.auth_timer = None
            for task in list(self.tasks or ()):
                task.cancel()
            if self.writer is not None and not self.closing:
                self.writer.cancel()

    def _auth_deadline(self) -> None:
        self.auth_timer = None
        self.perform(self.session.auth_deadline())

    def _forget_handshake(self) -> None:
        """Drop the opening handshake's headers (about 4 KB, kept by ``websockets``
        for the connection's life) once the token is read from them. The request
        object stays: ``websockets`` takes a connection without one for one still
        in its handshake."""
        request = self.ws.request
        if request is not None and len(request.headers):
            request.headers = Headers()
        self.ws.response = None

    # -- actions -------------------------------------------------------------------

    def perform(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.enqueue(action.text)
            elif isinstance(action, Close):
                self.close(action.code, action.reason,
                           flush=action.code != protocol.TOO_SLOW)
            elif isinstance(action, Validate):
                self._spawn(self._validate(action.token))
            elif isinstance(action, Resume):
                self._spawn(self._resume(action.subscription))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if self.tasks is not None:
            self.tasks.discard(task)
            if not self.tasks:
                self.tasks = None

    # -- the outgoing frames -------------------------------------------------------

    def queued(self) -> int:
        """Frames waiting to be written (the one being written not counted)."""
        return len(self.frames) if self.frames is not None else 0

    def _push(self, item) -> bool:
        """Queue ``item`` if there is room (False if not), and have it written."""
        frames = self.frames
        if frames is None:
            frames = self.frames = collections.deque()
        elif len(frames) >= self.server.settings.queue_size:
            return False
        frames.append(item)
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():              # (done: cancelled with the writer)
                wake.set_result(None)
        elif self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return True

    def enqueue(self, text: str) -> None:
        if self.closing:
            return
        if not self._push(text):
            self.server.counters.add("overflows")
            LOG.info("closing %s: outgoing queue full (%d frames)", self.peer,
                     self.queued())
            if self.follower is not None:
                self.follower.overflow()       # a live connection gives up: 4008
            self.perform(self.session.overflow(self.queued()))

    def close(self, code: int, reason: str, flush: bool = True) -> None:
        """Close with ``code``; after the frames already queued unless ``flush`` is
        false or the queue is full."""
        if self.closing:
            return
        self.closing = True
        self.session.closed()
        self.server.closes.add(code)
        if flush and self._push((_CLOSE, code, reason)):
            return
        if self.writer is not None:
            self.writer.cancel()
        self._spawn_detached(self.ws.close(code, reason))

    def _spawn_detached(self, coro) -> None:
        # Not in self.tasks: the handler's cleanup must not cancel the close itself.
        task = asyncio.get_running_loop().create_task(coro)
        self.server._keep(task)

    async def _write(self) -> None:
        """Write the queued frames out as they come, up to the close. Between
        bursts the queue is dropped and the writer waits on a future, which the
        next frame completes. (A writer task started per burst instead would save
        about 0.8 KB per idle connection, but cost about 5 us more per frame when
        frames come one at a time, as in a broadcast: measured, not kept.)"""
        size = self.server.settings.queue_size
        loop = asyncio.get_running_loop()
        try:
            while True:
                frames = self.frames
                if not frames:
                    # Idle: nothing held while waiting, not even the last frame sent.
                    frames = item = self.frames = None
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                item = frames.popleft()
                room = self._room
                if room is not None and not room.done() and len(frames) < size:
                    room.set_result(None)
                if isinstance(item, tuple) and item and item[0] is _CLOSE:
                    await self.ws.close(item[1], item[2])
                    return
                await self.ws.send(item)
                self.server.counters.add("frames_sent")
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.writer is asyncio.current_task():
                self.writer = None
                self._wake = None

    # -- authentication ---------------------------------------------------------------

    async def _validate(self, token: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            identity = await loop.run_in_executor(self.server._auth_executor,
                                                  self.server.validator.validate, token)
        except InvalidToken as exc:
            self.server.counters.add("auth_failures")
            LOG.info("authentication failed for %s: %s", self.peer, exc)
            self.perform(self.session.token_rejected(str(exc)))
            return
        except asyncio.CancelledError:
            raise
        except ValidatorUnavailable as exc:
            LOG.warning("token validation unavailable for %s: %s", self.peer, exc)
            self.perform(self.session.validation_unavailable())
            return
        except Exception:  # noqa: BLE001 - a validator bug
            LOG.exception("token validation failed for %s", self.peer)
            self.perform(self.session.validation_unavailable())
            return
        renewal = self.session.identity is not None
        if not renewal and not self.server.admit(self, identity.user_id or ""):
            self.perform(self.session.too_many_connections(
                self.server.settings.max_connections_per_user))
            return
        actions = self.session.token_accepted(identity)
        self.perform(actions)
        if self.session.identity is identity and not self.closing:
            self.server.counters.add("renewed" if renewal else "authenticated")
            self.token = token
            if self.auth_timer is not None:
                self.auth_timer.cancel()
                self.auth_timer = None
            self._schedule_expiry(identity)

    def _schedule_expiry(self, identity) -> None:
        """A ``token_expiring`` frame ``expiry_warning`` seconds before the token in
        force expires, and the close (4005) when it does, unless renewed."""
        for timer in self.expiry_timers:
            timer.cancel()
        self.expiry_timers = []
        left = identity.seconds_left()
        if left is None:
            return
        loop = asyncio.get_running_loop()
        warn_in = left - self.server.settings.expiry_warning
        if warn_in > 0:
            self.expiry_timers.append(loop.call_later(
                warn_in, lambda: self.perform(self.session.token_expiring())))
        else:
            self.perform(self.session.token_expiring())
        self.expiry_timers.append(loop.call_later(max(0.0, left) + 0.01, self._expire))

    def _expire(self) -> None:
        actions = self.session.token_expired()
        if actions:
            self.server.counters.add("expired")
            self.perform(actions)
        elif not self.closing and self.session.identity is not None:
            # The timer fired a hair early (a renewal would have cancelled it).
            left = self.session.identity.seconds_left() or 0.0
            self.expiry_timers.append(asyncio.get_running_loop().call_later(
                max(0.0, left) + 0.01, self._expire))

    # -- changes -------------------------------------------------------------------

    def feed(self, entry: Entry) -> None:
        """A live entry from the fan-out (synchronous, never waits)."""
        follower = self.follower
        if self.closing or follower is None:
            return
        if follower.holding:                  # resuming: held aside, if for us
            try:
                concerned = self.session.concerns(entry)
            except Exception as exc:  # noqa: BLE001 - this entry only
                self._failed(entry, exc)
                return
            if concerned:
                follower.live(entry)
            return
        for action in follower.live(entry):
            for handed in action.entries:
                follower.handed(handed)
                text = self.offer(handed)
                if text is not None:
                    self.enqueue(text)

    def offer(self, entry: Entry) -> str | None:
        """The session's frame for ``entry``; an entry the session fails on is
        recorded (a dead letter) and skipped alone: this connection, and every
        other, goes on with the next."""
        try:
            return self.session.offer(entry)
        except Exception as exc:  # noqa: BLE001 - this entry only, never the stream
            self._failed(entry, exc)
            return None

    def _failed(self, entry: Entry, exc: Exception) -> None:
        LOG.exception("handling %r for %s failed", entry, self.peer)
        self.server.entry_failed(entry, f"{type(exc).__name__}: {str(exc)[:300]}")

    async def _put(self, text: str) -> None:
        """Queue a frame, waiting for room (resumes are paced by their client).
        Once the connection is closing, frames are no longer queued."""
        while not self.closing:
            if self._push(text):
                return
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    async def _search(self, sub: Subscription, position: Position, full: bool) -> bool:
        """A live search's matches as of ``position`` (the ``results`` frame when
        ``full``; with a cursor, the members the changes since it are judged
        against). True if the snapshot stands for everything up to ``position``."""
        snapshot = await asyncio.get_running_loop().run_in_executor(
            self.server._resume_executor, take_snapshot, self.server.es, position,
            sub.query.dsl(sub.role, sorted(sub.resource_types),
                          None if sub.all_projects else sub.project_id),
            sub.query.sort_dsl(), sub.query.page_size, self.server.settings.live_search_cap)
        for action in self.session.results(snapshot, full):
            await self._put(action.text)
        return full

    def _snapshot(self) -> list:
        """A round of the resume starts at what every connection was offered; live
        entries after it are held (no await between this and the next offer)."""
        position = self.server.dispatched()
        if position is None and not self.server.feed.located:
            # Elasticsearch was away at start: where the log ends is unknown.
            self.perform(self.session.unavailable("Elasticsearch"))
            return []
        return self.follower.snapshot(position)

    async def _resume(self, sub: Subscription) -> None:
        """Carry out the follower's actions: catch up from the cursor (pages read off
        the loop, frames queued as the client takes them), then go live."""
        server, session = self.server, self.session
        loop = asyncio.get_running_loop()
        follower = self.follower = core.Follower(
            sub.cursor, fresh=core.RESYNC, hold=server.settings.queue_size,
            max_rounds=MAX_RESUME_ROUNDS, check_horizon=server.tombstones is not None,
            no_log=core.LIVE_EMPTY, overflow_catches_up=False)
        server.attach(self, sub)
        count = 0
        pending = collections.deque(self._snapshot())
        while pending:
            action = pending.popleft()
            if isinstance(action, core.CheckHorizon):
                try:
                    horizon = await loop.run_in_executor(
                        server._resume_executor, server.tombstones.horizon, action.index)
                except Exception as exc:  # noqa: BLE001
                    LOG.warning("resume for %s failed: %s", self.peer, exc)
                    self.perform(session.unavailable("Elasticsearch"))
                    return
                pending.extendleft(reversed(follower.horizon(horizon)))
            elif isinstance(action, core.Read):
                try:
                    count += await self._read(sub, action)
                except TooBroad as exc:
                    server.detach(self)
                    self.follower = None
                    self.perform(session.search_refused("query_too_broad", str(exc)))
                    return
                except IndexGone:
                    # The index went away (a rebuild finished): start over on the new
                    # one once the feed has moved to it.
                    pending.extend(follower.index_gone())
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    LOG.warning("resume for %s failed: %s", self.peer, exc)
                    self.perform(session.unavailable("Elasticsearch"))
                    return
                if self.closing:
                    return
                session.start_at(action.upto)
                pending.extend(follower.read_done())
            elif isinstance(action, core.StartOver):
                if action.wait:
                    server.feed.ring()
                    await asyncio.sleep(server.settings.poll_interval)
                pending.extend(self._snapshot())
            elif isinstance(action, core.GiveUp):
                self.perform(session.overflow(server.settings.queue_size))
                return
            elif isinstance(action, core.GoLive):
                server.counters.add("resumes")
                for frame in session.resumed(action.position, count, action.full):
                    if isinstance(frame, Send):
                        await self._put(frame.text)
                pending.extend(follower.handover())
            elif isinstance(action, core.Hand):
                # Hand over: the held live entries, then live. No await between the
                # follower's last emptiness check and going live.
                for entry in action.entries:
                    follower.handed(entry)
                    text = self.offer(entry)
                    if text is not None:
                        await self._put(text)
                    if self.closing:
                        return
                pending.extend(follower.handover())
            elif isinstance(action, core.Live):
                server.resumed(self)
            # (ResyncBegin, ResyncEnd: a full resume says so in ``resumed``)

    async def _read(self, sub: Subscription, read: core.Read) -> int:
        """The connection's entries of ``read`` as frames; how many were queued."""
        server, session, follower = self.server, self.session, self.follower
        loop = asyncio.get_running_loop()
        if not read.resync:
            session.start_at(read.after)      # (a cursor ahead of this server's)
        if sub.query is not None and await self._search(sub, read.upto, read.resync):
            follower.page_done(Page([], read.upto))   # the snapshot stands for all
            return 0
        count = 0
        selection = Selection(
            roles=(sub.role,), resource_types=sub.resource_types,
            project_id=None if sub.all_projects else sub.project_id,
            live_only=read.resync)
        pages = server.changelog.pages(read.after, read.upto, selection,
                                       resync=read.resync)
        while True:
            page = await loop.run_in_executor(server._resume_executor, next, pages, None)
            if page is None:
                return count
            for action in follower.page(page):
                for entry in action.entries:
                    follower.handed(entry)
                    problem = entry.problem
                    if problem is not None:
                        server.entry_failed(entry, problem)
                        continue
                    text = self.offer(entry)
                    if text is not None:
                        count += 1
                        await self._put(text)
                    if self.closing:
                        return count
            follower.page_done(page)
