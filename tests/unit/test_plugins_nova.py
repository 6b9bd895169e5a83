"""Nova servers (versioned and legacy notifications) and flavors."""
from __future__ import annotations

import copy
import fnmatch
import hashlib

import pytest

from tests.unit.conftest import apply
from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError
from searchlight_forward.plugins.nova import FlavorPlugin, ServerPlugin, api_status

SERVER = "178b0921-8f85-4257-88b6-2e743b5a975c"
PROJECT = "6f70656e737461636b20342065766572"
LEGACY_SERVER = "4b86f534-16db-4de8-8ce0-f1ee68894835"
LEGACY_PROJECT = "b1fbc598025841899f63333269abe1d2"
VERSIONED_ORDER = ["instance.create.start", "instance.update", "instance.create.end",
                   "instance.power_off.end", "instance.delete.end"]
LEGACY_ORDER = ["compute.instance.update", "compute.instance.create.start",
                "compute.instance.create.end", "compute.instance.delete.end"]


def walk_keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from walk_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_keys(v)


def admin_only(plugin, field):
    return any(fnmatch.fnmatchcase(field, p) for p in plugin.admin_only_fields)


# -- versioned ------------------------------------------------------------------

def test_versioned_create_end_is_a_full_api_shaped_server(note, one_change):
    change = one_change(note("nova", "instance.create.end"))
    assert change.operation is Operation.INDEX
    assert (change.resource_type, change.id, change.project_id) == (
        "OS::Nova::Server", SERVER, PROJECT)
    doc = change.document
    assert doc["resource_type"] == "OS::Nova::Server"
    assert doc["id"] == SERVER
    assert doc["name"] == "some-server"
    assert doc["status"] == "ACTIVE"
    assert doc["tenant_id"] == doc["project_id"] == PROJECT
    assert doc["user_id"] == "fake"
    assert doc["image"] == {"id": "155d900f-4e14-4e4c-a73d-069cbf4541e6"}
    assert doc["flavor"]["id"] == "a22d5517-147c-4147-a0d1-e698df5cd4e3"
    assert doc["flavor"]["original_name"] == "test_flavor"
    assert (doc["flavor"]["ram"], doc["flavor"]["vcpus"], doc["flavor"]["disk"]) == (512, 1, 1)
    assert doc["addresses"] == {"private-network": [{
        "addr": "192.168.1.3", "version": 4, "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:4c:2c:30"}]}
    assert doc["OS-EXT-STS:vm_state"] == "active"
    assert doc["OS-EXT-STS:task_state"] is None
    assert doc["OS-EXT-STS:power_state"] == 1
    assert doc["OS-EXT-SRV-ATTR:host"] == "compute"
    assert doc["OS-EXT-SRV-ATTR:hypervisor_hostname"] == "fake-mini"
    assert doc["OS-EXT-AZ:availability_zone"] == "nova"
    assert doc["key_name"] == "my-key"
    assert doc["metadata"] == {"purpose": "web", "tier": "frontend"}
    assert doc["created"] == doc["created_at"] == "2026-03-02T10:15:01Z"
    assert doc["updated"] == doc["updated_at"] == "2026-03-02T10:15:09Z"
    assert doc["OS-SRV-USG:launched_at"] == "2026-03-02T10:15:09Z"
    assert doc["os-extended-volumes:volumes_attached"] == [
        {"id": "a07f71dc-8151-4e7d-a0cc-cd24a3f11113", "delete_on_termination": False}]
    assert doc["hostId"] == hashlib.sha224(f"{PROJECT}compute".encode()).hexdigest()
    assert doc["tags"] == ["web"]


def test_versioned_payload_is_unwrapped_recursively(note, one_change):
    for event in VERSIONED_ORDER[:-1]:
        doc = one_change(note("nova", event)).document
        assert not [k for k in walk_keys(doc) if k.startswith("nova_object.")], event


@pytest.mark.parametrize("event, status, task, power", [
    ("instance.create.start", "BUILD", None, 0),
    ("instance.update", "BUILD", "spawning", 0),
    ("instance.create.end", "ACTIVE", None, 1),
    ("instance.power_off.end", "SHUTOFF", None, 4),
])
def test_versioned_states(note, one_change, event, status, task, power):
    doc = one_change(note("nova", event)).document
    assert doc["status"] == status
    assert doc["OS-EXT-STS:task_state"] == task
    assert doc["OS-EXT-STS:power_state"] == power


