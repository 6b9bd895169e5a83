"""Searchlight's search body checked on plain data (forwarders/api/searchlight_query.py):
what goes to Elasticsearch, what is refused and with which words. The same
request on the real API is tests/functional/test_searchlight_search.py."""
import fnmatch
import json

import pytest
from hypothesis import given, settings, strategies as st

from forwarders.api import searchlight_query as sq
from forwarders.api.searchlight_query import Fields, Refused, filter_source, parse
from forwarders.filters.base import FilterContext
from forwarders.filters.fields import RegexFields

SERVER, VOLUME = "OS::Nova::Server", "OS::Cinder::Volume"
MAPPINGS = {
    SERVER: {"id": {"type": "keyword"}, "project_id": {"type": "keyword"},
             "resource_type": {"type": "keyword"},
             "name": {"type": "keyword", "fields": {"text": {"type": "text"}}},
             "status": {"type": "keyword"}, "locked": {"type": "boolean"},
             "created_at": {"type": "date"}, "key_name": {"type": "keyword"},
             "OS-EXT-SRV-ATTR:host": {"type": "keyword"},
             "description": {"type": "text"},
             "image": {"properties": {"id": {"type": "keyword"}}}},
    VOLUME: {"id": {"type": "keyword"}, "project_id": {"type": "keyword"},
             "resource_type": {"type": "keyword"}, "name": {"type": "keyword"},
             "status": {"type": "keyword"}, "size": {"type": "integer"},
             "attachments": {"type": "nested",
                             "properties": {"server_id": {"type": "keyword"}}}},
}
ADMIN_ONLY = {SERVER: ("OS-EXT-SRV-ATTR:*",), VOLUME: ()}
NO_KEYS = RegexFields("no_keys", {"patterns": "^key_name$"}, FilterContext())
GROUPS = {SERVER: "g", VOLUME: "g"}
HOST, HIDDEN, MISSING = "OS-EXT-SRV-ATTR:host", "key_name", "no_such_field"


def fields(role="user"):
    return lambda types: Fields.build(MAPPINGS, ADMIN_ONLY, [NO_KEYS], role, types)


def req(body, role="user"):
    return parse(body, GROUPS, lambda g: f"{g}-search", fields(role))


def refused(body, role="user") -> Refused:
    with pytest.raises(Refused) as info:
        req(body, role)
    return info.value


def test_fields_are_what_the_roles_copy_keeps_in_every_type_searched():
    user = fields()((SERVER,)).types
    assert user["status"] == "keyword" and user["name.text"] == "text"
    assert user["image.id"] == "keyword" and user["image"] == "object"
    assert HOST not in user and HIDDEN not in user          # admin-only; the view's filter
    admin = fields("admin")((SERVER,)).types
    assert HOST in admin and HIDDEN not in admin
    # One index holds both types: a field hidden in one type searched is refused.
    assert HOST in fields("user")((VOLUME,)).types
    assert HOST not in fields("user")((SERVER, VOLUME)).types
    assert fields()((VOLUME,)).types["attachments.server_id"] == "keyword"


def test_the_query_goes_inside_the_scope():
    r = req({"query": {"match": {"name": "web"}}, "type": SERVER, "limit": 5,
             "offset": 10})
    es = r.es_body("user", "p1")
    assert es["query"] == {"bool": {
        "must": [{"match": {"name": "web"}}],
        "filter": [{"term": {"sf_role": "user"}}, {"terms": {"resource_type": [SERVER]}},
                   {"term": {"project_id": "p1"}}],
        "must_not": [{"term": {"sf_deleted": True}}]}}
    assert (es["from"], es["size"], r.indices) == (10, 5, ("g-search",))
    everything = req({}).es_body("admin", None)
    assert everything["query"]["bool"]["must"] == [{"match_all": {}}]
    assert everything["query"]["bool"]["filter"] == [
        {"term": {"sf_role": "admin"}}, {"terms": {"resource_type": [VOLUME, SERVER]}}]
    assert everything["size"] == sq.DEFAULT_LIMIT
    for none in ({"type": None}, {"type": []}, {"index": None}, {"type": "", "index": []}):
        assert req(none).types == (VOLUME, SERVER) and req(none).indices == ("g-search",)


