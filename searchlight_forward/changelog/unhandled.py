"""Entries a reader could not hand on: each recorded alone, none skipped silently.

Every reader of the change log (the WebSocket server, the delivery service's
consumers, feeds, live search) offers entries one by one. When one entry cannot be
handled (``Entry.problem``: fields readers route by are malformed; or anything
raised while handling it), the reader records it here and goes on with the next:
the entry becomes a dead letter of stage ``forward`` naming the reader, the
entry's place in the log and the reason, and every other entry is delivered. The
record's id is the reader and the place, so several processes of one reader write
one record.
"""
from __future__ import annotations

import logging
import threading

import cachetools

from searchlight_forward.changelog.entry import Entry
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.logs import Throttled
from searchlight_forward.model.documents import EVENT_TYPE_FIELD
from searchlight_forward.retry import Policy, Retry, Stopping

LOG = logging.getLogger(__name__)


class UnhandledEntries:
    def __init__(self, reader: str, dead_letters: DeadLetterIndex | None,
                 stop_event: threading.Event | None = None,
                 policy: Policy = Policy(initial=0.5, maximum=10.0, attempts=8)):
        self.reader = reader
        self.dead_letters = dead_letters
        self.stop_event = stop_event or threading.Event()
        self.policy = policy
        self.counters: Counters = Counters()
        self._seen: cachetools.LRUCache = cachetools.LRUCache(maxsize=10000)
        self._lock = threading.Lock()
        self._log = Throttled(LOG)

    def first(self, entry: Entry) -> bool:
        """True the first time ``entry`` is reported here (a page's entry may fail
        for many connections at once: one record)."""
        key = (entry.index, entry.shard, entry.seq_no)
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = True
        self.counters.add("unhandled")
        return True

    def record(self, entry: Entry, reason: str) -> None:
        """Log and write the dead letter (blocking, retried); never raises but
        ``Stopping``. Call ``first`` before, from the reader's own thread."""
        LOG.warning("%s: entry %s not handed on (%s); recorded as a dead letter, the "
                    "next entries go on", self.reader, entry.where, reason[:500])
        if self.dead_letters is None:
            return
        source = entry.source
        payload = {"position": entry.where, "resource_type": source.get("resource_type"),
                   "id": source.get("id"), "project_id": source.get("project_id"),
                   "version": entry.version}
        try:
            Retry(self.policy, f"{self.reader}: dead-letter write",
                  stop_event=self.stop_event, log=self._log).call(
                lambda: self.dead_letters.forward(
                    self.reader, f"cannot hand on {entry.where}: {reason}", payload,
                    f"{entry.index}-{entry.shard}-{entry.seq_no}",
                    str(source.get(EVENT_TYPE_FIELD) or "")))
            self.counters.add("recorded")
        except Stopping:
            raise
        except Exception as exc:  # noqa: BLE001 - logged; the reader goes on
            self.counters.add("record_failures")
            self._log.failure(f"{self.reader}: dead letter for {entry.where}", exc,
                              "it is only in this log")

    def report(self, entry: Entry, reason: str) -> None:
        """``first`` then ``record``, on the caller's thread."""
        if self.first(entry):
            self.record(entry, reason)
