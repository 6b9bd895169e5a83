"""Many subscriptions on a few threads (issue 28): two hundred active webhook
subscriptions over twenty projects, one in-process delivery service with four
threads and four partitions, a real receiver (one endpoint path per subscription)
and real Elasticsearch and RabbitMQ. Each subscription receives exactly its own
project's changes, in order, and the service runs them on its four threads, not a
thread each. The expectation is written from what the test writes."""
from __future__ import annotations

import concurrent.futures
import threading
import time
import urllib.parse
import uuid

import pytest

from devtools.receivers import Receiver
from forwarders.subscriptions import model
from forwarders.subscriptions.store import SubscriptionStore
from searchlight_forward.model.documents import USER
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.websocket_support import document_change
from tests.functional.subscriptions_support import (SUBSCRIPTIONS_PIPELINE, free_port,
                                                     subscriptions_conf)

PROJECTS = 20
PER_PROJECT = 10
THREADS = 4


def active_webhook(project: str, endpoint: str) -> model.Subscription:
    """An active webhook subscription, as the API leaves it once confirmed."""
    now = time.time()
    return model.Subscription(
        id=str(uuid.uuid4()), project_id=project, protocol=model.WEBHOOK,
        endpoint=endpoint, role=USER, created_by="test", created_at=now,
        updated_at=now, state=model.ACTIVE, name="", resource_types=None,
        rate_limit=1000.0, start_from=model.NOW,
        secrets=(model.Secret(model.new_secret()),),
        confirmation_token=model.new_token(), confirmation_sent_at=now,
        confirmation_attempts=1, confirmed_at=now)


@pytest.fixture
def many(config_file, names, keystone, es, start_delivery):
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(text + subscriptions_conf(names, keystone, free_port())
                           + f"\n[delivery]\nthreads = {THREADS}\npartitions = 4\n")
    receiver = Receiver()
    store = SubscriptionStore(es, f"{names['state']}-subscriptions")
    store.ensure()
    projects = [uuid.uuid4().hex for _ in range(PROJECTS)]
    subs = [active_webhook(p, f"{receiver.url}/{p}/{i}")
            for p in projects for i in range(PER_PROJECT)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(store.create, subs))
    try:
        yield projects, subs, receiver, start_delivery
    finally:
        receiver.stop()
        es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


def test_two_hundred_subscriptions_run_on_four_threads_each_with_its_own_project(
        many, writer):
    projects, subs, receiver, start_delivery = many
    before = {t.ident for t in threading.enumerate()}
    service = start_delivery()
    wait_for(lambda: len(service.consumers) == len(subs) and all(
        c.mode == "live" for c in service.consumers.values()), 60,
        "every subscription delivered, live")
    pool = [t for t in threading.enumerate() if t.name.startswith("delivery-")]
    assert len(pool) == THREADS
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert len(started) < 30, sorted(t.name for t in started)      # not one per subscription

    run = uuid.uuid4().hex[:6]
    busy = projects[:3]
    written = {p: [f"{run}-{p[:6]}-{i}" for i in range(3)] for p in busy}
    for p in busy:
        writer(p, written[p], 1)
        writer(p, written[p][:1], 2)
    markers = {p: f"{run}-marker-{p[:6]}" for p in projects}
    # all in one write: a page with every project's entry, which each subscription
    # must take its own from
    writer.changes([document_change(marker, p, 1) for p, marker in markers.items()])

    def by_endpoint() -> dict[str, list[tuple[str, int, str]]]:
        got: dict[str, list] = {}
        for d in receiver.changes():
            data = d.json["data"]
            if data["id"].startswith(run):
                got.setdefault(d.path, []).append(
                    (data["id"], data["version"], data["project_id"]))
        return got
    paths = {urllib.parse.urlsplit(s.endpoint).path: s.project_id for s in subs}
    def missing() -> list[str]:
        got = by_endpoint()
        return [path for path, p in paths.items()
                if markers[p] not in {rid for rid, _, _ in got.get(path, [])}]
    try:
        wait_for(lambda: not missing(), 90, "every subscription's marker (written last)")
    except BaseException:
        print("missing", len(missing()), missing()[:5], service.runner.stats())
        for key, c in list(service.consumers.items())[:3]:
            print(key, c.stats())
        raise
    got = by_endpoint()
    for path, project in paths.items():
        received = got[path]
        assert {pid for _, _, pid in received} == {project}, path
        newest: dict[str, int] = {}
        for rid, version, _ in received:
            assert version > newest.get(rid, 0), f"{path}: {rid} older after newer"
            newest[rid] = version
        expected = {markers[project]: 1}
        if project in written:
            expected.update({rid: 1 for rid in written[project]})
            expected[written[project][0]] = 2
        assert newest == expected, path
    # Idle again: no thread of the pool is busy and nothing waits to run.
    wait_for(lambda: (lambda s: s["busy"] == 0 and s["ready"] == 0)(
        service.runner.stats()), 30, "the pool idle")