def test_the_wider_language_is_allowed():
    body = {"query": {"bool": {
        "must": [{"query_string": {"query": "status:ACTIVE AND web*"}}],
        "should": [{"multi_match": {"query": "x", "fields": ["name^2", "description"]}},
                   {"wildcard": {"name": "w*"}}, {"regexp": {"name": "w.*"}},
                   {"range": {"created_at": {"gte": "2026-01-01"}}},
                   {"terms": {"status": ["ACTIVE", "ERROR"]}},
                   {"nested": {"path": "attachments",
                               "query": {"term": {"attachments.server_id": "d1"}}}},
                   {"constant_score": {"filter": {"exists": {"field": "image"}}}}],
        "minimum_should_match": 1}},
        "type": [SERVER, VOLUME], "from": 0, "size": 10,
        "sort": ["name", {"created_at": "desc"}, {"status": {"order": "asc"}}],
        "_source": {"includes": ["name", "status*"], "excludes": ["image"]},
        "highlight": {"fields": {"name.text": {}}},
        "aggs": {"by_status": {"terms": {"field": "status", "size": 5},
                               "aggs": {"newest": {"max": {"field": "created_at"}}}}},
        "version": True, "all_projects": True}
    r = req(body)
    assert r.body["sort"] == ["name", {"created_at": {"order": "desc"}},
                              {"status": {"order": "asc"}}]
    qs = r.body["query"]["bool"]["must"][0]["query_string"]
    assert qs["lenient"] is True and HIDDEN not in qs["fields"] and "name" in qs["fields"]
    assert r.body["highlight"]["fields"]["name.text"]["highlight_query"] == r.body["query"]
    assert r.body["highlight"]["require_field_match"] is False
    assert r.body["aggs"]["by_status"]["aggs"] == {"newest": {"max": {"field": "created_at"}}}
    assert (r.includes, r.excludes, r.version, r.all_projects) == (
        ("name", "status*"), ("image",), True, True)


def _every_place(name: str) -> dict[str, dict]:
    """A request naming ``name`` in each place a field can be named."""
    escaped = name.replace(":", "\\:")          # query_string's syntax
    return {
        "term": {"query": {"term": {name: "x"}}},
        "match": {"query": {"match": {name: "x"}}},
        "bool": {"query": {"bool": {"filter": [{"exists": {"field": name}}]}}},
        "terms": {"query": {"terms": {name: ["x"]}}},
        "query_string": {"query": {"query_string": {"query": f"{escaped}:x"}}},
        "query_string_exists": {"query": {"query_string": {"query": f"_exists_:{escaped}"}}},
        "qs_fields": {"query": {"query_string": {"query": "x", "fields": [name]}}},
        "multi_match": {"query": {"multi_match": {"query": "x", "fields": [f"{name}^3"]}}},
        "sort": {"sort": name},
        "sort_list": {"sort": [{name: "desc"}]},
        "aggs": {"aggs": {"a": {"terms": {"field": name}}}},
        "aggs_metric": {"aggregations": {"a": {"cardinality": {"field": name}}}},
        "aggs_filter": {"aggs": {"a": {"filter": {"term": {name: "x"}}}}},
        "highlight": {"highlight": {"fields": {name: {}}}},
        "source": {"_source": [name]},
        "source_includes": {"_source": {"includes": [name]}},
        "source_excludes": {"_source": {"excludes": name}},
    }


@pytest.mark.parametrize("place", sorted(_every_place("x")))
@pytest.mark.parametrize("hidden", [HOST, HIDDEN])
def test_a_hidden_field_is_refused_exactly_as_a_missing_one(place, hidden):
    gone = refused(_every_place(MISSING)[place])
    hid = refused(_every_place(hidden)[place])
    assert (hid.status, hid.field) == (gone.status, gone.field) == (400, hid.field)
    assert hid.message == gone.message.replace(repr(MISSING), repr(hidden))
    assert repr(hidden) in hid.message and "not visible to you" in hid.message
    if hidden == HOST:        # the admin copy has it: the same request is served
        req(_every_place(HOST)[place], "admin")


