"""Counters that several threads count into.

``counter[key] += 1`` is a read and then a write: two threads doing it at once can
lose one. The listener's batch threads share its indexer, dead-letter writer and
announcer; a delivery consumer is counted by its own thread and by the feed that
drops it; the status pages read them all from their HTTP threads. ``add`` is atomic,
and reading (iteration, ``items``, ``dict(counters)``) works on a copy taken under
the same lock, so a key added meanwhile never breaks a reader (the WebSocket
server's event loop counts while the status page reads).
"""
from __future__ import annotations

import collections
import threading
from typing import Hashable


class Counters(collections.Counter):
    def __init__(self, *args, **kwargs):
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def add(self, key: Hashable, n: int = 1) -> None:
        with self._lock:
            self[key] += n

    def snapshot(self) -> dict:
        with self._lock:
            # (Not dict.copy: on a subclass that overrides __iter__ it calls keys().)
            return dict(dict.items(self))

    def __iter__(self):
        return iter(self.snapshot())

    def keys(self):
        return self.snapshot().keys()

    def values(self):
        return self.snapshot().values()

    def items(self):
        return self.snapshot().items()
