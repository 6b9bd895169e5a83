"""The live search query subset on plain data: what is refused, and how documents
match (the agreement with Elasticsearch itself is tests/functional/
test_livesearch_agreement.py)."""
import pytest

from forwarders.livesearch.query import (MAX_CLAUSES, QueryError, Vocabulary, field_types,
                                         parse)

MAPPING = {
    "id": {"type": "keyword"}, "name": {"type": "keyword", "fields": {"text": {"type": "text"}}},
    "status": {"type": "keyword"}, "ram": {"type": "integer"}, "locked": {"type": "boolean"},
    "created_at": {"type": "date"}, "host": {"type": "keyword"}, "tags": {"type": "keyword"},
    "metadata": {"type": "flattened"}, "description": {"type": "text"},
    "flavor": {"properties": {"vcpus": {"type": "integer"}, "name": {"type": "keyword"}}},
    "attachments": {"type": "nested", "properties": {"device": {"type": "keyword"}}},
}
ALL = {p for p in field_types(MAPPING)}
USER_VISIBLE = ALL - {"host"}          # host is admin-only: the user copy has no host


def q(body, visible=ALL):
    return parse(body, Vocabulary.build([MAPPING], [visible]))


def refused(body, visible=ALL) -> QueryError:
    with pytest.raises(QueryError) as info:
        q(body, visible)
    return info.value


def test_field_types_follow_objects_multi_fields_and_mark_nested():
    types = field_types(MAPPING)
    assert types["flavor.vcpus"] == "integer" and types["name.text"] == "text"
    assert types["attachments.device"] == "nested"


@pytest.mark.parametrize("body, where", [
    ({"query": {"wildcard": {"name": "*web"}}}, "query.wildcard"),
    ({"query": {"regexp": {"name": ".*"}}}, "query.regexp"),
    ({"query": {"query_string": {"query": "x"}}}, "query.query_string"),
    ({"query": {"match": {"description": "web"}}}, "query.match"),
    ({"query": {"term": {"metadata": "x"}}}, "query.term"),
    ({"query": {"term": {"attachments.device": "vda"}}}, "query.term"),
    ({"query": {"term": {"ram": "big"}}}, "query.term"),
    ({"query": {"range": {"locked": {"gt": True}}}}, "query.range"),
    ({"query": {"range": {"created_at": {"gt": "yesterday"}}}}, "query.range"),
    ({"query": {"prefix": {"ram": "1"}}}, "query.prefix"),
    ({"query": {"terms": {"status": ["A"] * 101}}}, "query.terms"),
    ({"query": {"term": {"status": "x" * 257}}}, "query.term"),
    ({"query": {"bool": {"must": [{"bool": {"must": [{"bool": {"must": [
        {"bool": {"must": [{"bool": {}}]}}]}}]}}]}}}, "query.bool.must[0].bool.must[0]"
                                                      ".bool.must[0].bool.must[0].bool"),
    ({"sort": [{"description": "asc"}]}, "sort[0]"),
    ({"sort": [{"name": "up"}]}, "sort[0]"),
    ({"page_size": 201}, "page_size"),
    ({"page_size": True}, "page_size"),
])
def test_refused_with_where(body, where):
    assert refused(body).path == where


def test_too_many_clauses():
    body = {"query": {"bool": {"should": [{"term": {"status": str(i)}}
                                          for i in range(MAX_CLAUSES + 1)]}}}
    assert "more than" in refused(body).message


@pytest.mark.parametrize("clause", [
    {"term": {"host": "h1"}}, {"exists": {"field": "host"}}, {"prefix": {"host": "h"}},
    {"range": {"host": {"gte": "a"}}}, {"terms": {"host": ["h1"]}},
])
def test_a_hidden_field_is_refused_exactly_like_a_field_that_does_not_exist(clause):
    hidden = refused({"query": clause}, USER_VISIBLE)
    kind, body = next(iter(clause.items()))
    missing_clause = {kind: {("field" if kind == "exists" else "no_such_field"):
                             ("no_such_field" if kind == "exists" else v)
                             for k, v in body.items()}}
    missing = refused({"query": missing_clause}, USER_VISIBLE)
    assert hidden.path == missing.path
    assert hidden.message.replace("'host'", "X") == missing.message.replace(
        "'no_such_field'", "X")
    assert refused({"sort": [{"host": "asc"}]}, USER_VISIBLE).message.replace(
        "'host'", "X") == refused({"sort": [{"no_such_field": "asc"}]},
                                  USER_VISIBLE).message.replace("'no_such_field'", "X")


DOC = {"id": "s1", "name": "web-1", "status": "ACTIVE", "ram": 2048, "locked": False,
       "created_at": "2026-03-02T12:00:01.123456Z", "tags": ["prod", "web"],
       "flavor": {"vcpus": 2, "name": "m1.small"}}


