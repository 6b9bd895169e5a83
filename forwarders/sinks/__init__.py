"""Sinks: where a pipeline's envelopes leave the process.

A sink is found through the ``searchlight_forward.sinks`` entry points and built
from its ini section's options. ``deliver`` takes a batch of envelopes (in the order
the pipeline received them, so per-resource order holds) and either returns, having
delivered all of them, or raises ``SinkUnavailable`` having delivered none or a
prefix it reports. What happens then is the pipeline's failure policy, not the
sink's business: drop, retry with backoff, or hold durably until the sink is back.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

from forwarders.envelope import Envelope

NAMESPACE = "searchlight_forward.sinks"


class SinkConfigError(ValueError):
    """An option of a sink section is missing or invalid; the message says which."""


class SinkUnavailable(Exception):
    """The destination cannot take the envelopes now.

    ``delivered`` counts the leading envelopes of the batch that did get through.
    """

    def __init__(self, message: str, delivered: int = 0):
        super().__init__(message)
        self.delivered = delivered


class Rejection(NamedTuple):
    index: int          # position in the batch given to deliver()
    envelope: Envelope
    reason: str


class SinkRejected(Exception):
    """Some envelopes can never be delivered by this sink; all the others were.

    The pipeline dead-letters ``rejected`` with their reasons and never retries them;
    nothing of the batch is pending any more.
    """

    def __init__(self, rejected: Sequence[Rejection], delivered: int):
        self.rejected = list(rejected)
        self.delivered = delivered
        reasons = "; ".join(f"#{r.index} {r.envelope.resource_type} {r.envelope.id}: "
                            f"{r.reason}" for r in self.rejected[:3])
        more = f" (and {len(self.rejected) - 3} more)" if len(self.rejected) > 3 else ""
        super().__init__(f"{len(self.rejected)} envelope(s) rejected: {reasons}{more}")


class Sink:
    """Base class. Subclasses read ``options`` in ``__init__``."""

    #: the failure policy used when the ini section does not name one
    default_policy = "retry"
    #: False for a sink whose ``deliver`` reads no document (it only needs to know
    #: that something changed): the pipeline's filters are then not run for it.
    reads_documents = True

    def __init__(self, name: str, options: Mapping[str, str], context: "SinkContext"):
        self.name = name
        self.options = options
        self.context = context

    def start(self) -> None:
        """Open connections or servers; called once before the first deliver."""

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``start`` opened."""


class SinkContext:
    """What sinks may use from the listener's configuration."""

    def __init__(self, transport_url: str = "", es_hosts: Sequence[str] = (),
                 zaqar_url: str = ""):
        self.transport_url = transport_url
        self.es_hosts = list(es_hosts)
        self.zaqar_url = zaqar_url
