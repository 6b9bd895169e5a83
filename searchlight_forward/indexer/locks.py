"""The indexer's locks within one process.

``ReadWriteLock``: batches that look resources up by search (``locate_by``) run
alone, so the search sees every write of the batches in flight; the others run side
by side. ``KeyLocks``: one batch at a time reads, folds and writes a given resource.
"""
from __future__ import annotations

import contextlib
import threading


class ReadWriteLock:
    """Many shared holders or one exclusive holder; a waiting exclusive goes first."""

    def __init__(self):
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class KeyLocks:
    """Striped locks: one batch at a time reads-folds-writes a given resource.

    External versions order writes but cannot tell that a writer folded onto a state
    another batch has since replaced; serialising per resource in the process closes
    that window for concurrent batches (see docs: several processes still race on
    partial updates of one resource).
    """

    STRIPES = 1024

    def __init__(self):
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    @contextlib.contextmanager
    def holding(self, keys):
        # Always in stripe order, so two batches cannot deadlock.
        stripes = sorted({hash(k) % self.STRIPES for k in keys})
        for i in stripes:
            self._stripes[i].acquire()
        try:
            yield
        finally:
            for i in reversed(stripes):
                self._stripes[i].release()
