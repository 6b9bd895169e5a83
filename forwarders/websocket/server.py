"""The WebSocket server: ``websockets`` (asyncio) around the sans-I/O protocol.

One ``ChangeFeed`` (on its own thread) follows the resource group's change log and
hands each page to ``dispatch`` in the event loop, which offers every entry to the
connections that may see it (indexed by project, plus the admins who asked for all
projects). Each connection has a bounded queue of outgoing frames and a writer
task; dispatch never waits for a connection: a queue that overflows closes its connection with 4008 and no
one else notices. Resumes are paced by their own client (they wait for queue
room), while the live changes that arrive meanwhile are held aside and handed over
once the resume is done; if too many arrive, the resume simply runs again from
where it got to.

See ``docs/websocket.md`` for the protocol and ``protocol.py`` for the rules.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import http
import json
import logging
import pathlib
import threading
from typing import Any, Iterable, Mapping, Sequence

import websockets
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection, serve

from forwarders.livesearch.query import Vocabularies
from forwarders.websocket import protocol
from forwarders.websocket.auth import InvalidToken, TokenValidator, ValidatorUnavailable
from forwarders.websocket.protocol import (Close, FrameRate, Renderer, Resume, Send,
                                           Session, Subscription, Validate)
from searchlight_forward import metrics, search
from searchlight_forward.changelog.doorbell import DoorbellListener
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.feed import ChangeFeed
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import (PAGE_SIZE, ChangeLog, IndexGone, Page,
                                                  Selection)
from searchlight_forward.changelog.snapshot import TooBroad, take as take_snapshot
from searchlight_forward.changelog.tombstones import Tombstones
from searchlight_forward.changelog.unhandled import UnhandledEntries
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.model.documents import ROLES
from searchlight_forward.status import health

LOG = logging.getLogger(__name__)

MAX_RESUME_ROUNDS = 8
_CLOSE = object()

# The live table page (docs/live-table.md): a fixed whitelist, nothing else is served.
STATIC_DIR = pathlib.Path(__file__).with_name("static")
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
                "/app.js": ("app.js", "text/javascript; charset=utf-8"),
                "/app.css": ("app.css", "text/css; charset=utf-8")}
STATIC_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self' ws: wss:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


@dataclasses.dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765                 # 0: any free port (see WebSocketServer.port)
    queue_size: int = 1000           # outgoing frames per connection before 4008
    poll_interval: float = 1.0       # seconds between polls when no doorbell rings
    auth_timeout: float = 10.0       # seconds to authenticate before 4001
    token_recheck_interval: float = 15.0   # open connections' tokens re-validated (4006)
    expiry_warning: float = 60.0     # seconds before expiry to send token_expiring
    max_frame_rate: float = 5.0      # client frames per second, sustained ...
    frame_burst: int = 20            # ... and at once, before 4029
    max_unauthenticated: int = 500   # connections awaiting a token; more get HTTP 503
    max_connections_per_user: int = 50   # authenticated connections of one user (4029)
    admin_role: str = "admin"
    max_size: int = 64 * 1024        # largest client frame (bytes) before 1009
    max_errors: int = 10             # bad frames tolerated before 4002
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 10.0
    compression: str | None = "deflate"
    page_size: int = PAGE_SIZE
    validator_threads: int = 4
    resume_threads: int = 4
    live_search_cap: int = 5000      # resources one live search may follow (< 10000:
                                     # Elasticsearch's index.max_result_window)


class WebSocketServer:
    """Serves one resource group's changes to authenticated WebSocket clients.

    ``filters``: the pipeline's ``forwarders.filters.Filter`` objects, applied to
    every document sent. ``admin_only``: resource type -> fnmatch patterns, removed
    again from user copies. ``doorbell_url``: the RabbitMQ transport URL to listen
    for rings on (None: poll every ``poll_interval`` only).
    """

    def __init__(self, es: search.Client, group: str,
                 validator: TokenValidator, resource_types: Iterable[str], *,
                 filters: Sequence[Any] = (),
                 admin_only: Mapping[str, Iterable[str]] | None = None,
                 doorbell_url: str | None = None, settings: Settings | None = None,
                 state_index: str | None = None,
                 mappings: Mapping[str, Mapping[str, Any]] | None = None,
                 dead_letters: DeadLetterIndex | None = None,
                 **overrides: Any):
        self.settings = dataclasses.replace(settings or Settings(), **overrides)
        self.es = es
        self.group = group
        self.validator = validator
        self.resource_types = frozenset(resource_types)
        #: entries that cannot be handed on: each a dead letter, the rest go on
        self.unhandled = UnhandledEntries(f"websocket/{group}", dead_letters)
        self._record_executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="ws-dead-letter")
        self.renderer = Renderer(filters, admin_only, on_failure=self.entry_failed)
        #: live search (subscriptions with a query) needs the plugins' search mappings
        self.vocabularies = Vocabularies(
            {t: m for t, m in mappings.items() if t in self.resource_types},
            admin_only or {}, filters) if mappings else None
        self.doorbell_url = doorbell_url
        self.changelog = ChangeLog(es, group, self.settings.page_size)
        self.tombstones = Tombstones(es, group, state_index) if state_index else None
        self.feed = ChangeFeed(self.changelog, self._from_feed, Selection(roles=ROLES),
                               self.settings.poll_interval)
        #: every entry at or below it was dispatched (None: the group has no index)
        self.position: Position | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._auth_executor = concurrent.futures.ThreadPoolExecutor(
            self.settings.validator_threads, thread_name_prefix="ws-auth")
        self._resume_executor = concurrent.futures.ThreadPoolExecutor(
            self.settings.resume_threads, thread_name_prefix="ws-resume")
        self.doorbell: DoorbellListener | None = None
        self.clients: set[_Client] = set()
        self._by_project: dict[Any, set[_Client]] = collections.defaultdict(set)
        self._all_projects: set[_Client] = set()
        #: live searches of one project: who holds which resource, and who is
        #: resuming (and holds every entry of its role until it knows its members),
        #: so a resource moved to another project still reaches them as a ``left``
        self.holders = protocol.Holders()
        self._resuming_searches: set[_Client] = set()
        self._server = None
        self.port: int | None = None
        self.counters: Counters = Counters()
        self.closes: Counters = Counters()
        self._background: set[asyncio.Task] = set()
        self._recheck: asyncio.Task | None = None
        self.unauthenticated = 0                      # connections without a token yet
        self.per_user: collections.Counter = collections.Counter()
        self._metrics = metrics.registry(self.metrics)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        # Resumes read up to the dispatched position: it starts at the log's end,
        # made visible by one refresh. Elasticsearch away: serve anyway (clients
        # authenticate, resumes wait) and locate once it answers.
        await loop.run_in_executor(self._resume_executor, self.feed.locate, True)
        self.position = self.feed.position
        if self.doorbell_url:
            self.doorbell = DoorbellListener(self.doorbell_url, [self.group],
                                             self.feed.ring)
            if not await loop.run_in_executor(None, self.doorbell.start, 10.0):
                LOG.warning("doorbell not connected yet; polling every %.1fs meanwhile",
                            self.settings.poll_interval)
        self.feed.start()
        s = self.settings
        self._server = await serve(
            self._handle, s.host, s.port, max_size=s.max_size,
            ping_interval=s.ping_interval, ping_timeout=s.ping_timeout,
            close_timeout=s.close_timeout, compression=s.compression,
            process_request=self._process_request, server_header=None)
        self.port = self._server.sockets[0].getsockname()[1]
        if s.token_recheck_interval > 0:
            self._recheck = asyncio.get_running_loop().create_task(self._recheck_tokens())
        LOG.info("WebSocket server for resource group %s on ws://%s:%d (%d resource "
                 "types; doorbell %s)", self.group, s.host, self.port,
                 len(self.resource_types), "on" if self.doorbell else "off")

    async def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        if self._server is not None:
            self._server.close()          # 1001 to every client
            await self._server.wait_closed()
        if self.doorbell is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.doorbell.stop)
        await asyncio.get_running_loop().run_in_executor(None, self.feed.stop)
        self._auth_executor.shutdown(wait=False, cancel_futures=True)
        self._resume_executor.shutdown(wait=False, cancel_futures=True)
        self._record_executor.shutdown(wait=True)    # dead letters being written

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a reference to a task no connection owns (closing handshakes)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- HTTP side ---------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request):
        def _typed(response, content_type: str):
            # connection.respond says text/plain; Headers is a multidict
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = content_type
            return response

        path = request.path.split("?", 1)[0]
        if ("websocket" in request.headers.get("Upgrade", "").lower()
                and self.unauthenticated >= self.settings.max_unauthenticated):
            # Sockets that never authenticate cost a file descriptor each until
            # auth_timeout: refuse more before the handshake.
            self.counters.add("refused_unauthenticated")
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                          "too many connections awaiting "
                                          "authentication; retry later\n")
            response.headers["Retry-After"] = str(max(1, int(self.settings.auth_timeout)))
            return response
        if path == "/status":
            return _typed(connection.respond(http.HTTPStatus.OK,
                                             json.dumps(self.stats()) + "\n"),
                          "application/json")
        if path == "/metrics":
            return _typed(connection.respond(http.HTTPStatus.OK,
                                             generate_latest(self._metrics).decode()),
                          CONTENT_TYPE_LATEST)
        if path in ("/healthz", "/readyz"):
            code, body = health(self.liveness if path == "/healthz" else self.readiness)
            return _typed(connection.respond(http.HTTPStatus(code), body),
                          "application/json")
        static = STATIC_FILES.get(path)
        if static is not None and "websocket" not in request.headers.get(
                "Upgrade", "").lower():
            name, content_type = static
            try:
                text = (STATIC_DIR / name).read_text(encoding="utf-8")
            except OSError:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "not installed\n")
            response = _typed(connection.respond(http.HTTPStatus.OK, text), content_type)
            response.headers.update(STATIC_HEADERS)
            return response
        return None

    def liveness(self) -> list[str]:
        return [] if self.feed.alive() else ["the change feed's thread has stopped"]

    def readiness(self) -> list[str]:
        """Answered from the feed's last poll (never a request from the event loop):
        it knows where the log ends and its last read of Elasticsearch succeeded."""
        if not self.feed.located:
            return ["Elasticsearch: where the change log ends is not known yet"]
        if self.feed.last_error:
            return [f"Elasticsearch: {self.feed.last_error}"]
        return []

    def metrics(self) -> list:
        """Prometheus families: connections by state, closes by code (both bounded
        sets), the server's, the feed's and the token validator's counters."""
        states = collections.Counter(c.session.state.value for c in list(self.clients))
        out = [metrics.gauge("websocket", "open_connections", "open WebSocket connections",
                             len(self.clients)),
               metrics.gauge("websocket", "open_unauthenticated",
                             "open connections that have not authenticated yet",
                             self.unauthenticated)]
        # Known states and close codes at 0 before they occur (alerts see 0).
        out.append(metrics.labelled_gauge(
            "websocket", "open_connections_by_state", "open connections by protocol state",
            "state", states, [s.value for s in protocol.State]))
        out.append(metrics.by_label(
            "websocket", "closes", "connections closed by the server, by close code",
            "code", self.closes, (
                protocol.GOING_AWAY, protocol.MESSAGE_TOO_BIG, protocol.INTERNAL_ERROR,
                protocol.TRY_AGAIN_LATER, protocol.AUTH_FAILED, protocol.PROTOCOL_VIOLATION,
                protocol.TOKEN_EXPIRED, protocol.TOKEN_REVOKED, protocol.TOO_SLOW,
                protocol.RATE_LIMITED)))
        out += metrics.counters("websocket", dict(self.counters), "WebSocket server counter")
        out += metrics.counters("websocket_feed", dict(self.feed.counters), "change feed")
        out += metrics.counters("websocket_entries", dict(self.unhandled.counters),
                                "change-log entries not handed on (each a dead letter)",
                                known=("unhandled", "recorded", "record_failures"))
        out += metrics.counters("websocket_validator", self.validator.stats(),
                                "token validator")
        out += self.validator.metric_families()
        return out

    def stats(self) -> dict:
        states = collections.Counter(c.session.state.value for c in list(self.clients))
        return {"group": self.group, "connections": len(self.clients),
                "unauthenticated": self.unauthenticated,
                "states": dict(states), "closes": {str(k): v for k, v in self.closes.items()},
                "counters": dict(self.counters), "feed": self.feed.stats(),
                "position": str(self.dispatched()) if self.dispatched() else None,
                "doorbell": None if self.doorbell is None else self.doorbell.stats(),
                "filter_failures": self.renderer.failures,
                "unhandled_entries": dict(self.unhandled.counters),
                "validator": self.validator.stats()}

    # -- token re-checks -----------------------------------------------------------

    async def _recheck_tokens(self) -> None:
        """Every ``token_recheck_interval``: ask the validator afresh about each
        distinct token of the open connections, and close those whose token is no
        longer valid (revoked) with 4006. If the validator cannot answer, the
        connections keep their tokens until those expire."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.token_recheck_interval)
            holders: dict[str, list[_Client]] = collections.defaultdict(list)
            for client in list(self.clients):
                if client.token is not None and not client.closing:
                    holders[client.token].append(client)
            if not holders:
                continue
            checks = {token: loop.run_in_executor(self._auth_executor, self._fresh, token)
                      for token in holders}
            unavailable = 0
            for token, check in checks.items():
                try:
                    await check
                    continue
                except InvalidToken as exc:
                    reason = str(exc)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep connections, say so
                    unavailable += 1
                    self.counters.add("recheck_unavailable")
                    if unavailable == 1:
                        LOG.warning("cannot re-check tokens (%s); open connections keep "
                                    "theirs until they expire", exc)
                    continue
                for client in holders[token]:
                    if client.token != token:       # renewed meanwhile
                        continue
                    actions = client.session.token_revoked(reason)
                    if actions:
                        self.counters.add("revoked")
                        LOG.info("closing %s: token no longer valid (%s)", client.peer,
                                 reason)
                        client.perform(actions)
            self.counters.add("rechecks")

    def _fresh(self, token: str):
        return self.validator.validate(token, fresh=True)

    # -- connections ---------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(self, ws)
        self.clients.add(client)
        self.unauthenticated += 1
        self.counters.add("connections")
        try:
            await client.run()
        finally:
            self.clients.discard(client)
            self.detach(client)
            if client.user is None:
                self.unauthenticated -= 1
            else:
                self.per_user[client.user] -= 1
                if self.per_user[client.user] <= 0:
                    del self.per_user[client.user]

    def admit(self, client: "_Client", user: str | None) -> bool:
        """Count a newly authenticated connection against its user's limit."""
        if self.per_user[user] >= self.settings.max_connections_per_user:
            self.counters.add("refused_per_user")
            return False
        self.unauthenticated -= 1
        client.user = user
        self.per_user[user] += 1
        return True

    def attach(self, client: "_Client", sub: Subscription) -> None:
        if sub.all_projects:
            self._all_projects.add(client)
        else:
            self._by_project[sub.project_id].add(client)
            if sub.query is not None:
                self._resuming_searches.add(client)

    def resumed(self, client: "_Client") -> None:
        """The client's resume handed over to live: its members are known."""
        self._resuming_searches.discard(client)

    def detach(self, client: "_Client") -> None:
        self._all_projects.discard(client)
        self._resuming_searches.discard(client)
        sub = client.session.subscription
        if sub is not None and not sub.all_projects:
            members = self._by_project.get(sub.project_id)
            if members is not None:
                members.discard(client)
                if not members:
                    del self._by_project[sub.project_id]

    def _from_feed(self, page: Page) -> None:
        """The feed's thread: hand the page to the loop and wait until it is
        dispatched, so the feed never runs ahead of what connections were offered."""
        future = asyncio.run_coroutine_threadsafe(self._dispatch_page(page), self._loop)
        try:
            future.result(timeout=60)
        except concurrent.futures.TimeoutError:
            LOG.error("dispatch of a page took over 60 s; the event loop is stuck")
            raise

    def dispatched(self) -> Position | None:
        """What every connection was offered. Before the first page that is where the
        feed located the log's end (a deferred locate sets it later)."""
        return self.position or self.feed.position

    async def _dispatch_page(self, page: Page) -> None:
        self.dispatch(page.entries)
        self.position = page.end

    def entry_failed(self, entry: Entry, reason: str) -> None:
        """An entry that could not be handed on (to one connection or to all): a
        dead letter, written off the loop, once per entry."""
        if self.unhandled.first(entry):
            self._record_executor.submit(self.unhandled.record, entry, reason)

    def dispatch(self, entries: list[Entry]) -> None:
        """Offer each entry to the connections that may see it.

        Synchronous, in the loop: no connection is attached or detached meanwhile,
        and a resume's snapshot of ``position`` is taken between two pages. An entry
        that cannot be handled is recorded alone; the next ones are dispatched.
        """
        for entry in entries:
            problem = entry.problem
            if problem is not None:
                self.entry_failed(entry, problem)
                continue
            try:
                self._dispatch_entry(entry)
            except Exception as exc:  # noqa: BLE001 - one entry, never the page
                LOG.exception("dispatching %r failed", entry)
                self.entry_failed(entry, f"dispatch failed: {type(exc).__name__}: {exc}")

    def _dispatch_entry(self, entry: Entry) -> None:
        if entry.role not in ROLES:
            return
        for client in self._all_projects:
            client.feed(entry)
        members = self._by_project.get(entry.project_id)
        if members:
            for client in members:
                client.feed(entry)
        # Live searches of other projects holding the resource (it moved).
        others = self.holders.get(entry.key) if len(self.holders) else ()
        if self._resuming_searches:
            others = {*others, *self._resuming_searches}
        for client in others:
            if members is None or client not in members:
                client.feed(entry)


