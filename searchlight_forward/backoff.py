"""Retry pacing for work that must eventually succeed (never give up, never spin).

The listener cannot acknowledge a batch until Elasticsearch has it, and
oslo.messaging's own requeue comes straight back with no delay, so the listener paces
its retries itself: exponential backoff with jitter, interrupted by shutdown.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

import elasticsearch
import tenacity

LOG = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransientError(Exception):
    """The server cannot take the work now; try again later."""


class Stopping(Exception):
    """Shutdown was asked while work still waited for a server."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (TransientError, elasticsearch.ConnectionError,
                        elasticsearch.ConnectionTimeout)):
        return True
    if isinstance(exc, elasticsearch.ApiError):
        return exc.meta.status in TRANSIENT_STATUSES
    return False


class Backoff:
    def __init__(self, initial: float = 0.5, maximum: float = 30.0,
                 stop_event: threading.Event | None = None):
        self.stop_event = stop_event or threading.Event()
        # First retry after `initial` to 2 x `initial` seconds, then doubling.
        self._wait = tenacity.wait_exponential_jitter(multiplier=initial, max=maximum,
                                                      jitter=initial)
        self.retries = 0   # transient failures so far, for the stats line

    def delay(self, attempt: int) -> float:
        return self._wait(_Attempt(attempt))

    def sleep(self, seconds: float) -> None:
        if self.stop_event.wait(seconds):
            raise Stopping()

    def until_done(self, fn: Callable[[], T], what: str, hint: str) -> T:
        """Call ``fn`` until it returns; transient errors are retried, others raised."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                error = exc
            attempt += 1
            self.retries += 1
            delay = self.delay(attempt)
            text = str(error)
            LOG.warning("%s failed (%s); retry %d in %.1fs. %s", what,
                        text if len(text) < 200 else text[:200] + "...",
                        attempt, delay, hint)
            self.sleep(delay)


class _Attempt:
    """The slice of tenacity's RetryCallState its wait strategies read."""

    def __init__(self, attempt_number: int):
        self.attempt_number = attempt_number
