"""Searchlight's ``GET``/``POST /v1/search`` on the real API behind the local Keystone,
over documents indexed through the ``writer`` fixture (docs/searchlight-api.md).

The oracle is the input: every expected hit, count and document below is written
down from the documents the test indexes. A member searches their own project's
user copies: the admin-only host and the field the view's filter removes
(``key_name``) are neither returned nor usable, and naming them gets exactly the
answer a field that does not exist gets. The live-search body on the same path
keeps its own answer.
"""
from __future__ import annotations

import pytest

from tests.functional.searchlight_support import FILTERED, HOST, start_api
from tests.functional.websocket_support import SERVER, VOLUME, document_change

pytestmark = pytest.mark.timeout(120)

SEARCH = "/v1/search"
# (id, project, status, host, locked): demo's d1-d5, alt's a1-a3
SERVERS = [("d1", "demo", "ACTIVE", "compute-1", True),
           ("d2", "demo", "ACTIVE", "compute-1", False),
           ("d3", "demo", "ACTIVE", "compute-2", False),
           ("d4", "demo", "ERROR", "compute-1", False),
           ("d5", "demo", "ERROR", "compute-2", False),
           ("a1", "alt", "ACTIVE", "compute-3", False),
           ("a2", "alt", "SHUTOFF", "compute-3", False),
           ("a3", "alt", "SHUTOFF", "compute-3", False)]


@pytest.fixture
def stack(config_file, names, keystone, es, writer):
    """The API and its documents: (api, {"demo": project id, "alt": project id})."""
    projects = {u: keystone.users[u]["project_id"] for u in ("demo", "alt")}
    writer.changes([document_change(rid, projects[who], 1, status=status, locked=locked,
                                    key_name=f"kn{rid}x", **{HOST: host})
                    for rid, who, status, host, locked in SERVERS]
                   + [document_change("gone", projects["demo"], 1, **{HOST: "x"})])
    writer.changes([document_change("gone", projects["demo"], 2, deleted=True)])
    writer.changes([document_change("v1", projects["demo"], 1, rtype=VOLUME,
                                    status="in-use")])
    api = start_api(config_file, names, keystone)
    yield api, projects
    api.stop()


def user_document(rid: str, project: str, status: str, locked: bool) -> dict:
    """What a member is shown: the document written, minus admin-only and filtered."""
    return {"id": rid, "resource_type": SERVER, "project_id": project,
            "name": f"res-{rid}", "status": status, "updated_at": None, "locked": locked}


