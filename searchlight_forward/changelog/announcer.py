"""The writer's side of the change log: make written changes visible, then ring.

Once a batch is in Elasticsearch the listener calls ``written(group)`` and goes on
(acknowledging never waits for this). A thread then, for each group written since
its last turn and at most once per ``interval``: reads where the log ends (the
shards' global checkpoints), refreshes the index, and rings the doorbell with those
checkpoints. Every write at or below them was processed before the refresh began,
so it is searchable now: readers that hear the ring read straight up to it.

This is the only refresh in normal operation, so refreshes per second are bounded
by ``interval`` and the number of listener processes, whatever the number of
pipelines, delivery processes and WebSocket servers reading. Under load a refresh
costs more (every one makes a segment that must later be merged), so the pause
between two also grows to ``COST_FACTOR`` times the last one's duration: refreshing
takes at most about a third of the time, and changes wait a little longer when
Elasticsearch is busy instead of making it busier (measured: docs/benchmarks.md).

When the listener is behind (``behind()``: more than a batch of messages waits in its
RabbitMQ queue), the factor is ``BEHIND_COST_FACTOR``: its changes wait in the queue
anyway, and each refresh writes a segment whose cost hardly depends on how many
documents it holds, so fewer, larger segments leave Elasticsearch's CPU to indexing
and the backlog drains sooner. Once it keeps up again, the pace is the usual one.

``visible_seconds`` (a histogram, one sample per written batch) is how long a batch
waited from its write to the ring that made it visible: the pause and the refresh.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from searchlight_forward.changelog.doorbell import Doorbell, DoorbellError, Ring
from searchlight_forward import metrics
from searchlight_forward.changelog.reader import ChangeLog, NoIndex
from searchlight_forward.counters import Counters
from searchlight_forward.logs import Throttled
from searchlight_forward.retry import Policy, Retry, Stopping

LOG = logging.getLogger(__name__)

COST_FACTOR = 2.0
BEHIND_COST_FACTOR = 6.0
MAX_PENDING_TIMES = 10_000     # write times kept per group while Elasticsearch is away
VISIBLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10)


def pause_between(cost: float, interval: float, behind: bool) -> float:
    """Seconds from one refresh's start to the next one's, after one that took
    ``cost`` seconds."""
    return max(interval, (BEHIND_COST_FACTOR if behind else COST_FACTOR) * cost)


class Announcer:
    def __init__(self, changelogs: Mapping[str, ChangeLog], doorbell: Doorbell | None,
                 interval: float = 0.1, behind: Callable[[], bool] = lambda: False):
        self.changelogs = dict(changelogs)
        self.doorbell = doorbell
        self.interval = interval
        self.behind = behind
        self.counters: Counters = Counters()
        self._dirty: dict[str, list[float]] = {}     # group -> its writes' times
        self.visible_seconds = metrics.Histogram(
            metrics.metric_name("listener", "visible_seconds"),
            "time from a batch's write to the doorbell ring that made it visible "
            "(the announcer's pause and its refresh), one sample per batch and group",
            buckets=VISIBLE_BUCKETS, registry=None)
        self._cond = threading.Condition()
        self._stopping = False
        self._stopped = threading.Event()
        self._log = Throttled(LOG)
        self._retry = Retry(Policy(initial=max(interval, 0.1), maximum=5.0),
                            "refresh before ringing the doorbell",
                            "readers catch up at their next poll",
                            stop_event=self._stopped, log=self._log)
        self._thread = threading.Thread(target=self._run, daemon=True, name="announcer")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self.doorbell is not None:
            self.doorbell.close()

    def written(self, group: str) -> None:
        """The listener wrote to ``group``'s index (thread-safe, never blocks long)."""
        now = time.monotonic()
        with self._cond:
            times = self._dirty.setdefault(group, [])
            if len(times) < MAX_PENDING_TIMES:
                times.append(now)
            self._cond.notify()

    def _run(self) -> None:
        last, cost = 0.0, 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping)
                if self._stopping:
                    return
            # Let batches finishing meanwhile share this refresh.
            behind = self.behind()
            if behind:
                self.counters.add("behind_pacings")
            pause = last + pause_between(cost, self.interval, behind) - time.monotonic()
            if pause > 0 and self._stopped.wait(pause):
                return
            with self._cond:
                groups, self._dirty = self._dirty, {}
            last = time.monotonic()
            try:
                self._retry.call(lambda: self._announce_all(groups))
            except Stopping:
                return
            cost = time.monotonic() - last

    def _announce_all(self, groups: dict[str, list[float]]) -> None:
        """Announce each group; on a failure the rest waits for the retry."""
        for group in sorted(groups):
            self.announce(group)
            done = time.monotonic()
            for written in groups.pop(group):
                self.visible_seconds.observe(done - written)

    def announce(self, group: str) -> Ring | None:
        """Refresh ``group``'s index and ring; returns the ring (None: no index yet).
        Raises if Elasticsearch cannot refresh (readers catch up at their next poll)."""
        changelog = self.changelogs[group]
        try:
            head = changelog.head()            # before the refresh: it covers these
            changelog.refresh(head.index)
        except NoIndex:
            return None
        except Exception:
            self.counters.add("refresh_failures")
            raise
        self.counters.add("refreshes")
        ring = Ring(group, head.index, head.checkpoints)
        if self.doorbell is not None:
            try:
                self.doorbell.ring(ring)
                self.counters.add("rings")
            except DoorbellError as exc:
                self.counters.add("ring_failures")
                self._log.failure("doorbell ring", exc, "readers catch up at their next "
                                  "poll", with_traceback=False)
        return ring
