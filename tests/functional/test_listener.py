"""Real Notifier -> RabbitMQ -> listener -> Elasticsearch, for every plugin."""
import fnmatch
import random

import pytest
from searchlight_forward.search import helpers

from searchlight_forward.model import documents
from devtools.simulator import CloudSimulator
from tests.functional.conftest import wait_for
from devtools.oracle import differences, stored

PER_TYPE = 25   # resources per plugin: 14 plugins -> 350 resources


def publish_all(publisher, stream):
    for sim in stream:
        publisher.publish_simulated(sim)


@pytest.mark.parametrize("order", ["emitted", "shuffled"])
def test_every_resource_ends_in_its_newest_state(order, start_listener, publisher, es,
                                                 names):
    listener = start_listener()
    simulator = CloudSimulator(seed=7)
    stream = simulator.stream(PER_TYPE)
    types = {sim.to_notification().event_type.split(".")[0] for sim in stream}
    assert len(stream) > 1000 and len(types) >= 9
    expected = simulator.expected
    assert {k[0] for k in expected} == {p.resource_type for p in listener.deployment.plugins.plugins}

    arrival = list(stream)
    if order == "shuffled":
        random.Random(3).shuffle(arrival)
    publish_all(publisher, arrival)
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 180,
             f"{len(stream)} notifications to be processed")
    assert listener.processor.counters["dead_lettered"] == 0

    problems = differences(expected, stored(es, names["group"]))
    assert problems == [], (len(problems), problems[:10])
    # The search alias shows exactly the live resources.
    live = sum(1 for e in expected.values() if not e.deleted)
    es.indices.refresh(index=f"{names['group']}-listener")
    count = es.count(index=f"{names['group']}-search",
                     query={"term": {documents.ROLE_FIELD: "admin"}})["count"]
    assert count == live


def test_user_copies_carry_no_admin_only_field(start_listener, publisher, es, names):
    listener = start_listener()
    stream = CloudSimulator(seed=11).stream(5, delete_ratio=0.0)
    publish_all(publisher, stream)
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 120,
             "the stream to be processed")
    es.indices.refresh(index=f"{names['group']}-listener")
    patterns = {p.resource_type: p.admin_only_fields for p in listener.deployment.plugins.plugins}
    user_docs = list(helpers.scan(es, index=f"{names['group']}-search",
                                  query={"query": {"term": {documents.ROLE_FIELD: "user"}}}))
    admin_docs = {h["_source"]["id"]: h["_source"] for h in helpers.scan(
        es, index=f"{names['group']}-search",
        query={"query": {"term": {documents.ROLE_FIELD: "admin"}}})}
    assert len(user_docs) == len(admin_docs) > 50
    hidden_somewhere = 0
    for hit in user_docs:
        doc = hit["_source"]
        admin_only = patterns[doc["resource_type"]]
        leaked = [k for k in doc if any(fnmatch.fnmatchcase(k, p) for p in admin_only)]
        assert leaked == [], (doc["resource_type"], leaked)
        hidden_somewhere += len(set(admin_docs[doc["id"]]) - set(doc))
    assert hidden_somewhere > 0   # the admin copies do have fields the user copies lack


def test_a_backlog_spaces_the_refreshes_and_a_lone_notification_does_not(
        start_listener, publisher):
    """More than a batch waiting in the listener's RabbitMQ queue makes the announcer
    space its refreshes more; once the listener keeps up, a lone notification is
    announced at the usual pace (docs/forwarding.md)."""
    small = {("listener", "batch_size"): 20}
    start_listener(small).stop()            # its pool queue stays: a backlog builds
    backlog = CloudSimulator(seed=91).stream(10, delete_ratio=0.0)
    assert len(backlog) > 10 * 20               # beyond the prefetch (2 batches) and more
    for note in backlog:
        publisher.publish_simulated(note)
    listener = start_listener(small)
    wait_for(lambda: listener.counters().get("notifications", 0) >= len(backlog), 60,
             "the backlog to be processed")
    wait_for(lambda: listener.counters().get("announcer_behind_pacings", 0) >= 1, 10,
             "a refresh paced as behind")
    wait_for(lambda: not listener.announcer._dirty, 10, "the backlog's last refresh")
    behind = listener.counters()["announcer_behind_pacings"]
    refreshes = listener.counters()["announcer_refreshes"]
    publisher.publish_simulated(CloudSimulator(seed=92).stream(1)[0])
    wait_for(lambda: listener.counters()["announcer_refreshes"] > refreshes, 10,
             "the lone notification's refresh")
    assert listener.counters()["announcer_behind_pacings"] == behind


def test_the_batch_wait_follows_the_batches_cost_not_the_longest_timeout(
        start_listener, publisher):
    """oslo.messaging's batch poll waits out its timeout unless the batch fills. The
    listener sets that timeout from the batches' cost (pacing.py), from the shortest
    on: with a 30 s longest wait, lone notifications are still handed over at once."""
    listener = start_listener({("listener", "batch_timeout"): 30.0,
                               ("listener", "min_batch_timeout"): 0.02})
    assert listener.batch_timeout() == 0.02          # the poll's own value, from the start
    for n, note in enumerate(CloudSimulator(seed=93).stream(3)[:3], start=1):
        publisher.publish_simulated(note)
        # A fixed 30 s wait would hold each of them past this bound.
        wait_for(lambda: listener.counters().get("notifications", 0) >= n, 10,
                 f"notification {n} handed over well before the 30 s timeout")
    assert listener.batch_timeout() == listener.pacer.window < 30.0
    gauge = {f.name: f for f in listener.metrics()}[
        "searchlight_forward_listener_batch_timeout_seconds"]
    assert gauge.samples[0].value == listener.batch_timeout()
