"""Neutron networks, ports, subnets, routers, floating IPs, security groups."""
from __future__ import annotations

import fnmatch

import pytest

from tests.unit.conftest import apply
from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError

PROJECT = "8eaac046b2c44ab99246cb0850c7f06d"
SG = "223c7074-e593-43f2-a0e6-f6d87ee8fb36"
RULE = "8452586b-38b0-46c4-bf55-a6953887d8d5"
RESOURCES = [  # (payload key, resource type, id)
    ("network", "OS::Neutron::Net", "bce18b87-8ccb-44ff-98e4-dd9c102bba6e"),
    ("port", "OS::Neutron::Port", "fe6b1c72-2560-421d-bd4c-867e545dbdc4"),
    ("subnet", "OS::Neutron::Subnet", "a7017a67-1616-4fea-a671-c4f535d145e5"),
    ("router", "OS::Neutron::Router", "2b8e8b54-6b9f-4c5b-9b16-7c3e0f1f9d30"),
    ("floatingip", "OS::Neutron::FloatingIP", "5a1e2c9b-8f3d-4e55-9c1a-0b7d8e6f4a21"),
    ("security_group", "OS::Neutron::SecurityGroup", SG),
]


@pytest.mark.parametrize("key, resource_type, rid", RESOURCES)
def test_create_and_update_are_full_documents(note, one_change, key, resource_type, rid):
    for action in ("create.end", "update.end"):
        raw = note("neutron", f"{key}.{action}")
        change = one_change(raw)
        assert change.operation is Operation.INDEX
        assert (change.resource_type, change.id, change.project_id) == (
            resource_type, rid, PROJECT)
        doc = change.document
        assert doc["id"] == rid
        assert doc["resource_type"] == resource_type
        assert doc["project_id"] == doc["tenant_id"] == PROJECT
        assert doc["updated_at"] == raw.payload[key]["updated_at"]
        assert doc["created_at"] == raw.payload[key]["created_at"]
        # Everything else is the API resource as sent.
        for field, value in raw.payload[key].items():
            if field != "security_group_rules":
                assert doc[field] == value, field


@pytest.mark.parametrize("key, resource_type, rid", RESOURCES)
def test_delete_is_versioned_from_the_emission_second(note, one_change, key,
                                                      resource_type, rid):
    raw = note("neutron", f"{key}.delete.end")
    change = one_change(raw)
    assert change.operation is Operation.DELETE
    assert (change.id, change.project_id) == (rid, PROJECT)
    ms = int(raw.timestamp[20:23])
    second = change.version // 1000 // 1_000_000
    assert change.version == second * 1_000_000 * 1000 + ms
    # The pre-delete resource carries its last updated_at; the delete outranks it.
    update = one_change(note("neutron", f"{key}.update.end"))
    create = one_change(note("neutron", f"{key}.create.end"))
    assert create.version < update.version < change.version


@pytest.mark.parametrize("key, resource_type, rid", RESOURCES)
def test_old_and_new_delete_payloads(note, one_change, key, resource_type, rid):
    only_id = note("neutron", f"{key}.delete.end", payload={f"{key}_id": rid})
    change = one_change(only_id)
    assert (change.id, change.project_id) == (rid, None)
    only_resource = note("neutron", f"{key}.delete.end")
    del only_resource.payload[f"{key}_id"]
    assert one_change(only_resource).id == rid


def test_port_fields(note, one_change):
    doc = one_change(note("neutron", "port.update.end")).document
    assert doc["status"] == "ACTIVE"
    assert doc["binding:host_id"] == "devstack"
    assert doc["fixed_ips"] == [{"subnet_id": "a7017a67-1616-4fea-a671-c4f535d145e5",
                                 "ip_address": "10.0.0.5"}]
    assert doc["device_owner"] == "compute:nova"


def test_payload_without_timestamps_uses_the_emission_time(note, one_change):
    # Neutron before the timestamp extension sent no created_at/updated_at.
    raw = note("neutron", "network.create.end")
    for field in ("created_at", "updated_at"):
        del raw.payload["network"][field]
    change = one_change(raw)
    assert change.document["updated_at"] == "2026-03-02T13:00:00.318842Z"
    assert change.document["created_at"] is None
    assert change.version == 1772456400_000000 * 1000 + 318


@pytest.mark.parametrize("resource_type, admin, public", [
    ("OS::Neutron::Net", ["provider:network_type", "provider:segmentation_id",
                          "provider:physical_network", "segments"],
     ["router:external", "shared", "status", "mtu"]),
    ("OS::Neutron::Port", ["binding:host_id", "binding:vif_type", "binding:profile",
                           "binding:vif_details", "binding:vnic_type"],
     ["device_id", "mac_address", "fixed_ips", "status"]),
    ("OS::Neutron::Router", ["distributed", "ha"], ["external_gateway_info", "routes"]),
    ("OS::Neutron::Subnet", [], ["cidr", "gateway_ip"]),
    ("OS::Neutron::FloatingIP", [], ["floating_ip_address", "port_id"]),
    ("OS::Neutron::SecurityGroup", [], ["security_group_rules"]),
])
def test_admin_only_fields(plugins, resource_type, admin, public):
    patterns = plugins.by_type[resource_type].admin_only_fields
    hidden = lambda f: any(fnmatch.fnmatchcase(f, p) for p in patterns)  # noqa: E731
    assert all(hidden(f) for f in admin)
    assert not any(hidden(f) for f in public)