def search(api, token, body, method="POST"):
    resp = api.call(method, SEARCH, token, body=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()


def ids(answer: dict) -> list[str]:
    return [h["_source"]["id"] for h in answer["hits"]["hits"]]


def test_a_member_searches_their_project_in_searchlights_shape(stack, keystone, names):
    api, projects = stack
    demo = projects["demo"]
    token = keystone.token("demo")
    for method in ("POST", "GET"):                 # GET takes the body too
        for extra in ({}, {"all_projects": True}):      # ignored for a member
            answer = search(api, token, {"query": {"match_all": {}}, "type": SERVER,
                                         "sort": "name", **extra}, method)
            assert set(answer) == {"took", "timed_out", "_shards", "hits"}
            assert answer["hits"]["total"] == 5             # d1-d5: not alt's, not gone
            hits = answer["hits"]["hits"]
            assert [h["_source"] for h in hits] == [
                user_document(rid, demo, status, locked)
                for rid, who, status, _, locked in SERVERS if who == "demo"]
            assert [h["_id"] for h in hits] == [f"d{i}_USER" for i in range(1, 6)]
            assert {h["_type"] for h in hits} == {SERVER}
            assert all(h["_index"].startswith(names["group"]) for h in hits)
            assert all(set(h) == {"_id", "_index", "_type", "_score", "_source", "sort"}
                       for h in hits)
    # No type: every type; {} is Searchlight's empty search, not live search's.
    every = search(api, token, {})
    assert every["hits"]["total"] == 6 and sorted(ids(every)) == \
        ["d1", "d2", "d3", "d4", "d5", "v1"]
    # `openstack search query "status: ACTIVE"` without --type posts "type": null
    osc = search(api, token, {"type": None, "all_projects": False,
                              "_source": ["id", "name", "updated_at"],
                              "query": {"query_string": {"query": "status: ACTIVE"}}})
    assert sorted((h["_source"] for h in osc["hits"]["hits"]), key=lambda d: d["id"]) == [
        {"id": rid, "name": f"res-{rid}", "updated_at": None} for rid in ("d1", "d2", "d3")]


def test_an_admin_with_all_projects_sees_every_project_in_the_admin_copy(stack, keystone):
    api, projects = stack
    token = keystone.token("admin")
    answer = search(api, token, {"type": SERVER, "all_projects": True, "limit": 100,
                                 "sort": [{"name": "asc"}]})
    assert answer["hits"]["total"] == 8
    hits = answer["hits"]["hits"]
    assert ids(answer) == sorted(rid for rid, *_ in SERVERS)
    assert [h["_source"][HOST] for h in hits] == [
        host for _, _, _, host, _ in sorted(SERVERS)]
    assert all(FILTERED not in h["_source"] for h in hits)       # the view's filter
    assert hits[0]["_id"] == "a1_ADMIN"
    by_host = search(api, token, {"type": SERVER, "all_projects": True,
                                  "query": {"term": {HOST: "compute-3"}}})
    assert sorted(ids(by_host)) == ["a1", "a2", "a3"]
    own = search(api, token, {"type": SERVER})          # the admin's own project: empty
    assert own["hits"]["total"] == 0 and own["hits"]["hits"] == []


def test_the_wider_language(stack, keystone):
    api, projects = stack
    token = keystone.token("demo")
    # query_string, as `openstack search query` sends it
    errors = search(api, token, {"query": {"query_string": {"query": "status:ERROR"}},
                                 "type": SERVER, "sort": "name"})
    assert ids(errors) == ["d4", "d5"]
    free = search(api, token, {"query": {"query_string": {"query": "d3"}}})
    assert ids(free) == ["d3"]
    # Free text never matches what the caller may not see (a member: the host, and
    # the filtered key name, which the admin copy has but the view removes).
    admin = keystone.token("admin")
    for who, text in ((token, "knd1x"), (token, "compute-1"), (admin, "knd1x")):
        assert search(api, who, {"query": {"query_string": {"query": text}},
                                 "all_projects": True})["hits"]["total"] == 0
    hosts = search(api, admin, {"query": {"query_string": {"query": "compute-1"}},
                                "all_projects": True, "sort": "name"})
    assert ids(hosts) == ["d1", "d2", "d4"]
    # offset/limit and from/size, sort desc, _source, version
    page = search(api, token, {"type": SERVER, "sort": {"name": "desc"}, "offset": 1,
                               "limit": 2, "_source": ["name", "status"], "version": True})
    assert page["hits"]["total"] == 5
    assert [h["_source"] for h in page["hits"]["hits"]] == [
        {"name": "res-d4", "status": "ERROR"}, {"name": "res-d3", "status": "ACTIVE"}]
    assert [h["_version"] for h in page["hits"]["hits"]] == [1, 1]
    same = search(api, token, {"type": SERVER, "sort": {"name": "desc"}, "from": 1,
                               "size": 2, "_source": {"excludes": ["project_id"]}})
    assert ids(same) == ["d4", "d3"]
    assert "project_id" not in same["hits"]["hits"][0]["_source"]
    assert "_source" not in search(api, token, {"type": SERVER, "_source": False}
                                   )["hits"]["hits"][0]
    # bool, terms, range-free filters, highlight, aggregations
    answer = search(api, token, {
        "type": SERVER,
        "query": {"bool": {"must": [{"match": {"name.text": {"query": "res-d1",
                                                                   "operator": "and"}}}],
                           "should": [{"terms": {"status": ["ACTIVE"]}}]}},
        "highlight": {"fields": {"name.text": {}}},
        "aggs": {"status": {"terms": {"field": "status"}},
                 "locked": {"filter": {"term": {"locked": True}}}}})
    assert ids(answer) == ["d1"]
    assert answer["hits"]["hits"][0]["highlight"] == {"name.text": ["<em>res</em>-<em>d1</em>"]}
    assert {b["key"]: b["doc_count"] for b in
            answer["aggregations"]["status"]["buckets"]} == {"ACTIVE": 1}
    counts = search(api, token, {"type": SERVER, "limit": 0,
                                 "aggregations": {"status": {"terms": {"field": "status"}},
                                                  "locked": {"filter": {"term": {
                                                      "locked": True}}}}})
    assert counts["hits"]["hits"] == [] and counts["hits"]["total"] == 5
    assert {b["key"]: b["doc_count"] for b in
            counts["aggregations"]["status"]["buckets"]} == {"ACTIVE": 3, "ERROR": 2}
    assert counts["aggregations"]["locked"]["doc_count"] == 1


def _places(name: str) -> dict[str, dict]:
    return {
        "query": {"query": {"term": {name: "x"}}},
        "query_string": {"query": {"query_string": {
            "query": f"{name.replace(':', chr(92) + ':')}:x"}}},
        "sort": {"sort": [{name: "asc"}]},
        "aggregation": {"aggs": {"a": {"terms": {"field": name}}}},
        "highlight": {"highlight": {"fields": {name: {}}}},
        "_source": {"_source": [name]},
    }


def test_a_hidden_field_is_refused_exactly_like_a_missing_one(stack, keystone):
    api, _ = stack
    member, admin = keystone.token("demo"), keystone.token("admin")
    for place in _places("x"):
        missing = api.call("POST", SEARCH, member, body=_places("no_such_field")[place])
        assert missing.status_code == 400, (place, missing.text)
        for token, hidden in ((member, HOST), (member, FILTERED), (admin, FILTERED)):
            resp = api.call("POST", SEARCH, token, body=_places(hidden)[place])
            assert resp.status_code == missing.status_code, (place, hidden, resp.text)
            assert resp.json() == {"error": {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace(
                    "'no_such_field'", repr(hidden))}}, (place, hidden)
        # the admin copy has the host: the admin may use it
        assert api.call("POST", SEARCH, admin, body=_places(HOST)[place]).status_code \
            == 200, place


def test_refusals_name_the_rule(stack, keystone):
    api, _ = stack
    token = keystone.token("demo")
    for body, status, words in [
            ({"query": {"script": {"script": {"source": "true"}}}}, 400, "scripts"),
            ({"query": {"function_score": {"script_score": {}}}}, 400, "scripts"),
            ({"script_fields": {"a": {"script": "1"}}}, 400, "scripts"),
            ({"runtime_mappings": {"a": {"type": "keyword"}}}, 400, "scripts"),
            ({"aggs": {"a": {"global": {}}}}, 403, "escapes"),
            ({"from": 9999, "size": 2}, 400, "10000"),
            ({"aggs": {"a": {"terms": {"field": "status", "size": 5000}}}}, 400, "1000"),
            ({"type": "OS::Nova::Nothing"}, 400,
             "Resource type 'OS::Nova::Nothing' is not in the list of enabled plugins"),
            ({"offset": 1, "from": 1}, 400, "Provide 'offset' or 'from', but not both"),
            ({"limit": -1}, 400, "limit param must be greater than or equal to 0"),
            ({"self": "x"}, 403, "Attribute 'self' is read-only.")]:
        resp = api.call("POST", SEARCH, token, body=body)
        assert resp.status_code == status, (body, resp.text)
        assert words in resp.json()["error"]["message"], (body, resp.text)
    # Elasticsearch's own refusal, in Searchlight's words: of the query, or of the
    # whole request (a bad terms partition is refused before any search runs)
    for bad_body in ({"query": {"term": {"locked": "maybe"}}},
                     {"aggs": {"a": {"terms": {"field": "status", "include": {
                         "partition": "x", "num_partitions": 2}}}}}):
        bad = api.call("POST", SEARCH, token, body=bad_body)
        assert bad.status_code == 400 and bad.json()["error"]["message"] == \
            "Query malformed or search parse failure, please check the syntax", bad.text
    empty = api.call("GET", SEARCH, token)
    assert empty.status_code == 400 and \
        empty.json()["error"]["message"] == "Body expected in request."
    put = api.call("PUT", SEARCH, token, body={})
    assert put.status_code == 405 and put.headers["Allow"] == "GET, POST"
    assert api.call("POST", SEARCH, body={}).status_code == 401


def test_live_search_keeps_its_body_and_answer_on_the_same_path(stack, keystone):
    api, projects = stack
    token = keystone.token("demo")
    live = search(api, token, {"resource_types": [SERVER], "sort": [{"name": "asc"}]})
    assert set(live) == {"hits", "total", "cursor", "page_size"}
    assert live["total"] == 5 and [h["id"] for h in live["hits"]] == \
        ["d1", "d2", "d3", "d4", "d5"]
    sized = search(api, token, {"page_size": 2, "resource_types": [VOLUME]})
    assert sized["total"] == 1 and sized["page_size"] == 2
    # ...while a Searchlight body on the same path gets Searchlight's answer
    theirs = search(api, token, {"query": {"match_all": {}}, "type": VOLUME})
    assert theirs["hits"]["total"] == 1 and ids(theirs) == ["v1"]
    assert theirs["hits"]["hits"][0]["_id"] == "v1_USER"
