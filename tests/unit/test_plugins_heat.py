"""Heat stacks, progress included."""
from __future__ import annotations

import pytest

from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError

STACK = "b2a1c6e2-7a50-4a1e-9c7d-3d7e1b4c5f60"
PROJECT = "35b5ee4f9dbd4b35a4a2a3c0d1e2f3a4"
LIFECYCLE = ["orchestration.stack.create.start", "orchestration.stack.create.end",
             "orchestration.stack.update.start", "orchestration.stack.update.end",
             "orchestration.stack.suspend.end", "orchestration.stack.delete.start",
             "orchestration.stack.delete.end"]


def test_create_start_is_indexed_in_progress(note, one_change):
    change = one_change(note("heat", "orchestration.stack.create.start"))
    assert change.operation is Operation.INDEX
    assert (change.resource_type, change.id, change.project_id) == (
        "OS::Heat::Stack", STACK, PROJECT)
    doc = change.document
    assert doc["resource_type"] == "OS::Heat::Stack"
    assert doc["stack_name"] == doc["name"] == "web-stack"
    assert doc["stack_status"] == "CREATE_IN_PROGRESS"
    assert (doc["action"], doc["status"]) == ("CREATE", "IN_PROGRESS")
    assert doc["stack_status_reason"] == "Stack CREATE started"
    assert doc["project_id"] == doc["tenant_id"] == PROJECT
    assert doc["stack_owner"] == "demo"
    assert doc["user_id"] == "d2ac2752732444adac10fc4911fdac75"
    assert doc["creation_time"] == doc["created_at"] == "2026-03-02T16:00:00Z"
    assert doc["updated_time"] is None
    assert doc["updated_at"] == "2026-03-02T16:00:00.520311Z"
    assert doc["tags"] == ["prod"]
    assert doc["description"].startswith("Two web servers")


@pytest.mark.parametrize("event, stack_status, status", [
    ("orchestration.stack.create.end", "CREATE_COMPLETE", "COMPLETE"),
    ("orchestration.stack.update.start", "UPDATE_IN_PROGRESS", "IN_PROGRESS"),
    ("orchestration.stack.update.end", "UPDATE_COMPLETE", "COMPLETE"),
    ("orchestration.stack.suspend.end", "SUSPEND_COMPLETE", "COMPLETE"),
    ("orchestration.stack.delete.start", "DELETE_IN_PROGRESS", "IN_PROGRESS"),
    ("orchestration.stack.create.error", "CREATE_FAILED", "FAILED"),
])
def test_states(note, one_change, event, stack_status, status):
    doc = one_change(note("heat", event)).document
    assert (doc["stack_status"], doc["status"]) == (stack_status, status)


def test_delete_end_deletes(note, one_change):
    change = one_change(note("heat", "orchestration.stack.delete.end"))
    assert change.operation is Operation.DELETE
    assert (change.id, change.project_id) == (STACK, PROJECT)


def test_versions_follow_emission_because_stack_timestamps_do_not_move(note, one_change):
    start = note("heat", "orchestration.stack.update.start")
    end = note("heat", "orchestration.stack.update.end")
    assert start.payload["updated_at"] == end.payload["updated_at"]
    versions = [one_change(note("heat", e)).version for e in LIFECYCLE]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_arn_identity_from_older_heat(note, one_change):
    change = one_change(note("heat", "orchestration.stack.create.error"))
    assert change.id == "9c1d4f7e-2b3a-4c5d-8e9f-0a1b2c3d4e5f"
    assert change.document["stack_name"] == "broken-stack"


def test_unknown_state_is_read_from_the_event_type(note, one_change):
    raw = note("heat", "orchestration.stack.create.end",
               event_type="orchestration.stack.resume.end")
    raw.payload["state"] = "Unknown"
    doc = one_change(raw).document
    assert (doc["stack_status"], doc["status"]) == ("RESUME_COMPLETE", "COMPLETE")


@pytest.mark.parametrize("event, payload, message", [
    ("orchestration.stack.create.end", {"stack_name": "x"}, "'stack_identity'"),
    ("orchestration.stack.create.end", {"stack_identity": ["a"]}, "not a string"),
    ("orchestration.stack.create.end", {"stack_identity": "s", "create_at": "then"}, "then"),
    ("orchestration.stack.create.end", {"stack_identity": "s", "tags": "a"}, "tags"),
    ("orchestration.stack.create", {"stack_identity": "s"}, "expected orchestration"),
    ("orchestration.stack.create.finish", {"stack_identity": "s"}, "expected orchestration"),
    ("orchestration.stack.create.end", "stack", "expected an object"),
])
def test_broken_payloads(note, plugins, event, payload, message):
    raw = note("heat", "orchestration.stack.create.end", event_type=event, payload=payload)
    with pytest.raises(PayloadError, match=message):
        plugins.route(event).changes(raw)
