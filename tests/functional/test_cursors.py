"""Cursor ownership on the real Elasticsearch: partitions with one owner at a time,
leases renewed in one bulk that run out, cursors fenced against a previous owner,
and delivery processes that share the pipelines and take over a dead one's."""
from __future__ import annotations

import threading

import pytest

from devtools.faultproxy import FaultProxy
from forwarders.delivery.cursors import CursorState, CursorStore, LeaseLost, cursor_id
from searchlight_forward import search
from searchlight_forward.changelog.position import Position
from tests.conftest import ES_URL, SEARCH_BACKEND
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


def test_only_one_process_owns_a_partition(store_for):
    a, b = store_for("a"), store_for("b")
    results = {}
    barrier = threading.Barrier(2)

    def claim(store):
        barrier.wait()
        results[store.owner] = store.claim("p1", None)   # both see no document

    threads = [threading.Thread(target=claim, args=(s,)) for s in (a, b)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    winners = [o for o, lease in results.items() if lease is not None]
    assert len(winners) == 1
    loser = b if winners == ["a"] else a
    assert loser.claim("p1", loser.leases(["p1"]).get("p1")) is None   # lease still runs


def test_a_lease_that_ran_out_is_taken_over_and_the_old_owner_is_fenced_off(store_for):
    a, b = store_for("a", lease=1.0), store_for("b", lease=1.0)
    lease_a = a.claim("p1", None)
    cursor_a = a.take(lease_a, [("g", "ops")])[("g", "ops")]
    cursor_a.write(CursorState(position=Position("i", (5,)), delivered=5))
    lease_b = wait_for(lambda: b.claim("p1", b.leases(["p1"]).get("p1")), 10,
                       "the lease to run out and b to claim the partition")
    cursor_b = b.take(lease_b, [("g", "ops")])[("g", "ops")]
    # b starts where a left off, and the cursor names b ...
    assert cursor_b.state.position == Position("i", (5,))
    assert read(b, "g", "ops")["_source"]["owner"] == "b"
    # ... a's renewal finds the partition lost, and a's late cursor write fails.
    assert a.renew([lease_a]) == [lease_a] and lease_a.remaining() == 0.0
    lease_a.lost = False                      # even if a had not noticed yet:
    with pytest.raises(LeaseLost):
        cursor_a.write(CursorState(position=Position("i", (9,))))
    assert read(b, "g", "ops")["_source"]["position"]["seq_nos"] == [5]


def test_leases_are_renewed_in_one_bulk_request_and_a_lost_one_is_reported(
        store_for, es):
    a, b = store_for("a", lease=30.0), store_for("b", lease=30.0)
    leases = [a.claim(f"p{i}", None) for i in range(20)]
    before = {p: d["_source"]["lease_until"] for p, d in a.leases(
        [f"p{i}" for i in range(20)]).items()}
    # Another process takes p3 over (as after a run-out lease): a's renewal loses it.
    stolen = a.leases(["p3"])["p3"]
    es.index(index=a.index, id=stolen["_id"], document=dict(stolen["_source"], owner="b"),
             if_seq_no=stolen["_seq_no"], if_primary_term=stolen["_primary_term"])
    calls = []
    real_bulk = a.es.bulk
    a.es = type("Counting", (), {"bulk": lambda self, **kw: calls.append(kw) or
                                 real_bulk(**kw), "__getattr__": lambda self, n:
                                 getattr(es, n)})()
    lost = a.renew(leases)
    assert len(calls) == 1 and len(calls[0]["operations"]) == 40
    assert [lease.partition for lease in lost] == ["p3"]
    after = {p: d["_source"] for p, d in b.leases([f"p{i}" for i in range(20)]).items()}
    assert after["p3"]["owner"] == "b"
    assert all(after[p]["lease_until"] > before[p] and after[p]["owner"] == "a"
               for p in before if p != "p3")


def test_a_released_partition_is_free_at_once(store_for):
    a, b = store_for("a", lease=60.0), store_for("b", lease=60.0)
    lease = a.claim("p1", None)
    lease.release()
    assert b.claim("p1", b.leases(["p1"]).get("p1")) is not None


def test_an_operators_move_is_seen_and_the_owners_next_write_fails(store_for):
    a = store_for("a", lease=60.0)
    cursor = a.take(a.claim("p1", None), [("g", "ops"), ("g", "idle")])
    assert a.moved(["g"]) == {}
    a.move("g", "idle", Position("i", (2,)), "replay from 2")
    a.es.indices.refresh(index=a.index)
    moved = a.moved(["g"])
    assert list(moved) == [cursor_id("g", "idle")]
    assert not cursor[("g", "idle")].written_after(moved[cursor_id("g", "idle")])
    with pytest.raises(LeaseLost):
        cursor[("g", "idle")].write(CursorState(position=Position("i", (7,))))
    cursor[("g", "ops")].write(CursorState(position=Position("i", (7,))))   # not moved


def test_a_cursor_write_whose_answer_was_lost_is_not_taken_for_another_owners(
        store_for, names):
    """The write reached Elasticsearch, its answer did not: the client's retry (or the
    consumer's) conflicts with that very write. It is ours, so delivery goes on; a
    write of anybody else still fences this cursor off."""
    host, port = ES_URL.split("//")[1].rstrip("/").split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        a = store_for("a", lease=60.0)
        a_by_proxy = CursorStore(search.connect(proxy.url, SEARCH_BACKEND, request_timeout=10),
                                 names["state"], "a", 60.0)
        cursor = a_by_proxy.take(a_by_proxy.claim("p1", None), [("g", "ops")])[("g", "ops")]
        proxy.lose_answers(1)
        cursor.write(CursorState(position=Position("i", (5,)), delivered=5))
        assert proxy.answers_lost == 1
        assert read(a, "g", "ops")["_source"]["position"]["seq_nos"] == [5]
        cursor.write(CursorState(position=Position("i", (6,)), delivered=6))
        assert read(a, "g", "ops")["_source"]["position"]["seq_nos"] == [6]
        # Another writer (here an operator's move) still wins over a lost answer.
        a.move("g", "ops", Position("i", (2,)), "replay from 2")
        proxy.lose_answers(1)
        with pytest.raises(LeaseLost):
            cursor.write(CursorState(position=Position("i", (9,))))
        assert read(a, "g", "ops")["_source"]["position"]["seq_nos"] == [2]
    finally:
        proxy.stop()


def test_a_lease_renewal_whose_answer_was_lost_keeps_the_partition(store_for, names):
    """The same for the partition's lease: the renewal reached Elasticsearch, its
    answer did not, the client's retry conflicts with it; the partition stays this
    process's (no consumer is stopped for it), while a real takeover is still lost."""
    host, port = ES_URL.split("//")[1].rstrip("/").split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        a = CursorStore(search.connect(proxy.url, SEARCH_BACKEND, request_timeout=10),
                        names["state"], "a", 2.0)
        a.ensure()
        b = store_for("b", lease=2.0)
        kept, taken = a.claim("p1", None), a.claim("p2", None)
        proxy.lose_answers(1)
        assert a.renew([kept, taken]) == []
        assert proxy.answers_lost == 1
        assert not kept.lost and not taken.lost
        assert a.renew([kept]) == []                      # goes on from its own write
        stolen = wait_for(lambda: b.claim("p2", b.leases(["p2"]).get("p2")), 10,
                          "p2's lease to run out and b to claim it")
        assert stolen is not None
        assert a.renew([kept, taken]) == [taken] and taken.lost and not kept.lost
        kept.release()                                    # ours: released without error
        assert b.claim("p1", b.leases(["p1"]).get("p1")) is not None
    finally:
        proxy.stop()

def owners(es, state_index, group):
    """Consumer -> (owner, lease_until) of the operator's pipelines of ``group``
    (each is a partition of its own)."""
    es.indices.refresh(index=state_index)
    hits = es.search(index=state_index, size=100, query={"bool": {"filter": [
        {"term": {"kind": "lease"}}]}})["hits"]["hits"]
    prefix = f"pipeline:{group}:"
    return {h["_source"]["partition"][len(prefix):]:
            (h["_source"]["owner"], h["_source"]["lease_until"])
            for h in hits if h["_source"]["partition"].startswith(prefix)
            and h["_source"]["owner"]}


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
