"""Sinks: where a pipeline's envelopes leave the service.

A sink is found through the ``searchlight_forward.sinks`` entry points and built
from its ini section's options (``forwarders.options.SectionOptions``). ``deliver``
takes a batch of envelopes (in change-log order, so per-resource order holds) and
either returns, having delivered all of them, or raises:

* ``SinkUnavailable(delivered=n)``: the destination cannot take them now; the first
  ``n`` got through. The sink only classifies: what happens next (drop, retry with
  backoff, hold the cursor) is the pipeline's failure policy, carried out by the
  delivery service with the one retry policy.
* ``SinkRejected``: some envelopes can never be delivered by this sink (too big,
  refused as malformed); every other one was. They are dead-lettered with their
  reasons and never retried.
* ``SinkGone``: the destination is gone for good (a webhook answered ``410 Gone``,
  a mailbox does not exist): the consumer stops and its owner is told why (a
  subscription is disabled with that reason).
* ``SinkNotDue(until)``: nothing failed, the sink only wants the changes later (an
  e-mail digest collects an interval's changes): the cursor waits until then.

A sink must not keep envelopes for later: once ``deliver`` returns they are
considered delivered and the pipeline's cursor moves past them. ``deliver`` may
return how many of them it did not send because it had already sent that version
of the resource, or a newer one (``Sent``); the consumer counts those apart
(``already_sent``), never as delivered.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Mapping, NamedTuple, Sequence

import cachetools

from forwarders.options import OptionError, SectionOptions
from searchlight_forward.model.envelope import Envelope

NAMESPACE = "searchlight_forward.sinks"
#: what the pipeline loader itself reads in every sink section
POLICY_OPTIONS = frozenset({"on_failure", "attempts", "backoff", "max_backoff"})


class SinkConfigError(OptionError):
    """An option of a sink section is missing or invalid."""


class SinkUnavailable(Exception):
    """The destination cannot take the envelopes now.

    ``delivered`` counts the leading envelopes of the batch that did get through.
    """

    def __init__(self, message: str, delivered: int = 0):
        super().__init__(message)
        self.delivered = delivered


class SinkGone(Exception):
    """The destination is gone for good: stop delivering to it."""


class SinkNotDue(Exception):
    """Deliver these later, at ``until`` (``time.monotonic()``); not a failure."""

    def __init__(self, until: float):
        super().__init__(f"not due before monotonic {until:.1f}")
        self.until = until


class Rejection(NamedTuple):
    index: int          # position in the batch given to deliver()
    envelope: Envelope
    reason: str


class SinkRejected(Exception):
    """Some envelopes can never be delivered by this sink; all the others were."""

    def __init__(self, rejected: Sequence[Rejection], delivered: int):
        self.rejected = list(rejected)
        self.delivered = delivered
        reasons = "; ".join(f"#{r.index} {r.envelope.resource_type} {r.envelope.id}: "
                            f"{r.reason}" for r in self.rejected[:3])
        more = f" (and {len(self.rejected) - 3} more)" if len(self.rejected) > 3 else ""
        super().__init__(f"{len(self.rejected)} envelope(s) rejected: {reasons}{more}")


#: resources whose newest delivered version a sink remembers (per memory)
REMEMBERED = 10000


_caller = threading.local()


@contextlib.contextmanager
def consumer_run(run: object):
    """Calls made meanwhile, on this thread, are consumer run ``run``'s: a consumer
    steps on whichever thread of the delivery pool is free, and a sink's per-run
    memory (``Sent``) follows the run, not the thread."""
    previous = getattr(_caller, "run", None)
    _caller.run = run
    try:
        yield
    finally:
        _caller.run = previous


class Sent:
    """What a sink sent of each resource: it never sends a version older than one it
    sent (in this process), nor one version twice in one consumer's run.

    Two memories, newest version per ``(resource_type, id)``:

    * the sink's, shared by every consumer of the pipeline: a change older than one
      sent is never sent (a batch resent after a partial failure, an old consumer
      that has not yet noticed it lost its cursor);
    * each consumer run's (a claimed cursor: ``consumer_run``): a version it sent
      is not sent again in that run (the change log may hold one version twice: a
      redelivered notification rewrites the user copy). A new run starts from its
      cursor and sends what it reads, so an operator's replay resends everything.

    ``for_caller()`` (in a consumer's step) gives the run's ``Memory``; outside
    one, the thread is the run.
    """

    def __init__(self, size: int = REMEMBERED):
        self._size = size
        self._lock = threading.Lock()
        self._shared: cachetools.LRUCache = cachetools.LRUCache(size)
        self._runs: "weakref.WeakKeyDictionary[object, cachetools.LRUCache]" = \
            weakref.WeakKeyDictionary()

    def for_caller(self) -> "Sent.Memory":
        caller = getattr(_caller, "run", None) or threading.current_thread()
        with self._lock:
            run = self._runs.get(caller)
            if run is None:
                run = self._runs[caller] = cachetools.LRUCache(self._size)
        return Sent.Memory(self, run)

    class Memory:
        def __init__(self, sent: "Sent", run: cachetools.LRUCache):
            self._sent = sent
            self._run = run

        def wanted(self, envelope: Envelope) -> bool:
            """Send it? (Control envelopes always go.)"""
            if envelope.is_control:
                return True
            key = (envelope.resource_type, envelope.id)
            with self._sent._lock:
                shared, run = self._sent._shared.get(key), self._run.get(key)
            return (shared is None or envelope.version >= shared) and (
                run is None or envelope.version > run)

        def record(self, envelope: Envelope) -> None:
            if envelope.is_control:
                return
            key = (envelope.resource_type, envelope.id)
            with self._sent._lock:
                for memory in (self._sent._shared, self._run):
                    if memory.get(key, -1) < envelope.version:
                        memory[key] = envelope.version


class Sink:
    """Base class. Subclasses read ``self.options`` in ``__init__``."""

    #: the failure policy used when the ini section does not name one
    default_policy = "retry"
    #: True when each change goes to a destination of its resource's own project
    #: (a Zaqar queue in that project), which that project's tenants read: a
    #: pipeline ending here must not pass admin-only fields (`manage check`)
    destination_per_project = False
    #: longest a deliver() call may take (seconds); the delivery service delivers
    #: only while its cursor lease outlasts it
    call_timeout = 30.0
    #: a cheap "does the destination answer?" (a method returning a bool) that ends a
    #: held pipeline's backoff as soon as the destination is back; None: no probe
    probe = None
    #: envelopes per deliver() call, if the sink wants other than [delivery]
    #: batch_size (a digest takes a whole page)
    batch_size: int | None = None

    def __init__(self, name: str, options: Mapping[str, str], context: "SinkContext"):
        self.name = name
        self.options = SectionOptions(options, error=SinkConfigError)
        self.context = context

    def start(self) -> None:
        """Open connections; called once before the first deliver."""

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``start`` opened."""


class SinkContext:
    """What sinks may use from the main configuration."""

    def __init__(self, zaqar_url: str = "", **extra):
        self.zaqar_url = zaqar_url
        self.extra = extra
