"""The load generator's pre-encoded publisher (devtools.publisher.PreEncodedPublisher)
against a real Notifier's driver (NotificationPublisher) on the real broker: the same
envelope on the same exchange and routing key, and the listener indexes it alike."""
from __future__ import annotations

import json
import uuid

import kombu

from devtools.oracle import differences, stored
from devtools.publisher import PreEncodedPublisher
from devtools.simulator import CloudSimulator
from tests.conftest import AMQP_URL
from tests.functional.conftest import wait_for


def test_the_bytes_are_the_drivers_own(broker, publisher):
    sim = CloudSimulator(seed=11).stream(1)[0]
    exchange = kombu.Exchange(sim.exchange, type="topic", durable=False, auto_delete=False)
    key = f"{sim.topic}.{sim.priority.lower()}"
    queue = kombu.Queue(f"sft-publisher-{uuid.uuid4().hex[:8]}", exchange, routing_key=key,
                        durable=False)
    fast = PreEncodedPublisher(broker)
    with kombu.Connection(AMQP_URL) as conn:
        channel = conn.channel()
        queue(channel).declare()
        try:
            with conn.SimpleQueue(queue) as simple:
                publisher.publish_simulated(sim)
                driver_message = simple.get(block=True, timeout=10)
                encoded = PreEncodedPublisher.encode_simulated(sim)
                assert encoded[:2] == (sim.exchange, key)
                fast.send_ready(fast.ready(encoded))
                fast_message = simple.get(block=True, timeout=10)
        finally:
            queue(channel).delete()
            fast.close()

    assert fast_message.content_type == driver_message.content_type == "application/json"
    assert fast_message.content_encoding == driver_message.content_encoding
    assert fast_message.properties.get("delivery_mode") == \
        driver_message.properties.get("delivery_mode")
    assert fast_message.headers == driver_message.headers
    assert fast_message.delivery_info["routing_key"] == \
        driver_message.delivery_info["routing_key"] == key
    assert fast_message.delivery_info["exchange"] == \
        driver_message.delivery_info["exchange"] == sim.exchange
    envelopes = [json.loads(m.body) for m in (driver_message, fast_message)]
    assert [sorted(e) for e in envelopes] == [["oslo.message", "oslo.version"]] * 2
    assert {e["oslo.version"] for e in envelopes} == {"2.0"}
    inner = [json.loads(e["oslo.message"]) for e in envelopes]
    unique = [m.pop("_unique_id") for m in inner]
    assert all(len(u) == 32 and int(u, 16) >= 0 for u in unique) and unique[0] != unique[1]
    assert inner[0] == inner[1]
    assert inner[1]["message_id"] == sim.message_id and inner[1]["timestamp"] == sim.timestamp


def test_the_listener_indexes_a_pre_encoded_stream(start_listener, broker, es, names):
    listener = start_listener()            # its pool queue exists: nothing is dropped
    simulator = CloudSimulator(seed=12)
    stream = simulator.stream(3)
    fast = PreEncodedPublisher(broker)
    for encoded in [PreEncodedPublisher.encode_simulated(sim) for sim in stream]:
        fast.send(encoded)
    fast.close()
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 120,
             f"{len(stream)} notifications to be processed")
    assert listener.processor.counters["dead_lettered"] == 0
    assert differences(simulator.expected, stored(es, names["group"])) == []
