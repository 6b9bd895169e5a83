"""Properties every plugin shares: one index mapping, disjoint routing, the
document contract, and PayloadError as the only failure."""
from __future__ import annotations

import copy
import json

import pytest

from tests.unit.conftest import as_notification, fixture_paths
from searchlight_forward.model import versioning
from searchlight_forward.model.change import Operation
from searchlight_forward.plugins import PayloadError, ResourcePlugin, _common
from searchlight_forward.plugins._common import (COMMON_MAPPING, MappingConflict,
                                                 merge_mappings, unwrap_nova_object)

FIXTURES = [pytest.param(p, id=f"{p.parent.name}/{p.stem}") for p in fixture_paths()]


def load(path):
    with open(path) as f:
        return json.load(f)


def test_every_entry_point_loads(plugins):
    assert len(plugins.plugins) == 14
    assert len(plugins.by_type) == 14
    for plugin in plugins.plugins:
        assert plugin.resource_type.startswith("OS::")
        assert plugin.notification_targets and plugin.event_types
        for exchange, topic in plugin.notification_targets:
            assert topic in ("notifications", "versioned_notifications"), plugin


def test_all_mappings_merge_into_one_without_conflict(plugins):
    merged = merge_mappings(plugins.plugins)
    for field, spec in COMMON_MAPPING.items():
        assert merged[field] == spec
        for plugin in plugins.plugins:
            assert plugin.mapping[field] == spec, (plugin.resource_type, field)
    assert merged["status"] == {"type": "keyword"}
    assert merged["updated_at"] == merged["created_at"] == {"type": "date"}
    assert merged["size"] == {"type": "long"}


def test_merge_reports_a_conflict():
    class A(ResourcePlugin):
        resource_type = "OS::Test::A"
        mapping = {"size": {"type": "long"}}

    class B(ResourcePlugin):
        resource_type = "OS::Test::B"
        mapping = {"size": {"type": "integer"}}

    with pytest.raises(MappingConflict, match="'size'.*OS::Test::A.*OS::Test::B"):
        merge_mappings([A(), B()])


def test_mapping_types_are_known_elasticsearch_types(plugins):
    known = {"keyword", "text", "date", "boolean", "integer", "long", "ip", "flattened",
             "nested", "object"}

    def check(props, path=""):
        for field, spec in props.items():
            if "properties" in spec:
                assert spec.get("type", "object") in ("object", "nested"), path + field
                check(spec["properties"], f"{path}{field}.")
            else:
                assert spec["type"] in known, path + field

    check(merge_mappings(plugins.plugins))


def test_object_fields_list_matches_the_mappings(plugins):
    merged = merge_mappings(plugins.plugins)
    object_like = {f for f, spec in merged.items()
                   if "properties" in spec or spec.get("type") == "flattened"}
    # Also fields that hold objects in documents without being mapped.
    assert object_like <= _common.OBJECT_FIELDS
    assert _common.OBJECT_FIELDS - object_like <= {"fault"}


def test_mapping_with_refuses_to_redefine_common_fields():
    with pytest.raises(ValueError, match="common"):
        _common.mapping_with(status={"type": "text"})


@pytest.mark.parametrize("path", FIXTURES)
def test_each_fixture_event_type_has_exactly_one_plugin(plugins, path):
    event_type = load(path)["event_type"]
    owners = [p.resource_type for p in plugins.plugins if p.handles(event_type)]
    assert len(owners) == 1, (event_type, owners)


@pytest.mark.parametrize("path", FIXTURES)
def test_fixture_shape(path):
    raw = load(path)
    assert set(raw) == {"event_type", "publisher_id", "priority", "timestamp", "payload"}
    assert raw["event_type"] == path.stem
    versioning.parse_timestamp(raw["timestamp"])


@pytest.mark.parametrize("path", FIXTURES)
def test_every_change_honours_the_document_contract(plugins, path):
    raw = load(path)
    plugin = plugins.route(raw["event_type"])
    changes = plugin.changes(as_notification(raw))
    for change in changes:
        assert change.resource_type == plugin.resource_type
        assert change.event_type == raw["event_type"]
        assert change.timestamp == raw["timestamp"]
        assert 10**18 < change.version < 2**63
        assert change.id or change.locate_by
        if change.operation is Operation.INDEX:
            doc = change.document
            assert doc["id"] == change.id
            assert doc["resource_type"] == plugin.resource_type
            assert "project_id" in doc and doc["project_id"] == change.project_id
            assert isinstance(doc["updated_at"], str) and doc["updated_at"].endswith("Z")
            versioning.parse_timestamp(doc["updated_at"])
            if doc.get("created_at") is not None:
                assert doc["created_at"].endswith("Z")
            json.dumps(doc)  # plain data, ready for Elasticsearch
        elif change.operation is Operation.UPDATE:
            patched = change.patch({})
            assert isinstance(patched, dict)
            if change.id:
                assert patched.get("id", change.id) == change.id
            json.dumps(patched)


