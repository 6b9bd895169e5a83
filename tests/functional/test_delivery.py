"""The delivery service on the real servers: pipelines read the index in write order,
through their filters, to real Zaqar queues and the logger; policies, filter bugs,
and peers that go away.

Real Notifier -> RabbitMQ -> listener -> Elasticsearch -> delivery service ->
Zaqar (python-zaqarclient reads the queues back) / logger.
"""
from __future__ import annotations

import fnmatch
import re
import uuid

import pytest

from devtools.faultproxy import FaultProxy
from devtools.simulator import CloudSimulator
from searchlight_forward.changelog.reader import ChangeLog
from searchlight_forward.changelog.tombstones import Tombstones
from searchlight_forward.model.envelope import RESYNC_BEGIN, RESYNC_END
from tests.conftest import RUN, ZAQAR_URL, field_paths
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import (ChangeLines, CrashingSink, drain, pipelines_ini,
                                               wait_caught_up)
from devtools.oracle import differences, latest_per_resource
from tests.functional.websocket_support import converge, es_view

SECRET = re.compile(r"(?i)mac_addr|fingerprint|^OS-EXT-IPS")


@pytest.fixture
def queues(names):
    """A queue name and the Zaqar projects of this test."""
    suffix = uuid.uuid4().hex[:8]
    return {"queue": f"q-{suffix}", "ops": f"{names['zaqar']}-ops",
            "tenants": f"{RUN}-{suffix}"}


