"""The conditional-write protocol end to end through ``Indexer.apply``, with the
round's I/O (``Indexer.store``) answered by hand: no Elasticsearch.

Each test scripts what Elasticsearch holds at each read and how it answers each
bulk, then checks what the indexer read, wrote and reported."""
from __future__ import annotations

import pytest

from searchlight_forward.indexer import merge
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.indexer.plan import Read, Stored
from searchlight_forward.retry import Policy
from tests.unit.test_indexer_plan_classify import (A, B, T, delete, failed, full, ok,
                                                   partial, stored)

C = (T, "c")
FAST = Policy(initial=0.001, maximum=0.001)


class ScriptedStore:
    """Reads answer from ``held`` (what Elasticsearch holds now); each bulk gets
    the next scripted answers (a list, or a function of the actions that may also
    change ``held``, as another writer would)."""

    def __init__(self, bulks, held=None):
        self.held: dict = dict(held or {})
        self.script = list(bulks)
        self.reads: list[list] = []
        self.bulks: list[list[dict]] = []

    def index_of(self, resource_type):
        return "things-listener"

    def read(self, keys, wanted):
        self.reads.append(list(keys))
        return Read(stored={k: self.held[k] for k in keys if k in self.held})

    def bulk(self, actions):
        if not actions:
            return []
        self.bulks.append(actions)
        answers = self.script.pop(0)
        answers = answers(actions) if callable(answers) else answers
        assert len(answers) == len(actions)
        return answers

    def arrived_removals(self, absent):
        return set()


def indexer(store, **kwargs) -> Indexer:
    ix = Indexer(None, {T: "things"}, {}, retry=FAST, **kwargs)
    ix.store = store
    return ix


def outcomes(result):
    return {origin: r.outcome for origin, r in result.results}


def ids(actions):
    return [a["_id"] for a in actions]


def test_a_409_on_one_item_re_reads_and_re_plans_only_that_resource():
    newer_b = stored(full(B, 1, name="b1"), partial(B, 2, size=5), seq_no=7)

    def another_writer_got_to_b(actions):
        store.held[B] = newer_b              # written between our read and our write
        return [ok(10), failed(409, "version_conflict_engine_exception", "seq no")]

    store = ScriptedStore(held={B: stored(full(B, 1, name="b1"), seq_no=3)}, bulks=[
        another_writer_got_to_b,             # admin copies of a and b
        [ok(11)],                            # user copy of a only: b's admin copy lost
        [ok(8)],                             # b again, folded onto what is there now
        [ok(9)]])
    ix = indexer(store)
    result = ix.apply([("ma", full(A, 1, name="a")), ("mb", partial(B, 3, name="b3"))])

    assert store.reads == [[A, B], [B]]
    assert [ids(b) for b in store.bulks] == [
        ["a_ADMIN", "b_ADMIN"], ["a_USER"], ["b_ADMIN"], ["b_USER"]]
    b_again = store.bulks[2][0]
    assert (b_again["if_seq_no"], b_again["if_primary_term"]) == (7, 2)
    assert b_again["_source"]["size"] == 5 and b_again["_source"]["name"] == "b3"
    assert store.bulks[3][0]["version"] == 3
    assert outcomes(result) == {"ma": merge.Outcome.APPLIED, "mb": merge.Outcome.APPLIED}
    assert result.rejected == []
    assert ix.counters["conflicts"] == 1 and ix.retries == 0


def test_a_stale_change_against_a_newer_stored_version_writes_nothing():
    store = ScriptedStore(held={A: stored(full(A, 5, name="new"))}, bulks=[])
    result = indexer(store).apply([("old", full(A, 3, name="old"))])
    assert store.bulks == []
    assert outcomes(result) == {"old": merge.Outcome.STALE}


def test_a_delete_then_a_late_update_is_not_undone():
    store = ScriptedStore(held={A: stored(full(A, 1), seq_no=1)},
                          bulks=[[ok(2)], [ok(3)]])
    ix = indexer(store)
    ix.apply([("delete", delete(A, 5))])
    late = ix.apply([("late", partial(A, 4, status="ACTIVE")),
                     ("later", partial(A, 6, status="ACTIVE"))])
    assert [ids(b) for b in store.bulks] == [["a_ADMIN"], ["a_USER"]]
    assert store.bulks[0][0]["_source"]["sf_deleted"] is True
    assert outcomes(late) == {"late": merge.Outcome.STALE, "later": merge.Outcome.STALE}


