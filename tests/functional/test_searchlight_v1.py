"""Searchlight's v1 ``GET /v1/search/plugins`` and ``GET /v1/search/facets`` on the
real API behind the local Keystone, over documents indexed through the Indexer
(docs/searchlight-api.md).

The oracle is the input: the counts below are written down from the documents the
test indexes. A member sees their own project only, in the user copy: no admin-only
field (``OS-EXT-SRV-ATTR:host``) and no field the WebSocket view's filter removes
(``key_name``) is listed or aggregated; ``all_projects`` from a member is ignored,
as Searchlight ignored it; an admin asking it sees every project.
"""
from __future__ import annotations

import pytest

from tests.functional.searchlight_support import HOST, start_api
from tests.functional.websocket_support import ALL_TYPES, SERVER, VOLUME, document_change

pytestmark = pytest.mark.timeout(120)

FACETS = "/v1/search/facets"


@pytest.fixture
def stack(config_file, names, keystone, es, writer):
    """The API on the test's group, and its documents: (api, demo, alt)."""
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    servers = [  # (id, project, status, host, locked)
        ("d1", demo, "ACTIVE", "compute-1", True),
        ("d2", demo, "ACTIVE", "compute-1", False),
        ("d3", demo, "ACTIVE", "compute-2", False),
        ("d4", demo, "ERROR", "compute-1", False),
        ("d5", demo, "ERROR", "compute-2", False),
        ("a1", alt, "ACTIVE", "compute-3", False),
        ("a2", alt, "SHUTOFF", "compute-3", False),
        ("a3", alt, "SHUTOFF", "compute-3", False),
    ]
    writer.changes([document_change(rid, project, 1, status=status, locked=locked,
                                    key_name=f"key-{project}", **{HOST: host})
                    for rid, project, status, host, locked in servers]
                   + [document_change("gone", demo, 1, status="ACTIVE", **{HOST: "x"})])
    writer.changes([document_change("gone", demo, 2, deleted=True)])      # a tombstone
    writer.changes([
        document_change("v1", demo, 1, rtype=VOLUME, status="in-use",
                        attachments=[{"server_id": "d1"}, {"server_id": "d1"}]),
        document_change("v2", demo, 1, rtype=VOLUME, status="in-use",
                        attachments=[{"server_id": "d1"}, {"server_id": "d2"}]),
        document_change("v3", alt, 1, rtype=VOLUME, status="available")])
    api = start_api(config_file, names, keystone)
    yield api, demo, alt
    api.stop()


def facet(answer: dict, rtype: str, name: str) -> dict:
    found = [f for f in answer[rtype]["facets"] if f["name"] == name]
    assert len(found) == 1, (name, [f["name"] for f in answer[rtype]["facets"]])
    return found[0]


def options(answer: dict, rtype: str, name: str) -> dict:
    return {o["key"]: o["doc_count"] for o in facet(answer, rtype, name)["options"]}


def listed(answer: dict, rtype: str) -> set[str]:
    return {f["name"] for f in answer[rtype]["facets"]}


def test_plugins_lists_the_served_types_in_searchlights_shape(stack, keystone, names):
    api, _, _ = stack
    group = names["group"]
    for user in ("demo", "demo-reader", "admin"):
        resp = api.call("GET", "/v1/search/plugins", keystone.token(user))
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.json() == {"plugins": [
            {"type": t, "alias-indexing": f"{group}-listener",
             "alias-searching": f"{group}-search"} for t in sorted(ALL_TYPES)]}
    assert api.call("GET", "/v1/search/plugins").status_code == 401


def test_a_member_sees_their_project_in_the_user_copy(stack, keystone):
    api, demo, _ = stack
    token = keystone.token("demo")
    for extra in ({}, {"all_projects": "true"}):     # ignored for a member, as Searchlight
        resp = api.call("GET", FACETS, token, type=SERVER, **extra)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert list(answer) == [SERVER]
        assert answer[SERVER]["doc_count"] == 5           # d1-d5; not "gone", not alt's
        assert options(answer, SERVER, "status") == {"ACTIVE": 3, "ERROR": 2}
        assert facet(answer, SERVER, "status") == {
            "name": "status", "type": "string",
            "options": [{"key": "ACTIVE", "doc_count": 3}, {"key": "ERROR", "doc_count": 2}]}
        assert options(answer, SERVER, "project_id") == {demo: 5}
        locked = facet(answer, SERVER, "locked")
        assert locked["type"] == "boolean"
        assert {o["key_as_string"]: o["doc_count"] for o in locked["options"]} == \
            {"false": 4, "true": 1}
        assert facet(answer, SERVER, "created_at") == {"name": "created_at", "type": "date"}
        assert facet(answer, SERVER, "image.id")["nested"] is False
        names_seen = listed(answer, SERVER)
        assert HOST not in names_seen and "key_name" not in names_seen
        assert not [n for n in names_seen if n.startswith("OS-EXT-SRV-ATTR:")]
        assert "name.text" not in names_seen and "metadata" not in names_seen


