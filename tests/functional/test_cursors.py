"""Cursor ownership on the real Elasticsearch: one owner at a time, leases that run
out, and delivery processes that share the pipelines and take over a dead one's."""
from __future__ import annotations

import threading

import pytest

from forwarders.delivery.cursors import CursorState, CursorStore, LeaseLost, cursor_id
from searchlight_forward.changelog.position import Position
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import pipelines_ini


@pytest.fixture
def store_for(es, names):
    def make(owner, lease=3.0):
        store = CursorStore(es, names["state"], owner, lease)
        store.ensure()
        return store
    yield make
    es.indices.delete(index=names["state"], ignore_unavailable=True)


def read(store, group, consumer):
    return store.read([cursor_id(group, consumer)]).get(cursor_id(group, consumer))


def test_only_one_process_owns_a_cursor(store_for):
    a, b = store_for("a"), store_for("b")
    results = {}
    barrier = threading.Barrier(2)

    def claim(store):
        barrier.wait()
        results[store.owner] = store.claim("g", "ops", None)   # both see no document

    threads = [threading.Thread(target=claim, args=(s,)) for s in (a, b)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    winners = [o for o, lease in results.items() if lease is not None]
    assert len(winners) == 1
    loser = b if winners == ["a"] else a
    assert loser.claim("g", "ops", read(loser, "g", "ops")) is None   # lease still runs


def test_a_lease_that_ran_out_is_taken_over_and_the_old_owner_stands_down(store_for):
    a, b = store_for("a", lease=1.0), store_for("b", lease=1.0)
    lease_a = a.claim("g", "ops", None)
    lease_a.write(CursorState(position=Position("i", (5,)), delivered=5))
    wait_for(lambda: b.claim("g", "ops", read(b, "g", "ops")), 10,
             "the lease to run out and b to claim the cursor")
    # b starts where a left off ...
    assert read(b, "g", "ops")["_source"]["position"]["seq_nos"] == [5]
    assert read(b, "g", "ops")["_source"]["owner"] == "b"
    # ... and a's next write finds out it is no longer the owner.
    with pytest.raises(LeaseLost):
        lease_a.write(CursorState(position=Position("i", (9,))))
    assert lease_a.remaining() == 0.0
    assert read(b, "g", "ops")["_source"]["position"]["seq_nos"] == [5]


def test_a_released_cursor_is_free_at_once(store_for):
    a, b = store_for("a", lease=60.0), store_for("b", lease=60.0)
    lease = a.claim("g", "ops", None)
    lease.write(release=True)
    assert b.claim("g", "ops", read(b, "g", "ops")) is not None


def owners(es, state_index, group):
    es.indices.refresh(index=state_index)
    hits = es.search(index=state_index, size=100, query={"bool": {"filter": [
        {"term": {"kind": "cursor"}}, {"term": {"group": group}}]}})["hits"]["hits"]
    return {h["_source"]["consumer"]: (h["_source"]["owner"], h["_source"]["lease_until"])
            for h in hits}


def test_delivery_processes_share_the_pipelines_and_take_over_a_stopped_one(
        config_file, names, es, start_listener, start_delivery):
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", "q",
                                               f"{names['zaqar']}-t"))
    start_listener()          # creates the index
    first = start_delivery()
    second = start_delivery()
    pipelines = {"tenants", "ops", "audit"}

    def split():
        found = owners(es, names["state"], names["group"])
        by_owner = {o for o, _ in found.values()}
        # Whoever came first took everything; it gives back beyond its fair share
        # (ceil(3 / 2) = 2) once it sees the other process's heartbeat.
        return found if set(found) == pipelines and \
            by_owner == {first.store.owner, second.store.owner} else None
    found = wait_for(split, 30, "the pipelines to be shared by both processes")
    counts = sorted(sum(o == p.store.owner for o, _ in found.values())
                    for p in (first, second))
    assert counts == [1, 2]

    # The first stops without a word (as if killed): the other takes its share over
    # once the leases run out (lease_seconds, then at most a third of it).
    first.stop_event.set()
    for consumer in list(first.consumers.values()):
        consumer.stop()
    first.consumers.clear()          # no release: leases must run out
    lease = first.store.lease_seconds
    wait_for(lambda: {o for o, _ in owners(es, names["state"], names["group"]).values()}
             == {second.store.owner}, 3 * (lease + lease / 3),
             "the second process to own every pipeline")
