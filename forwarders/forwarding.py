"""The listener's forwarding stage: accepted changes -> every active pipeline."""
from __future__ import annotations

import logging
import threading

from forwarders import loader
from forwarders.envelope import Envelope, from_state
from forwarders.filters import FilterContext
from forwarders.runner import PipelineRunner
from forwarders.sinks import SinkContext
from searchlight_forward.indexer.merge import Outcome

LOG = logging.getLogger(__name__)

# A redelivered notification (duplicate) is forwarded again: the first attempt may
# have died before its pipelines had it, and consumers ignore versions they have.
FORWARDED = (Outcome.APPLIED, Outcome.DUPLICATE)


def envelopes_of(result) -> list[Envelope]:
    """Envelopes for every change Elasticsearch accepted, in version order per resource."""
    return [from_state(r.state, r.change.event_type, r.change.timestamp)
            for _, r in result.results
            if r.outcome in FORWARDED and r.state is not None]


class Forwarding:
    def __init__(self, pipelines: list[loader.Pipeline], transport_url: str,
                 dead_letter=None, scope: str = ""):
        # Outboxes are named after the deployment (its notification pool) and the
        # pipeline, so two deployments on one broker never share one.
        self.runners = [PipelineRunner(p, transport_url, threading.Event(), dead_letter,
                                       outbox_name=f"{scope}.{p.name}" if scope else p.name)
                        for p in pipelines]

    @classmethod
    def from_file(cls, path: str, filter_context: FilterContext,
                  sink_context: SinkContext, dead_letter=None,
                  scope: str = "") -> "Forwarding":
        return cls(loader.load(path, filter_context, sink_context),
                   sink_context.transport_url, dead_letter, scope)

    def start(self) -> None:
        for runner in self.runners:
            runner.start()
        if self.runners:
            LOG.info("forwarding to %s", ", ".join(
                f"{r.pipeline.name} ({r.pipeline.sink_name}, {r.policy.on_failure}"
                f"{', must deliver' if r.pipeline.must_deliver else ''})"
                for r in self.runners))

    def forward(self, result) -> None:
        """BatchProcessor's hook; returns once must-deliver pipelines hold the batch."""
        envelopes = envelopes_of(result)
        if not envelopes:
            return
        for runner in self.runners:
            pipeline = runner.pipeline
            chosen = [e for e in envelopes if pipeline.wants(e)]
            if pipeline.sink.reads_documents:   # else filtering is wasted time
                chosen = [pipeline.transform(e) for e in chosen]
            runner.counters["filtered_out"] += len(envelopes) - len(chosen)
            runner.submit(chosen)

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()

    def stats(self) -> dict:
        return {r.pipeline.name: r.stats() for r in self.runners}
