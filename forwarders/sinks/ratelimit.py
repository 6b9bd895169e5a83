"""Pacing one destination from several lanes at once (thread-safe).

A sink needs "wait until allowed, unless we are stopping": each caller books the
next token of the bucket (``searchlight_forward.tokenbucket``) under the lock and
waits outside it, so lanes share the rate fairly.
"""
from __future__ import annotations

import threading
import time

from searchlight_forward.tokenbucket import TokenBucket


class Stopped(Exception):
    """The pacer was closed while a caller waited."""


class Pacer:
    def __init__(self, rate: float, burst: float | None = None):
        self.bucket = TokenBucket(rate, burst)
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def rate(self) -> float:
        return self.bucket.rate

    def acquire(self) -> None:
        """Take one token, waiting as long as the rate needs."""
        with self._lock:
            wait = self.bucket.take(time.monotonic())
        if wait > 0 and self._closed.wait(wait):
            raise Stopped()

    def close(self) -> None:
        self._closed.set()
