"""drop and retry policies (in-memory: pure logic, a scripted sink)."""
import threading
import time

from forwarders.envelope import Envelope
from forwarders.loader import Pipeline, Policy
from forwarders.runner import PipelineRunner
from forwarders.sinks import Sink, SinkUnavailable


class ScriptedSink(Sink):
    """Fails the first ``failures`` calls, delivering ``partial`` envelopes each time."""

    def __init__(self, failures=0, partial=0):
        super().__init__("scripted", {}, None)
        self.failures, self.partial = failures, partial
        self.calls, self.received = 0, []
        self.done = threading.Event()

    def deliver(self, envelopes):
        self.calls += 1
        if self.calls <= self.failures:
            self.received.extend(envelopes[:self.partial])
            raise SinkUnavailable("down", delivered=self.partial)
        self.received.extend(envelopes)
        self.done.set()


def envelopes(n):
    return [Envelope("T", f"r{i}", "p", i, "index", "e", "", {"i": i}) for i in range(n)]


def run(sink, policy, items, wait=2.0):
    runner = PipelineRunner(Pipeline("p", [], "scripted", sink, policy), "unused://")
    runner.start()
    runner.submit(items)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and (
            runner.counters["delivered"] + runner.counters["dropped"] < len(items)):
        time.sleep(0.01)
    runner.stop()
    return runner


def test_retry_delivers_after_failures_in_order_without_duplicates():
    sink = ScriptedSink(failures=2, partial=1)
    runner = run(sink, Policy("retry", attempts=5, backoff=0.01, max_backoff=0.02),
                 envelopes(5))
    assert [e.id for e in sink.received] == ["r0", "r1", "r2", "r3", "r4"]
    assert runner.counters["delivered"] == 5 and runner.counters["dropped"] == 0
    assert runner.counters["retried"] == 4 + 3
    assert runner.last_error == "down"


def test_retry_gives_up_after_its_attempts_and_counts_the_drop():
    sink = ScriptedSink(failures=10)
    runner = run(sink, Policy("retry", attempts=3, backoff=0.01, max_backoff=0.02),
                 envelopes(4))
    assert sink.calls == 3
    assert runner.counters["dropped"] == 4 and runner.counters["delivered"] == 0


def test_drop_tries_once():
    sink = ScriptedSink(failures=1)
    runner = run(sink, Policy("drop"), envelopes(3))
    assert sink.calls == 1 and runner.counters["dropped"] == 3
    assert runner.stats()["last_error"] == "down"