def _mutations(payload):
    """Every payload with one key removed or its value swapped for a wrong type,
    at the top level and one level down (nova_object.data, {"port": {...}})."""
    wrong = [None, "x", 7, [], {}, [{}], "2026-13-01T00:00:00Z"]
    for key in list(payload):
        cut = copy.deepcopy(payload)
        del cut[key]
        yield cut
        for value in wrong:
            swapped = copy.deepcopy(payload)
            swapped[key] = value
            yield swapped
        if isinstance(payload[key], dict):
            for inner in list(payload[key]):
                cut = copy.deepcopy(payload)
                del cut[key][inner]
                yield cut
                for value in wrong:
                    swapped = copy.deepcopy(payload)
                    swapped[key][inner] = value
                    yield swapped


@pytest.mark.parametrize("path", FIXTURES)
def test_malformed_payloads_raise_payload_error_and_nothing_else(plugins, path):
    raw = load(path)
    if not isinstance(raw["payload"], dict):
        pytest.skip("not an object payload")
    plugin = plugins.route(raw["event_type"])
    tried = 0
    for payload in _mutations(raw["payload"]):
        tried += 1
        try:
            plugin.changes(as_notification(raw, payload=payload))
        except PayloadError:
            pass
    assert tried > 5


def test_unwrap_nova_object_is_recursive():
    wrapped = {"nova_object.name": "A", "nova_object.data": {
        "child": {"nova_object.name": "B", "nova_object.data": {"x": 1}},
        "items": [{"nova_object.name": "C", "nova_object.data": {"y": [
            {"nova_object.name": "D", "nova_object.data": {"z": 2}}]}}, 3],
        "plain": {"k": "v"}}}
    assert unwrap_nova_object(wrapped) == {
        "child": {"x": 1}, "items": [{"y": [{"z": 2}]}, 3], "plain": {"k": "v"}}


@pytest.mark.parametrize("value, expected", [
    ("2026-03-02T10:15:09Z", "2026-03-02T10:15:09Z"),
    ("2026-03-02 12:00:01+00:00", "2026-03-02T12:00:01Z"),
    ("2026-03-02T15:00:02.000000", "2026-03-02T15:00:02Z"),
    ("2026-03-02T14:00:01.145721+00:00", "2026-03-02T14:00:01.145721Z"),
    ("2026-03-02T07:00:00-05:00", "2026-03-02T12:00:00Z"),
    ("", None), (None, None),
])
def test_iso(value, expected):
    assert _common.iso(value) == expected


def test_iso_rejects_garbage_with_the_field_name():
    with pytest.raises(PayloadError, match="launched_at"):
        _common.iso("whenever", "launched_at")


def _json_kind(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    kinds = {_json_kind(v) for v in value} - {None}
    assert len(kinds) <= 1, f"mixed list {value!r}"
    return kinds.pop() if kinds else None


def test_unmapped_fields_have_one_json_kind_across_resource_types(plugins):
    # Fields outside the mappings are mapped dynamically by the first document
    # that has them; a field that is a string in one type and an object in
    # another would make Elasticsearch reject the second.
    from devtools.simulator import CloudSimulator
    seen: dict[str, dict[str, set]] = {}
    documents = []
    for sim in CloudSimulator(seed=3).stream(6, delete_ratio=0.3):
        documents += plugins.route(sim.event_type).changes(sim.to_notification())
    for path in fixture_paths():
        raw = load(path)
        documents += plugins.route(raw["event_type"]).changes(as_notification(raw))
    for change in documents:
        if change.operation is Operation.INDEX:
            doc = change.document
        elif change.operation is Operation.UPDATE:
            doc = change.patch({})
        else:
            continue
        for field, value in doc.items():
            kind = _json_kind(value)
            if kind:
                seen.setdefault(field, {}).setdefault(kind, set()).add(change.resource_type)
    clashes = {f: k for f, k in seen.items() if len(k) > 1}
    assert clashes == {}
