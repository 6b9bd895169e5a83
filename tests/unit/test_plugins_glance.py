"""Glance images and their members."""
from __future__ import annotations

import pytest

from tests.unit.conftest import apply
from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError

IMAGE = "7ba7087c-b81e-4807-b0e3-dd851f334add"
OWNER = "e9869fa1d7584b91b3f88c25193116e7"
MEMBER = "2c8ab7d0f1b84a5f9b1a8c3fd6b2e001"
LIFECYCLE = ["image.create", "image.upload", "image.activate", "image.update",
             "image.member.create", "image.member.update", "image.member.delete",
             "image.delete"]


def test_create_is_a_full_document_with_no_members(note, one_change):
    change = one_change(note("glance", "image.create"))
    assert change.operation is Operation.INDEX
    assert (change.id, change.project_id) == (IMAGE, OWNER)
    doc = change.document
    assert doc["resource_type"] == "OS::Glance::Image"
    assert doc["id"] == IMAGE
    assert doc["project_id"] == doc["owner"] == OWNER
    assert doc["status"] == "queued"
    assert doc["visibility"] == "shared"
    assert doc["members"] == []
    assert doc["created_at"] == doc["updated_at"] == "2026-03-02T11:00:00Z"
    # Custom properties are top-level, as in the v2 API.
    assert doc["hw_disk_bus"] == "virtio" and doc["os_distro"] == "cirros"
    # Payload-only keys are not API fields.
    for key in ("is_public", "deleted", "deleted_at", "properties"):
        assert key not in doc


def test_update_patches_every_image_field_and_keeps_members(note, one_change):
    stored = one_change(note("glance", "image.create")).document
    stored["members"] = [{"member_id": MEMBER, "status": "accepted"}]
    change = one_change(note("glance", "image.update"))
    assert change.operation is Operation.UPDATE
    assert (change.id, change.project_id) == (IMAGE, OWNER)
    doc = apply(change, stored)
    assert doc["members"] == [{"member_id": MEMBER, "status": "accepted"}]
    assert doc["name"] == "cirros-0.6.2"
    assert doc["status"] == "active"
    assert doc["protected"] is True
    assert doc["tags"] == ["cirros", "tiny"]
    assert doc["os_version"] == "0.6.2"
    assert doc["size"] == 21430272
    assert doc["updated_at"] == "2026-03-02T11:05:30Z"


def test_update_patch_on_an_empty_document_gives_a_complete_one(note, one_change):
    doc = apply(one_change(note("glance", "image.activate")))
    assert doc["id"] == IMAGE
    assert doc["resource_type"] == "OS::Glance::Image"
    assert doc["project_id"] == OWNER
    assert doc["status"] == "active"
    assert "os_glance_importing_to_stores" not in apply(
        one_change(note("glance", "image.upload")))


def test_upload_then_activate_share_updated_at_and_order_by_emission(note, one_change):
    upload = one_change(note("glance", "image.upload"))
    activate = one_change(note("glance", "image.activate"))
    assert upload.version // 1000 == activate.version // 1000
    assert upload.version < activate.version


def test_members_are_patched_into_the_image(note, one_change):
    doc = one_change(note("glance", "image.create")).document
    create = one_change(note("glance", "image.member.create"))
    assert create.operation is Operation.UPDATE
    assert create.id == IMAGE
    assert create.project_id is None  # member payloads never name the owner
    doc = apply(create, doc)
    assert doc["members"] == [{"member_id": MEMBER, "status": "pending",
                               "created_at": "2026-03-02T11:06:00Z",
                               "updated_at": "2026-03-02T11:06:00Z"}]
    doc = apply(one_change(note("glance", "image.member.update")), doc)
    assert [(m["member_id"], m["status"]) for m in doc["members"]] == [(MEMBER, "accepted")]
    doc = apply(one_change(note("glance", "image.member.delete")), doc)
    assert doc["members"] == []
    assert doc["name"] == "cirros-0.6.2-x86_64-disk"  # untouched


def test_delete_uses_deleted_at(note, one_change):
    change = one_change(note("glance", "image.delete"))
    assert change.operation is Operation.DELETE
    assert (change.id, change.project_id) == (IMAGE, OWNER)
    assert change.version == 1772449800_000000 * 1000 + 640  # 11:10:00Z + 640 ms


def test_versions_increase_along_the_lifecycle(note, one_change):
    versions = [one_change(note("glance", e)).version for e in LIFECYCLE]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_download_accounting_and_failed_upload_are_not_changes(note, plugins):
    assert plugins.route("image.send").changes(note("glance", "image.send")) == []
    failed = note("glance", "image.upload", priority="ERROR",
                  payload="Image storage media is full: There is not enough disk space")
    assert plugins.route("image.upload").changes(failed) == []


def test_v1_style_payload_derives_visibility(note, one_change):
    n = note("glance", "image.create")
    del n.payload["visibility"]
    n.payload["is_public"] = True
    assert one_change(n).document["visibility"] == "public"


def test_property_named_like_another_resources_object_field_is_left_out(note, one_change):
    n = note("glance", "image.create")
    n.payload["properties"].update(flavor="m1.small", image="x", instance_uuid="abc")
    doc = one_change(n).document
    assert "flavor" not in doc and "image" not in doc
    assert doc["instance_uuid"] == "abc"


def test_core_fields_win_over_properties(note, one_change):
    n = note("glance", "image.create")
    n.payload["properties"]["status"] = "active"
    assert one_change(n).document["status"] == "queued"


def test_no_admin_only_fields(plugins):
    assert plugins.by_type["OS::Glance::Image"].admin_only_fields == ()


@pytest.mark.parametrize("event, mutate, message", [
    ("image.create", lambda p: p.pop("id"), "'id'"),
    ("image.update", lambda p: p.update(updated_at="last tuesday"), "last tuesday"),
    ("image.create", lambda p: p.update(created_at=17), "created_at"),
    ("image.create", lambda p: p.update(properties=["hw_disk_bus"]), "properties"),
    ("image.create", lambda p: p.update(tags="a,b"), "tags"),
    ("image.member.create", lambda p: p.pop("member_id"), "'member_id'"),
    ("image.member.update", lambda p: p.pop("image_id"), "'image_id'"),
    ("image.member.delete", lambda p: p.update(deleted_at="never"), "never"),
])
def test_broken_payloads(note, plugins, event, mutate, message):
    n = note("glance", event)
    mutate(n.payload)
    with pytest.raises(PayloadError, match=message):
        plugins.route(event).changes(n)


@pytest.mark.parametrize("payload", [None, "text", 3, ["id"]])
def test_non_dict_payload(note, plugins, payload):
    with pytest.raises(PayloadError, match="expected an object"):
        plugins.route("image.update").changes(note("glance", "image.update", payload=payload))