def test_unplaced_server_has_empty_host_id(note, one_change):
    doc = one_change(note("nova", "instance.create.start")).document
    assert doc["hostId"] == ""
    assert doc["addresses"] == {}


def test_instance_update_carries_tags(note, one_change):
    assert one_change(note("nova", "instance.update")).document["tags"] == ["web"]


def test_versioned_delete_uses_deleted_at(note, one_change):
    change = one_change(note("nova", "instance.delete.end"))
    assert change.operation is Operation.DELETE
    assert (change.id, change.project_id) == (SERVER, PROJECT)
    assert change.document is None
    # deleted_at 10:30:12Z, emitted 950 ms later
    assert change.version == 1772447412_000000 * 1000 + 950


def test_versioned_versions_increase_along_the_lifecycle(note, one_change):
    versions = [one_change(note("nova", e)).version for e in VERSIONED_ORDER]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_payload_without_updated_at_falls_back_to_the_emission_second(note, one_change):
    n = note("nova", "instance.create.end")
    del n.payload["nova_object.data"]["updated_at"]
    change = one_change(n)
    # emitted 2026-03-02 10:15:09.620118 -> second 10:15:09, tie-break 620 ms
    assert change.version == 1772446509_000000 * 1000 + 620
    assert change.document["updated_at"] == "2026-03-02T10:15:09.620118Z"


def test_boot_from_volume_server_has_null_image(note, one_change):
    n = note("nova", "instance.create.end")
    n.payload["nova_object.data"]["image_uuid"] = ""
    assert one_change(n).document["image"] is None


def test_fault_is_kept_without_traceback(note, one_change):
    n = note("nova", "instance.create.end")
    n.payload["nova_object.data"]["fault"] = {
        "nova_object.name": "ExceptionPayload", "nova_object.namespace": "nova",
        "nova_object.version": "1.1", "nova_object.data": {
            "exception": "NoValidHost", "exception_message": "No valid host was found.",
            "function_name": "_select_destinations", "module_name": "nova.conductor",
            "traceback": "Traceback (most recent call last): ..."}}
    fault = one_change(n).document["fault"]
    assert fault == {"message": "No valid host was found.", "exception": "NoValidHost"}


@pytest.mark.parametrize("vm_state, task_state, status", [
    ("active", None, "ACTIVE"), ("active", "rebooting", "REBOOT"),
    ("active", "reboot_started_hard", "HARD_REBOOT"), ("active", "migrating", "MIGRATING"),
    ("active", "resize_prep", "RESIZE"), ("active", "rebuild_spawning", "REBUILD"),
    ("active", "powering-off", "ACTIVE"), ("building", "spawning", "BUILD"),
    ("stopped", None, "SHUTOFF"), ("stopped", "resize_migrating", "RESIZE"),
    ("resized", None, "VERIFY_RESIZE"), ("resized", "resize_reverting", "REVERT_RESIZE"),
    ("paused", None, "PAUSED"), ("suspended", None, "SUSPENDED"),
    ("rescued", None, "RESCUE"), ("error", None, "ERROR"), ("error", "rebuilding", "REBUILD"),
    ("soft-delete", None, "SOFT_DELETED"), ("shelved_offloaded", None, "SHELVED_OFFLOADED"),
    ("deleted", None, "DELETED"), ("something-new", None, "UNKNOWN"), (None, None, "UNKNOWN"),
])
def test_api_status(vm_state, task_state, status):
    assert api_status(vm_state, task_state) == status


def test_admin_only_fields():
    plugin = ServerPlugin()
    for field in ("OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname",
                  "OS-EXT-SRV-ATTR:instance_name", "OS-EXT-SRV-ATTR:reservation_id"):
        assert admin_only(plugin, field)
    for field in ("id", "status", "hostId", "OS-EXT-STS:vm_state", "addresses",
                  "OS-EXT-AZ:availability_zone", "tenant_id"):
        assert not admin_only(plugin, field)


def test_audit_exists_events_are_ignored(note, plugins):
    n = note("nova", "instance.create.end", event_type="instance.exists")
    assert plugins.route("instance.exists").changes(n) == []
    n = note("nova", "compute.instance.create.end", event_type="compute.instance.exists")
    assert plugins.route("compute.instance.exists").changes(n) == []


