"""The WebSocket server: ``websockets`` (asyncio) around the sans-I/O cores.

One ``ChangeFeed`` (on its own thread) follows the resource group's change log and
hands each page to the fan-out (``fanout.FanOut.dispatch``) in the event loop, which
offers every entry to the connections that may see it. Each connection
(``connection.Connection``) has a bounded queue of outgoing frames and a writer
task while it has frames to send (an idle one holds neither); dispatch never waits
for a connection: a queue that overflows closes its connection with 4008 and no one
else notices. A subscription's resume is the change log's ``Follower`` core driven
by its connection. Plain HTTP on the same port (the live table's files, /status,
/metrics, health) is ``endpoints.Endpoints``.

See ``docs/websocket.md`` for the protocol and ``protocol.py`` for the rules.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
from typing import Any, Iterable, Mapping, Sequence

from websockets.asyncio.server import ServerConnection, serve

from forwarders.livesearch.query import Vocabularies
from forwarders.websocket.auth import InvalidToken, TokenValidator
from forwarders.websocket.connection import MAX_RESUME_ROUNDS, Connection
from forwarders.websocket.endpoints import Endpoints
from forwarders.websocket.fanout import FanOut
from forwarders.pipeline.render import Renderer
from forwarders.websocket.protocol import Subscription
from searchlight_forward import search
from searchlight_forward.changelog.doorbell import DoorbellListener
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.feed import ChangeFeed
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import PAGE_SIZE, ChangeLog, Page, Selection
from searchlight_forward.changelog.tombstones import Tombstones
from searchlight_forward.changelog.unhandled import UnhandledEntries
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.model.documents import ROLES

LOG = logging.getLogger(__name__)

_Client = Connection      # the old name

# (ServerThread, a WebSocketServer on a thread of its own for tests, bench and
# embedding, is devtools.websocket_thread.ServerThread: the package never imports
# the tooling.)
__all__ = ["WebSocketServer", "WebSocketSettings", "Connection", "MAX_RESUME_ROUNDS"]

@dataclasses.dataclass
class WebSocketSettings:
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
                 doorbell_url: str | None = None, settings: WebSocketSettings | None = None,
                 state_index: str | None = None,
                 mappings: Mapping[str, Mapping[str, Any]] | None = None,
                 dead_letters: DeadLetterIndex | None = None,
                 **overrides: Any):
        self.settings = dataclasses.replace(settings or WebSocketSettings(), **overrides)
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
        self.clients: set[Connection] = set()
        #: which connections each live entry goes to
        self.fanout = FanOut(self.entry_failed)
        self.holders = self.fanout.holders
        self._server = None
        self.port: int | None = None
        self.counters: Counters = Counters()
        self.closes: Counters = Counters()
        self._background: set[asyncio.Task] = set()
        self._recheck: asyncio.Task | None = None
        self.unauthenticated = 0                      # connections without a token yet
        self.per_user: collections.Counter = collections.Counter()
        self.endpoints = Endpoints(self)
        self._metrics = self.endpoints.registry

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
            process_request=self.endpoints.process_request,
            server_header=None)
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

    # -- HTTP side (endpoints.py) ------------------------------------------------------

    def liveness(self) -> list[str]:
        return self.endpoints.liveness()

    def readiness(self) -> list[str]:
        return self.endpoints.readiness()

    def metrics(self) -> list:
        return self.endpoints.metrics()

    def stats(self) -> dict:
        return self.endpoints.stats()

    # -- token re-checks -----------------------------------------------------------

    async def _recheck_tokens(self) -> None:
        """Every ``token_recheck_interval``: ask the validator afresh about each
        distinct token of the open connections, and close those whose token is no
        longer valid (revoked) with 4006. If the validator cannot answer, the
        connections keep their tokens until those expire."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.token_recheck_interval)
            holders: dict[str, list[Connection]] = collections.defaultdict(list)
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
        client = Connection(self, ws)
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

    def admit(self, client: Connection, user: str | None) -> bool:
        """Count a newly authenticated connection against its user's limit."""
        if self.per_user[user] >= self.settings.max_connections_per_user:
            self.counters.add("refused_per_user")
            return False
        self.unauthenticated -= 1
        client.user = user
        self.per_user[user] += 1
        return True

    # -- fan-out (fanout.py) -------------------------------------------------------------

    def attach(self, client: Connection, sub: Subscription) -> None:
        self.fanout.attach(client, sub)

    def resumed(self, client: Connection) -> None:
        """The client's resume handed over to live: its members are known."""
        self.fanout.resumed(client)

    def detach(self, client: Connection) -> None:
        self.fanout.detach(client)

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
        """Offer each entry to the connections that may see it (``FanOut.dispatch``)."""
        self.fanout.dispatch(entries)