@pytest.mark.parametrize("query, expected", [
    (None, True),
    ({"term": {"status": "ACTIVE"}}, True),
    ({"term": {"status": "active"}}, False),            # keyword: exact, case too
    ({"match": {"status": "ACTIVE"}}, True),
    ({"terms": {"tags": ["db", "web"]}}, True),          # any element of an array
    ({"prefix": {"name": "web-"}}, True),
    ({"prefix": {"name": "Web"}}, False),
    ({"range": {"ram": {"gte": 2048, "lt": 4096}}}, True),
    ({"range": {"ram": {"gt": 2048}}}, False),
    ({"term": {"flavor.vcpus": 2}}, True),
    ({"term": {"locked": False}}, True),
    ({"exists": {"field": "host"}}, False),
    ({"range": {"created_at": {"gte": "2026-03-02T12:00:01.123Z"}}}, True),   # ms
    ({"range": {"created_at": {"gt": "2026-03-02T12:00:01.123Z"}}}, False),
    ({"range": {"created_at": {"lt": "2026-03-03"}}}, True),
    ({"range": {"name": {"gte": "web", "lt": "wec"}}}, True),
    ({"bool": {"should": [{"term": {"status": "ERROR"}}, {"term": {"ram": 2048}}]}}, True),
    ({"bool": {"should": [{"term": {"status": "ERROR"}}]}}, False),
    ({"bool": {"filter": [{"term": {"ram": 2048}}],
               "should": [{"term": {"status": "ERROR"}}]}}, True),   # should optional
    ({"bool": {"filter": [{"term": {"ram": 2048}}], "minimum_should_match": 1,
               "should": [{"term": {"status": "ERROR"}}]}}, False),
    ({"bool": {"must_not": [{"term": {"status": "ACTIVE"}}]}}, False),
    ({"bool": {}}, True),
])
def test_matches(query, expected):
    body = {} if query is None else {"query": query}
    assert q(body).matches(DOC) is expected


def test_the_dsl_is_always_inside_the_askers_scope():
    query = q({"query": {"term": {"status": "ACTIVE"}}, "sort": [{"name": "desc"}]})
    dsl = query.dsl("user", ["OS::Nova::Server"], "p1")
    assert dsl["bool"]["filter"][:3] == [{"term": {"sf_role": "user"}},
                                         {"terms": {"resource_type": ["OS::Nova::Server"]}},
                                         {"term": {"project_id": "p1"}}]
    assert dsl["bool"]["filter"][3] == {"term": {"status": "ACTIVE"}}
    assert dsl["bool"]["must_not"] == [{"term": {"sf_deleted": True}}]
    assert query.sort_dsl()[-1] == {"id": {"order": "asc"}}
    assert q({}).matches(None) is False


@pytest.mark.parametrize("spec, optional, expected", [
    (2, 3, 2), ("2", 3, 2), ("+2", 3, 2), (-1, 3, 2), ("-5", 3, 0), (5, 3, 5),
    ("75%", 4, 3), ("75%", 5, 3), ("-25%", 5, 4), ("-25%", 4, 3),
    ("70%", 10, 7), ("33%", 3, 0),            # Java's float: 3 * 0.33 is 0.99
    ("3<90%", 3, 3), ("3<90%", 4, 3), ("3<90%", 10, 9),
    ("2<-25% 9<-3", 2, 2), ("2<-25% 9<-3", 5, 4), ("2<-25% 9<-3", 12, 9),
    (1, 0, 1), ("-1", 0, 0),
])
def test_minimum_should_match_as_elasticsearch_computes_it(spec, optional, expected):
    from forwarders.livesearch.query import should_minimum
    assert should_minimum(spec, optional) == expected


@pytest.mark.parametrize("spec", [True, 1.5, "", "75 %", " 2", "2<", "<2",
                                  "2<50%  3<1", "a", "99999", [1]])
def test_a_bad_minimum_should_match_is_refused(spec):
    with pytest.raises(QueryError) as caught:
        q({"query": {"bool": {"should": [{"term": {"status": "ERROR"}}],
                              "minimum_should_match": spec}}})
    assert caught.value.path == "query.bool.minimum_should_match"


@pytest.mark.parametrize("query, expected", [
    # DOC: status ACTIVE, ram 2048
    ({"bool": {"should": [{"term": {"status": "ACTIVE"}}, {"term": {"ram": 2048}},
                          {"term": {"status": "ERROR"}}], "minimum_should_match": "100%"}},
     False),
    ({"bool": {"should": [{"term": {"status": "ACTIVE"}}, {"term": {"ram": 2048}},
                          {"term": {"status": "ERROR"}}], "minimum_should_match": "-1"}},
     True),
    ({"bool": {"should": [{"term": {"status": "ACTIVE"}}, {"term": {"ram": 2048}},
                          {"term": {"status": "ERROR"}}], "minimum_should_match": 3}},
     False),
    ({"bool": {"filter": [{"term": {"ram": 2048}}], "minimum_should_match": 1}}, False),
    ({"bool": {"must_not": [{"term": {"status": "ERROR"}}], "minimum_should_match": 1}},
     True),                                   # ES drops it from a must_not-only bool
    ({"bool": {"minimum_should_match": 2}}, True),
])
def test_minimum_should_match_in_queries(query, expected):
    assert q({"query": query}).matches(DOC) is expected


@pytest.mark.parametrize("value, round_up, expected", [
    (2026, False, 1767225600000), ("2026", False, 1767225600000),    # a year
    (999, False, 999), ("20260101", False, 20260101), (1772452801000, False, 1772452801000),
    ("2026-03-02T12", False, 1772452800000),
    ("2026-03-02T12", True, 1772452800000 + 3600000 - 1),
    ("2026-03-02T12:30", True, 1772454600000 + 60000 - 1),
    ("2026-03", True, 1772323200000 + 86400000 - 1),            # 1 March only, as ES
    ("2026-03-02T13:00:01+0100", False, 1772452801000),
    ("2026-03-02T13+01", False, 1772452800000),
    ("2026-02-30", False, None), ("2026-03-02T12:00:00 ", False, None),
])
def test_dates_as_elasticsearch_reads_them(value, round_up, expected):
    from forwarders.livesearch.query import date_millis
    assert date_millis(value, round_up) == expected
