"""The telco consumer's pure part on plain data: envelopes, decisions, lines, state."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchlight_forward.model.envelope import Envelope
from telco_consumer import state as telco

V = 1772452807000000270          # 2026-03-02 12:00:07 UTC
SERVER = "8e7c1f0a-3b7a-4bb4-9b8a-1c2d3e4f5a6b"
PROJECT = "6f70a1b2c3d4e5f6a7b8c9d0e1f2a3b4"


def body(rid=SERVER, version=V, operation="index", **document):
    return {"resource_type": "OS::Nova::Server", "id": rid, "project_id": PROJECT,
            "version": version, "operation": operation, "event_type": "instance.update",
            "timestamp": "2026-03-02 12:00:07.270156",
            "document": None if operation == "delete"
            else {"id": rid, "name": "vm-1", "status": "ACTIVE", **document}}


# -- parse ---------------------------------------------------------------------------

def test_parse_returns_the_envelope():
    env = telco.parse(body())
    assert env == Envelope.from_dict(body())


def test_parse_drops_a_deletes_document_and_tolerates_missing_optional_fields():
    b = body(operation="delete")
    b["document"] = {"left": "over"}
    del b["event_type"], b["timestamp"]
    b["project_id"] = None
    env = telco.parse(b)
    assert env.document is None and env.event_type is None and env.project_id is None


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: "just a string", "body is \"just a string\", not an envelope object"),
    (lambda b: [b], "body is a list, not an envelope object"),
    (lambda b: None, "body is missing or null"),
    (lambda b: {**b, "id": ""}, "id is \"\", expected a non-empty string"),
    (lambda b: {k: v for k, v in b.items() if k != "id"}, "id is missing or null"),
    (lambda b: {**b, "resource_type": 3}, "resource_type is 3"),
    (lambda b: {**b, "version": "1772452807000000270"}, "version is \"1772"),
    (lambda b: {**b, "version": True}, "version is true"),
    (lambda b: {**b, "version": -1}, "version is -1"),
    (lambda b: {**b, "version": 1.5}, "version is 1.5"),
    (lambda b: {**b, "operation": "update"}, "operation is \"update\""),
    (lambda b: {**b, "document": None}, "document is missing or null, expected an object"),
    (lambda b: {**b, "document": []}, "document is a list"),
    (lambda b: {**b, "project_id": 7}, "project_id is 7"),
])
def test_parse_refuses_what_is_not_an_envelope(mutate, reason):
    with pytest.raises(telco.Malformed) as exc:
        telco.parse(mutate(body()))
    assert str(exc.value).startswith(reason)


# -- decide --------------------------------------------------------------------------

def test_decide():
    assert telco.decide(None, 0) == telco.APPLY
    assert telco.decide(5, 6) == telco.APPLY
    assert telco.decide(5, 5) == telco.DUPLICATE
    assert telco.decide(5, 4) == telco.STALE


# -- lines ---------------------------------------------------------------------------

def test_line_for_an_update():
    env = telco.parse(body())
    assert telco.format_line(env) == (
        "12:00:07 UPDATE OS::Nova::Server vm-1 (8e7c1f0a…) project 6f70a1b2… "
        "status ACTIVE v1772452807000000270")


def test_line_for_a_delete_uses_the_name_last_seen_and_has_no_status():
    state = telco.State()
    batch = state.plan([("m1", body()), ("m2", body(version=V + 1, operation="delete"))])
    assert batch.lines[1] == ("12:00:07 DELETE OS::Nova::Server vm-1 (8e7c1f0a…) "
                              "project 6f70a1b2… v1772452807000000271")


def test_line_for_a_delete_of_an_unknown_resource():
    env = telco.parse({**body(operation="delete"), "project_id": None})
    assert telco.format_line(env) == (
        "12:00:07 DELETE OS::Nova::Server - (8e7c1f0a…) project - v1772452807000000270")


def test_line_uses_other_name_and_status_fields_and_cleans_them():
    env = telco.parse({**body(), "resource_type": "OS::Heat::Stack", "id": "st-1",
                       "document": {"stack_name": "web\nstack\x1b[31m",
                                    "stack_status": "CREATE_COMPLETE"}})
    assert telco.format_line(env) == (
        "12:00:07 UPDATE OS::Heat::Stack web stack [31m (st-1) project 6f70a1b2… "
        "status CREATE_COMPLETE v1772452807000000270")


def test_line_shortens_long_names_and_omits_a_missing_status():
    env = telco.parse(body(name="n" * 60, status=None))
    line = telco.format_line(env)
    assert " " + "n" * 39 + "… (8e7c1f0a…)" in line and "status" not in line


def test_line_time_falls_back_to_the_version():
    env = telco.parse({**body(), "timestamp": None, "version": V + 3_600_000_000_000})
    assert telco.format_line(env).startswith("13:00:07 UPDATE")
    env = telco.parse({**body(), "timestamp": "2026-03-02T23:59:01Z"})
    assert telco.clock(env) == "23:59:01"
    env = telco.parse({**body(), "timestamp": "yesterday", "version": 42})
    assert telco.clock(env) == "--:--:--"


# -- batches -------------------------------------------------------------------------

def test_plan_applies_in_order_and_skips_duplicates_stale_and_malformed():
    state = telco.State()
    batch = state.plan([
        ("m1", body(version=V)),
        ("m2", body(version=V)),                          # duplicate inside the batch
        ("m3", body(version=V + 2, status="SHUTOFF")),
        ("m4", body(version=V + 1, status="BUILD")),       # older than m3: stale
        ("m5", {"hello": "world"}),
        ("m6", body(rid="other", version=V - 5)),
    ])
    assert [o.decision for o in batch.outcomes] == [
        "apply", "duplicate", "apply", "stale", "malformed", "apply"]
    assert [o.message_id for o in batch.malformed] == ["m5"]
    assert batch.malformed[0].reason.startswith("id is missing or null")
    assert [line.split()[-1] for line in batch.lines] == [
        f"v{V}", f"v{V + 2}", f"v{V - 5}"]
    assert "status SHUTOFF" in batch.lines[1]
    assert batch.count("apply") == 3 and batch.count("stale") == 1
    # nothing changes before commit
    assert state.resources == {} and state.documents == {}
    assert state.with_batch(batch)["resources"][SERVER]["version"] == V + 2
    state.commit(batch)
    assert state.versions() == {SERVER: V + 2, "other": V - 5}
    assert state.documents[SERVER]["status"] == "SHUTOFF"


def test_a_delete_is_a_tombstone_a_late_index_cannot_undo():
    state = telco.State()
    state.commit(state.plan([("m1", body(version=V)),
                             ("m2", body(version=V + 10, operation="delete"))]))
    assert SERVER not in state.documents
    assert state.resources[SERVER] == {
        "version": V + 10, "resource_type": "OS::Nova::Server", "name": "vm-1",
        "project_id": PROJECT, "status": None, "deleted": True,
        "timestamp": "2026-03-02 12:00:07.270156"}
    late = state.plan([("m3", body(version=V + 5))])
    assert [o.decision for o in late.outcomes] == ["stale"] and late.lines == []


def test_redelivery_of_a_committed_batch_applies_nothing():
    state = telco.State()
    messages = [(f"m{i}", body(rid=f"r{i % 3}", version=V + i)) for i in range(9)]
    first = state.plan(messages)
    state.commit(first)
    again = state.plan(messages)
    assert len(first.lines) == 9 and again.lines == []
    assert again.count("duplicate") + again.count("stale") == 9


def test_an_uncommitted_batch_is_applied_again():
    """If the state file could not be written, the batch must not count as applied."""
    state = telco.State()
    state.plan([("m1", body())])
    assert len(state.plan([("m1", body())]).lines) == 1


# Any stream, cut into any batches, with any batch redelivered (a crash between the
# state write and the delete): each (id, version) is applied at most once, versions
# applied per id only go up, and the state ends at the highest version per id.
streams = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 8),
                             st.sampled_from(["index", "index", "delete"])),
                   max_size=40)


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.integers(1, 20), min_size=1, max_size=10),
       st.sets(st.integers(0, 40)))
def test_effectively_once_per_version_whatever_the_redeliveries(stream, sizes,
                                                                redelivered):
    messages = [(f"m{i}", body(rid=rid, version=v, operation=op))
                for i, (rid, v, op) in enumerate(stream)]
    batches, i, k = [], 0, 0
    while i < len(messages):
        n = sizes[k % len(sizes)]
        batches.append(messages[i:i + n])
        if k in redelivered:
            batches.append(messages[i:i + n])       # the same claim, back again
        i, k = i + n, k + 1
    state, applied = telco.State(), []
    for batch_messages in batches:
        batch = state.plan(batch_messages)
        state.commit(batch)
        applied += [(o.envelope.id, o.envelope.version) for o in batch.outcomes
                    if o.decision == "apply"]
    assert len(applied) == len(set(applied))
    for rid in {rid for rid, _ in applied}:
        versions = [v for r, v in applied if r == rid]
        assert versions == sorted(versions)
    assert state.versions() == {rid: max(v for r, v, _ in stream if r == rid)
                                for rid, _, _ in stream}


# -- the state file ------------------------------------------------------------------

def test_state_file_round_trip(tmp_path):
    path = str(tmp_path / "state.json")
    assert telco.load_state(path).resources == {}            # no file yet: empty
    state = telco.State()
    batch = state.plan([("m1", body()), ("m2", body(rid="é-ü", version=V + 1))])
    telco.save_state(path, state.with_batch(batch))
    loaded = telco.load_state(path)
    assert loaded.versions() == {SERVER: V, "é-ü": V + 1}
    assert loaded.resources == state.with_batch(batch)["resources"]
    data = json.loads(open(path, encoding="utf-8").read())
    assert data["format"] == 2 and data["resources"][SERVER]["name"] == "vm-1"
    assert data["resync"] is None
    assert os.listdir(tmp_path) == ["state.json"]            # no temporary file left


def test_save_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = str(tmp_path / "state.json")
    telco.save_state(path, {"a": {"version": 1}})

    def crash(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(telco.StateFileError, match="cannot write state file .*No space"):
        telco.save_state(path, {"a": {"version": 2}})
    assert telco.load_state(path).versions() == {"a": 1}    # the old file, whole
    assert os.listdir(tmp_path) == ["state.json"]            # temp file removed


@pytest.mark.parametrize("text, reason", [
    ("{", "Expecting property name"),
    ("[]", "not a telco consumer state file"),
    ('{"format": 3, "resources": {}}', "format 3, expected 2"),
    ('{"format": 2, "resources": {}, "resync": "all"}', "'resync' is not a list"),
    ('{"format": 1, "resources": []}', "'resources' is not an object"),
    ('{"format": 1, "resources": {"a": {"version": "1"}}}', "resource 'a' has no integer"),
])
def test_an_unusable_state_file_is_an_error_not_an_empty_state(tmp_path, text, reason):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(telco.StateFileError) as exc:
        telco.load_state(str(path))
    assert reason in str(exc.value) and "move it away" in str(exc.value)


def test_a_resynchronisation_marks_what_it_did_not_send_as_gone(tmp_path):
    state = telco.State()
    state.commit(state.plan([("m1", body(rid="kept", version=V)),
                             ("m2", body(rid="gone", version=V)),
                             ("m3", body(rid="deleted", version=V, operation="delete",
                                         document=None))]))
    begin = {"operation": "resync_begin", "resource_type": "", "id": "", "version": 0,
             "document": {"reason": "the cursor is older than the tombstone retention"}}
    end = {"operation": "resync_end", "resource_type": "", "id": "", "version": 0,
           "document": {"reason": "done"}}
    # A crash between the two: the ids sent so far are saved with the state.
    first = state.plan([("m4", begin), ("m5", body(rid="kept", version=V + 1))])
    path = str(tmp_path / "state.json")
    telco.save_state(path, state.with_batch(first))
    state = telco.load_state(path)
    assert state.resync == {"kept"}
    batch = state.plan([("m6", body(rid="new", version=V)), ("m7", end)])
    assert batch.lines[-1].endswith("RESYNC end: 1 gone")
    assert [line for line in batch.lines if " GONE " in line][0].split()[3] == "vm-1"
    state.commit(batch)
    assert state.resync is None
    assert {rid for rid, e in state.resources.items() if e["deleted"]} == {"gone", "deleted"}
    assert state.version_of("gone") == V        # a newer index still brings it back
