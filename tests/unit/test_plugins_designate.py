"""Designate zones and recordsets."""
from __future__ import annotations

import pytest

from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError

ZONE = "3081593e-10ca-408c-af77-1397e689c177"
RECORDSET = "cfe39618-49da-4877-914b-f25ef0fb3dc1"
PROJECT = "80264096ac454d3d904002491fafe2ec"


def test_zone_create(note, one_change):
    change = one_change(note("designate", "dns.zone.create"))
    assert change.operation is Operation.INDEX
    assert (change.resource_type, change.id, change.project_id) == (
        "OS::Designate::Zone", ZONE, PROJECT)
    doc = change.document
    assert doc["resource_type"] == "OS::Designate::Zone"
    assert doc["name"] == "example.org."
    assert doc["email"] == "hostmaster@example.org"
    assert (doc["status"], doc["action"], doc["type"]) == ("PENDING", "CREATE", "PRIMARY")
    assert doc["project_id"] == doc["tenant_id"] == PROJECT
    assert doc["pool_id"] == "794ccc2c-d751-44fe-b57f-8894c9f5c842"
    # A new zone's updated_at is null: its creation is its last change.
    assert doc["created_at"] == doc["updated_at"] == "2026-03-02T15:00:02Z"
    # Storage internals are not API fields.
    for key in ("shard", "deleted", "deleted_at", "delayed_notify", "parent_zone_id"):
        assert key not in doc
    # created_at 15:00:02, emitted 692 ms later
    assert change.version == 1772463602_000000 * 1000 + 692


def test_zone_update_and_delete(note, one_change):
    update = one_change(note("designate", "dns.zone.update"))
    assert update.document["ttl"] == 4800
    assert update.document["updated_at"] == "2026-03-02T15:01:10Z"
    delete = one_change(note("designate", "dns.zone.delete"))
    assert delete.operation is Operation.DELETE
    assert (delete.id, delete.project_id) == (ZONE, PROJECT)
    create = one_change(note("designate", "dns.zone.create"))
    assert create.version < update.version < delete.version


def test_recordset_create(note, one_change):
    change = one_change(note("designate", "dns.recordset.create"))
    assert change.operation is Operation.INDEX
    doc = change.document
    assert (doc["id"], doc["resource_type"]) == (RECORDSET, "OS::Designate::RecordSet")
    assert doc["name"] == "www.example.org."
    assert doc["type"] == "A"
    assert doc["records"] == ["10.0.0.1", "10.0.0.2"]
    assert doc["zone_id"] == ZONE and doc["zone_name"] == "example.org."
    assert doc["project_id"] == PROJECT
    assert doc["status"] == "PENDING"
    assert doc["updated_at"] == doc["created_at"] == "2026-03-02T15:05:53Z"


def test_recordset_lifecycle(note, one_change):
    order = ["dns.recordset.create", "dns.recordset.update", "dns.recordset.delete"]
    changes = [one_change(note("designate", e)) for e in order]
    assert changes[1].document["records"] == ["10.0.0.1", "10.0.0.3"]
    assert changes[2].operation is Operation.DELETE
    versions = [c.version for c in changes]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_recordset_status_from_records_when_payload_has_none(note, one_change):
    raw = note("designate", "dns.recordset.create")
    del raw.payload["status"]
    for record in raw.payload["records"]:
        record["status"] = "ACTIVE"
    assert one_change(raw).document["status"] == "ACTIVE"
    raw.payload["records"][0]["status"] = "PENDING"
    assert one_change(raw).document["status"] == "PENDING"


def test_project_id_spelling(note, one_change):
    raw = note("designate", "dns.zone.create")
    raw.payload["project_id"] = raw.payload.pop("tenant_id")
    assert one_change(raw).project_id == PROJECT


def test_no_admin_only_fields(plugins):
    assert plugins.by_type["OS::Designate::Zone"].admin_only_fields == ()
    assert plugins.by_type["OS::Designate::RecordSet"].admin_only_fields == ()


@pytest.mark.parametrize("event, mutate, message", [
    ("dns.zone.create", lambda p: p.pop("id"), "'id'"),
    ("dns.zone.update", lambda p: p.update(updated_at="tomorrow"), "tomorrow"),
    ("dns.zone.create", lambda p: p.update(created_at=None, updated_at=None),
     None),  # no resource timestamp: falls back to emission, still fine
    ("dns.zone.update", lambda p: p.update(transferred_at="x"), "transferred_at"),
    ("dns.recordset.update", lambda p: p.update(records="10.0.0.1"), "records"),
    ("dns.recordset.delete", lambda p: p.pop("id"), "'id'"),
])
def test_broken_payloads(note, plugins, event, mutate, message):
    raw = note("designate", event)
    mutate(raw.payload)
    if message is None:
        assert plugins.route(event).changes(raw)
        return
    with pytest.raises(PayloadError, match=message):
        plugins.route(event).changes(raw)


@pytest.mark.parametrize("payload", [None, "zone", 0, [ZONE]])
def test_non_dict_payload(note, plugins, payload):
    with pytest.raises(PayloadError, match="expected an object"):
        plugins.route("dns.zone.update").changes(
            note("designate", "dns.zone.update", payload=payload))