@pytest.fixture
def zaqar_proxy():
    host, port = ZAQAR_URL.split("//")[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


def publish(publisher, notes):
    for note in notes:
        publisher.publish_simulated(note)


def processed(listener, count, timeout=120):
    wait_for(lambda: listener.processor.counters["notifications"] >= count, timeout,
             f"{count} notifications to be indexed")


def admin_only_patterns(listener):
    return {p.resource_type: p.admin_only_fields
            for p in listener.deployment.plugins.plugins}


def test_every_pipeline_gets_every_change_through_its_filters(
        config_file, names, queues, start_listener, start_delivery, publisher, es):
    write_pipelines(config_file, pipelines_ini(queues["ops"], queues["queue"],
                                               queues["tenants"]))
    listener = start_listener()
    simulator = CloudSimulator(seed=8)
    stream = simulator.stream(4, delete_ratio=0.3)
    with ChangeLines() as audit:
        start_delivery()
        publish(publisher, stream)
        processed(listener, len(stream))
        wait_caught_up(es, names["state"], names["group"], ["tenants", "ops", "audit"])

    # The operator's queue: every resource, unfiltered, ending in its final state.
    operator = drain(queues["ops"], queues["queue"])
    final, regressions = latest_per_resource(operator)
    assert regressions == []
    assert differences(simulator.expected, final) == []
    assert any(k.startswith("OS-EXT-SRV-ATTR:") for b in operator
               for k in (b["document"] or {}))          # admin-only fields are there
    # The logger saw the same: every resource, versions only going up.
    final, regressions = latest_per_resource(audit.lines)
    assert regressions == [] and set(final) == set(simulator.expected)

    # Each tenant's queue: its own resources only, redacted.
    admin_only = admin_only_patterns(listener)
    seen = set()
    for project in simulator.projects.values():
        bodies = drain(f"{queues['tenants']}-{project}", queues["queue"])
        assert bodies, f"project {project} got nothing"
        final, regressions = latest_per_resource(bodies)
        assert regressions == []
        for body in bodies:
            assert body["project_id"] == project
            document = body["document"] or {}
            leaked = [k for k in document if any(fnmatch.fnmatchcase(k, p)
                                                 for p in admin_only[body["resource_type"]])]
            assert leaked == [], (body["resource_type"], leaked)
            assert not [p for p in field_paths(document) if SECRET.search(p)]
        seen |= set(final)
    mine = {k for k, e in simulator.expected.items() if e.project_id is not None}
    assert seen == mine        # flavors (no project) only reach the operator's queue


def test_a_failing_filter_never_stops_indexing_and_its_pipeline_records_why(
        config_file, names, queues, start_listener, start_delivery, publisher, es):
    write_pipelines(config_file, pipelines_ini(
        queues["ops"], queues["queue"], queues["tenants"], extra_pipelines="buggy",
        extra_sections="""
[pipeline:buggy]
pipeline = explodes logger

[filter:explodes]
use = call:tests.functional.delivery_support:ExplodingFilter
"""))
    listener = start_listener()
    stream = CloudSimulator(seed=5).stream(2)
    start_delivery()
    publish(publisher, stream)
    processed(listener, len(stream))
    assert listener.processor.counters["dead_lettered"] == 0   # indexing went on
    wait_caught_up(es, names["state"], names["group"], ["ops", "audit", "buggy"])
    # Every change the filter failed on is withheld from that pipeline, and recorded.
    es.indices.refresh(index=names["dead_letters"])
    records = es.search(index=names["dead_letters"], size=1000, query={"bool": {"filter": [
        {"term": {"stage": "forward"}}, {"term": {"publisher_id":
                                                  f"consumer:{names['group']}/buggy"}}]}})
    reasons = [h["_source"]["reason"] for h in records["hits"]["hits"]]
    assert reasons and all("filter explodes failed" in r for r in reasons)
    # The other pipelines delivered everything.
    assert drain(queues["ops"], queues["queue"])


def test_a_pipeline_thread_that_dies_is_restarted_counted_and_loses_nothing(
        config_file, names, queues, start_listener, start_delivery, publisher, es):
    # A sink that raises what no sink classifies kills its pipeline's thread twice:
    # the service restarts it from its durable cursor each time and counts it; the
    # sink ends with the latest state of every resource (the simulator's oracle).
    CrashingSink.calls, CrashingSink.received = 0, []
    write_pipelines(config_file, pipelines_ini(
        queues["ops"], queues["queue"], queues["tenants"], extra_pipelines="crashing",
        extra_sections="""
[pipeline:crashing]
pipeline = crashing_sink

[sink:crashing_sink]
use = call:tests.functional.delivery_support:CrashingSink
"""))
    listener = start_listener()
    simulator = CloudSimulator(seed=8)
    stream = simulator.stream(2, delete_ratio=0.2)
    service = start_delivery()
    publish(publisher, stream)
    processed(listener, len(stream))
    wait_caught_up(es, names["state"], names["group"], ["crashing", "ops"])
    assert CrashingSink.calls > CrashingSink.crashes
    assert service.stats()["counters"]["consumer_restarts"] == CrashingSink.crashes
    final, regressions = latest_per_resource(CrashingSink.received)
    assert regressions == []
    assert differences(simulator.expected, final) == []


def test_hold_waits_for_its_sink_and_then_gets_the_latest_state_of_everything(
        config_file, names, queues, start_listener, start_delivery, publisher, es,
        zaqar_proxy, ws_server, clients):
    write_pipelines(config_file, pipelines_ini(queues["ops"], queues["queue"],
                                               queues["tenants"], ops_url=zaqar_proxy.url))
    listener = start_listener()
    simulator = CloudSimulator(seed=12)
    first, second = simulator.stream(3, delete_ratio=0.3), simulator.stream(3)
    service = start_delivery()
    publish(publisher, first)
    processed(listener, len(first))
    wait_caught_up(es, names["state"], names["group"], ["ops", "audit", "tenants"])
    before = wait_for(lambda: drain(queues["ops"], queues["queue"]), 30, "the first part")

    # The operator's Zaqar goes away; changes keep coming (and change what was sent).
    zaqar_proxy.block()
    server = ws_server()
    watcher = clients(server.url)
    watcher.authenticate("tok-admin")
    watcher.subscribe(all_projects=True)
    publish(publisher, second)
    processed(listener, len(first) + len(second))
    # Meanwhile the other pipelines and WebSocket clients are not held back at all:
    # they reach the end of the log while the operator's Zaqar is still away.
    wait_caught_up(es, names["state"], names["group"], ["audit", "tenants"])
    converge(watcher, es_view(es, names["group"], "admin", None))
    assert zaqar_proxy.refused > 0
    ops = service.stats()["pipelines"][f"cursor:{names['group']}:ops"]
    assert ops["counters"].get("held", 0) > 0 and ops["last_error"]

    zaqar_proxy.unblock()
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    after = drain(queues["ops"], queues["queue"])
    final, regressions = latest_per_resource(before + after)
    assert regressions == []
    assert differences(simulator.expected, final) == []


@pytest.mark.parametrize("policy", ["retry", "drop"])
def test_retry_and_drop_move_on_and_record_the_skipped_range(
        policy, config_file, names, queues, start_listener, start_delivery, publisher, es,
        zaqar_proxy):
    write_pipelines(config_file, pipelines_ini(queues["ops"], queues["queue"],
                                               queues["tenants"], ops_url=zaqar_proxy.url,
                                               ops_policy=f"{policy}\nattempts = 2"))
    zaqar_proxy.block()                      # the operator's Zaqar never answers
    listener = start_listener()
    stream = CloudSimulator(seed=13).stream(2)
    service = start_delivery()
    publish(publisher, stream)
    processed(listener, len(stream))
    # The cursor moves on anyway, past what could not be delivered ...
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    ops = service.stats()["pipelines"][f"cursor:{names['group']}:ops"]["counters"]
    assert ops.get("skipped", 0) > 0 and ops.get("delivered", 0) == 0
    # ... and each skipped range is a dead letter naming the pipeline and the reason.
    es.indices.refresh(index=names["dead_letters"])
    records = es.search(index=names["dead_letters"], size=1000, query={"term": {
        "publisher_id": f"consumer:{names['group']}/ops"}})["hits"]["hits"]
    skipped = sum(h["_source"]["notification"].count('"skipped"') for h in records)
    assert records and skipped == len(records)
    assert all("skipped" in h["_source"]["reason"] and
               ("1 attempt" if policy == "drop" else "2 attempt") in h["_source"]["reason"]
               for h in records)


def test_a_cursor_behind_the_tombstone_horizon_gets_a_resync(
        config_file, names, queues, start_listener, start_delivery, publisher, es):
    write_pipelines(config_file, pipelines_ini(queues["ops"], queues["queue"],
                                               queues["tenants"]))
    listener = start_listener()
    simulator = CloudSimulator(seed=14)
    first = simulator.stream(2, delete_ratio=0.0)
    service = start_delivery()
    publish(publisher, first)
    processed(listener, len(first))
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    service.stop()
    drain(queues["ops"], queues["queue"])

    # While no delivery runs: deletes, then a purge of every tombstone (retention 0).
    second = simulator.stream(2, delete_ratio=1.0)
    publish(publisher, second)
    processed(listener, len(first) + len(second))
    head = ChangeLog(es, names["group"]).head().position
    tombstones = Tombstones(es, names["group"], names["state"])
    # Ages count from when a tombstone was written, not from the deleted resource's
    # own (simulated, months old) timestamps: an hour's retention keeps them all.
    assert tombstones.purge(head, None, 3600, 3600) == 0
    purged = tombstones.purge(head, None, 0, 0)
    assert purged > 0

    start_delivery()
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    bodies = drain(queues["ops"], queues["queue"])
    operations = [b["operation"] for b in bodies]
    assert operations[0] == RESYNC_BEGIN and operations[-1] == RESYNC_END
    assert "tombstone" in bodies[0]["document"]["reason"]
    # The resync is the current state of every live resource; deletes purged away
    # are implied by their absence between the two markers.
    live = {k for k, e in simulator.expected.items() if not e.deleted}
    sent = {(b["resource_type"], b["id"]) for b in bodies[1:-1] if b["operation"] == "index"}
    assert sent == live


def test_a_pipeline_that_falls_behind_the_feed_catches_up_by_itself(
        config_file, names, queues, start_listener, start_delivery, publisher, es,
        zaqar_proxy):
    # A retry pipeline whose Zaqar is away: it retries in its own thread while the
    # feed's pages come faster than its one-page queue takes them (it falls behind),
    # then it skips what it could not deliver or delivers it once Zaqar is back.
    # Changes made after Zaqar's return must arrive: it reads the log itself from its
    # cursor. Ten attempts (backoff 0.2 s to 1 s) keep it busy for seconds, not the
    # 0.3 s of two, so it falls behind however slowly a loaded machine indexes the pages.
    config_file.write_text(config_file.read_text().replace(
        "[delivery]\n", "[delivery]\nqueue_pages = 1\n", 1))
    write_pipelines(config_file, pipelines_ini(queues["ops"], queues["queue"],
                                               queues["tenants"], ops_url=zaqar_proxy.url,
                                               ops_policy="retry\nattempts = 10"))
    listener = start_listener()
    simulator = CloudSimulator(seed=14)
    warm_up = simulator.stream(1, delete_ratio=0.0)
    first, second = simulator.stream(3), simulator.stream(2, delete_ratio=0.0)
    service = start_delivery()
    ops = f"cursor:{names['group']}:ops"
    # Only a live consumer is offered the feed's pages (and can fall behind them): one
    # still catching up when Zaqar goes away reads the log itself, retrying each batch.
    publish(publisher, warm_up)
    processed(listener, len(warm_up))
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    wait_for(lambda: service.stats()["pipelines"][ops]["mode"] == "live", 30,
             "the ops pipeline to follow the feed")
    zaqar_proxy.block()
    step = len(first) // 6 + 1
    for done in range(0, len(first), step):        # at least six pages of changes
        publish(publisher, first[done:done + step])
        processed(listener, len(warm_up) + min(done + step, len(first)))
    wait_for(lambda: service.stats()["pipelines"][ops]["counters"].get("fell_behind"),
             30, "the ops pipeline to fall behind the feed")
    zaqar_proxy.unblock()
    publish(publisher, second)
    processed(listener, len(warm_up) + len(first) + len(second))
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    got, regressions = latest_per_resource(drain(queues["ops"], queues["queue"]))
    assert regressions == []
    # The oracle: the simulator's final state of every resource of the second part.
    second_keys = {(n.resource_type, n.resource_id) for n in second}
    assert differences({k: v for k, v in simulator.expected.items() if k in second_keys},
                       {k: v for k, v in got.items() if k in second_keys}) == []
