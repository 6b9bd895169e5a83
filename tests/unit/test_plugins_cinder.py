"""Cinder volumes and snapshots."""
from __future__ import annotations

import fnmatch

import pytest

from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError

VOLUME = "f54b1d2f-4514-4688-8da7-4bc66767b6be"
SNAPSHOT = "56f91625-2fc5-4e4a-8284-4bfd3b3a1914"
PROJECT = "1816a16093df465dbc609cf638422a05"
SERVER = "178b0921-8f85-4257-88b6-2e743b5a975c"
VOLUME_ORDER = ["volume.create.end", "volume.update.end", "volume.attach.end",
                "volume.detach.end", "volume.resize.end", "volume.retype",
                "volume.delete.end"]
SNAPSHOT_ORDER = ["snapshot.create.end", "snapshot.update.end", "snapshot.delete.end"]


def test_volume_create_is_an_api_shaped_volume(note, one_change):
    change = one_change(note("cinder", "volume.create.end"))
    assert change.operation is Operation.INDEX
    assert (change.resource_type, change.id, change.project_id) == (
        "OS::Cinder::Volume", VOLUME, PROJECT)
    doc = change.document
    assert doc["id"] == VOLUME and doc["resource_type"] == "OS::Cinder::Volume"
    assert doc["name"] == "data-vol"
    assert doc["status"] == "available"
    assert doc["size"] == 1
    assert doc["volume_type_id"] == "3706aa72-cb65-4971-83e8-48e1477efd1d"
    assert doc["project_id"] == doc["tenant_id"] == doc["os-vol-tenant-attr:tenant_id"] == PROJECT
    assert doc["os-vol-host-attr:host"] == "devstack@lvmdriver-1#lvmdriver-1"
    assert doc["availability_zone"] == "nova"
    assert doc["metadata"] == {}
    assert doc["attachments"] == []
    assert doc["created_at"] == "2026-03-02T14:00:00Z"
    assert doc["launched_at"] == "2026-03-02T14:00:01.145721Z"
    # No updated_at in Cinder payloads: the emission time stands in.
    assert doc["updated_at"] == "2026-03-02T14:00:01.259310Z"
    assert change.version == 1772460001_259310 * 1000


def test_metadata_rows_become_a_dict(note, one_change):
    assert one_change(note("cinder", "volume.update.end")).document["metadata"] == {
        "purpose": "db"}


def test_attachments_are_api_shaped(note, one_change):
    doc = one_change(note("cinder", "volume.attach.end")).document
    assert doc["status"] == "in-use"
    assert doc["attachments"] == [{
        "id": VOLUME, "volume_id": VOLUME,
        "attachment_id": "0c5902c5-5419-40a3-80bc-1cae2353316e", "server_id": SERVER,
        "host_name": None, "device": "/dev/vdb", "attached_at": "2026-03-02T14:05:31Z"}]
    assert one_change(note("cinder", "volume.detach.end")).document["attachments"] == []


def test_resize_and_retype_are_updates_of_the_same_volume(note, one_change):
    resize = one_change(note("cinder", "volume.resize.end"))
    retype = one_change(note("cinder", "volume.retype"))
    assert resize.operation is retype.operation is Operation.INDEX
    assert resize.id == retype.id == VOLUME
    assert resize.document["size"] == 2
    assert retype.document["volume_type_id"] == "a16c8514-616f-4d40-baf7-eb8c8fb18677"


def test_volume_delete(note, one_change):
    change = one_change(note("cinder", "volume.delete.end"))
    assert change.operation is Operation.DELETE
    assert (change.id, change.project_id) == (VOLUME, PROJECT)


@pytest.mark.parametrize("order", [VOLUME_ORDER, SNAPSHOT_ORDER])
def test_versions_increase(note, one_change, order):
    versions = [one_change(note("cinder", e)).version for e in order]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_glance_metadata_becomes_volume_image_metadata(note, one_change):
    raw = note("cinder", "volume.create.end")
    raw.payload["glance_metadata"] = [
        {"key": "image_id", "value": "155d900f-4e14-4e4c-a73d-069cbf4541e6"},
        {"key": "min_ram", "value": "0"}]
    assert one_change(raw).document["volume_image_metadata"] == {
        "image_id": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "min_ram": "0"}


@pytest.mark.parametrize("event", ["volume.create.start", "volume.delete.start",
                                   "volume.exists", "volume.usage", "snapshot.exists",
                                   "snapshot.create.start"])
def test_start_and_audit_events_are_not_changes(note, plugins, event):
    assert plugins.route(event).changes(note("cinder", "volume.create.end",
                                             event_type=event)) == []


