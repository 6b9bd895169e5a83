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
import threading
import time
from typing import Callable

from forwarders.delivery.cursors import Cursor, CursorState, LeaseLost
from forwarders.delivery.runner import DONE, Job, Runner
from forwarders.pipeline.pipeline import HOLD, BEGINNING, FilterFailed, Pipeline
from forwarders.sinks.base import (SinkGone, SinkNotDue, SinkRejected, SinkUnavailable,
                                   consumer_run)
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
from searchlight_forward.retry import Backoff, Policy, Retry, Stopping, is_transient

LOG = logging.getLogger(__name__)

LIVE, CATCHING_UP = "live", "catching_up"

class LeaseShort(Exception):
    """The partition's lease has too little time left for a sink call: wait for the
    service to renew it (or to find it lost)."""


#: How long one step may keep a thread of the runner while it has work: then the
#: consumer goes to the back of the line (the others get their turn).
STEP_SECONDS = 0.05
#: How soon a consumer whose lease is short looks again (the service renews it).
LEASE_SHORT_WAIT = 0.5


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
    def __init__(self, group: str, pipeline: Pipeline, cursor: Cursor, hub: "LiveConsumers",
                 changelog: ChangeLog, tombstones: Tombstones,
                 dead_letters: DeadLetterIndex, settings: ConsumerSettings,
                 stop_event: threading.Event | None = None,
                 probe: Callable[[], object] | None = None,
                 lease_short: Callable[[], None] = lambda: None):
        self.group = group
        self.pipeline = pipeline
        self.name = pipeline.name
        self.role = pipeline.role          # pipelines read admin copies; filters redact
        self.project_id = pipeline.project_id
        self.batch_size = pipeline.sink.batch_size or settings.batch_size
        self.cursor = cursor
        self._lease_short = lease_short       # asks the service to renew now
        self.lease = cursor.lease          # the partition's: delivering needs time on it
        self.hub = hub
        self.changelog = changelog
        self.tombstones = tombstones
        self.dead_letters = dead_letters
        self.settings = settings
        self.stop_event = stop_event or threading.Event()
        self.state = CursorState(**vars(cursor.state))
        starts = pipeline.start_positions
        #: where the cursor is and what to do next (catch up, resync, join): the core
        self.follower = core.Follower(
            self.state.position, resyncing=self.state.resyncing,
            fresh=core.BEGINNING if (starts is not None
                                     or pipeline.start_from == BEGINNING) else core.NOW,
            # (given starts but none for this index: it was created after them, so
            # everything in it is news)
            given=Position.from_dict(starts.get(group)) if starts is not None else None)
        # Pages from the feed, bounded by offer() (a deque, not a queue.Queue: the hub's
        # lock orders the producers, and ten thousand of them cost no Conditions).
        self.queue: collections.deque[Page] = collections.deque()
        # Set when the hub drops this consumer (a page it could not take): once the
        # queued pages are delivered, it reads the log itself from its position.
        self._dropped = False      # (a plain flag: set under the hub's lock)
        # When it last moved or had nothing pending (set by its own thread only).
        self.last_progress = time.monotonic()
        self.counters: Counters = Counters()
        self.last_error: str | None = self.state.last_error
        self._committed: Position | None = self.follower.position
        self._committed_error: str | None = self.state.last_error
        self._last_commit = time.monotonic()
        self._log = Throttled(LOG)
        failure = pipeline.failure
        # One retry policy, scheduled instead of slept (a step must not hold a thread):
        # the sink's own pacing for drop/retry; hold waits forever, asking the sink
        # (its probe) now and then whether it is back.
        self._send_backoff = Backoff(
            failure.retry_policy(), f"pipeline {self.name}: sink {pipeline.sink_name}",
            classify=lambda e: isinstance(e, SinkUnavailable), log=self._log)
        catch_up_policy = failure.retry_policy() if failure.on_failure == HOLD \
            else settings.es_retry
        self._catch_up_backoff = Backoff(
            catch_up_policy, f"pipeline {self.name}: catching up",
            classify=lambda e: is_transient(e) or (
                failure.on_failure == HOLD and isinstance(e, SinkUnavailable)),
            log=self._log)
        self._probe = probe
        self._probe_interval = catch_up_policy.probe_interval
        self._probing: float | None = None     # waiting with a probe: how often to ask
        self._not_before = 0.0                 # a backoff or a digest: not before then
        # The work under way, kept between steps: a catch-up round's actions, its
        # Read's pages, and the page being delivered with its batches not sent yet.
        self._actions: collections.deque | None = None
        self._pages = None
        self._page: Page | None = None
        self._outbox: list[list[tuple[Entry, Envelope]]] = []      # (few batches a page)
        self._commit_retry = Retry(
            settings.es_retry, f"pipeline {self.name}: cursor write",
            "is Elasticsearch up? `curl $ES/_cluster/health`", stop_event=self.stop_event,
            probe=lambda: search.reachable(cursor.store.es), log=self._log,
            on_retry=self._commit_failed)
        self._job: Job | None = None
        self.crashed: BaseException | None = None
        self.gone: str | None = None       # why the sink is gone for good (SinkGone)

    @property
    def position(self) -> Position | None:
        return self.follower.position

    @property
    def mode(self) -> str:
        return LIVE if self.follower.live_now else CATCHING_UP

    # -- control (the service's thread) --------------------------------------------

    def start(self, runner: Runner) -> "Consumer":
        self._job = runner.submit(self)
        return self

    def alive(self) -> bool:
        return self._job is not None and self._job.alive()

    def signal_stop(self) -> None:
        """Ask it to stop (and wake it), without waiting."""
        self.stop_event.set()
        self.wake()

    def stop(self, timeout: float = 30.0) -> None:
        self.signal_stop()
        if self._job is not None:
            self._job.wait(timeout)

    def wake(self) -> None:
        if self._job is not None:
            self._job.wake()

    @property
    def last_commit(self) -> float:
        return self._last_commit

    def idle_live(self) -> bool:
        """Live with nothing queued or under way: where the feed is."""
        return (self.follower.live_now and not self.queue and not self._outbox
                and self._page is None and not self._dropped)

    def offer(self, page: Page) -> bool:
        """A page from the shared feed (the hub's lock is held); False if this
        consumer cannot take it and must catch up instead."""
        if not self.follower.accepts(page.end):      # another index: resync
            self._dropped = True
            self.wake()
            return False
        if len(self.queue) >= self.settings.queue_pages:
            self.counters.add("fell_behind")
            self._dropped = True
            self.wake()
            return False
        self.queue.append(page)
        self.wake()
        return True

    def caught_up(self, position: Position) -> None:
        """The feed read up to ``position`` with nothing for this live consumer in
        between (the hub's lock is held, its queue is empty): it is there too."""
        if self.follower.live_now and not self._dropped:
            self.follower.page_done(Page([], position))

    # -- steps (a thread of the runner's, one at a time) -------------------------------

    def step(self) -> float | str | None:
        """Do what is due, for a bounded while; when to run next (``runner``)."""
        with consumer_run(self):
            return self._guarded_step()

    def _guarded_step(self) -> float | str | None:
        try:
            if self.stop_event.is_set():
                raise Stopping()
            return self._step()
        except LeaseShort as exc:
            self._lease_short()
            self._log.failure(f"pipeline {self.name} ({self.group})", exc,
                              "waiting for the lease's renewal", with_traceback=False)
            return time.monotonic() + LEASE_SHORT_WAIT
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
        self._finish()
        return DONE

    def _finish(self) -> None:
        self.hub.leave(self)
        if not (self.lease.lost or self.cursor.lost):
            try:
                self._commit(force=True)
            except Exception as exc:  # noqa: BLE001 - the next owner redelivers
                LOG.info("pipeline %s: last cursor write failed (%s); changes since "
                         "the previous one are delivered again", self.name, exc)

    def _step(self) -> float | None:
        now = time.monotonic()
        if now < self._not_before:
            if self._probing is None:
                return self._not_before
            if not self._peer_back():               # hold: ask the sink now and then
                return min(self._not_before, now + self._probing)
            self._not_before = 0.0
        deadline = now + STEP_SECONDS
        while time.monotonic() < deadline:
            if self.stop_event.is_set():
                raise Stopping()
            if self.mode == LIVE and not self._outbox and self._page is None:
                if self._dropped and not self.queue:
                    self.follower.overflow("dropped by the feed")   # no more pages
                    continue
                try:
                    page = self.queue.popleft()
                except IndexError:
                    if self.hub.settle(self):   # pages with nothing for it: past them
                        continue                # (another index: catch up)
                    self.last_progress = time.monotonic()   # it has all the feed sent
                    self._commit()
                    return self.commit_due()
                self._start_page(page)
            later = self._live_work() if self.mode == LIVE else self._catch_up_work()
            self._commit()
            if later is not None:
                return later
        return 0.0                                   # more to do: after the others

    def _live_work(self) -> float | None:
        try:
            return self._send_next()
        except SinkUnavailable:
            self._fall_back()      # hold: the cursor waits, catching up later
        except SinkNotDue as exc:
            self._fall_back()
            return self._wait_until(exc.until)
        return None

    def _catch_up_work(self) -> float | None:
        """One move of a catch-up round: (snapshot, horizon, resync), read, join."""
        try:
            if self._outbox or self._page is not None:
                later = self._send_next()
            else:
                later = self._perform_next()
        except SinkNotDue as exc:
            self._reset_round()
            return self._wait_until(exc.until)
        except (LeaseShort, LeaseLost, Stopping, SinkGone):
            raise                                   # the step's to handle, not a retry
        except Exception as exc:  # noqa: BLE001 - classified by the backoff
            self._reset_round()
            wait = self._catch_up_backoff.failed(exc)      # raises what is not a retry
            if wait is None:
                raise
            self._not_before = time.monotonic() + wait
            self._probing = self._probe_interval if self._probe is not None else None
            return time.monotonic() + min(wait, self._probing or wait)
        return later

    def _reset_round(self) -> None:
        """A round failed: the next starts from a snapshot, from the cursor."""
        self._actions = None
        self._pages = None
        self._outbox.clear()
        self._page = None

    def _wait_until(self, until: float) -> float:
        """The sink wants the changes later (a digest): the cursor waits, committed."""
        self._commit(force=True)
        self.last_progress = max(self.last_progress, until)   # waiting is not stalling
        self._not_before = until
        self._probing = None
        return until

    def _peer_back(self) -> bool:
        try:
            return bool(self._probe())
        except Exception:  # noqa: BLE001 - a failing probe means "not back yet"
            return False

    def _fall_back(self) -> None:
        self.hub.leave(self)
        self.follower.overflow("the sink holds")
        self._reset_round()
        self.queue.clear()

    def _perform_next(self) -> float | None:
        """The core's next action (a new round starts with a snapshot)."""
        if self._actions is None:
            self._actions = collections.deque(self.follower.snapshot(self.hub.snapshot()))
        if self._pages is not None:                 # a Read under way: its next page
            try:
                page = next(self._pages, None)
            except IndexGone:
                self._pages = None
                self._actions.extend(self.follower.index_gone())   # the hub finds the
                return None                                       # new index
            if page is not None:
                self._start_page(page)
                return None
            self._pages = None
            self._actions.extend(self.follower.read_done())
            return None
        if not self._actions:
            self._actions = None                    # the round ended without joining
            return None
        action = self._actions.popleft()
        if isinstance(action, core.Wait):              # no index yet
            self._actions = None
            return time.monotonic() + self.hub.poll_interval
        if isinstance(action, core.NewCursor):
            LOG.info("pipeline %s (%s): new cursor from %s", self.name, self.group,
                     action.position)
            self._commit(force=True)
        elif isinstance(action, core.CheckHorizon):
            self._actions.extendleft(reversed(self.follower.horizon(
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
            self._pages = iter(self.changelog.pages(action.after, action.upto, selection,
                                                    resync=action.resync))
        elif isinstance(action, core.ResyncEnd):
            self._send_control(RESYNC_END, "the current state of every resource was sent")
            self.state.resyncing = False
            self._commit(force=True)
        elif isinstance(action, core.GoLive):
            self._actions = None
            self._dropped = False
            if self.hub.join(self):
                self.follower.joined()
                self._catch_up_backoff.succeeded()      # a whole round went through
                self.last_progress = time.monotonic()
            else:
                self.follower.join_refused()
        elif isinstance(action, core.StartOver):
            self._actions = None                    # the next round
        else:
            raise AssertionError(f"unexpected {action!r}")
        return None

    # -- delivering ------------------------------------------------------------------

    def _start_page(self, page: Page) -> None:
        """Prepare ``page``'s entries for this pipeline into batches (the outbox)."""
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
                self._outbox.append(batch)
                batch = []
        if batch:
            self._outbox.append(batch)
        self._page = page

    def _send_next(self) -> float | None:
        """Send the outbox's next batch, or close the page once it is empty. Returns
        when to try again if the sink asked for a wait (retry policy)."""
        if not self._outbox:
            if self._page is not None:
                before = self.position
                self.follower.page_done(self._page)
                self._page = None
                if self.position != before:
                    self.last_progress = time.monotonic()
            return None
        pending = self._outbox[0]
        try:
            self._send(pending)
        except SinkUnavailable as exc:
            if self.pipeline.failure.on_failure == HOLD:
                self.counters.add("held")
                raise
            wait = self._send_backoff.failed(exc)
            if wait is not None:
                return time.monotonic() + wait
            self._skip(pending, str(exc))      # the policy gave up on these
        self._send_backoff.succeeded()
        del self._outbox[0]
        return None

    def _send(self, pending: list[tuple[Entry, Envelope]]) -> None:
        """One attempt at ``pending``; what the sink took or refused for good is
        taken out of it (in place), what is left raises ``SinkUnavailable``."""
        self._check_lease()
        try:
            not_sent = self.pipeline.sink.deliver([e for _, e in pending])
            self._delivered(pending, not_sent or 0)
            pending.clear()
        except SinkRejected as exc:
            refused = {r.index for r in exc.rejected}
            for r in exc.rejected:
                self._record(r.reason, r.envelope.to_dict(),
                             f"{r.envelope.id}-{r.envelope.version}", r.envelope.event_type)
            self.counters.add("rejected", len(refused))
            self._delivered([p for i, p in enumerate(pending) if i not in refused])
            self._advance(pending)
            pending.clear()
        except SinkUnavailable as exc:
            done = max(0, min(exc.delivered, len(pending)))
            self._delivered(pending[:done])
            del pending[:done]
            self._failed(str(exc))
            raise

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
        self._catch_up_backoff.succeeded()
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
        """Deliver only while the partition's lease outlasts a sink call: ``LeaseLost``
        once it is gone, ``LeaseShort`` while it waits for the service's renewal."""
        if self.lease.lost:
            raise LeaseLost(f"partition {self.lease.partition}: lease lost")
        needed = self.pipeline.sink.call_timeout + 1.0
        if self.lease.remaining() < needed:
            raise LeaseShort(f"lease has {self.lease.remaining():.1f}s left, a sink "
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
        if self.idle_live():
            return None
        if target is None or (self.position is not None and self.position.includes(target)):
            return None
        idle = time.monotonic() - self.last_progress
        if idle < self.settings.stall_seconds:
            return None
        return (f"no progress for {idle:.0f} s with changes pending"
                + (f" ({self.last_error[:200]})" if self.last_error else ""))

    def _commit(self, force: bool = False) -> None:
        """Write the cursor when it moved, at most every ``commit_interval`` (the
        partition's lease is the service's to renew: an idle cursor is not written)."""
        now = time.monotonic()
        if not (force or (self._unwritten()
                          and now - self._last_commit >= self.settings.commit_interval)):
            return
        self.state.position = self.position
        state = CursorState(**vars(self.state))
        # Elasticsearch away is a transient error like any other: the one retry
        # policy waits for it (probing). The lease guards the sink: _check_lease
        # stops deliveries once it runs short, and the write is conditional, so a
        # cursor someone else wrote meanwhile is LeaseLost.
        if self.stop_event.is_set():          # the last write, stopping: one try
            self.cursor.write(state)
        else:
            self._commit_retry.call(lambda: self.cursor.write(state))
        self.counters.add("commits")
        self._committed = self.position
        self._committed_error = state.last_error
        self._last_commit = now

    def _unwritten(self) -> bool:
        """The cursor moved, or its error came or went (news for `cursors` too),
        since its last write."""
        return self.position != self._committed or \
            self.state.last_error != self._committed_error

    def commit_due(self) -> float | None:
        """When this idle consumer's cursor should be written (None: nothing new)."""
        return self._last_commit + self.settings.commit_interval \
            if self._unwritten() else None

    def stats(self) -> dict:
        return {"group": self.group, "mode": self.mode,
                "sink": self.pipeline.sink_name,
                "policy": self.pipeline.failure.on_failure,
                "position": str(self.position) if self.position else None,
                "committed": str(self._committed) if self._committed else None,
                "queued_pages": len(self.queue), "lease_left": round(self.lease.remaining(), 1),
                "last_error": self.last_error,
                "last_error_at": self.state.last_error_at if self.last_error else None,
                "last_move": self.state.last_move, "last_move_at": self.state.last_move_at,
                "counters": dict(self.counters),
                "crashed": repr(self.crashed) if self.crashed else None}


def _key_part(value: object) -> str | None:
    """A role or project id as an index key (a malformed entry's list or number is
    no consumer's project: only those of every project get it, to record it)."""
    return value if value is None or isinstance(value, str) else "?"


class LiveConsumers:
    """One resource group in one delivery process: the shared read position and the
    live consumers the feed's pages go to.

    Consumers are indexed by (role, project) (an operator's pipeline: every
    project), so a page goes only to the consumers it has entries for: with ten
    thousand subscriptions over a thousand projects, a page of a few projects wakes
    a few consumers, not all. The others are past it once they look
    (``settle``): the position they would reach with nothing to hand on."""

    def __init__(self, group: str, poll_interval: float):
        self.group = group
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._position: Position | None = None
        self._live: set[Consumer] = set()
        self._by_key: dict[tuple[str, str | None], set[Consumer]] = \
            collections.defaultdict(set)

    @staticmethod
    def _key(consumer: Consumer) -> tuple[str, str | None]:
        return consumer.role, consumer.project_id

    def dispatch(self, page: Page) -> None:
        """The feed's page: to every live consumer it has entries for (never blocks)."""
        with self._lock:
            keys = {(_key_part(e.role), _key_part(e.project_id)) for e in page.entries}
            keys |= {(role, None) for role, _ in keys}
            for key in keys:
                for consumer in list(self._by_key.get(key, ())):
                    if not consumer.offer(page):
                        self._discard(consumer)
            self._position = page.end

    def settle(self, consumer: Consumer) -> bool:
        """``consumer`` (live, in its own step) has no page left: it is where the
        feed is, since every page since its last went to it if it had entries for
        it. True if it must catch up instead (the feed moved to another index)."""
        with self._lock:
            position = self._position
            if consumer not in self._live or consumer.queue \
                    or position is None:
                return False
            if consumer.follower.accepts(position):
                consumer.follower.page_done(Page([], position))
                return False
            self._discard(consumer)
            consumer._dropped = True
            return True

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
            self._by_key[self._key(consumer)].add(consumer)
            return True

    def leave(self, consumer: Consumer) -> None:
        with self._lock:
            self._discard(consumer)

    def _discard(self, consumer: Consumer) -> None:
        self._live.discard(consumer)
        key = self._key(consumer)
        members = self._by_key.get(key)
        if members is not None:
            members.discard(consumer)
            if not members:
                del self._by_key[key]

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)

    def live(self) -> list[Consumer]:
        with self._lock:
            return list(self._live)