class _Client:
    """The I/O half of one connection: queue, writer, timers, resume."""

    def __init__(self, server: WebSocketServer, ws: ServerConnection):
        self.server = server
        self.ws = ws
        s = server.settings
        self.session = Session(server.resource_types, server.renderer, s.admin_role,
                               s.max_errors,
                               frame_rate=FrameRate(s.max_frame_rate, s.frame_burst),
                               vocabularies=server.vocabularies,
                               holders=server.holders, owner=self)
        self.token: str | None = None        # the accepted token in force (re-checks)
        self.user: str | None = None         # set once admitted (per-user limit)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=s.queue_size)
        self.held: collections.deque[Entry] | None = None    # live entries during a resume
        self.held_overflow = False
        self.closing = False
        self.tasks: set[asyncio.Task] = set()
        self.writer: asyncio.Task | None = None
        self.auth_timer: asyncio.TimerHandle | None = None
        self.expiry_timers: list[asyncio.TimerHandle] = []
        self.peer = getattr(ws, "remote_address", None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write())
        self.auth_timer = loop.call_later(self.server.settings.auth_timeout,
                                          lambda: self.perform(self.session.auth_deadline()))
        try:
            token = self.ws.request.headers.get("X-Auth-Token") if self.ws.request else None
            if token:
                self.perform(self.session.header_token(token))
            async for message in self.ws:
                if self.closing:
                    continue   # drain until the close handshake ends
                self.perform(self.session.receive(message))
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
            for task in list(self.tasks):
                task.cancel()
            if self.writer is not None and not self.closing:
                self.writer.cancel()

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
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def enqueue(self, text: str) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.server.counters.add("overflows")
            LOG.info("closing %s: outgoing queue full (%d frames)", self.peer,
                     self.queue.qsize())
            self.perform(self.session.overflow(self.queue.qsize()))

    def close(self, code: int, reason: str, flush: bool = True) -> None:
        """Close with ``code``; after the frames already queued unless ``flush`` is
        false or the queue is full."""
        if self.closing:
            return
        self.closing = True
        self.session.closed()
        self.server.closes.add(code)
        if flush:
            try:
                self.queue.put_nowait((_CLOSE, code, reason))
                return
            except asyncio.QueueFull:
                pass
        if self.writer is not None:
            self.writer.cancel()
        self._spawn_detached(self.ws.close(code, reason))

    def _spawn_detached(self, coro) -> None:
        # Not in self.tasks: the handler's cleanup must not cancel the close itself.
        task = asyncio.get_running_loop().create_task(coro)
        self.server._keep(task)

    async def _write(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, tuple) and item and item[0] is _CLOSE:
                    await self.ws.close(item[1], item[2])
                    return
                await self.ws.send(item)
                self.server.counters.add("frames_sent")
        except websockets.ConnectionClosed:
            pass

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
        """A live entry from the feed (synchronous, never waits)."""
        if self.closing:
            return
        if self.held is not None:
            try:
                concerned = self.session.concerns(entry)
            except Exception as exc:  # noqa: BLE001 - this entry only
                self._failed(entry, exc)
                return
            if self.held_overflow or not concerned:
                return
            if len(self.held) >= self.server.settings.queue_size:
                self.held_overflow = True     # the resume will run again past these
                self.held.clear()
                return
            self.held.append(entry)
            return
        text = self.offer(entry)
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
        """Queue a frame, waiting for room (resumes are paced by their client)."""
        await self.queue.put(text)

    async def _full_resume_needed(self, start: Position | None, head: Position) -> bool:
        """No cursor, a cursor of another index (a rebuild), or one older than the
        tombstone horizon (it may have missed purged deletes)."""
        if start is None or not start.same_log(head):
            return True
        if self.server.tombstones is None:
            return False
        loop = asyncio.get_running_loop()
        horizon = await loop.run_in_executor(self.server._resume_executor,
                                             self.server.tombstones.horizon, head.index)
        return horizon is not None and bool(start.behind(horizon))

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

    async def _resume(self, sub: Subscription) -> None:
        server, session = self.server, self.session
        loop = asyncio.get_running_loop()
        self.held = collections.deque()
        server.attach(self, sub)
        start = sub.cursor
        count, full_any = 0, False
        position = server.dispatched()
        for _ in range(MAX_RESUME_ROUNDS):
            # Snapshot and reset together (no await between): live entries above
            # the snapshot are held from now on.
            position = server.dispatched()
            self.held.clear()
            self.held_overflow = False
            if position is None and not server.feed.located:
                # Elasticsearch was away at start: where the log ends is unknown.
                self.perform(session.unavailable("Elasticsearch"))
                return
            if position is None:
                full_any = True       # no index yet: it will arrive whole, live
                break
            try:
                full = await self._full_resume_needed(start, position)
            except Exception as exc:  # noqa: BLE001
                LOG.warning("resume for %s failed: %s", self.peer, exc)
                self.perform(session.unavailable("Elasticsearch"))
                return
            full_any = full_any or full
            after = Position.start(position.index, position.shards) if full else start
            if not full:
                session.start_at(start)
            try:
                if sub.query is not None and await self._search(sub, position, full):
                    after = position          # the snapshot stands for everything
                selection = Selection(
                    roles=(sub.role,), resource_types=sub.resource_types,
                    project_id=None if sub.all_projects else sub.project_id,
                    live_only=full)
                pages = server.changelog.pages(after, position, selection, resync=full)
                while True:
                    page = await loop.run_in_executor(server._resume_executor, next,
                                                      pages, None)
                    if page is None:
                        break
                    for entry in page.entries:
                        problem = entry.problem
                        if problem is not None:
                            server.entry_failed(entry, problem)
                            continue
                        text = self.offer(entry)
                        if text is not None:
                            count += 1
                            await self._put(text)
                        if self.closing:
                            return
            except TooBroad as exc:
                server.detach(self)
                self.held = None
                self.perform(session.search_refused("query_too_broad", str(exc)))
                return
            except IndexGone:
                # The index went away (a rebuild finished): start over on the new
                # one once the feed has moved to it.
                start = None
                server.feed.ring()
                await asyncio.sleep(server.settings.poll_interval)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                LOG.warning("resume for %s failed: %s", self.peer, exc)
                self.perform(session.unavailable("Elasticsearch"))
                return
            session.start_at(position)
            if not self.held_overflow:
                break
            start = session.position      # go again from here
        else:
            self.perform(session.overflow(server.settings.queue_size))
            return
        server.counters.add("resumes")
        for action in session.resumed(position, count, full_any):
            if isinstance(action, Send):
                await self._put(action.text)
        # Hand over: the held live entries, then live. No await between the last
        # emptiness check and going live.
        while self.held:
            text = self.offer(self.held.popleft())
            if text is not None:
                await self._put(text)
            if self.closing:
                return
        self.held = None
        server.resumed(self)


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
