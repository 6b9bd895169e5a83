"""Following a change log: new entries, in write order, as soon as they are visible.

A ``ChangeFeed`` keeps a position and a visible watermark for one resource group
and hands ``Page``s of new entries to ``on_page``, on its own thread:

* a doorbell ring (``ring``) raises the watermark to the checkpoints the ring
  carries and wakes the feed, which reads up to there: no refresh, and no request
  other than the read itself;
* every ``poll_interval`` without a ring, the feed asks where the log ends. If it
  ends beyond the watermark twice in a row (a ring was lost, or the doorbell is
  down), the feed refreshes the index itself and reads up to what it saw. So a
  reader refreshes only when the listeners' rings do not reach it;
* when the group's alias moves to another index (a rebuild), the feed starts that
  index from its beginning and marks the pages up to its head at that moment as a
  resynchronisation.

Consumers that keep their own position (a WebSocket resume, a delivery cursor
catching up) read with ``ChangeLog.pages`` up to the feed's position, then follow
the feed.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from searchlight_forward.changelog.doorbell import Ring
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import (ChangeLog, Head, IndexGone, NoIndex,
                                                  Page, Selection)
from searchlight_forward import search
from searchlight_forward.counters import Counters
from searchlight_forward.logs import Throttled
from searchlight_forward.retry import Policy, Retry, Stopping

LOG = logging.getLogger(__name__)

MAX_ERROR_DELAY = 10.0


class ChangeFeed:
    def __init__(self, changelog: ChangeLog, on_page: Callable[[Page], None],
                 selection: Selection = Selection(), poll_interval: float = 1.0,
                 stop_event: threading.Event | None = None):
        self.changelog = changelog
        self.on_page = on_page
        self.selection = selection
        self.poll_interval = poll_interval
        self.stop_event = stop_event or threading.Event()
        #: every entry at or below it was handed to on_page (None: no index yet)
        self.position: Position | None = None
        #: every write at or below it is searchable
        self.visible: Position | None = None
        self.counters: Counters = Counters()
        self.last_error: str | None = None
        self.last_progress = time.monotonic()
        self._ring: Ring | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._unseen_since: float | None = None
        self._unlocated = False           # locate() deferred: do it at the next poll
        self._resync_upto: Position | None = None
        self._log = Throttled(LOG)
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------

    def locate(self, defer_on_error: bool = False) -> None:
        """Start at the end of the log as it is now (made visible by one refresh).

        With ``defer_on_error``, a failure (Elasticsearch away at start-up) is logged
        and the feed locates at its first poll that succeeds, instead of raising.
        """
        try:
            self._locate()
        except Exception as exc:  # noqa: BLE001 - any failure: locate at a later poll
            if not defer_on_error:
                raise
            self._unlocated = True
            self._log.failure(f"locating the end of {self.changelog.alias}", exc,
                              "following starts there once Elasticsearch answers")

    @property
    def located(self) -> bool:
        """False while a deferred ``locate`` waits for Elasticsearch."""
        return not self._unlocated

    def _locate(self) -> None:
        try:
            head = self.changelog.head()
        except NoIndex:
            LOG.warning("resource group %s has no index yet (alias %s); waiting for "
                        "the listener to create it", self.changelog.group,
                        self.changelog.alias)
            self._unlocated = False
            return
        self.changelog.refresh(head.index)
        self.position = self.visible = head.position
        self._unlocated = False
        LOG.info("following %s (%s) from %s", self.changelog.alias, head.index,
                 self.position)

    def start(self) -> "ChangeFeed":
        self._thread = threading.Thread(target=self.run, daemon=True,
                                        name=f"feed-{self.changelog.group}")
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def ring(self, ring: Ring | None = None) -> None:
        """A doorbell ring (or None: "look now"); thread-safe, never blocks."""
        with self._lock:
            if ring is not None:
                self.counters.add("rings")
                if self._ring is None or self._ring.index != ring.index:
                    self._ring = ring
                else:
                    self._ring = Ring(ring.group, ring.index, tuple(
                        max(a, b) for a, b in zip(self._ring.checkpoints, ring.checkpoints)))
        self._wake.set()

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        # Whatever fails (Elasticsearch away, a bug), the feed keeps following.
        retry = Retry(Policy(initial=self.poll_interval, maximum=MAX_ERROR_DELAY),
                      f"reading {self.changelog.alias}", stop_event=self.stop_event,
                      classify=lambda exc: isinstance(exc, Exception), log=self._log,
                      probe=lambda: search.reachable(self.changelog.es))
        while not self.stop_event.is_set():
            rung = self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self.stop_event.is_set():
                return
            try:
                retry.call(lambda: self._poll_recorded(rung))
            except Stopping:
                return

    def _poll_recorded(self, rung: bool) -> int:
        try:
            found = self.poll(rung)
        except Exception as exc:
            self.counters.add("failures")
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            raise
        self.last_error = None
        return found

    def poll(self, rung: bool = False) -> int:
        """Read what became visible; returns the number of entries handed over."""
        self.counters.add("polls")
        if self._unlocated:
            self._locate()
            return 0
        with self._lock:
            ring, self._ring = self._ring, None
        if ring is not None and self.visible is not None and ring.index == self.visible.index \
                and len(ring.checkpoints) == self.visible.shards:
            self.visible = self.visible.merged(ring.checkpoints)
            self._unseen_since = None
        else:
            self._check_head()
        if self.position is None or self.visible is None \
                or self.position.includes(self.visible):
            return 0
        return self._read()

    def _check_head(self) -> None:
        try:
            head = self.changelog.head()
        except NoIndex:
            self.position = self.visible = None
            return
        if self.position is None or head.index != self.position.index \
                or len(head.checkpoints) != self.position.shards:
            self._switch(head)
            return
        if self.visible.includes(head.position):
            self._unseen_since = None
            return
        now = time.monotonic()
        if self._unseen_since is None:
            self._unseen_since = now          # give the listener's ring a chance
        elif now - self._unseen_since >= self.poll_interval:
            # Written, but no ring made it visible: refresh for ourselves.
            self.changelog.refresh(head.index)
            self.counters.add("own_refreshes")
            self.visible = self.visible.merged(head.checkpoints)
            self._unseen_since = None

    def _switch(self, head: Head) -> None:
        old = self.position
        if old is not None:
            LOG.warning("%s moved from %s to %s (rebuild?): reading the new index from "
                        "its start", self.changelog.alias, old.index, head.index)
            self._resync_upto = head.position
        else:
            LOG.info("%s now has an index (%s): reading it from its start",
                     self.changelog.alias, head.index)
        self.changelog.refresh(head.index)
        self.position = Position.start(head.index, len(head.checkpoints))
        self.visible = head.position
        self._unseen_since = None
        # Followers learn of the new index even if it holds nothing yet.
        self.on_page(Page([], self.position, resync=old is not None))

    def _read(self) -> int:
        count = 0
        resync = self._resync_upto is not None and \
            self._resync_upto.index == self.position.index
        upto = self.visible
        try:
            for page in self.changelog.pages(self.position, upto, self.selection,
                                             resync=resync):
                count += len(page.entries)
                self.counters.add("entries", len(page.entries))
                self.counters.add("pages")
                # Past the page only once it was handed on: a page whose handling
                # failed is read and offered again (followers ignore what they had).
                self.on_page(page)
                self.position = page.end
                self.last_progress = time.monotonic()
                if self.stop_event.is_set():
                    break
        except IndexGone:
            LOG.info("%s disappeared while being read; looking for the group's index "
                     "again", upto.index)
            self.ring()
            return count
        if resync and self.position.includes(self._resync_upto):
            self._resync_upto = None
        return count

    def stats(self) -> dict:
        return {"position": str(self.position) if self.position else None,
                "visible": str(self.visible) if self.visible else None,
                "counters": dict(self.counters), "last_error": self.last_error,
                "seconds_since_progress": round(time.monotonic() - self.last_progress, 1)}
