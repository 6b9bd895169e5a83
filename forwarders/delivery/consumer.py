"""One consumer at work: a pipeline delivering one resource group's change log from
its durable cursor, on its own thread.

A consumer is either *live* (at the group's shared read position: it gets each page
the process's feed reads, in a bounded queue) or *catching up* (behind: it reads its
own pages from its cursor to the shared position, then joins). It falls back to
catching up whenever it cannot keep up (its queue is full) or its sink fails on a
``hold`` policy, so a slow or dead sink only ever holds back its own cursor. A
consumer that catches up reads the index as it is now: it gets the latest state of
every resource changed meanwhile (intermediate states coalesced, never reordered)
and every delete. What to read, when to resynchronise and when to join is the
follower core's (``searchlight_forward.changelog.follower``, the "join" way): this
module carries out its actions with threads, Elasticsearch and the sink.

The failure policy (``FailurePolicy``) is carried out here with the one retry policy:

* ``drop``: one attempt; what failed is skipped, recorded and counted;
* ``retry``: ``attempts`` attempts with backoff and jitter, then the same;
* ``hold``: the cursor stays; the consumer waits (backoff, probing its way back)
  and reads again from its cursor for as long as the sink is away.

A skipped range or an envelope the sink refused for good is a dead-letter record
(stage ``forward``) naming the consumer, the range or envelope and the reason.
The cursor advances only past what the sink took (or what was recorded), and is
written at most every ``commit_interval``: after a crash the changes since are
delivered again, which consumers ignore by version.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from typing import Callable

from forwarders.delivery.cursors import CursorState, Lease, LeaseLost
from forwarders.pipeline.pipeline import HOLD, BEGINNING, FilterFailed, Pipeline
from forwarders.sinks.base import SinkGone, SinkNotDue, SinkRejected, SinkUnavailable
from searchlight_forward import search
from searchlight_forward.changelog import follower as core
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, IndexGone, Page, Selection
from searchlight_forward.changelog.tombstones import Tombstones
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.logs import Throttled
from searchlight_forward.model.documents import EVENT_TYPE_FIELD
from searchlight_forward.model.envelope import RESYNC_BEGIN, RESYNC_END, Envelope, control
from searchlight_forward.retry import Policy, Retry, Stopping, is_transient

LOG = logging.getLogger(__name__)

LIVE, CATCHING_UP = "live", "catching_up"


class ConsumerSettings:
    def __init__(self, batch_size: int = 100, queue_pages: int = 20,
                 commit_interval: float = 1.0, lease_seconds: float = 30.0,
                 es_retry: Policy = Policy(initial=0.5, maximum=10.0),
                 stall_seconds: float = 60.0):
        self.batch_size = batch_size
        self.stall_seconds = stall_seconds
        self.queue_pages = queue_pages
        self.commit_interval = commit_interval
        self.lease_seconds = lease_seconds
        self.es_retry = es_retry


class Consumer:
    def __init__(self, group: str, pipeline: Pipeline, lease: Lease, hub: "LiveConsumers",
                 changelog: ChangeLog, tombstones: Tombstones,
                 dead_letters: DeadLetterIndex, settings: ConsumerSettings,
                 stop_event: threading.Event | None = None,
                 probe: Callable[[], object] | None = None):
        self.group = group
        self.pipeline = pipeline
        self.name = pipeline.name
        self.role = pipeline.role          # pipelines read admin copies; filters redact
        self.project_id = pipeline.project_id
        self.batch_size = pipeline.sink.batch_size or settings.batch_size
        self.lease = lease
        self.hub = hub
        self.changelog = changelog
        self.tombstones = tombstones
        self.dead_letters = dead_letters
        self.settings = settings
        self.stop_event = stop_event or threading.Event()
        self.state = CursorState(**vars(lease.state))
        starts = pipeline.start_positions
        #: where the cursor is and what to do next (catch up, resync, join): the core
        self.follower = core.Follower(
            self.state.position, resyncing=self.state.resyncing,
            fresh=core.BEGINNING if (starts is not None
                                     or pipeline.start_from == BEGINNING) else core.NOW,
            # (given starts but none for this index: it was created after them, so
            # everything in it is news)
            given=Position.from_dict(starts.get(group)) if starts is not None else None)
        self.queue: queue.Queue[Page] = queue.Queue(maxsize=settings.queue_pages)
        # Set when the hub drops this consumer (a page it could not take): once the
        # queued pages are delivered, it reads the log itself from its position.
        self._dropped = threading.Event()
        # Longest an idle live consumer sleeps: its cursor lease is renewed in time.
        self._idle_wait = max(0.2, settings.lease_seconds / 6)
        # When it last moved or had nothing pending (set by its own thread only).
        self.last_progress = time.monotonic()
        self.counters: Counters = Counters()
        self.last_error: str | None = self.state.last_error
        self._committed: Position | None = self.follower.position
        self._last_commit = time.monotonic()
        self._log = Throttled(LOG)
        failure = pipeline.failure
        # One retry policy: the sink's own pacing for drop/retry; hold waits forever
        # (with a probe: the sink answering again ends the wait early).
        self._send_retry = Retry(
            failure.retry_policy() if failure.on_failure != HOLD else
            Policy(attempts=1), f"pipeline {self.name}: sink {pipeline.sink_name}",
            stop_event=self.stop_event, classify=lambda e: isinstance(e, SinkUnavailable),
            log=self._log)
        self._catch_up_retry = Retry(
            failure.retry_policy() if failure.on_failure == HOLD else settings.es_retry,
            f"pipeline {self.name}: catching up", stop_event=self.stop_event,
            classify=lambda e: is_transient(e) or (
                failure.on_failure == HOLD and isinstance(e, SinkUnavailable)),
            probe=probe, log=self._log)
        self._commit_retry = Retry(
            settings.es_retry, f"pipeline {self.name}: cursor write",
            "is Elasticsearch up? `curl $ES/_cluster/health`", stop_event=self.stop_event,
            probe=lambda: search.reachable(lease.store.es), log=self._log,
            on_retry=self._commit_failed)
        self._thread: threading.Thread | None = None
        self.crashed: BaseException | None = None
        self.gone: str | None = None       # why the sink is gone for good (SinkGone)

    @property
    def position(self) -> Position | None:
        return self.follower.position

    @property
    def mode(self) -> str:
        return LIVE if self.follower.live_now else CATCHING_UP

    # -- control (the service's thread) --------------------------------------------

    def start(self) -> "Consumer":
        self._thread = threading.Thread(target=self.run, daemon=True,
                                        name=f"consumer-{self.group}-{self.name}")
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def signal_stop(self) -> None:
        """Ask the thread to stop (and wake it), without waiting."""
        self.stop_event.set()
        self._wake()

    def stop(self, timeout: float = 30.0) -> None:
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _wake(self) -> None:
        try:
            self.queue.put_nowait(None)     # a full queue wakes it anyway
        except queue.Full:
            pass

    def offer(self, page: Page) -> bool:
        """A page from the shared feed (the hub's lock is held); False if this
        consumer cannot take it and must catch up instead."""
        if not self.follower.accepts(page.end):      # another index: resync
            self._dropped.set()
            self._wake()
            return False
        try:
            self.queue.put_nowait(page)
            return True
        except queue.Full:
            self.counters.add("fell_behind")
            self._dropped.set()
            return False

    # -- the consumer's thread -------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except (Stopping, LeaseLost) as exc:
            if isinstance(exc, LeaseLost):
                LOG.warning("pipeline %s (%s): %s; stopping here", self.name, self.group, exc)
        except SinkGone as exc:
            self.gone = str(exc) or type(exc).__name__
            LOG.warning("pipeline %s (%s): the destination is gone (%s); stopping",
                        self.name, self.group, self.gone)
            if self.pipeline.on_gone is not None:
                self.pipeline.on_gone(self.gone)
        except BaseException as exc:  # noqa: BLE001 - the service restarts us; say why
            self.crashed = exc
            self._log.failure(f"pipeline {self.name} ({self.group})", exc,
                              "the delivery service restarts it", level=logging.ERROR)
        finally:
            self.hub.leave(self)
            if not self.lease.lost:
                try:
                    self._commit(force=True)
                except Exception as exc:  # noqa: BLE001 - the next owner redelivers
                    LOG.info("pipeline %s: last cursor write failed (%s); changes since "
                             "the previous one are delivered again", self.name, exc)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            if self.mode == LIVE:
                if self._dropped.is_set() and self.queue.empty():
                    self.follower.overflow("dropped by the feed")   # no more pages
                    continue
                try:
                    # Blocks while idle: offer(), a drop and stop() wake it. (The queue
                    # cannot be full while it is empty here, so no drop is missed.)
                    page = self.queue.get(timeout=self._idle_wait)
                except queue.Empty:
                    self.last_progress = time.monotonic()   # it has all the feed sent
                    self._commit()
                    continue
                if page is None:                    # woken
                    continue
                try:
                    self._deliver_page(page)
                except SinkUnavailable:
                    self._fall_back()     # hold: the cursor waits, catching up later
                except SinkNotDue as exc:
                    self._fall_back()
                    self._wait_until(exc.until)
            else:
                try:
                    self._catch_up_retry.call(self._catch_up_round)
                except SinkNotDue as exc:
                    self._wait_until(exc.until)
            self._commit()

    def _wait_until(self, until: float) -> None:
        """The sink wants the changes later (a digest): the cursor waits, committed."""
        self._commit(force=True)
        self.last_progress = max(self.last_progress, until)   # waiting is not stalling
        while not self.stop_event.is_set() and time.monotonic() < until:
            self.stop_event.wait(min(1.0, until - time.monotonic()))
            self._commit()

    def _fall_back(self) -> None:
        self.hub.leave(self)
        self.follower.overflow("the sink holds")
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def _catch_up_round(self) -> None:
        """One round of the core: snapshot, (horizon, resync), read, join."""
        self._perform(self.follower.snapshot(self.hub.snapshot()))

    def _perform(self, actions: list) -> None:
        pending = collections.deque(actions)
        while pending:
            action = pending.popleft()
            if isinstance(action, core.Wait):              # no index yet
                self.stop_event.wait(self.hub.poll_interval)
            elif isinstance(action, core.NewCursor):
                LOG.info("pipeline %s (%s): new cursor from %s", self.name, self.group,
                         action.position)
                self._commit(force=True)
            elif isinstance(action, core.CheckHorizon):
                pending.extendleft(reversed(self.follower.horizon(
                    self.tombstones.horizon(action.index))))
            elif isinstance(action, core.ResyncBegin):
                LOG.warning("pipeline %s (%s): resynchronising: %s", self.name,
                            self.group, action.reason)
                self.counters.add("resyncs")
                self._send_control(RESYNC_BEGIN, action.reason)
                self.state.resyncing = True
                self._commit(force=True)
            elif isinstance(action, core.Read):
                selection = Selection(roles=(self.role,), project_id=self.project_id)
                try:
                    for page in self.changelog.pages(action.after, action.upto, selection,
                                                     resync=action.resync):
                        self._deliver_page(page)
                        if self.stop_event.is_set():
                            raise Stopping()
                except IndexGone:
                    pending.extend(self.follower.index_gone())   # the hub finds the new
                    continue                                      # index
                pending.extend(self.follower.read_done())
            elif isinstance(action, core.ResyncEnd):
                self._send_control(RESYNC_END, "the current state of every resource was sent")
                self.state.resyncing = False
                self._commit(force=True)
            elif isinstance(action, core.GoLive):
                self._dropped.clear()
                if self.hub.join(self):
                    self.follower.joined()
                    self.last_progress = time.monotonic()
                else:
                    self.follower.join_refused()
            elif isinstance(action, core.StartOver):
                return                                  # the next round
            else:
                raise AssertionError(f"unexpected {action!r}")

    # -- delivering ------------------------------------------------------------------

    def _deliver_page(self, page: Page) -> None:
        batch: list[tuple[Entry, Envelope]] = []
        for entry in self.follower.fresh_entries(page.entries):
            if entry.role != self.role or (
                    self.project_id is not None and entry.project_id != self.project_id):
                continue
            try:
                problem = entry.problem
                if problem is not None:
                    raise FilterFailed(problem)
                prepared = self.pipeline.prepare(entry.envelope())
            except FilterFailed as exc:
                self._withhold(entry, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - this entry alone, never the page
                self._withhold(entry, FilterFailed(f"{type(exc).__name__}: {exc}"))
                continue
            if prepared is None:
                continue
            batch.append((entry, prepared))
            if len(batch) >= self.batch_size:
                self._send(batch)
                batch = []
        if batch:
            self._send(batch)
        before = self.position
        self.follower.page_done(page)
        if self.position != before:
            self.last_progress = time.monotonic()

    def _send(self, batch: list[tuple[Entry, Envelope]]) -> None:
        pending = list(batch)

        def attempt():
            nonlocal pending
            self._check_lease()
            try:
                not_sent = self.pipeline.sink.deliver([e for _, e in pending])
                self._delivered(pending, not_sent or 0)
                pending = []
            except SinkRejected as exc:
                refused = {r.index for r in exc.rejected}
                for r in exc.rejected:
                    self._record(r.reason, r.envelope.to_dict(),
                                 f"{r.envelope.id}-{r.envelope.version}", r.envelope.event_type)
                self.counters.add("rejected", len(refused))
                self._delivered([p for i, p in enumerate(pending) if i not in refused])
                self._advance(pending)
                pending = []
            except SinkUnavailable as exc:
                done = max(0, min(exc.delivered, len(pending)))
                self._delivered(pending[:done])
                pending = pending[done:]
                self._failed(str(exc))
                raise

        try:
            self._send_retry.call(attempt)
        except SinkUnavailable as exc:
            if self.pipeline.failure.on_failure == HOLD:
                self.counters.add("held")
                raise
            self._skip(pending, str(exc))

    def _send_control(self, operation: str, reason: str) -> None:
        """``resync_begin``/``resync_end`` go out whatever the policy: the cursor
        waits for them."""
        envelope = control(operation, reason)

        def attempt():
            self._check_lease()
            self.pipeline.sink.deliver([envelope])

        Retry(dataclasses.replace(self.pipeline.failure.retry, attempts=None),
              f"pipeline {self.name}: {operation}", stop_event=self.stop_event,
              classify=lambda e: isinstance(e, SinkUnavailable), log=self._log).call(attempt)

    def _delivered(self, items, already_sent: int = 0) -> None:
        # (already_sent: the sink had sent those versions: not delivered again)
        self.counters.add("delivered", len(items) - already_sent)
        self.counters.add("already_sent", already_sent)
        self.state.delivered += len(items) - already_sent
        if items:
            self._recovered()
        self._advance(items)

    def _recovered(self) -> None:
        """The sink took changes: a past failure is no longer this pipeline's state,
        so /status and ``cursors`` stop showing its error (the ``failures`` counter
        and the log keep the history)."""
        if self.last_error is not None or self.state.failing_since is not None:
            if self.last_error is not None:
                LOG.info("pipeline %s (%s): delivering again (last error was: %s)",
                         self.name, self.group, self.last_error)
            self.last_error = self.state.last_error = self.state.last_error_at = None
            self.state.failing_since = None

    def _advance(self, items) -> None:
        for entry, _ in items:
            self.follower.handed(entry)

    def _skip(self, items, reason: str) -> None:
        """The policy gave up on ``items``: record the range, count it, move on."""
        if not items:
            return
        first, last = items[0][0], items[-1][0]
        self._record(f"skipped {len(items)} change(s) after "
                     f"{self.pipeline.failure.attempts} attempt(s): {reason}",
                     {"skipped": len(items), "from": f"{first.index}[{first.shard}]:{first.seq_no}",
                      "to": f"{last.index}[{last.shard}]:{last.seq_no}",
                      "resources": [f"{e.resource_type} {e.id} v{e.version}"
                                    for _, e in items[:20]]},
                     f"skip-{first.shard}-{first.seq_no}-{last.seq_no}")
        self.counters.add("skipped", len(items))
        self.state.skipped += len(items)
        self._advance(items)

    def _withhold(self, entry: Entry, exc: FilterFailed) -> None:
        self.counters.add("withheld")
        self._log.failure(f"pipeline {self.name}: filter", exc,
                          "the change is withheld from this pipeline and recorded",
                          with_traceback=True)
        source = entry.source        # not entry.envelope(): it may be what failed
        self._record(f"cannot hand on {entry.where}: {exc}",
                     {"position": entry.where, "resource_type": source.get("resource_type"),
                      "id": source.get("id"), "version": entry.version,
                      "project_id": source.get("project_id")},
                     f"withheld-{entry.index}-{entry.shard}-{entry.seq_no}",
                     str(source.get(EVENT_TYPE_FIELD) or ""))
        self.follower.handed(entry)

    def _record(self, reason: str, payload: dict, key: str, event_type: str = "") -> None:
        consumer = f"{self.group}/{self.name}"
        Retry(self.settings.es_retry, f"pipeline {self.name}: dead-letter write",
              stop_event=self.stop_event, log=self._log).call(
            lambda: self.dead_letters.forward(consumer, reason, payload, key, event_type))

    def _failed(self, reason: str) -> None:
        """Count a failed sink call; ``SinkGone`` once the destination has failed
        for longer than the policy's ``give_up_after``."""
        self.counters.add("failures")
        self.last_error = reason[:300]
        self.state.last_error = self.last_error
        self.state.last_error_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        now = time.time()
        if self.state.failing_since is None:
            self.state.failing_since = now
        limit = self.pipeline.failure.give_up_after
        if limit is not None and now - self.state.failing_since >= limit:
            raise SinkGone(f"failing for {now - self.state.failing_since:.0f} s "
                           f"(limit {limit:g} s); last error: {self.last_error}")

    # -- the cursor ------------------------------------------------------------------

    def _check_lease(self) -> None:
        """Deliver only while the lease outlasts a sink call (renew it if short)."""
        needed = self.pipeline.sink.call_timeout + 1.0
        if self.lease.remaining() < needed:
            self._commit(force=True)
            if self.lease.remaining() < needed:
                raise LeaseLost(f"lease has {self.lease.remaining():.1f}s left, a sink "
                                f"call may take {needed:.0f}s")

    def _commit_failed(self, exc: BaseException, attempt: int, wait: float) -> None:
        self.counters.add("commit_retries")
        self._log.failure(f"pipeline {self.name}: cursor write", exc,
                          f"retry {attempt} in {wait:.1f}s; the pipeline goes on once "
                          "Elasticsearch answers", with_traceback=False)

    def stalled(self, target: Position | None) -> str | None:
        """Why this pipeline is not making progress with changes pending (for
        readiness), or None."""
        if self.crashed is not None:
            return f"crashed: {self.crashed!r}"[:300]
        if target is None or (self.position is not None and self.position.includes(target)):
            return None
        idle = time.monotonic() - self.last_progress
        if idle < self.settings.stall_seconds:
            return None
        return (f"no progress for {idle:.0f} s with changes pending"
                + (f" ({self.last_error[:200]})" if self.last_error else ""))

    def _commit(self, force: bool = False) -> None:
        """Write the cursor (and renew the lease) when it moved, at most every
        ``commit_interval``, and at least every third of the lease."""
        now = time.monotonic()
        moved = self.position != self._committed
        due = now - self._last_commit >= (self.settings.commit_interval if moved
                                          else self.settings.lease_seconds / 3)
        if not (force or due):
            return
        self.state.position = self.position
        state = CursorState(**vars(self.state))
        # Elasticsearch away is a transient error like any other: the one retry
        # policy waits for it (probing), the thread keeps going. The lease itself
        # guards the sink: _check_lease stops deliveries once it runs short, and the
        # write is conditional, so a cursor someone else took meanwhile is LeaseLost.
        if self.stop_event.is_set():          # the last write, stopping: one try
            self.lease.write(state)
        else:
            self._commit_retry.call(lambda: self.lease.write(state))
        self.counters.add("commits")
        self._committed = self.position
        self._last_commit = now

    def stats(self) -> dict:
        return {"group": self.group, "mode": self.mode,
                "sink": self.pipeline.sink_name,
                "policy": self.pipeline.failure.on_failure,
                "position": str(self.position) if self.position else None,
                "committed": str(self._committed) if self._committed else None,
                "queued_pages": self.queue.qsize(), "lease_left": round(self.lease.remaining(), 1),
                "last_error": self.last_error,
                "last_error_at": self.state.last_error_at if self.last_error else None,
                "last_move": self.state.last_move, "last_move_at": self.state.last_move_at,
                "counters": dict(self.counters),
                "crashed": repr(self.crashed) if self.crashed else None}


class LiveConsumers:
    """One resource group in one delivery process: the shared read position and the
    live consumers the feed's pages go to."""

    def __init__(self, group: str, poll_interval: float):
        self.group = group
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._position: Position | None = None
        self._live: set[Consumer] = set()

    def dispatch(self, page: Page) -> None:
        """The feed's page: to every live consumer (never blocks)."""
        with self._lock:
            for consumer in list(self._live):
                if not consumer.offer(page):
                    self._live.discard(consumer)
            self._position = page.end

    def located(self, position: Position | None) -> None:
        with self._lock:
            self._position = position

    def snapshot(self) -> Position | None:
        with self._lock:
            return self._position

    def join(self, consumer: Consumer) -> bool:
        """Make ``consumer`` live if it is exactly at the shared position."""
        with self._lock:
            if not consumer.follower.can_join(self._position):
                return False
            self._live.add(consumer)
            return True

    def leave(self, consumer: Consumer) -> None:
        with self._lock:
            self._live.discard(consumer)

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)
