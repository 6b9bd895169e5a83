"""RabbitMQ restarted under load, with a backlog, on a private broker node.

The shared broker serves the whole suite and any running demo, so these tests run
their own node (devtools/private_rabbitmq.py) and restart that. Producers and the
listener agree on durable classic queues, or on quorum queues; a backlog waits in
the pool queue when the broker goes down. Afterwards, without restarting anything
of ours: every notification of before, during and after is indexed (the oracle is
the simulator's), the operator's Zaqar pipeline (hold) receives the latest state of
every resource, a tenant's webhook subscription receives the latest state of every
resource of its project, the delivery service's doorbell is connected again, and no
consumer thread died.
"""
from __future__ import annotations

import base64
import socket
import threading
import time
import uuid

import pytest

from devtools.private_rabbitmq import PrivateRabbitMQ
from devtools.publisher import NotificationPublisher
from devtools.simulator import CloudSimulator
from tests.conftest import RUN
from tests.functional.conftest import load_conf, wait_for, write_conf, write_pipelines
from tests.functional.delivery_support import drain, pipelines_ini, wait_caught_up
from devtools.oracle import differences, latest_per_resource, stored
from forwarders.subscriptions.model import ACTIVE, BEGINNING, WEBHOOK, Secret, Subscription
from forwarders.subscriptions.store import SubscriptionStore
from devtools.receivers import Receiver

# A tenant's webhook subscription beside the operator's pipelines.
SUBSCRIPTIONS = """
[view:subscriptions]
filters =
"""


def subscriptions_conf(names) -> str:
    return (f"\n[subscriptions]\nindex = {names['state']}-subscriptions\n"
            "allowed_networks = 127.0.0.1/32\nallow_http = true\n"
            "retry_schedule = 0.2, 0.5, 1\nrefresh_interval = 0.3\n"
            "webhook_timeout = 2\n\n[smtp]\ntimeout = 2\n")


def subscribe(es, names, project_id: str, url: str) -> None:
    """An active webhook subscription of ``project_id`` from the beginning of the
    log, stored as the API stores a confirmed one."""
    now = time.time()
    SubscriptionStore(es, f"{names['state']}-subscriptions").create(Subscription(
        id=str(uuid.uuid4()), project_id=project_id, protocol=WEBHOOK, endpoint=url,
        role="user", created_by="test", created_at=now, updated_at=now, state=ACTIVE,
        start_from=BEGINNING, rate_limit=100.0,
        secrets=(Secret("whsec_" + base64.b64encode(b"k" * 24).decode()),)))


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
               extra=f"\n[oslo_messaging_rabbit]\n{QUEUES[kind]}\n"
                     + subscriptions_conf(names))
    # a lease longer than twice a webhook call (the delivery service checks)
    config_file.write_text(config_file.read_text().replace(
        "lease_seconds = 6", "lease_seconds = 20"))
    suffix = uuid.uuid4().hex[:8]
    queue, ops, tenants = f"q-{suffix}", f"{names['zaqar']}-ops", f"{RUN}-{suffix}"
    write_pipelines(config_file, pipelines_ini(ops, queue, tenants,
                                               extra_sections=SUBSCRIPTIONS))
    # The producers' side agrees on the queues (docs/reliability.md).
    publisher = NotificationPublisher(private_broker.url, conf=load_conf(config_file))
    simulator = CloudSimulator(seed=41)
    before, after = simulator.stream(8, delete_ratio=0.2), simulator.stream(4)
    tenant = simulator.projects["demo"]
    receiver = Receiver()
    subscribe(es, names, tenant, receiver.url)
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
        tenants_share = {k: v for k, v in expected.items() if v.project_id == tenant}
        wait_for(lambda: not differences(tenants_share, latest_per_resource(
            d.json["data"] for d in receiver.changes())[0]), 120,
            "the webhook subscription to receive its project's final state")
    finally:
        publisher.close()
        receiver.stop()

    final, regressions = latest_per_resource(drain(ops, queue))
    assert regressions == []
    assert differences(simulator.expected, final) == []
    received, regressions = latest_per_resource(d.json["data"] for d in receiver.changes())
    assert regressions == [] and tenants_share
    assert differences(tenants_share, received) == []
    stats = delivery.stats()
    assert stats["doorbell"]["connected"] and stats["doorbell"]["connections"] >= 2
    assert all(p["crashed"] is None for p in stats["pipelines"].values())
    assert stats["counters"].get("consumer_restarts", 0) == 0
    assert listener.announcer.counters["rings"] > rings_before    # rings again
    assert threading.active_count() < 200        # no thread pile-up from reconnects