def test_an_admin_with_all_projects_sees_every_project_and_admin_fields(stack, keystone):
    api, demo, alt = stack
    token = keystone.token("admin")
    answer = api.call("GET", FACETS, token, type=SERVER, all_projects="True").json()
    assert answer[SERVER]["doc_count"] == 8
    assert options(answer, SERVER, "status") == {"ACTIVE": 4, "ERROR": 2, "SHUTOFF": 2}
    assert options(answer, SERVER, HOST) == {"compute-1": 3, "compute-2": 2, "compute-3": 3}
    assert options(answer, SERVER, "project_id") == {demo: 5, alt: 3}
    assert "key_name" not in listed(answer, SERVER)    # the view's filter: admins too
    # Without all_projects an admin sees its own project (which has nothing).
    own = api.call("GET", FACETS, token, type=SERVER).json()
    assert own[SERVER]["doc_count"] == 0 and options(own, SERVER, "status") == {}


def test_nested_options_count_documents_and_every_type_is_answered(stack, keystone):
    api, _, _ = stack
    answer = api.call("GET", FACETS, keystone.token("demo")).json()
    assert sorted(answer) == sorted(ALL_TYPES)
    assert answer[SERVER]["doc_count"] == 5 and answer[VOLUME]["doc_count"] == 2
    server_id = facet(answer, VOLUME, "attachments.server_id")
    assert server_id["nested"] is True
    # v1 has d1 twice and v2 has d1 and d2: documents, not attachments, are counted.
    assert {o["key"]: o["doc_count"] for o in server_id["options"]} == {"d1": 2, "d2": 1}
    assert options(answer, VOLUME, "status") == {"in-use": 2}
    for rtype in ALL_TYPES:
        if rtype not in (SERVER, VOLUME):
            assert answer[rtype]["doc_count"] == 0


def test_include_fields_exclude_options_limit_terms_and_index(stack, keystone, names):
    api, _, _ = stack
    token = keystone.token("demo")
    counts = api.call("GET", FACETS, token, type=SERVER, include_fields="false").json()
    assert counts == {SERVER: {"doc_count": 5}}
    bare = api.call("GET", FACETS, token, type=SERVER, exclude_options="true").json()
    assert bare[SERVER]["doc_count"] == 5
    assert facet(bare, SERVER, "status") == {"name": "status", "type": "string"}
    assert not [f for f in bare[SERVER]["facets"] if "options" in f]
    top = api.call("GET", FACETS, token, type=SERVER, limit_terms="1").json()
    assert facet(top, SERVER, "status")["options"] == [{"key": "ACTIVE", "doc_count": 3}]
    two = api.call("GET", f"{FACETS}?type={SERVER}&type={VOLUME}&include_fields=false",
                   token).json()
    assert two == {SERVER: {"doc_count": 5}, VOLUME: {"doc_count": 2}}
    mine = api.call("GET", FACETS, token, type=SERVER, include_fields="false",
                    index=f"{names['group']}-search").json()
    assert mine == {SERVER: {"doc_count": 5}}
    assert api.call("GET", FACETS, token, type=SERVER,
                    index="searchlight-search").json() == {}


def test_refusals(stack, keystone):
    api, _, _ = stack
    token = keystone.token("demo")
    unknown = api.call("GET", FACETS, token, type="OS::Nova::Nothing")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == \
        "Resource type 'OS::Nova::Nothing' is not in the list of enabled plugins"
    assert unknown.json()["error"]["field"] == "type"
    for bad in ("x", "-1"):
        resp = api.call("GET", FACETS, token, limit_terms=bad)
        assert resp.status_code == 400 and resp.json()["error"]["field"] == "limit_terms"
    assert api.call("GET", FACETS, type=SERVER).status_code == 401
    assert api.call("POST", FACETS, token).status_code == 405
    assert api.call("POST", "/v1/search/plugins", token).status_code == 405
