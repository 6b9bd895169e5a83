"""One pipeline of etc/forwarders.ini: what it selects, its filters, its sink, and
what it does when the sink fails (pure; the delivery service runs it)."""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable

from forwarders.filters.base import Filter
from forwarders.sinks.base import Sink
from searchlight_forward.model.priority import selects
from searchlight_forward.model.documents import ADMIN
from searchlight_forward.model.envelope import Envelope
from searchlight_forward.retry import Policy

DROP, RETRY, HOLD = "drop", "retry", "hold"
ON_FAILURE = (DROP, RETRY, HOLD)
BEGINNING, NOW = "beginning", "now"
START_FROM = (BEGINNING, NOW)


@dataclasses.dataclass(frozen=True)
class FailurePolicy:
    """``drop``: one attempt, then the change is skipped (and recorded).
    ``retry``: ``retry.attempts`` attempts with backoff, then skipped (and recorded).
    ``hold``: the cursor waits, retrying with backoff for as long as it takes."""
    on_failure: str = RETRY
    retry: Policy = Policy(initial=0.5, maximum=30.0, attempts=5)
    #: seconds of failing without a success after which the destination is given up
    #: (``SinkGone``: a subscription is disabled); None: never
    give_up_after: float | None = None

    @property
    def attempts(self) -> int | None:
        if self.on_failure == DROP:
            return 1
        if self.on_failure == HOLD:
            return None
        return self.retry.attempts

    def retry_policy(self) -> Policy:
        return dataclasses.replace(self.retry, attempts=self.attempts)


class FilterFailed(Exception):
    """A filter raised: the change is withheld from this pipeline (never sent
    unfiltered) and recorded."""


@dataclasses.dataclass
class Pipeline:
    name: str
    filters: list[Filter]
    sink_name: str
    sink: Sink
    failure: FailurePolicy = FailurePolicy()
    resource_types: frozenset[str] | None = None   # None: every type
    event_types: tuple[str, ...] | None = None      # fnmatch patterns; None: all
    priorities: frozenset[str] | None = None        # None: every priority
    start_from: str = BEGINNING                     # where a new cursor starts
    #: the role copy read (pipelines: admin, their filters redact; a subscription:
    #: its creator's role, as a WebSocket connection)
    role: str = ADMIN
    project_id: str | None = None                   # None: every project
    #: where a new cursor starts, per resource group (the log's end when a
    #: subscription was confirmed; a group without one started later: from its
    #: beginning); None: ``start_from`` decides
    start_positions: dict | None = None
    #: told why, when the sink is gone for good (``SinkGone``)
    on_gone: Callable[[str], None] | None = None

    def wants(self, envelope: Envelope) -> bool:
        if envelope.is_control:
            return True
        if self.project_id is not None and envelope.project_id != self.project_id:
            return False
        if self.resource_types is not None and envelope.resource_type not in self.resource_types:
            return False
        if self.event_types is not None and not any(
                fnmatch.fnmatchcase(envelope.event_type or "", p) for p in self.event_types):
            return False
        if self.priorities is not None and not selects(self.priorities, envelope.priority,
                                                       envelope.alert):
            return False
        return True

    def transform(self, envelope: Envelope) -> Envelope:
        """The envelope as this pipeline's sink receives it; ``FilterFailed`` if a
        filter raised."""
        document = envelope.document
        if document is None or envelope.is_control:
            return envelope
        for f in self.filters:
            try:
                document = f.apply(envelope.resource_type, document)
            except Exception as exc:  # noqa: BLE001 - a third-party filter's bug
                raise FilterFailed(f"filter {f.name} failed on {envelope.resource_type} "
                                   f"{envelope.id}: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}") from exc
        return envelope.with_document(document)

    def prepare(self, envelope: Envelope) -> Envelope | None:
        """The envelope to send, or None if this pipeline does not want it."""
        if not self.wants(envelope):
            return None
        return self.transform(envelope)
