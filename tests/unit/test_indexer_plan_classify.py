"""The conditional-write protocol's pure parts, on values built by hand: what a
round plans from what it read (``plan``) and what it makes of a bulk's per-item
answers (``classify``)."""
from __future__ import annotations

from searchlight_forward.indexer import classify, merge
from searchlight_forward.indexer.plan import ITEM_REMOVAL, Read, Stored, plan_round
from searchlight_forward.model.change import (DocumentChange, Operation, remove_item,
                                              set_fields)

T = "OS::Test::Thing"
A, B = (T, "a"), (T, "b")
INDEX = "things-listener"
NOW = 1_780_000_000_000


def full(key, version, **fields):
    doc = {"id": key[1], "resource_type": T, "project_id": "p1", **fields}
    return DocumentChange(T, key[1], "p1", Operation.INDEX, version, "thing.update",
                          "", document=doc)


def partial(key, version, **fields):
    return DocumentChange(T, key[1], "p1", Operation.UPDATE, version, "thing.state",
                          "", patch=set_fields(fields))


def delete(key, version):
    return DocumentChange(T, key[1], "p1", Operation.DELETE, version, "thing.delete", "")


def stored(*changes, seq_no=5, primary_term=2) -> Stored:
    state, _, _ = merge.fold(None, list(changes))
    return Stored(state, seq_no, primary_term)


def plan(by_key, read=None, admin_only=None):
    return plan_round(by_key, read or Read(), lambda resource_type: INDEX,
                      admin_only or {}, written_at=NOW)


def outcomes(plan_, key):
    return [r.outcome for _, r in plan_.folded[key]]


# -- plan ------------------------------------------------------------------------

def test_a_write_is_conditional_on_the_stored_copy_it_was_folded_onto():
    read = Read(stored={A: stored(full(A, 1, name="old"), seq_no=12, primary_term=3)})
    p = plan({A: [("m1", partial(A, 2, name="new"))]}, read)

    (write,) = p.writes
    assert write.admin["_op_type"] == "index"
    assert (write.admin["if_seq_no"], write.admin["if_primary_term"]) == (12, 3)
    assert write.admin["_source"]["name"] == "new"
    assert write.state.version == 2
    # The user copy carries the state's version: it can only go up.
    assert (write.user["version"], write.user["version_type"]) == (2, "external_gte")
    assert outcomes(p, A) == [merge.Outcome.APPLIED]
    assert p.settled == [] and p.user_rewrites == []


def test_a_resource_nothing_is_stored_for_is_created_not_overwritten():
    (write,) = plan({A: [("m1", full(A, 1, name="x"))]}).writes
    assert write.admin["_op_type"] == "create"
    assert "if_seq_no" not in write.admin and "if_primary_term" not in write.admin


def test_a_stale_change_planned_against_a_newer_stored_version_is_skipped():
    read = Read(stored={A: stored(full(A, 5, name="newer"))})
    p = plan({A: [("m1", full(A, 3, name="older")), ("m2", partial(A, 4, name="old"))]},
             read)
    assert p.writes == [] and p.user_rewrites == []
    assert p.settled == [A]
    assert outcomes(p, A) == [merge.Outcome.STALE, merge.Outcome.STALE]
    assert [origin for origin, _ in p.folded[A]] == ["m1", "m2"]


def test_a_late_update_does_not_undo_a_stored_delete():
    read = Read(stored={A: stored(full(A, 1), delete(A, 5))})
    p = plan({A: [("late", partial(A, 4, status="ACTIVE")),
                  ("later", partial(A, 6, status="ACTIVE"))]}, read)
    assert p.writes == []
    assert outcomes(p, A) == [merge.Outcome.STALE, merge.Outcome.STALE]


def test_a_delete_then_a_late_update_in_one_batch_writes_the_tombstone():
    read = Read(stored={A: stored(full(A, 1))})
    p = plan({A: [("delete", delete(A, 5)), ("late", partial(A, 4, status="ACTIVE"))]},
             read)
    (write,) = p.writes
    assert write.state.deleted and write.state.version == 5
    assert write.admin["if_seq_no"] == 5
    # Folded in version order: the update is only an intermediate state.
    assert [(o, r.outcome, r.state.deleted) for o, r in p.folded[A]] == [
        ("late", merge.Outcome.APPLIED, False), ("delete", merge.Outcome.APPLIED, True)]