# -- legacy ---------------------------------------------------------------------

def test_legacy_update_is_a_patch_that_builds_a_document_from_nothing(note, one_change):
    change = one_change(note("nova", "compute.instance.update"))
    assert change.operation is Operation.UPDATE
    assert (change.id, change.project_id) == (LEGACY_SERVER, LEGACY_PROJECT)
    doc = apply(change)
    assert doc["id"] == LEGACY_SERVER
    assert doc["resource_type"] == "OS::Nova::Server"
    assert doc["project_id"] == doc["tenant_id"] == LEGACY_PROJECT
    assert doc["status"] == "BUILD"
    assert doc["OS-EXT-STS:task_state"] == "networking"
    assert doc["updated_at"] == "2026-03-02T12:00:02.587987Z"
    assert doc["created_at"] == "2026-03-02T12:00:01Z"


def test_legacy_create_end_patches_a_stored_document(note, one_change):
    stored = {"id": LEGACY_SERVER, "resource_type": "OS::Nova::Server",
              "project_id": LEGACY_PROJECT, "key_name": "deploy",
              "OS-EXT-STS:power_state": 0, "status": "BUILD", "name": "old-name"}
    doc = apply(one_change(note("nova", "compute.instance.create.end")), stored)
    assert doc["status"] == "ACTIVE"
    assert doc["name"] == "web-1"
    assert doc["OS-EXT-STS:vm_state"] == "active"
    assert doc["OS-EXT-STS:task_state"] is None
    assert doc["OS-SRV-USG:launched_at"] == "2026-03-02T12:00:09Z"
    assert doc["OS-SRV-USG:terminated_at"] is None       # "" in the payload
    assert doc["image"] == {"id": "155d900f-4e14-4e4c-a73d-069cbf4541e6"}
    assert doc["flavor"] == {"id": "2", "original_name": "m1.small", "vcpus": 1,
                             "ram": 2048, "disk": 20, "ephemeral": 0}
    assert doc["addresses"] == {"private": [
        {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed",
         "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:7c:9e:11"},
        {"addr": "172.24.4.10", "version": 4, "OS-EXT-IPS:type": "floating",
         "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:7c:9e:11"}]}
    assert doc["OS-EXT-SRV-ATTR:host"] == "devstack"
    assert doc["progress"] == 0                          # "" in the payload
    # What legacy payloads do not carry survives from the stored document.
    assert doc["key_name"] == "deploy"
    assert doc["OS-EXT-STS:power_state"] == 0


def test_legacy_partial_payload_only_sets_what_it_has(note, one_change):
    # Searchlight's functional data has trimmed legacy updates like this one.
    n = note("nova", "compute.instance.update", payload={
        "state_description": "", "state": "error", "old_state": "building",
        "user_id": "be4c4bdabad540f89da803026bcdc71b", "tenant_id": LEGACY_PROJECT,
        "created_at": "2016-08-31 23:32:11+00:00", "old_task_state": "scheduling",
        "instance_id": LEGACY_SERVER, "instance_type": "m1.really-big",
        "new_task_state": None})
    doc = apply(one_change(n), {"id": LEGACY_SERVER, "name": "keep-me"})
    assert doc["status"] == "ERROR"
    assert doc["name"] == "keep-me"
    assert doc["flavor"]["original_name"] == "m1.really-big"


def test_legacy_delete_uses_deleted_at(note, one_change):
    change = one_change(note("nova", "compute.instance.delete.end"))
    assert change.operation is Operation.DELETE
    assert change.id == LEGACY_SERVER
    assert change.version == 1772455231_000000 * 1000 + 200


def test_legacy_versions_increase_along_the_lifecycle(note, one_change):
    versions = [one_change(note("nova", e)).version for e in LEGACY_ORDER]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_legacy_and_versioned_versions_are_comparable(note, one_change):
    # Same server, same second: a versioned state emitted at .300 and a legacy
    # state emitted at .600 order by emission, and neither dwarfs the other.
    versioned = note("nova", "instance.create.end", timestamp="2026-03-02 10:15:09.300000")
    legacy = note("nova", "compute.instance.create.end",
                  timestamp="2026-03-02 10:15:09.600000")
    legacy.payload["instance_id"] = SERVER
    v, lg = one_change(versioned).version, one_change(legacy).version
    assert v < lg < v + 1000


