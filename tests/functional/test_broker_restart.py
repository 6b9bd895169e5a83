"""RabbitMQ restarted under load, with a backlog, on a private broker node.

The shared broker serves the whole suite and any running demo, so these tests run
their own node (devtools/private_rabbitmq.py) and restart that. Producers and the
listener agree on durable classic queues, or on quorum queues; a backlog waits in
the pool queue when the broker goes down. Afterwards, without restarting anything
of ours: every notification of before, during and after is indexed (the oracle is
the simulator's), the operator's Zaqar pipeline (hold) receives the latest state of
every resource, the delivery service's doorbell is connected again, and no consumer
thread died.
"""
from __future__ import annotations

import socket
import threading
import uuid

import pytest

from devtools.private_rabbitmq import PrivateRabbitMQ
from devtools.publisher import NotificationPublisher
from devtools.simulator import CloudSimulator
from tests.conftest import RUN
from tests.functional.conftest import load_conf, wait_for, write_conf, write_pipelines
from tests.functional.delivery_support import drain, pipelines_ini, wait_caught_up
from devtools.oracle import differences, latest_per_resource, stored


def _free_base_port() -> int:
    """Six consecutive free ports on 127.0.0.1 in 25700-25799 (the node's layout)."""
    for base in range(25700, 25800, 10):
        free = True
        for port in range(base, base + 6):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    free = False
                    break
        if free:
            return base
    pytest.skip("no free ports for a private RabbitMQ node in 25700-25799")


QUEUES = {"durable": "amqp_durable_queues = true",
          "quorum": "rabbit_quorum_queue = true"}


@pytest.fixture(params=sorted(QUEUES))
def private_broker(request, tmp_path_factory):
    """A fresh node per queue kind: a queue's kind cannot change once declared."""
    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"), _free_base_port(),
                           node=f"{RUN}-{request.param}@localhost")
    node.start()
    node.kind = request.param
    yield node
    node.close()


def test_a_broker_restart_with_a_backlog_loses_nothing_and_stops_nothing(
        private_broker, config_file, names, es, start_listener, start_delivery):
    kind = private_broker.kind
    write_conf(config_file, names, transport_url=private_broker.url,
               extra=f"\n[oslo_messaging_rabbit]\n{QUEUES[kind]}\n")
    suffix = uuid.uuid4().hex[:8]
    queue, ops, tenants = f"q-{suffix}", f"{names['zaqar']}-ops", f"{RUN}-{suffix}"
    write_pipelines(config_file, pipelines_ini(ops, queue, tenants))
    # The producers' side agrees on the queues (docs/reliability.md).
    publisher = NotificationPublisher(private_broker.url, conf=load_conf(config_file))
    simulator = CloudSimulator(seed=41)
    before, after = simulator.stream(8, delete_ratio=0.2), simulator.stream(4)
    try:
        listener = start_listener()
        delivery = start_delivery()
        wait_for(lambda: delivery.doorbell.connected, 30, "the doorbell")
        for note in before:                 # a backlog: published faster than indexed
            publisher.publish_simulated(note)
        wait_for(lambda: listener.processor.counters["notifications"] > 50, 60,
                 "indexing to be under way")
        assert listener.processor.counters["notifications"] < len(before), \
            "no backlog left to restart on"
        private_broker.restart()
        rings_before = listener.announcer.counters["rings"]

        for note in after:
            publisher.publish_simulated(note)
        expected = simulator.expected
        wait_for(lambda: not differences(expected, stored(es, names["group"])), 120,
                 "every resource's final state in the index")
        wait_caught_up(es, names["state"], names["group"], ["ops", "tenants", "audit"])
    finally:
        publisher.close()

    final, regressions = latest_per_resource(drain(ops, queue))
    assert regressions == []
    assert differences(simulator.expected, final) == []
    stats = delivery.stats()
    assert stats["doorbell"]["connected"] and stats["doorbell"]["connections"] >= 2
    assert all(p["crashed"] is None for p in stats["pipelines"].values())
    assert stats["counters"].get("consumer_restarts", 0) == 0
    assert listener.announcer.counters["rings"] > rings_before    # rings again
    assert threading.active_count() < 200        # no thread pile-up from reconnects