def test_429_and_503_items_are_retried_after_a_backoff_and_counted():
    store = ScriptedStore(bulks=[
        [ok(1), failed(429, "es_rejected_execution_exception", "queue full"),
         failed(503, "unavailable_shards_exception", "primary not active")],
        [ok(2)],                             # a's user copy: a is done this round
        [ok(3), ok(4)], [ok(5), ok(6)]])
    ix = indexer(store)
    result = ix.apply([("ma", full(A, 1)), ("mb", full(B, 1)), ("mc", full(C, 1))])

    assert store.reads == [[A, B, C], [B, C]]
    assert [ids(b) for b in store.bulks] == [
        ["a_ADMIN", "b_ADMIN", "c_ADMIN"], ["a_USER"],
        ["b_ADMIN", "c_ADMIN"], ["b_USER", "c_USER"]]
    assert [a["_op_type"] for a in store.bulks[2]] == ["create", "create"]
    assert ix.retries == 1
    assert set(outcomes(result).values()) == {merge.Outcome.APPLIED}
    assert len(result.results) == 3 and result.rejected == []


def test_a_400_item_is_rejected_with_the_reason_and_the_others_written():
    store = ScriptedStore(bulks=[
        [ok(1), failed(400, "document_parsing_exception", "failed to parse field [size]")],
        [ok(2)]])
    ix = indexer(store)
    result = ix.apply([("ma", full(A, 1)), ("mb", full(B, 1, size="huge"))])

    assert store.reads == [[A, B]]
    assert outcomes(result) == {"ma": merge.Outcome.APPLIED}
    ((rejection),) = result.rejected
    assert rejection.origin == "mb" and rejection.reason == (
        "Elasticsearch refused the document: document_parsing_exception: "
        "failed to parse field [size]")
    assert ix.retries == 0


def test_an_item_failing_while_others_succeed_is_rejected_after_max_attempts():
    busy = failed(429, "circuit_breaking_exception", "data too large")
    store = ScriptedStore(bulks=[
        [ok(1), busy, failed(409, "version_conflict_engine_exception", "seq no")],
        [ok(2)],                             # a done; b counted once, c re-planned
        [busy, ok(3)], [ok(4)]])             # c done: b refused again while c taken
    ix = indexer(store, max_item_attempts=2)
    result = ix.apply([("ma", full(A, 1)), ("mb", full(B, 1)), ("mc", full(C, 1))])

    assert outcomes(result) == {"ma": merge.Outcome.APPLIED, "mc": merge.Outcome.APPLIED}
    ((rejection),) = result.rejected
    assert rejection.origin == "mb" and rejection.reason == (
        "Elasticsearch answered 429 circuit_breaking_exception: data too large "
        "2 times while it took other documents")
    assert ix.counters["rejected_after_attempts"] == 1


def test_an_item_failing_while_nothing_is_taken_waits_for_the_outage_to_end():
    down = failed(503, "unavailable_shards_exception", "primary not active")
    store = ScriptedStore(bulks=[[down]] * 4 + [[ok(1)], [ok(2)]])
    ix = indexer(store, max_item_attempts=2)
    result = ix.apply([("mb", full(B, 1))])

    assert ix.retries == 4 and result.rejected == []
    assert outcomes(result) == {"mb": merge.Outcome.APPLIED}


@pytest.mark.parametrize("status", [429, 503])
def test_a_user_copy_not_taken_is_rewritten_without_rewriting_its_admin_copy(status):
    store = ScriptedStore(bulks=[[ok(1)], [failed(status, "x", "y")], [ok(2)]])
    ix = indexer(store)
    result = ix.apply([("ma", full(A, 1))])
    # The admin copy won: the next round folds onto it (held by this process) and
    # finds a redelivery of what is stored, so only the user copy is written again.
    assert [ids(b) for b in store.bulks] == [["a_ADMIN"], ["a_USER"], ["a_USER"]]
    assert store.reads == [[A], []]                 # nothing to read the second time
    # What the round that finished it saw: a redelivery of what is stored.
    assert outcomes(result) == {"ma": merge.Outcome.DUPLICATE}