# -- flavors --------------------------------------------------------------------

def test_flavor_create(note, one_change):
    change = one_change(note("nova", "flavor.create"))
    assert change.operation is Operation.INDEX
    doc = change.document
    assert doc["id"] == change.id == "a22d5517-147c-4147-a0d1-e698df5cd4e3"
    assert doc["resource_type"] == "OS::Nova::Flavor"
    assert doc["project_id"] is None and change.project_id is None
    assert (doc["name"], doc["ram"], doc["vcpus"], doc["disk"]) == ("test_flavor", 1024, 2, 10)
    assert doc["OS-FLV-EXT-DATA:ephemeral"] == 0
    assert doc["os-flavor-access:is_public"] is True
    assert doc["OS-FLV-DISABLED:disabled"] is False
    assert doc["extra_specs"] == {"key1": "value1"}
    # FlavorPayload has no timestamps: the emission time stands in.
    assert doc["updated_at"] == "2026-03-02T09:00:00.120000Z"


def test_flavor_update_and_delete(note, one_change):
    update = one_change(note("nova", "flavor.update"))
    assert update.document["tenant_access"] == ["fake_tenant"]
    assert update.document["os-flavor-access:is_public"] is False
    delete = one_change(note("nova", "flavor.delete"))
    assert delete.operation is Operation.DELETE
    create = one_change(note("nova", "flavor.create"))
    assert create.version < update.version < delete.version


def test_flavor_admin_only_fields():
    plugin = FlavorPlugin()
    assert admin_only(plugin, "tenant_access")
    assert not admin_only(plugin, "extra_specs")


# -- broken payloads ------------------------------------------------------------

@pytest.mark.parametrize("payload", [None, "text", 42, [], ["nova_object.data"]])
@pytest.mark.parametrize("event", ["instance.create.end", "compute.instance.update",
                                   "flavor.create"])
def test_non_dict_payload(note, plugins, event, payload):
    service_event = note("nova", event, payload=payload)
    with pytest.raises(PayloadError, match="expected an object"):
        plugins.route(event).changes(service_event)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("nova_object.data"), "not a nova_object"),
    (lambda p: p["nova_object.data"].pop("uuid"), "'uuid'"),
    (lambda p: p["nova_object.data"].update(uuid=None), "'uuid'"),
    (lambda p: p["nova_object.data"].update(updated_at="yesterday"), "yesterday"),
    (lambda p: p["nova_object.data"].update(created_at="2026-02-30T00:00:00Z"), "created_at"),
    (lambda p: p["nova_object.data"].update(flavor="m1.small"), "flavor"),
    (lambda p: p["nova_object.data"].update(ip_addresses={"a": 1}), "ip_addresses"),
    (lambda p: p["nova_object.data"].update(metadata=["a"]), "metadata"),
    (lambda p: p.update({"nova_object.data": "oops"}), "payload.nova_object.data"),
])
def test_broken_versioned_payload(note, plugins, mutate, message):
    n = note("nova", "instance.create.end")
    mutate(n.payload)
    with pytest.raises(PayloadError, match=message):
        plugins.route(n.event_type).changes(n)


def test_broken_legacy_and_flavor_payloads(note, plugins):
    n = note("nova", "compute.instance.create.end")
    del n.payload["instance_id"]
    with pytest.raises(PayloadError, match="'instance_id'"):
        plugins.route(n.event_type).changes(n)
    n = note("nova", "compute.instance.create.end", timestamp="")
    with pytest.raises(PayloadError, match="no resource timestamp"):
        plugins.route(n.event_type).changes(n)
    n = note("nova", "compute.instance.create.end")
    n.payload["launched_at"] = "soon"
    with pytest.raises(PayloadError, match="launched_at"):
        plugins.route(n.event_type).changes(n)
    n = note("nova", "flavor.create")
    del n.payload["nova_object.data"]["flavorid"]
    with pytest.raises(PayloadError, match="'flavorid'"):
        plugins.route(n.event_type).changes(n)
    n = note("nova", "flavor.update", timestamp="garbage")
    with pytest.raises(PayloadError):
        plugins.route(n.event_type).changes(n)


def test_payload_is_not_mutated(note, one_change):
    n = note("nova", "instance.create.end")
    before = copy.deepcopy(n.payload)
    one_change(n)
    assert n.payload == before
