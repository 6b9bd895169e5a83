"""The indexer's locks within one process.

``KeyLocks``: one batch at a time reads, folds and writes a given resource. Batches
that look a resource up by search (``locate_by``) run side by side with the others:
a lookup that misses a write in flight is settled the way it is between two
listener processes (``removals``: the item removal is written, then looked for by
the writer after its write).
"""
from __future__ import annotations

import contextlib
import threading


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
