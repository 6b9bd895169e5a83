"""Role separation and index layout, on plain data."""
import pytest

from searchlight_forward.indexer import layout
from searchlight_forward.model import documents
from searchlight_forward.model.documents import ResourceState


def test_user_copy_has_no_admin_only_field_admin_copy_has_all():
    state = ResourceState("OS::Nova::Server", "s1", "p1", 7, {
        "id": "s1", "name": "vm", "OS-EXT-SRV-ATTR:host": "cmp1",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "cmp1.example", "status": "ACTIVE"})
    sources = documents.es_sources(state, ("OS-EXT-SRV-ATTR:*",))
    assert "OS-EXT-SRV-ATTR:host" in sources["admin"]
    assert not [k for k in sources["user"] if k.startswith("OS-EXT-SRV-ATTR")]
    assert sources["user"]["name"] == "vm"
    assert sources["admin"][documents.ROLE_FIELD] == "admin"
    assert sources["user"][documents.ROLE_FIELD] == "user"


def test_state_round_trips_through_the_admin_copy():
    state = ResourceState("T", "s1", "p1", 7, {"id": "s1", "resource_type": "T",
                                              "project_id": "p1"}, base_version=5,
                          field_versions={"status": 7})
    back = documents.state_from_source(documents.es_sources(state, ())["admin"], 7)
    assert back == state
    assert documents.es_sources(state, ())["user"].keys().isdisjoint(
        {documents.BASE_VERSION_FIELD, documents.FIELD_VERSIONS_FIELD})


def test_search_alias_hides_tombstones_and_listener_alias_is_the_write_index():
    actions = layout.alias_actions("searchlight", "searchlight-2", ["searchlight-1"])
    removes = [a["remove"] for a in actions if "remove" in a]
    adds = {a["add"]["alias"]: a["add"] for a in actions if "add" in a}
    assert {r["alias"] for r in removes} == {"searchlight-listener", "searchlight-search"}
    assert adds["searchlight-listener"]["is_write_index"] is True
    assert adds["searchlight-search"]["filter"]["bool"]["must_not"] == [
        {"term": {documents.DELETED_FIELD: True}}]


def test_conflicting_field_mappings_are_refused_with_both_owners_named():
    with pytest.raises(layout.MappingConflict, match="size.*A.*B"):
        layout.merge_properties([("A", {"size": {"type": "long"}}),
                                 ("B", {"size": {"type": "keyword"}})])
