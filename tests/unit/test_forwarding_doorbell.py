"""The doorbell path: a sink that reads no document gets unfiltered envelopes."""
from forwarders.envelope import Envelope
from forwarders.forwarding import Forwarding
from forwarders.loader import Pipeline, Policy
from forwarders.sinks import Sink
from searchlight_forward.indexer.merge import Outcome


class Recording(Sink):
    def __init__(self, reads_documents):
        super().__init__("rec", {}, None)
        self.reads_documents = reads_documents


class Stamp:
    """A filter that marks the documents it saw."""
    def apply(self, resource_type, document):
        return dict(document, filtered=True)


class _Result:
    def __init__(self, states):
        self.results = [(0, _R(s)) for s in states]


class _R:
    def __init__(self, envelope):
        self.outcome = Outcome.APPLIED
        self.state = envelope
        self.change = type("C", (), {"event_type": "e", "timestamp": ""})()


def test_filters_are_skipped_for_a_sink_that_reads_no_document(monkeypatch):
    import forwarders.forwarding as forwarding
    monkeypatch.setattr(forwarding, "from_state", lambda state, event, ts: state)
    env = Envelope("T", "r1", "p", 1, "index", "e", "", {"a": 1})
    policy = Policy("drop")
    readers = Pipeline("docs", [Stamp()], "rec", Recording(True), policy)
    doorbell = Pipeline("bell", [Stamp()], "rec", Recording(False), policy)
    fwd = Forwarding([readers, doorbell], "unused://")
    got = {}
    for runner in fwd.runners:
        runner.submit = lambda items, name=runner.pipeline.name: got.setdefault(name, items)
    fwd.forward(_Result([env]))
    assert got["docs"][0].document == {"a": 1, "filtered": True}
    assert got["bell"] == [env]          # the same envelope, no filter ran