@pytest.mark.parametrize("body, status, where, words", [
    ({"query": {"script": {"script": "1"}}}, 400, "query.script", "scripts"),
    ({"query": {"function_score": {"query": {"match_all": {}}}}}, 400,
     "query.function_score", "scripts"),
    ({"query": {"bool": {"filter": {"script_score": {}}}}}, 400,
     "query.bool.filter[0].script_score", "scripts"),
    ({"script_fields": {"a": {}}}, 400, "script_fields", "scripts"),
    ({"runtime_mappings": {"a": {}}}, 400, "runtime_mappings", "scripts"),
    ({"sort": {"_script": {}}}, 400, "sort", "scripts"),
    ({"aggs": {"a": {"terms": {"script": "doc"}}}}, 400, "aggs.a.terms.script", "scripts"),
    ({"aggs": {"a": {"scripted_metric": {}}}}, 400, "aggs.a.scripted_metric", "scripts"),
    ({"aggs": {"a": {"global": {}}}}, 403, "aggs.a.global", "escapes"),
    ({"aggs": {"a": {"top_hits": {}}}}, 400, "aggs.a.top_hits", "renderer"),
    ({"aggs": {"a": {"value_count": {"field": "status"}, "aggs": {
        "b": {"terms": {"field": "name"}}}}}}, 400, "aggs.a.aggs", "metric"),
    ({"aggs": {"a": {"terms": {"field": "status", "size": 1001}}}}, 400,
     "aggs.a.terms.size", "1000"),
    ({"aggs": {"a": {"terms": {"field": "status", "min_doc_count": 0}}}}, 400,
     "aggs.a.terms.min_doc_count", "at least 1"),
    ({"aggs": {"a": {"terms": {"field": "status", "size": 200}, "aggs": {
        "b": {"terms": {"field": "name", "size": 100}}}}}}, 400, "aggs.a.aggs.b.terms",
     "10000 buckets"),
    ({"aggs": {"a": {"terms": {"field": "description"}}}}, 400, "aggs.a.terms.field",
     "description"),
    ({"aggs": {}, "aggregations": {}}, 400, "aggregations", "both"),
    ({"query": {"terms": {"status": {"index": "i", "id": "1", "path": "p"}}}}, 400,
     "query.terms", "lookup"),
    ({"query": {"more_like_this": {}}}, 400, "query.more_like_this", "other documents"),
    ({"query": {"wrapper": {"query": "e30="}}}, 400, "query.wrapper", "other documents"),
    ({"query": {"geo_distance": {}}}, 400, "query.geo_distance", "not served"),
    ({"query": {"nested": {"path": "attachments", "query": {"match_all": {}},
                           "inner_hits": {}}}}, 400, "query.nested.inner_hits", "inner"),
    ({"sort": "description"}, 400, "sort", "sort takes"),
    ({"offset": 1, "from": 1}, 400, "from", "not both"),
    ({"limit": "x"}, 400, "limit", "must be an integer"),
    ({"size": -1}, 400, "size", "greater than or equal to 0"),
    ({"from": 9990, "size": 11}, 400, "size", "10000"),
    ({"type": "OS::Nova::Nothing"}, 400, "type", "not in the list of enabled plugins"),
    ({"index": "other-search"}, 400, "index", "not in the list of enabled plugins"),
    ({"self": "x"}, 403, "self", "read-only"),
    ({"resource_type": SERVER}, 400, "resource_type", "not a search parameter"),
    ({"_source": {"includes": [], "include": []}}, 400, "_source", "includes"),
])
def test_refusals_name_the_rule(body, status, where, words):
    error = refused(body)
    assert (error.status, error.field) == (status, where), error.message
    assert words in error.message


def test_depth_and_clause_bounds():
    deep: dict = {"match_all": {}}
    for _ in range(sq.MAX_DEPTH + 1):
        deep = {"bool": {"must": [deep]}}
    assert "deeper than" in refused({"query": deep}).message
    many = {"bool": {"should": [{"term": {"status": str(i)}}
                                for i in range(sq.MAX_CLAUSES + 1)]}}
    assert f"more than {sq.MAX_CLAUSES} clauses" in refused({"query": many}).message
    req({"from": 9990, "size": 10})


def test_live_search_bodies_are_told_apart():
    assert sq.is_live_search({"resource_types": [SERVER]})
    assert sq.is_live_search({"page_size": 5, "query": {}})
    for body in ({}, {"query": {"match_all": {}}}, {"type": SERVER, "all_projects": True},
                 {"sort": ["name"]}, [], None):
        assert not sq.is_live_search(body)


