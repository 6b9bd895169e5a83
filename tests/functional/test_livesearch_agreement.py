"""The live search evaluator agrees with Elasticsearch (or OpenSearch) itself.

Random documents are indexed with a mapping of every queryable type; Hypothesis
draws queries of the subset; for each, the ids the server returns must be exactly
those ``Query.matches`` accepts. The server is the oracle: nothing here computes the
expected set with our code.
"""
from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from forwarders.livesearch.query import Vocabulary, field_types, parse
from tests.conftest import RUN

MAPPING = {
    "id": {"type": "keyword"}, "name": {"type": "keyword"}, "status": {"type": "keyword"},
    "ram": {"type": "integer"}, "size": {"type": "long"}, "locked": {"type": "boolean"},
    "created_at": {"type": "date"}, "tags": {"type": "keyword"},
    "flavor": {"properties": {"vcpus": {"type": "integer"}, "name": {"type": "keyword"}}},
}
STATUSES = ["ACTIVE", "ERROR", "BUILD", "active", ""]
NAMES = ["web-1", "web-10", "web-2", "db", "Web-1", "wéb", "a b", ""]
DATES = ["2026-03-02T12:00:01Z", "2026-03-02T12:00:01.123456Z", "2026-03-02",
         "2026-03-01T23:59:59.999Z", "2026-03-02T13:00:01+01:00", 1772452801000,
         # what ES also reads: four digits are a year, other digits milliseconds,
         # partial dates and times, offsets without a colon or minutes
         "2026", 2026, "2026-03", "2026-03-02T12", "2026-03-02T12:30Z",
         "2026-03-02T13:00:01+0100", "2026-03-02T13+01", "1000", 999, "20260101"]
DOCS = 160


def random_document(rng: random.Random, i: int) -> dict:
    doc = {"id": f"r{i}"}
    pick = rng.random
    if pick() < 0.8:
        doc["status"] = rng.choice(STATUSES + [None, ["ACTIVE", "BUILD"]])
    if pick() < 0.8:
        doc["name"] = rng.choice(NAMES)
    if pick() < 0.8:
        doc["ram"] = rng.choice([0, 512, 2048, 4096, -1, "2048", 2048.0, None, [512, 4096]])
    if pick() < 0.6:
        doc["size"] = rng.choice([0, 2 ** 40, 10, 5.0, None])
    if pick() < 0.7:
        doc["locked"] = rng.choice([True, False, "true", "false", None])
    if pick() < 0.7:
        doc["created_at"] = rng.choice(DATES + [None])
    if pick() < 0.6:
        doc["tags"] = rng.sample(["prod", "web", "db", "blue"], k=rng.randint(0, 3))
    if pick() < 0.6:
        flavor = {}
        if pick() < 0.8:
            flavor["vcpus"] = rng.choice([1, 2, 4, None])
        if pick() < 0.8:
            flavor["name"] = rng.choice(["m1.small", "m1.large"])
        doc["flavor"] = rng.choice([flavor, [flavor, {"vcpus": 8}]])
    return doc


KEYWORDS = {"status": STATUSES + ["BUILD"], "name": NAMES + ["web", "w"],
            "tags": ["prod", "web", "x"], "flavor.name": ["m1.small", "m1.large", "m1"],
            "id": ["r1", "r2", "r10"]}
INTEGERS = {"ram": [0, 512, 2048, 4096, -1, 2047], "size": [0, 10, 2 ** 40, 5],
            "flavor.vcpus": [1, 2, 4, 8]}
BOUND_DATES = ["2026-03-02", "2026-03-02T12:00:01Z", "2026-03-02T12:00:01.123Z",
               "2026-03-02T12:00:01.124Z", "2026-03-01T23:59:59.999Z", 1772452801000,
               "2026", 2026, "2026-03", "2026-03-02T12", "2026-03-02T12:00",
               "2026-03-02T13:00:01+0100", 999, 20260101, "1000"]

keyword_field = st.sampled_from(sorted(KEYWORDS))
integer_field = st.sampled_from(sorted(INTEGERS))


def _range(field_values):
    field, values = field_values
    bound = st.sampled_from(values)
    return st.tuples(
        st.sampled_from([None, "gt", "gte"]), st.sampled_from([None, "lt", "lte"]),
        bound, bound).filter(lambda t: t[0] or t[1]).map(
        lambda t: {"range": {field: {k: v for k, v in ((t[0], t[2]), (t[1], t[3])) if k}}})


# Every form Elasticsearch defines (integers, negative, percentages in 32-bit
# floats, conditions), against small and empty should lists.
MINIMUMS = st.one_of(st.integers(-3, 3), st.sampled_from([
    "1", "+2", "-1", "50%", "-50%", "66%", "-34%", "70%", "33%", "100%", "2<50%",
    "1<-1", "2<-25% 3<1", "0<100%"]))

leaf = st.one_of(
    keyword_field.flatmap(lambda f: st.sampled_from(KEYWORDS[f]).map(
        lambda v: {"term": {f: v}})),
    keyword_field.flatmap(lambda f: st.lists(st.sampled_from(KEYWORDS[f]), min_size=1,
                                             max_size=3).map(lambda v: {"terms": {f: v}})),
    keyword_field.flatmap(lambda f: st.sampled_from([v for v in KEYWORDS[f] if v]).map(
        lambda v: {"prefix": {f: v[:2]}})),
    keyword_field.flatmap(lambda f: st.sampled_from(KEYWORDS[f]).map(
        lambda v: {"match": {f: v}})),
    integer_field.flatmap(lambda f: st.sampled_from(INTEGERS[f]).map(
        lambda v: {"term": {f: v}})),
    st.sampled_from(sorted(INTEGERS.items())).flatmap(_range),
    st.sampled_from([("name", NAMES), ("status", STATUSES)]).flatmap(_range),
    _range(("created_at", BOUND_DATES)),
    st.booleans().map(lambda b: {"term": {"locked": b}}),
    st.sampled_from(sorted(field_types(MAPPING)) ).filter(lambda f: f != "flavor").map(
        lambda f: {"exists": {"field": f}}),
)
queries = st.recursive(leaf, lambda inner: st.fixed_dictionaries({}, optional={
    "must": st.lists(inner, max_size=2), "filter": st.lists(inner, max_size=2),
    "should": st.lists(inner, max_size=3), "must_not": st.lists(inner, max_size=2),
    "minimum_should_match": MINIMUMS}).map(lambda b: {"bool": b}), max_leaves=6)


@pytest.fixture(scope="module")
def corpus(es):
    index = f"{RUN}-livesearch-{uuid.uuid4().hex[:6]}"
    es.indices.create(index=index, mappings={"dynamic": False, "properties": MAPPING})
    rng = random.Random(20261128)
    docs = {f"r{i}": random_document(rng, i) for i in range(DOCS)}
    for doc_id, doc in docs.items():
        es.index(index=index, id=doc_id, document=doc)
    es.indices.refresh(index=index)
    yield index, docs
    es.indices.delete(index=index, ignore_unavailable=True)


VOCABULARY = Vocabulary.build([MAPPING], [set(field_types(MAPPING))])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(raw=queries)
def test_matches_agrees_with_the_search_server(es, corpus, raw):
    index, docs = corpus
    query = parse({"query": raw}, VOCABULARY)
    resp = es.search(index=index, query=query.root.raw, size=DOCS, _source=False)
    found = {hit["_id"] for hit in resp["hits"]["hits"]}
    ours = {doc_id for doc_id, doc in docs.items() if query.matches(doc)}
    assert ours == found, (raw, sorted(ours ^ found)[:5])
