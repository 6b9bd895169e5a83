"""An Elasticsearch outage under a running delivery service, longer than the leases: a
failed read, lease renewal or cursor write is a transient error like any other.
Every pipeline waits for Elasticsearch (the one retry policy) and goes on when it is
back, its partition's lease renewed; none crashes, none is restarted, nothing is
lost."""
from __future__ import annotations

import time

import pytest

from devtools.faultproxy import FaultProxy
from devtools.simulator import CloudSimulator
from tests.conftest import ES_URL
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import ChangeLines

PIPELINES = """
[forwarding]
pipelines = audit held

[pipeline:audit]
pipeline = logger

[pipeline:held]
pipeline = held_logger

[sink:logger]
use = egg:searchlight-forward#logger
fields = resource_type, id, version

[sink:held_logger]
use = egg:searchlight-forward#logger
fields = resource_type, id, version
on_failure = hold
"""

OUTAGE = 9.0      # seconds: longer than the test's lease (6 s), so leases run out too


@pytest.fixture
def es_proxy():
    host, port = ES_URL.split("//")[1].rstrip("/").split(":")
    proxy = FaultProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


def seen(lines: ChangeLines) -> set[tuple[str, str]]:
    with lines._lock:
        return {(line["resource_type"], line["id"]) for line in lines.lines}


def test_an_elasticsearch_outage_crashes_no_pipeline_thread(
        config_file, names, start_listener, start_delivery, publisher, es_proxy):
    write_pipelines(config_file, PIPELINES)
    listener = start_listener()                       # writes to Elasticsearch directly
    simulator = CloudSimulator(seed=81)
    before = simulator.stream(2, delete_ratio=0.0)
    expected_before = set(simulator.expected)
    during = simulator.stream(2, delete_ratio=0.0)
    expected_all = set(simulator.expected)
    with ChangeLines() as lines:
        text = config_file.read_text()
        config_file.write_text(text.replace(f"hosts = {ES_URL}", f"hosts = {es_proxy.url}"))
        service = start_delivery()                    # through the proxy
        config_file.write_text(text)
        for note in before:
            publisher.publish_simulated(note)
        wait_for(lambda: seen(lines) >= expected_before, 120, "the first changes")
        # Both pipelines log to the same lines: the first may be done before the
        # second has taken its cursor (one turn later on a busy machine).
        wait_for(lambda: len(service.consumers) == 2, 30, "both pipelines' consumers")
        consumers = dict(service.consumers)

        # Elasticsearch goes away for the delivery service (only): its reads, its
        # lease renewals and any cursor write fail, again and again, while the outage
        # lasts (an idle pipeline writes nothing: it has nothing to write).
        es_proxy.block()
        blocked_at = time.monotonic()
        for note in during:
            publisher.publish_simulated(note)

        def outcome():
            if any(c.crashed is not None or not c.alive() for c in consumers.values()):
                return "crashed"
            if time.monotonic() - blocked_at >= OUTAGE and \
                    service.counters.get("rebalance_failures", 0) >= 1 and \
                    all(c.lease.remaining() <= 0
                        for c in consumers.values()):
                return "waited"
            return None
        assert wait_for(outcome, 60, "the leases to run out in the outage") == "waited", {
            key: repr(c.crashed) for key, c in consumers.items()}
        assert es_proxy.refused > 0
        es_proxy.unblock()

        # Back: the same pipelines deliver what was written meanwhile, from their cursors.
        wait_for(lambda: seen(lines) >= expected_all, 120,
                 "the changes written during the outage")
    assert service.counters.get("consumer_restarts", 0) == 0
    assert {key: c for key, c in service.consumers.items()} == consumers
    assert all(c.alive() and c.crashed is None for c in consumers.values())
    wait_for(lambda: all(c.counters.get("commits", 0) > 0 and c.lease.remaining() > 0
                         for c in consumers.values()), 30, "cursor writes after the outage")
