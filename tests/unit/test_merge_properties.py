"""Property: any arrival order, split into any batches, ends in the in-order state."""
from hypothesis import given, settings, strategies as st

from searchlight_forward.model.change import DocumentChange, Operation, set_fields
from searchlight_forward.indexer import merge

T = "OS::Test::Thing"
FIELDS = ("name", "status", "size", "task")


@st.composite
def lifecycles(draw):
    """Changes of one resource with distinct increasing versions; a delete only last."""
    count = draw(st.integers(1, 7))
    versions = sorted(draw(st.sets(st.integers(1, 10_000), min_size=count, max_size=count)))
    changes = []
    for i, version in enumerate(versions):
        last = i == len(versions) - 1
        kind = draw(st.sampled_from(["full", "partial", "delete"] if last
                                    else ["full", "partial"]))
        if kind == "delete":
            changes.append(DocumentChange(T, "r", "p", Operation.DELETE, version, "d", ""))
            continue
        values = draw(st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 3),
                                      min_size=1))
        if kind == "full":
            doc = {"id": "r", "resource_type": T, "project_id": "p", **values}
            changes.append(DocumentChange(T, "r", "p", Operation.INDEX, version, "i", "",
                                          document=doc))
        else:
            changes.append(DocumentChange(T, "r", "p", Operation.UPDATE, version, "u", "",
                                          patch=set_fields(values)))
    return changes


def in_batches(draw, changes):
    order = draw(st.permutations(changes))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)))))
    batches, start = [], 0
    for cut in cuts + [len(order)]:
        if order[start:cut]:
            batches.append(list(order[start:cut]))
        start = cut
    return batches


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_arrival_order_and_batching_do_not_change_the_final_state(data):
    changes = data.draw(lifecycles())
    expected = None
    for change in changes:
        expected, _, _ = merge.fold(expected, [change])
    state = None
    for batch in in_batches(data.draw, changes):
        state, _, _ = merge.fold(state, batch)
        # redelivery of the same batch changes nothing
        again, results, dirty = merge.fold(state, batch)
        assert again.document == state.document and again.version == state.version
    assert state.deleted == expected.deleted
    assert state.version == expected.version
    assert state.document == expected.document
