"""hold: a durable, ordered outbox on the real RabbitMQ."""
import time
import uuid

import kombu

from forwarders.loader import Pipeline, Policy
from forwarders.outbox import PREFIX
from forwarders.runner import PipelineRunner
from tests.conftest import AMQP_URL, TRANSPORT_URL
from tests.functional.conftest import wait_for
from tests.unit.test_runner_policies import ScriptedSink, envelopes

HOLD = Policy("hold", backoff=0.05, max_backoff=0.2)


def runner_for(name, sink, must_deliver=True):
    return PipelineRunner(Pipeline(name, [], "scripted", sink, HOLD, must_deliver),
                          TRANSPORT_URL)


def delete_queue(name):
    with kombu.Connection(AMQP_URL) as conn:
        conn.channel().queue_delete(PREFIX + name)


def test_must_deliver_is_durable_before_submit_returns_and_delivered_in_order(broker):
    name = f"t-{uuid.uuid4().hex[:8]}"
    sink = ScriptedSink(failures=3, partial=2)
    runner = runner_for(name, sink)
    try:
        runner.submit(envelopes(50))           # the sink is not even started yet
        assert runner.outbox.depth() == 1      # one batch, held by the broker already
        runner.start()
        wait_for(lambda: runner.counters["delivered"] == 50, 30, "delivery after failures")
        assert [e.id for e in sink.received] == [f"r{i}" for i in range(50)]
        wait_for(lambda: runner.outbox.depth() == 0, 10, "an empty outbox")
        assert runner.stats()["failures"] == 3
    finally:
        runner.stop()
        delete_queue(name)


def test_held_changes_survive_the_runner_and_come_back_in_order(broker):
    name = f"t-{uuid.uuid4().hex[:8]}"
    dead = ScriptedSink(failures=10**6)
    first = runner_for(name, dead)
    first.start()
    first.submit(envelopes(30))
    wait_for(lambda: dead.calls >= 2, 10, "the dead sink to be tried")
    first.stop()                                # what it held unacknowledged goes back
    time.sleep(0.5)
    sink = ScriptedSink()
    second = runner_for(name, sink)
    try:
        second.start()
        wait_for(lambda: second.counters["delivered"] == 30, 30, "the held changes")
        assert [e.id for e in sink.received] == [f"r{i}" for i in range(30)]
    finally:
        second.stop()
        delete_queue(name)
