"""A token bucket that paces one destination (thread-safe).

``limits`` and friends answer "allowed now?"; a sink needs "wait until allowed,
unless we are stopping", from several lanes at once. Each caller reserves the next
free slot under the lock and waits outside it, so lanes share the rate fairly.
"""
from __future__ import annotations

import threading
import time


class Stopped(Exception):
    """The bucket was closed while a caller waited."""


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate                       # tokens per second; 0: unlimited
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def acquire(self) -> None:
        """Take one token, waiting as long as the rate needs."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0 and self._closed.wait(wait):
            raise Stopped()

    def close(self) -> None:
        self._closed.set()