def test_a_redelivery_of_the_stored_state_rewrites_only_its_user_copy():
    # The process that wrote the admin copy may have died before the user copy.
    read = Read(stored={A: stored(full(A, 3, name="x"))})
    p = plan({A: [("again", full(A, 3, name="x"))]}, read)
    assert p.writes == []
    ((key, user),) = p.user_rewrites
    assert key == A and user["_id"] == "a_USER" and user["version"] == 3
    assert outcomes(p, A) == [merge.Outcome.DUPLICATE]


def test_an_id_another_type_uses_is_refused_and_an_unreadable_one_waits():
    read = Read(foreign={A: "id a is already used by a OS::Other"},
                unreadable={B: "unavailable_shards_exception: x to a read"})
    p = plan({A: [("m1", full(A, 1))], B: [("m2", full(B, 1))]}, read)
    assert p.refused == [A] and B not in p.folded and p.writes == []
    assert [(r.origin, r.reason) for r in p.rejected] == [
        ("m1", "id a is already used by a OS::Other")]


def test_an_item_removal_read_is_folded_in_but_not_reported():
    removal = DocumentChange(T, "a", None, Operation.UPDATE, 7, "item removal", "",
                             patch=remove_item("rules", "id", "r2"))
    read = Read(removals={A: [(ITEM_REMOVAL, removal)]})
    p = plan({A: [("m1", full(A, 3, rules=[{"id": "r1"}, {"id": "r2"}]))]}, read)
    (write,) = p.writes
    assert write.admin["_source"]["rules"] == [{"id": "r1"}]
    assert [origin for origin, _ in p.folded[A]] == ["m1"]


def test_admin_only_fields_stay_out_of_the_user_copy():
    (write,) = plan({A: [("m1", full(A, 1, secret="s", name="n"))]},
                    admin_only={T: ("secret",)}).writes
    assert write.admin["_source"]["secret"] == "s"
    assert "secret" not in write.user["_source"] and write.user["_source"]["name"] == "n"


# -- classify ----------------------------------------------------------------------

def ok(seq_no):
    return 201, {"status": 201, "_seq_no": seq_no, "_primary_term": 1}


def failed(status, kind, reason):
    return status, {"status": status, "error": {"type": kind, "reason": reason}}


C, D, E = (T, "c"), (T, "d"), (T, "e")


def test_each_admin_answer_is_done_re_planned_retried_or_rejected():
    found = classify.classify_admin([A, B, C, D, E], [
        ok(4),
        failed(409, "version_conflict_engine_exception", "seq no mismatch"),
        failed(429, "es_rejected_execution_exception", "queue full"),
        failed(503, "unavailable_shards_exception", "primary not active"),
        failed(400, "document_parsing_exception", "failed to parse field [size]")])
    assert list(found.won) == [A] and found.won[A]["_seq_no"] == 4
    assert found.conflicts == [B]
    assert found.retry_later == {
        C: "429 es_rejected_execution_exception: queue full",
        D: "503 unavailable_shards_exception: primary not active"}
    assert found.refused == {E: "Elasticsearch refused the document: "
                                "document_parsing_exception: failed to parse field [size]"}


def test_a_user_copy_refused_as_older_is_done_any_other_failure_retried():
    found = classify.classify_user([A, B, C], [
        ok(9), failed(409, "version_conflict_engine_exception", "newer there"),
        failed(400, "document_parsing_exception", "bad")])
    assert list(found.won) == [A, B]
    assert list(found.retry_later) == [C] and not found.refused and not found.conflicts


def test_an_item_is_given_up_on_after_max_attempts_only_while_others_are_taken():
    attempts = classify.ItemAttempts(max_attempts=3, took_before=10)
    busy = {A: "429 es_rejected_execution_exception: queue full"}
    # An outage: nothing is taken, however many rounds.
    for _ in range(5):
        assert attempts.count(busy, took=10) == {}
    # Others taken since each refusal: counted once per advance of ``took``.
    assert attempts.count(busy, took=11) == {}
    assert attempts.count(busy, took=11) == {}
    assert attempts.count(busy, took=12) == {}
    assert attempts.count(busy, took=13) == {A: (
        "Elasticsearch answered 429 es_rejected_execution_exception: queue full "
        "3 times while it took other documents")}
