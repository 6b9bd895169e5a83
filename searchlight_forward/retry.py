"""The one retry policy: every loop that waits on a peer uses it (tenacity's public API).

A peer (Elasticsearch, RabbitMQ, a sink's endpoint) that cannot take work now is
retried with exponential backoff and full jitter, up to ``attempts`` tries or until
done. The wait is:

* stop-aware: shutdown interrupts it at once (``Stopping``), so a process never
  sleeps out a backoff before exiting;
* probe-aware: with a ``probe`` (a cheap call that says whether the peer answers),
  the wait is cut short as soon as the peer is back, so recovery takes about
  ``probe_interval`` seconds, not the rest of a 30 s backoff;
* logged through ``logs.Throttled``: one line per failure with its reason and no
  traceback (a failure the caller classified as worth waiting for is expected:
  an outage, a tenant's 503); what is not classified is raised to the caller.

What counts as transient (worth waiting for) is ``is_transient``, one classification
for Elasticsearch and RabbitMQ; a caller with its own kind of failure (a sink) gives
its own ``classify``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, TypeVar

import amqp.exceptions
import kombu.exceptions
import tenacity

from searchlight_forward import search
from searchlight_forward.logs import Throttled
from searchlight_forward.model.answers import TRANSIENT_STATUSES  # noqa: F401 - re-exported

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class TransientError(Exception):
    """The peer cannot take the work now; try again later."""


class Stopping(Exception):
    """Shutdown was asked while work still waited for a peer."""


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` a peer's passing trouble (worth a retry), not a bug or bad input?"""
    if isinstance(exc, (TransientError, search.ConnectionError,
                        search.ConnectionTimeout)):
        return True
    if isinstance(exc, search.ApiError):
        return search.status(exc) in TRANSIENT_STATUSES
    # RabbitMQ: kombu wraps connection trouble in OperationalError; py-amqp raises
    # its own connection errors and plain socket errors.
    return isinstance(exc, (kombu.exceptions.OperationalError,
                            amqp.exceptions.ConnectionError,
                            amqp.exceptions.RecoverableConnectionError,
                            ConnectionError, TimeoutError, OSError))


@dataclasses.dataclass(frozen=True)
class Policy:
    initial: float = 0.5           # first wait, seconds (then doubling, jittered)
    maximum: float = 30.0          # longest wait
    attempts: int | None = None    # tries in all; None: until done or stopped
    probe_interval: float = 1.0    # how often a probe asks whether the peer is back
    #: explicit waits, in seconds, in place of the doubling (the last one repeats):
    #: a webhook's schedule, in the spirit of Svix's (5 s, 5 min, 30 min, 2 h, ...)
    schedule: tuple[float, ...] | None = None

    def waits(self):
        """The tenacity wait strategy for this policy."""
        if self.schedule:
            return tenacity.wait_chain(*(tenacity.wait_fixed(s) for s in self.schedule))
        return tenacity.wait_exponential_jitter(multiplier=self.initial, max=self.maximum,
                                                jitter=self.initial)

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): the
        same strategy as ``waits()``, for a caller that schedules instead of
        sleeping (``Backoff``)."""
        return float(self.waits()(_Attempt(attempt)))


@dataclasses.dataclass
class _Attempt:
    """What tenacity's wait strategies read from a retry state."""
    attempt_number: int


class Backoff:
    """The one policy for a caller that must not sleep (a consumer's step on a shared
    pool of threads): it says how long to wait, the caller schedules its next try.

    ``failed(exc)`` returns the wait before the next attempt, or None when the
    policy's ``attempts`` ran out; what ``classify`` does not accept is raised
    again. ``succeeded()`` starts the count afresh. Logged like ``Retry``."""

    def __init__(self, policy: Policy, what: str, hint: str = "",
                 classify: Callable[[BaseException], bool] = is_transient,
                 log: Throttled | None = None):
        self.policy = policy
        self.what = what
        self.hint = hint
        self.classify = classify
        self.log = log or Throttled(LOG)
        self.attempt = 0             # failed attempts in a row
        self.retries = 0             # waits so far, for the counters

    def failed(self, exc: BaseException) -> float | None:
        if not self.classify(exc):
            raise exc
        self.attempt += 1
        if self.policy.attempts is not None and self.attempt >= self.policy.attempts:
            self.attempt = 0
            return None
        wait = self.policy.wait(self.attempt)
        self.retries += 1
        self.log.failure(self.what, exc, f"retry {self.attempt} in {wait:.1f}s"
                         f"{'; ' + self.hint if self.hint else ''}", with_traceback=False)
        return wait

    def succeeded(self) -> None:
        self.attempt = 0


class Retry:
    """Calls a function until it returns, waiting between transient failures."""

    def __init__(self, policy: Policy, what: str, hint: str = "",
                 stop_event: threading.Event | None = None,
                 probe: Callable[[], object] | None = None,
                 classify: Callable[[BaseException], bool] = is_transient,
                 logger: logging.Logger = LOG, log: Throttled | None = None,
                 on_retry: Callable[[BaseException, int, float], None] | None = None):
        self.policy = policy
        self.what = what
        self.hint = hint
        self.stop_event = stop_event or threading.Event()
        self.probe = probe
        self.classify = classify
        self.log = log or Throttled(logger)
        #: (error, attempt, wait): tells the user instead of the log (a CLI's stderr)
        self.on_retry = on_retry
        self.retries = 0               # waits so far, for the counters

    def _retrying(self) -> tenacity.Retrying:
        p = self.policy
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.classify),
            wait=p.waits(),
            stop=(tenacity.stop_after_attempt(p.attempts) if p.attempts
                  else tenacity.stop_never),
            sleep=self.sleep, before_sleep=self._before_sleep, reraise=True)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``; transient failures are retried, anything else is raised. Raises
        ``Stopping`` if shutdown is asked while waiting, and the last error when
        ``attempts`` run out."""
        if self.stop_event.is_set():
            raise Stopping()
        return self._retrying()(fn)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, less if the probe says the peer is back; ``Stopping``
        if shutdown is asked meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, self.policy.probe_interval) if self.probe else left
            if self.stop_event.wait(step):
                raise Stopping()
            if self.probe is not None and time.monotonic() < deadline and self._peer_back():
                return

    def _peer_back(self) -> bool:
        try:
            return bool(self.probe())
        except Exception:  # noqa: BLE001 - a failing probe means "not back yet"
            return False

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if exc is None:
            return
        if self.on_retry is not None:
            self.on_retry(exc, state.attempt_number, wait)
        else:
            # classified (transient: an outage, a peer's 503): the line says it all
            self.log.failure(self.what, exc, f"retry {state.attempt_number} in "
                             f"{wait:.1f}s{'; ' + self.hint if self.hint else ''}",
                             with_traceback=False)