def test_error_events_carry_the_failed_state(note, one_change):
    raw = note("cinder", "volume.create.end", event_type="volume.create.error",
               priority="ERROR")
    raw.payload["status"] = "error"
    assert one_change(raw).document["status"] == "error"


def test_admin_only_fields(plugins):
    patterns = plugins.by_type["OS::Cinder::Volume"].admin_only_fields
    hidden = lambda f: any(fnmatch.fnmatchcase(f, p) for p in patterns)  # noqa: E731
    for field in ("os-vol-host-attr:host", "os-vol-tenant-attr:tenant_id",
                  "os-vol-mig-status-attr:migstat", "os-volume-replication:driver_data",
                  "migration_status"):
        assert hidden(field), field
    for field in ("id", "status", "size", "attachments", "project_id", "metadata"):
        assert not hidden(field), field
    assert plugins.by_type["OS::Cinder::Snapshot"].admin_only_fields == ()


def test_both_exchanges_are_subscribed(plugins):
    for rtype in ("OS::Cinder::Volume", "OS::Cinder::Snapshot"):
        assert set(plugins.by_type[rtype].notification_targets) == {
            ("cinder", "notifications"), ("openstack", "notifications")}


# -- snapshots ------------------------------------------------------------------------

def test_snapshot_create(note, one_change):
    change = one_change(note("cinder", "snapshot.create.end"))
    assert change.operation is Operation.INDEX
    doc = change.document
    assert (doc["id"], doc["resource_type"]) == (SNAPSHOT, "OS::Cinder::Snapshot")
    assert doc["name"] == "test snapshot"
    assert doc["status"] == "available"
    assert doc["size"] == 1
    assert doc["volume_id"] == VOLUME
    assert doc["project_id"] == doc["os-extended-snapshot-attributes:project_id"] == PROJECT
    assert doc["created_at"] == "2026-03-02T14:03:49Z"  # "2026-03-02 14:03:49+00:00"
    assert doc["metadata"] == {}                      # "" in the payload
    assert doc["updated_at"] == "2026-03-02T14:03:50.341379Z"


def test_snapshot_metadata_is_parsed_from_its_repr(note, one_change):
    doc = one_change(note("cinder", "snapshot.update.end")).document
    assert doc["metadata"] == {"purpose": "backup"}


def test_snapshot_delete(note, one_change):
    change = one_change(note("cinder", "snapshot.delete.end"))
    assert (change.operation, change.id) == (Operation.DELETE, SNAPSHOT)


@pytest.mark.parametrize("event, mutate, message", [
    ("volume.create.end", lambda p: p.pop("volume_id"), "'volume_id'"),
    ("volume.update.end", lambda p: p.update(metadata=[{"value": "x"}]), "without 'key'"),
    ("volume.update.end", lambda p: p.update(metadata="purpose=db"), "metadata"),
    ("volume.attach.end", lambda p: p.update(volume_attachment={"id": 1}), "volume_attachment"),
    ("volume.attach.end", lambda p: p["volume_attachment"][0].update(attach_time="noon"),
     "attach_time"),
    ("volume.create.end", lambda p: p.update(created_at="2026-03-02T25:00:00"), "created_at"),
    ("snapshot.create.end", lambda p: p.pop("snapshot_id"), "'snapshot_id'"),
    ("snapshot.update.end", lambda p: p.update(metadata="{'a': "), "not a dict literal"),
    ("snapshot.update.end", lambda p: p.update(metadata="__import__('os')"),
     "not a dict literal"),
    ("snapshot.update.end", lambda p: p.update(metadata="[1, 2]"), "expected a dict"),
    ("snapshot.update.end", lambda p: p.update(metadata=7), "expected a dict"),
])
def test_broken_payloads(note, plugins, event, mutate, message):
    raw = note("cinder", event)
    mutate(raw.payload)
    with pytest.raises(PayloadError, match=message):
        plugins.route(event).changes(raw)


def test_unknown_volume_event_and_missing_timestamp(note, plugins):
    raw = note("cinder", "volume.create.end", event_type="volume.frobnicate")
    with pytest.raises(PayloadError, match="not a volume event"):
        plugins.route("volume.frobnicate").changes(raw)
    raw = note("cinder", "volume.create.end", timestamp="")
    with pytest.raises(PayloadError, match="no resource timestamp"):
        plugins.route("volume.create.end").changes(raw)


@pytest.mark.parametrize("payload", [None, "volume", 1.5, [VOLUME]])
def test_non_dict_payload(note, plugins, payload):
    with pytest.raises(PayloadError, match="expected an object"):
        plugins.route("volume.create.end").changes(
            note("cinder", "volume.create.end", payload=payload))
