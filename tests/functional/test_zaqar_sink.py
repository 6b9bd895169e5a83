"""ZaqarSink against the real Zaqar on 127.0.0.1 (scripts/servers.py up zaqar).

Every test uses its own Zaqar projects and queues (random suffixes) and deletes the
queues it touched; messages are read back with python-zaqarclient as the telco
consumer would (pops of 20, or claims of 20 with grace 60 and a bulk delete).
"""
from __future__ import annotations

import json
import socket
import time
import urllib.parse
import uuid

import pytest
import requests

from devtools.faultproxy import FaultProxy
from searchlight_forward.model.envelope import Envelope
from forwarders.sinks.base import SinkConfigError, SinkContext, SinkRejected, SinkUnavailable
from forwarders.sinks.zaqar.batching import post_size
from forwarders.sinks.zaqar.config import MAX_POST_BYTES
from forwarders.sinks.zaqar.sink import ZaqarSink
from tests.conftest import ZAQAR_URL, zaqar_client_for

TEST_SECONDS = 60     # every test is killed after this
DRAIN_SECONDS = 20    # reading a queue back gives up after this


pytestmark = pytest.mark.timeout(TEST_SECONDS)


@pytest.fixture(scope="module")
def zaqar():
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "sf-test"}
    try:
        requests.get(f"{ZAQAR_URL}/v2/ping", headers=headers, timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001 - the message says what to do
        pytest.fail(f"Zaqar is not reachable at {ZAQAR_URL} ({exc}); start it: "
                    "python3 scripts/servers.py up zaqar")
    return ZAQAR_URL


def consumer(project: str):
    return zaqar_client_for(project)


@pytest.fixture
def queues(zaqar):
    """Register (project, queue) pairs to delete after the test."""
    touched: list[tuple[str, str]] = []
    yield touched
    for project, name in touched:
        try:
            consumer(project).queue(name, auto_create=False).delete()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


@pytest.fixture
def sinks():
    made: list[ZaqarSink] = []

    def make(options, name=None, url=ZAQAR_URL):
        sink = ZaqarSink(name or f"zaqar-test-{uuid.uuid4().hex[:6]}",
                         {"timeout": "5", **options}, SinkContext(zaqar_url=url))
        sink.start()
        made.append(sink)
        return sink
    yield make
    for sink in made:
        sink.close()


def pop_all(project: str, queue: str) -> list[dict]:
    """Every message body in the queue, oldest first (pops of 20)."""
    q = consumer(project).queue(queue, auto_create=False)
    bodies, deadline = [], time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        batch = [m.body for m in q.pop(count=20)]
        if not batch:
            return bodies
        bodies.extend(batch)
    raise TimeoutError(f"draining {project}/{queue} took over {DRAIN_SECONDS}s")


def claim_all(project: str, queue: str) -> list[dict]:
    """Every message body, oldest first, by claims (limit 20, grace 60) + bulk delete."""
    q = consumer(project).queue(queue, auto_create=False)
    bodies, deadline = [], time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        messages = list(q.claim(ttl=60, grace=60, limit=20))
        if not messages:
            return bodies
        bodies.extend(m.body for m in messages)
        q.delete_messages(*[m.id for m in messages])
    raise TimeoutError(f"draining {project}/{queue} took over {DRAIN_SECONDS}s")


def queue_names(project: str) -> set[str]:
    listed, _count = consumer(project).queues()
    return {q.name for q in listed}


def env(resource_id: str, version: int, project_id: str | None = "p", size: int = 50,
        resource_type: str = "OS::Nova::Server", **document) -> Envelope:
    return Envelope(resource_type=resource_type, id=resource_id, project_id=project_id,
                    version=version, operation="index", event_type="instance.update",
                    timestamp="2026-03-02 12:00:07.270156",
                    document={"id": resource_id, "pad": "x" * size, **document})


def suffix() -> str:
    return uuid.uuid4().hex[:10]


# --------------------------------------------------------------------------------

def test_per_tenant_queues_hold_only_their_projects_envelopes(sinks, queues):
    projects = [f"sft{suffix()}" for _ in range(3)]
    for p in projects:
        queues.append((p, f"tenant-{p}"))
    sink = sinks({"queue": "tenant-{project_id}", "project": "{project_id}"})
    batch = [env(f"{p}-srv{i}", 100 + i, project_id=p)
             for i in range(15) for p in projects]          # interleaved projects
    sink.deliver(batch)

    for p in projects:
        # the project sees its own queue only, and it holds exactly its envelopes
        assert queue_names(p) == {f"tenant-{p}"}
        got = claim_all(p, f"tenant-{p}")
        assert got == [e.to_dict() for e in batch if e.project_id == p]
        for other in projects:
            if other != p:  # no queue of another tenant in this tenant's project
                assert consumer(p).queue(f"tenant-{other}", auto_create=False) \
                    .stats["messages"]["total"] == 0
    assert sink.counters["posted"] == len(batch)


def test_envelopes_without_project_are_skipped_or_go_to_fallback(sinks, queues):
    p, ops = f"sft{suffix()}", f"sftops{suffix()}"
    queues.extend([(p, f"tenant-{p}"), (ops, f"tenant-{ops}")])
    batch = [env("srv1", 1, project_id=p),
             env("flavor1", 1, project_id=None, resource_type="OS::Nova::Flavor"),
             env("srv1", 2, project_id=p)]

    skipping = sinks({"queue": "tenant-{project_id}", "project": "{project_id}"})
    skipping.deliver(batch)                       # returns: nothing is pending
    assert skipping.counters["skipped_no_project"] == 1
    assert [m["version"] for m in pop_all(p, f"tenant-{p}")] == [1, 2]

    routing = sinks({"queue": "tenant-{project_id}", "project": "{project_id}",
                     "fallback_project": ops})
    routing.deliver(batch)
    assert [m["id"] for m in pop_all(p, f"tenant-{p}")] == ["srv1", "srv1"]
    assert pop_all(ops, f"tenant-{ops}") == [batch[1].to_dict()]


def test_operator_queue_gets_every_project_in_order(sinks, queues):
    ops, name = f"sftops{suffix()}", f"openstack-resources-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops})
    batch = [env(f"r{i % 9}", i, project_id=[f"a{suffix()}", "b", None][i % 3])
             for i in range(120)]
    sink.deliver(batch)
    assert pop_all(ops, name) == [e.to_dict() for e in batch]
    assert sink.counters["skipped_no_project"] == 0   # not a per-project template


def test_resource_type_slug_in_queue_name(sinks, queues):
    ops, tag = f"sftops{suffix()}", suffix()
    sink = sinks({"queue": tag + "-{resource_type_slug}", "project": ops})
    queues.extend([(ops, f"{tag}-os-nova-server"), (ops, f"{tag}-os-glance-image")])
    sink.deliver([env("s1", 1), env("i1", 1, resource_type="OS::Glance::Image"),
                  env("s1", 2)])
    assert [m["version"] for m in pop_all(ops, f"{tag}-os-nova-server")] == [1, 2]
    assert [m["id"] for m in pop_all(ops, f"{tag}-os-glance-image")] == ["i1"]


def test_order_per_resource_holds_across_many_posts_and_calls(sinks, queues):
    ops, name = f"sftops{suffix()}", f"order-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops, "max_messages_per_post": "7"})
    sent = []
    for call in range(3):
        batch = [env(f"r{i % 5}", call * 1000 + i) for i in range(40)]
        sink.deliver(batch)
        sent.extend(batch)
    assert sink.counters["posts"] == 3 * 6          # ceil(40 / 7)
    got = pop_all(ops, name)
    assert got == [e.to_dict() for e in sent]
    for rid in {e.id for e in sent}:
        versions = [m["version"] for m in got if m["id"] == rid]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_batches_split_by_bytes(sinks, queues):
    ops, name = f"sftops{suffix()}", f"bytes-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops})
    batch = [env(f"r{i:04d}", 1000 + i, size=5000) for i in range(150)]  # ~5 KB each
    size = sink._encode(batch[0])[1]
    assert post_size([size] * 100) > MAX_POST_BYTES            # 100 would not fit
    sink.deliver(batch)
    per_post = (MAX_POST_BYTES - post_size([])) // (size + 2)
    assert sink.counters["posts"] == -(-150 // per_post)       # as few as fit
    assert sink.counters["split_posts"] == 0                   # Zaqar took them all
    assert pop_all(ops, name) == [e.to_dict() for e in batch]


def test_batches_split_by_count(sinks, queues):
    ops, name = f"sftops{suffix()}", f"count-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops})              # default 100
    batch = [env(f"r{i}", i) for i in range(250)]
    sink.deliver(batch)
    assert sink.counters["posts"] == 3
    assert len(pop_all(ops, name)) == 250


def test_post_of_exactly_the_limit_is_accepted(sinks, queues):
    ops, name = f"sftops{suffix()}", f"edge-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops})
    probe = env("big", 1, size=0)
    pad = MAX_POST_BYTES - post_size([sink._encode(probe)[1]])
    exact = env("big", 1, size=pad)
    assert post_size([sink._encode(exact)[1]]) == MAX_POST_BYTES
    sink.deliver([exact])
    with pytest.raises(SinkRejected):
        sink.deliver([env("big", 2, size=pad + 1)])
    assert [m["version"] for m in pop_all(ops, name)] == [1]


def test_too_big_envelope_is_rejected_and_the_others_get_through(sinks, queues):
    ops, name = f"sftops{suffix()}", f"big-{suffix()}"
    queues.append((ops, name))
    sink = sinks({"queue": name, "project": ops})
    batch = [env("a", 1), env("b", 1), env("huge", 1, size=300_000), env("a", 2),
             env("c", 1, bad=float("nan")), env("b", 2)]
    with pytest.raises(SinkRejected) as caught:
        sink.deliver(batch)
    rejected = caught.value.rejected
    assert [(r.index, r.envelope.id) for r in rejected] == [(2, "huge"), (4, "c")]
    assert "too big" in rejected[0].reason and "262144" in rejected[0].reason
    assert "JSON" in rejected[1].reason
    assert caught.value.delivered == len(batch)
    assert [(m["id"], m["version"]) for m in pop_all(ops, name)] == \
        [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert sink.counters["rejected"] == 2


def test_queue_with_a_smaller_post_limit_is_handled_by_halving(sinks, queues):
    ops, name = f"sftops{suffix()}", f"small-{suffix()}"
    queues.append((ops, name))
    q = consumer(ops).queue(name, force_create=True)
    q.metadata(new_meta={"_max_messages_post_size": 20_000})
    sink = sinks({"queue": name, "project": ops})
    batch = [env(f"r{i % 4}", i, size=1500) for i in range(60)] + \
        [env("toolarge", 1, size=30_000)]
    with pytest.raises(SinkRejected) as caught:
        sink.deliver(batch)
    assert [r.envelope.id for r in caught.value.rejected] == ["toolarge"]
    assert "Message collection size is too large" in caught.value.rejected[0].reason
    assert sink.counters["split_posts"] > 0
    assert pop_all(ops, name) == [e.to_dict() for e in batch[:-1]]


@pytest.mark.timeout(30)     # a refused connection must not hang the sink
def test_zaqar_unreachable_raises_sink_unavailable_with_nothing_delivered(sinks):
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = sinks({"queue": "tenant-{project_id}", "project": "{project_id}"},
                 url=f"http://127.0.0.1:{port}")
    with pytest.raises(SinkUnavailable) as caught:
        sink.deliver([env("a", 1, project_id="p1"), env("b", 1, project_id="p2")])
    assert caught.value.delivered == 0
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_the_probe_says_whether_zaqar_answers(sinks):
    proxy = FaultProxy("127.0.0.1", urllib.parse.urlsplit(ZAQAR_URL).port).start()
    try:
        sink = sinks({"queue": "q", "project": "p"}, url=proxy.url)
        assert sink.probe() is True
        proxy.block()
        assert sink.probe() is False
        proxy.unblock()
        assert sink.probe() is True
    finally:
        proxy.stop()


@pytest.mark.timeout(30)     # the 0.5 s timeout, not a hang
def test_timeout_raises_sink_unavailable(sinks):
    with socket.socket() as server:     # accepts the connection, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sink = sinks({"queue": "q", "project": "p", "timeout": "0.5"},
                     url=f"http://127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(SinkUnavailable) as caught:
            sink.deliver([env("a", 1)])
        assert caught.value.delivered == 0
        assert "timed out" in str(caught.value).lower() or "timeout" in str(caught.value).lower()


def test_skipped_prefix_counts_as_delivered_when_zaqar_is_down(sinks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = sinks({"queue": "tenant-{project_id}", "project": "{project_id}"},
                 url=f"http://127.0.0.1:{port}")
    with pytest.raises(SinkUnavailable) as caught:
        sink.deliver([env("f", 1, project_id=None), env("a", 1, project_id="p")])
    assert caught.value.delivered == 1       # the skipped one is done


def test_unavailable_never_hides_a_rejection(sinks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = sinks({"queue": "tenant-{project_id}", "project": "{project_id}"},
                 url=f"http://127.0.0.1:{port}")
    batch = [env("f", 1, project_id=None), env("huge", 1, size=300_000),
             env("a", 1, project_id="p")]
    with pytest.raises(SinkUnavailable) as caught:
        sink.deliver(batch)
    # the prefix stops before the rejected one: the retry rejects it again and the
    # pipeline hears of it then (SinkRejected), once Zaqar takes the rest
    assert caught.value.delivered == 1
    assert sink.counters["rejected"] == 0


@pytest.mark.parametrize("options, option", [
    ({"queue": "tenant-{tenant}"}, "queue"),
    ({"queue": "q-{}"}, "queue"),
    ({"queue": "q-{id.__class__}"}, "queue"),
    ({"queue": "q-{project_id"}, "queue"),
    ({"queue": "{resource_type}"}, "queue"),           # colons: not a queue name
    ({"queue": "{event_type}"}, "queue"),              # dots
    ({"queue": "x" * 30 + "-{project_id}-{id}"}, "queue"),  # too long
    ({"queue": ""}, "queue"),
    ({"project": "{nope}"}, "project"),
    ({"project": "a b"}, "project"),
    ({"ttl": "59"}, "ttl"),
    ({"ttl": "1209601"}, "ttl"),
    ({"ttl": "an hour"}, "ttl"),
    ({"max_messages_per_post": "0"}, "max_messages_per_post"),
    ({"max_messages_per_post": "2000"}, "max_messages_per_post"),
    ({"max_post_bytes": "10"}, "max_post_bytes"),
    ({"timeout": "-1"}, "timeout"),
    ({"client_id": "not-a-uuid"}, "client_id"),
    ({"url": "127.0.0.1:8888"}, "url"),
    ({"url": "http://127.0.0.1:99999"}, "url"),
    ({"queue": "ops", "project": "ops", "fallback_project": "x"}, "fallback_project"),
    ({"fallback_project": "has space"}, "fallback_project"),
])
def test_bad_options_name_the_option(options, option):
    with pytest.raises(SinkConfigError) as caught:
        ZaqarSink("bad", options, SinkContext(zaqar_url=ZAQAR_URL))
    assert str(caught.value).startswith(f"{option}: "), str(caught.value)


def test_url_is_required_somewhere():
    with pytest.raises(SinkConfigError, match="^url: "):
        ZaqarSink("nourl", {}, SinkContext())
    assert ZaqarSink("ctx", {}, SinkContext(zaqar_url=ZAQAR_URL)).config.url == ZAQAR_URL


def test_defaults():
    sink = ZaqarSink("defaults", {}, SinkContext(zaqar_url=ZAQAR_URL))
    assert ZaqarSink.default_policy == "hold"
    assert (sink.config.queue_template, sink.config.project_template) == ("openstack-resources",
                                                             "{project_id}")
    assert (sink.config.ttl, sink.config.max_messages, sink.config.max_bytes) == (3600, 100, MAX_POST_BYTES)
    assert sink.config.client_id == ZaqarSink("defaults", {}, SinkContext(zaqar_url=ZAQAR_URL)).config.client_id
    assert sink.config.client_id != ZaqarSink("other", {}, SinkContext(zaqar_url=ZAQAR_URL)).config.client_id
    assert str(uuid.UUID(sink.config.client_id)) == sink.config.client_id
    json.dumps(sink.auth_opts("p"))