@pytest.mark.parametrize("event", ["port.create.start", "network.update.start",
                                   "security_group_rule.create.start",
                                   "router.interface.create", "router.interface.delete"])
def test_start_and_interface_events_are_not_changes(note, plugins, event):
    raw = note("neutron", "router.interface.create", event_type=event)
    assert plugins.route(event).changes(raw) == []


# -- security groups and their rules ------------------------------------------------

def test_security_group_document_lists_its_rules(note, one_change):
    doc = one_change(note("neutron", "security_group.create.end")).document
    assert [r["id"] for r in doc["security_group_rules"]] == [
        "c36445af-953d-47e4-85d2-2a6ac8fcba14", "e230cd58-38ad-497d-8601-90e7c2745dbd"]
    assert doc["security_group_rules"][0]["direction"] == "egress"


def test_rule_create_patches_the_group(note, one_change):
    stored = one_change(note("neutron", "security_group.create.end")).document
    change = one_change(note("neutron", "security_group_rule.create.end"))
    assert change.operation is Operation.UPDATE
    assert (change.resource_type, change.id, change.project_id) == (
        "OS::Neutron::SecurityGroup", SG, PROJECT)
    doc = apply(change, stored)
    added = next(r for r in doc["security_group_rules"] if r["id"] == RULE)
    assert (added["protocol"], added["port_range_min"], added["port_range_max"]) == (
        "tcp", 8080, 8081)
    assert doc["updated_at"] == "2026-03-02T13:31:00Z"
    # Upserting the same rule twice (a redelivery) does not duplicate it.
    assert apply(change, doc)["security_group_rules"] == doc["security_group_rules"]


def test_rule_delete_with_only_the_rule_id_asks_the_indexer_to_locate_the_group(
        note, one_change):
    change = one_change(note("neutron", "security_group_rule.delete.end"))
    assert change.operation is Operation.UPDATE
    assert change.id == ""
    assert change.locate_by == ("security_group_rules.id", RULE)
    stored = one_change(note("neutron", "security_group.update.end")).document
    assert RULE in [r["id"] for r in stored["security_group_rules"]]
    doc = apply(change, stored)
    assert RULE not in [r["id"] for r in doc["security_group_rules"]]
    assert len(doc["security_group_rules"]) == 2


def test_rule_delete_from_newer_neutron_names_the_group(note, one_change):
    raw = note("neutron", "security_group_rule.delete.end")
    raw.payload["security_group_rule"] = note(
        "neutron", "security_group_rule.create.end").payload["security_group_rule"]
    change = one_change(raw)
    assert (change.id, change.project_id, change.locate_by) == (SG, PROJECT, None)


def test_security_group_versions_increase(note, one_change):
    order = ["security_group.create.end", "security_group_rule.create.end",
             "security_group.update.end", "security_group_rule.delete.end",
             "security_group.delete.end"]
    versions = [one_change(note("neutron", e)).version for e in order]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


# -- broken payloads ----------------------------------------------------------------

@pytest.mark.parametrize("event, payload, message", [
    ("port.create.end", {}, "'port'"),
    ("port.create.end", {"port": None}, "'port'"),
    ("port.update.end", {"port": ["id"]}, "expected an object"),
    ("port.update.end", {"port": {"name": "x"}}, "'id'"),
    ("network.create.end", {"network": {"id": "n", "updated_at": "3 pm"}}, "3 pm"),
    ("subnet.delete.end", {}, "'subnet_id'"),
    ("router.delete.end", {"router": "r1"}, "'router_id'"),
    ("security_group.create.end", {"security_group": {"id": "s",
                                   "security_group_rules": {"id": 1}}}, "rules"),
    ("security_group_rule.create.end", {"security_group_rule": {"id": "r"}},
     "'security_group_id'"),
    ("security_group_rule.create.end", {}, "'security_group_rule'"),
    ("security_group_rule.delete.end", {}, "'security_group_rule_id'"),
    ("port.frobnicate.end", {"port": {"id": "p"}}, "not a port event"),
    ("network.create.end", "network", "expected an object"),
    ("floatingip.update.end", None, "expected an object"),
])
def test_broken_payloads(note, plugins, event, payload, message):
    raw = note("neutron", "network.create.end", event_type=event, payload=payload)
    with pytest.raises(PayloadError, match=message):
        plugins.route(event).changes(raw)
