"""The newest-wins fold, on plain data, including every arrival order."""
import itertools

import pytest

from searchlight_forward.model.change import (DocumentChange, Operation, remove_item,
                                        set_fields, upsert_item)
from searchlight_forward.indexer import merge
from searchlight_forward.model.documents import ResourceState

T = "OS::Test::Thing"


def full(version, **fields):
    doc = {"id": "r1", "resource_type": T, "project_id": "p1", "updated_at": "x"}
    doc.update(fields)
    return DocumentChange(T, "r1", "p1", Operation.INDEX, version, "thing.update",
                          "", document=doc)


def partial(version, **fields):
    return DocumentChange(T, "r1", "p1", Operation.UPDATE, version, "thing.state",
                          "", patch=set_fields(fields))


def delete(version):
    return DocumentChange(T, "r1", "p1", Operation.DELETE, version, "thing.delete", "")


def final(changes, stored=None):
    state, _, _ = merge.fold(stored, changes)
    return state


def test_newest_full_document_wins_in_any_order():
    changes = [full(1, name="a"), full(2, name="b"), full(3, name="c")]
    for order in itertools.permutations(changes):
        state = final([])
        for change in order:      # one change per batch: the hardest case
            state = final([change], state)
        assert state.document["name"] == "c" and state.version == 3


def test_same_result_whether_changes_come_in_one_batch_or_many():
    changes = [full(1, name="a", status="BUILD"), partial(2, status="ACTIVE"),
               full(3, name="b", status="ACTIVE"), partial(4, status="SHUTOFF")]
    expected = final(changes)
    for order in itertools.permutations(changes):
        state = None
        for change in order:
            state = final([change], state)
        assert state.document == expected.document
        assert state.version == 4 and not state.incomplete


def test_a_newer_create_replaces_an_older_create_that_completed_a_partial():
    # partial(4) arrives first, then create(1), then the full update(3)
    state = final([partial(4, status="SHUTOFF")])
    state = final([full(1, name="a", status="BUILD")], state)
    state = final([full(3, name="b", status="ACTIVE")], state)
    assert state.document["name"] == "b" and state.document["status"] == "SHUTOFF"
    assert state.base_version == 3 and state.version == 4


def test_partial_before_create_is_completed_by_the_older_full_document():
    state = final([partial(5, status="ACTIVE")])
    assert state.incomplete and state.document["status"] == "ACTIVE"
    state, results, dirty = merge.fold(state, [full(3, name="vm", status="BUILD")])
    assert dirty and not state.incomplete
    assert state.document["name"] == "vm"
    assert state.document["status"] == "ACTIVE"   # the newer partial's value stays
    assert state.version == 5


def test_delete_is_not_undone_by_a_late_update_or_partial():
    state = final([full(1, name="a"), delete(9)])
    assert state.deleted
    for late in (full(5, name="late"), partial(6, status="ERROR")):
        state2, results, dirty = merge.fold(state, [late])
        assert state2.deleted and not dirty
        assert results[0].outcome is merge.Outcome.STALE


def test_partial_newer_than_a_tombstone_does_not_revive_it():
    state = final([delete(9)])
    state2, results, dirty = merge.fold(state, [partial(10, status="ACTIVE")])
    assert state2.deleted and not dirty
    assert results[0].outcome is merge.Outcome.STALE


def test_redelivery_is_a_duplicate_not_a_write():
    state = final([full(1, name="a")])
    _, results, dirty = merge.fold(state, [full(1, name="a")])
    assert not dirty and results[0].outcome is merge.Outcome.DUPLICATE


def test_results_follow_version_order_with_intermediate_states():
    _, results, _ = merge.fold(None, [full(2, name="b"), full(1, name="a")])
    assert [r.change.version for r in results] == [1, 2]
    assert [r.state.document["name"] for r in results] == ["a", "b"]
    assert all(r.outcome is merge.Outcome.APPLIED for r in results)


def test_list_patches_on_a_stored_document():
    stored = ResourceState(T, "r1", "p1", 1, {"id": "r1", "rules": [{"id": "a"}]})
    state = final([DocumentChange(T, "r1", "p1", Operation.UPDATE, 2, "rule.create", "",
                                  patch=upsert_item("rules", "id", {"id": "b"})),
                   DocumentChange(T, "r1", "p1", Operation.UPDATE, 3, "rule.delete", "",
                                  patch=remove_item("rules", "id", "a"))], stored)
    assert state.document["rules"] == [{"id": "b"}]
    assert stored.document["rules"] == [{"id": "a"}]   # the input is not mutated


def test_change_requires_what_its_operation_needs():
    with pytest.raises(ValueError):
        DocumentChange(T, "r1", "p1", Operation.INDEX, 1, "e", "")
    with pytest.raises(ValueError):
        DocumentChange(T, "r1", "p1", Operation.UPDATE, 1, "e", "")
    with pytest.raises(ValueError):
        DocumentChange(T, "", "p1", Operation.DELETE, 1, "e", "")