def test_source_filtering_as_elasticsearch_cuts():
    doc = {"name": "a", "status": "ACTIVE", "image": {"id": "i", "name": "n"},
           "attachments": [{"server_id": "d1", "device": "vda"}]}
    assert filter_source(doc, None) == doc
    assert filter_source(doc, ("name", "image")) == {"name": "a", "image": doc["image"]}
    assert filter_source(doc, ("image.id", "attachments.device")) == {
        "image": {"id": "i"}, "attachments": [{"device": "vda"}]}
    assert filter_source(doc, ("stat*",)) == {"status": "ACTIVE"}
    assert filter_source(doc, None, ("image", "attachments")) == {"name": "a",
                                                                  "status": "ACTIVE"}


def _filter_source_reference(document, includes, excludes=()):
    """filter_source as first written (a copy of every kept object, fnmatchcase per
    path and pattern): the faster one must cut exactly as it did."""
    def match(path, patterns):
        return any(fnmatch.fnmatchcase(path, p) for p in patterns)

    def walk(node, prefix, inside):
        if isinstance(node, list):
            items = [walk(i, prefix, inside) for i in node]
            return [i for i in items if i is not DROP and (inside or i != {})]
        if not isinstance(node, dict):
            return node if inside else DROP
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if match(path, excludes):
                continue
            included = inside or includes is None or match(path, includes)
            kept = walk(value, f"{path}.", included)
            if kept is DROP or (not included and kept in ({}, [])):
                continue
            out[key] = kept
        return out
    DROP = object()
    return walk(document, "", includes is None)


KEYS = st.sampled_from(["a", "b", "ab", "id", "x.y", "*", "[c]"])
DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12)
PATTERNS = st.lists(st.sampled_from(["a", "b", "a.b", "a*", "*.id", "*", "?", "a.*",
                                     "[ab]", "x.y", "x.y.*", "[c]", "b.a.b", ""]),
                    max_size=3).map(tuple)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, DOCUMENTS, max_size=5), st.none() | PATTERNS, PATTERNS)
def test_source_filtering_cuts_as_the_first_version(document, includes, excludes):
    before = json.dumps(document)
    assert filter_source(document, includes, excludes) == \
        _filter_source_reference(document, includes, excludes)
    assert json.dumps(document) == before           # the document is not changed


def test_query_string_field_names():
    assert sq.query_string_fields('web status:ACTIVE "a:b" +(name:x) -_exists_:key_name '
                                  r'OS-EXT-SRV-ATTR\:host:c1 created_at:[2026-01-01T00:00 '
                                  'TO *]') == ["status", "name", "key_name",
                                               "OS-EXT-SRV-ATTR:host", "created_at"]
    assert sq.query_string_fields("*:x") == ["*"]


def test_the_answer_is_searchlights_shape_with_rendered_documents():
    response = {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1,
                                                           "skipped": 0, "failed": 0},
                "hits": {"total": {"value": 2, "relation": "eq"}, "max_score": 1.0,
                         "hits": [
                             {"_index": "g-1", "_id": "d1_USER", "_score": 1.0,
                              "_source": {"id": "d1", "resource_type": SERVER,
                                          "key_name": "k", "sf_role": "user"},
                              "highlight": {"name.text": ["<em>a</em>"]}},
                             {"_index": "g-1", "_id": "bad_USER", "_score": 1.0,
                              "_source": {"id": "bad"}}]},
                "aggregations": {"a": {"buckets": []}}}

    def render(hit):                       # the view: key_name and internals out
        if hit["_id"] == "bad_USER":
            return None                    # withheld
        return {k: v for k, v in hit["_source"].items()
                if k not in ("key_name", "sf_role")}, 7
    out = sq.answer(response, req({"version": True, "_source": ["id"]}), render)
    assert out == {"took": 3, "timed_out": False, "_shards": response["_shards"],
                   "hits": {"total": 2, "max_score": 1.0, "hits": [
                       {"_id": "d1_USER", "_index": "g-1", "_type": SERVER, "_score": 1.0,
                        "_source": {"id": "d1"}, "highlight": {"name.text": ["<em>a</em>"]},
                        "_version": 7}]},
                   "aggregations": {"a": {"buckets": []}}}
