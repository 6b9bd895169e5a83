"""The hidden-field property, extended to Searchlight's DSL (issue 26): no query,
sort, aggregation, highlight or ``_source`` a caller writes reveals a field or a
document the caller's role cannot see (docs/searchlight-api.md, "The language").

Hypothesis writes ``POST /v1/search`` bodies and sends them, as a member (demo) or
an admin with ``all_projects``, to the real API over the real index. The fields
hidden from a member: Nova's admin-only host fields (not in the user copy), Cinder's
in a search of volumes, the field the view's filter removes (``key_name``, in both
copies) and the internal role and tombstone fields; from an admin, the last two.

* ``test_no_answer_holds_...``: bodies over visible fields (queries, sorts,
  aggregations, highlights, ``_source`` with wildcards), nearly all answered.
* ``test_a_hidden_field_or_value_...``: a small body and one probe: a hidden or
  missing field in one place a field can be named, or a value only a hidden field
  or another project holds, searched for in "every field".

For each body:

* **Refused**: the error names where (``error.field``, a path into the body; not
  for Elasticsearch's own refusal, which cannot say) and why.
* **Answered**: nothing in the answer (hits, highlights, sort values, aggregation
  buckets) holds a hidden field's name or value, a document of another project,
  another role's copy or a deleted resource.
* **Indistinguishable**: the same body with every hidden field, and every value only
  hidden fields or other projects hold, renamed to ones that exist nowhere gets the
  same answer: the same error word for word (names swapped back), or the same hits,
  documents, highlights and aggregations. So no refusal tells a hidden field from a
  missing one, and no answer depends on a value the caller cannot see.

The oracle is the input: hidden values and the other project's documents carry
markers (``HOSTSECRET``, ``KEYSECRET``, ``ALTONLY``) that may appear in no answer,
and the caller's own live documents are known by id. Checked against broken copies
of the checker (a user copy not redacted, field names inside a query string not
checked, the project filter dropped, hits not rendered, highlight, sort or
aggregation fields not checked, "every field" meaning every field): each fails.
"""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st

from forwarders.api.searchlight_query import METRICS
from tests.functional.searchlight_support import FILTERED, HOST, start_api
from tests.functional.websocket_support import SERVER, VOLUME, document_change

pytestmark = pytest.mark.timeout(180)

SEARCH = "/v1/search"
HYPERVISOR = "OS-EXT-SRV-ATTR:hypervisor_hostname"      # admin-only too
VOLUME_HOST = "os-vol-host-attr:host"                   # admin-only (Cinder's plugin)
INTERNAL = ["sf_role", "sf_deleted"]                    # in every stored copy
MISSING = "no_such_field"
MALFORMED = "Query malformed or search parse failure, please check the syntax"
# Hidden from a member; from an admin (admin copy), only what the view removes.
HIDDEN = {"member": [HOST, HYPERVISOR, VOLUME_HOST, FILTERED, *INTERNAL],
          "admin": [FILTERED, *INTERNAL]}
# The member's visible fields by type (visible in every type: servers and volumes).
KEYWORD = ["id", "name", "status", "tags", "project_id", "resource_type", "image.id",
           "OS-EXT-AZ:availability_zone"]
TEXT = ["name.text", "description"]
NUMBER, DATE, BOOLEAN = ["flavor.vcpus"], ["created_at"], ["locked"]
STRINGS = ["ACTIVE", "ERROR", "res-d1", "d2", "web", "server d3", "HOSTSECRET-d1",
           "HOSTSECRET-hd2", "KEYSECRET-d1", "KEYSECRET-d3", "ALTONLY", "altonly1",
           "alttag", "admin"]
VALUES = {**{f: STRINGS for f in KEYWORD + TEXT}, "flavor.vcpus": [1, 2, 4, 7],
          "created_at": ["2026-01-01", "2026-03-01T00:00:00Z"], "locked": [True, False],
          # a hidden field is asked about the values it holds (so a leak would show)
          HOST: ["HOSTSECRET-d1", "HOSTSECRET-d3"], HYPERVISOR: ["HOSTSECRET-hd2"],
          VOLUME_HOST: ["HOSTSECRET-vol"], FILTERED: ["KEYSECRET-d1", "KEYSECRET-d4"],
          "sf_role": ["user", "admin"], "sf_deleted": [True, False]}
MARKERS = ("HOSTSECRET", "KEYSECRET", "ALTONLY", "_ADMIN", "gonesecret")
# Values (and beginnings of them) only in what the caller cannot see -> nowhere.
_KEY = {"KEYSEC": "NOWHEA", "gonesecret": "nowheregone"}
SECRET_VALUES = {"member": {"HOSTSEC": "NOWHEB", "ALTON": "NOWHEC", "alton": "nowhec",
                            "_ADMIN": "_NOWHERE", **_KEY},
                 "admin": _KEY}

# (id, project, status, tag): the member's (demo) own live servers; alt's are ALTONLY
DEMO = [("d1", "ACTIVE", "web"), ("d2", "ACTIVE", "db"), ("d3", "ERROR", "web"),
        ("d4", "SHUTOFF", "prod")]
ALT = [("altonly1", "ALTONLY", "alttag"), ("altonly2", "ALTONLY", "alttag")]


def field(among: list[str], probe: bool = False):
    """A visible field that fits the place, or (a probe) a hidden or missing one."""
    return st.sampled_from(HIDDEN["member"] + [MISSING] if probe else among)


def value(name: str):
    return st.sampled_from(VALUES.get(name, STRINGS))


def _escaped(name: str) -> str:
    return re.sub(r"([:\-/])", r"\\\1", name)


ANY = KEYWORD + TEXT + NUMBER + DATE + BOOLEAN
EXACT = KEYWORD + NUMBER + DATE + BOOLEAN           # sortable, aggregatable


@st.composite
def leaves(draw, probe: bool = False):
    kind = draw(st.sampled_from(["term", "terms", "match", "prefix", "wildcard",
                                 "range", "exists", "query_string", "free_text",
                                 "multi_match", "simple_query_string", "ids"]))
    if kind in ("prefix", "wildcard"):
        f = draw(field(KEYWORD + TEXT, probe))
        start = draw(st.sampled_from(["res-", "AC", "HOSTSEC", "KEYSEC", "ALTON", "we"]))
        return {kind: {f: start + ("*" if kind == "wildcard" else "")}}
    if kind in ("multi_match", "simple_query_string"):
        f, g = draw(field(KEYWORD + TEXT, probe)), draw(field(KEYWORD + TEXT))
        fields = {"fields": [f, g]} if probe else draw(st.sampled_from(
            [{}, {"fields": [f, g]}]))
        return {kind: {"query": draw(st.sampled_from(STRINGS)), **fields}}
    if kind == "free_text" and not probe:        # every field: the visible ones
        v = draw(st.sampled_from(STRINGS))
        text = draw(st.sampled_from([json.dumps(v), v.replace("-", " "), v[:5] + "*"]))
        return {"query_string": {"query": text}}
    if kind == "ids" and not probe:
        return {"ids": {"values": [draw(st.sampled_from(
            ["d1_USER", "d1_ADMIN", "altonly1_USER", "gonesecret_USER", "d1"]))]}}
    f = draw(field(KEYWORD + NUMBER + DATE if kind == "range" else ANY, probe))
    v = draw(value(f))
    if kind == "term":
        return {"term": {f: v}}
    if kind == "terms":
        return {"terms": {f: draw(st.lists(value(f), min_size=1, max_size=3))}}
    if kind == "match":
        return {"match": {f: {"query": v}}}
    if kind == "range":                          # (an order: not renamed soundly)
        if isinstance(v, str):
            v = draw(st.sampled_from(["ACTIVE", "ERROR", "res-d2"]))
        return {"range": {f: {draw(st.sampled_from(["gte", "lt"])): v}}}
    if kind == "exists":
        return {"exists": {"field": f}}
    return {"query_string": {"query": f"{_escaped(f)}:{json.dumps(v)}"}}


queries = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda must, should, must_not, msm: {"bool": {
            "must": must, "should": should, "must_not": must_not,
            "minimum_should_match": msm}},
            st.lists(inner, max_size=2), st.lists(inner, max_size=2),
            st.lists(inner, max_size=1), st.integers(0, 1)),
        st.builds(lambda q: {"constant_score": {"filter": q}}, inner),
        st.builds(lambda qs: {"dis_max": {"queries": qs}}, st.lists(inner, min_size=1,
                                                                    max_size=2))),
    max_leaves=4)


@st.composite
def aggregations(draw, depth: int = 0, probe: bool = False):
    aggs = {}
    for i in range(1 if probe else draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["terms", "cardinality", "min", "max", "missing",
                                     "value_count", "filter", "range"]))
        if kind == "filter":
            agg = {"filter": draw(leaves(probe))}
        elif kind == "range":
            agg = {"range": {"field": draw(field(NUMBER, probe)),
                             "ranges": [{"to": 2}, {"from": 2}]}}
        else:
            agg = {kind: {"field": draw(field(NUMBER + DATE if kind in ("min", "max")
                                              else EXACT, probe))}}
        if depth < 1 and kind not in METRICS and not probe and draw(st.booleans()):
            agg["aggs"] = draw(aggregations(depth + 1))
        aggs[f"a{depth}{i}"] = agg
    return aggs


def _sometimes():
    return st.sampled_from([True, False, False])


def _sources(probe: bool = False):
    patterns = st.lists(st.one_of(field(ANY, probe), st.sampled_from(
        ["*", "OS-EXT-SRV-ATTR:*", "key*", "sf_*", "*host*"])), min_size=1, max_size=2)
    return st.one_of(patterns, st.builds(lambda i, e: {"includes": i, "excludes": e},
                                         patterns, patterns))


@st.composite
def bodies(draw):
    """A body over visible fields, each part present one time in three (so that most
    are answered)."""
    body: dict = {}
    if draw(st.booleans()):
        body["query"] = draw(queries)
    body["type"] = draw(st.sampled_from([SERVER, [SERVER, VOLUME], None]))
    if draw(_sometimes()):
        body["sort"] = [{draw(field(EXACT)): draw(st.sampled_from(["asc", "desc"]))}
                        for _ in range(draw(st.integers(1, 2)))]
    if draw(_sometimes()):
        body["aggs"] = draw(aggregations())
    if draw(_sometimes()):
        body["highlight"] = {"fields": {draw(field(KEYWORD + TEXT)): {}
                                        for _ in range(draw(st.integers(1, 2)))}}
    if draw(_sometimes()):
        body["_source"] = draw(_sources())
    if draw(st.booleans()):
        body["version"] = True
    body["limit"] = 50
    return body


QUERY_PROBES = ["term", "terms", "match", "prefix", "wildcard", "range", "exists",
                "query_string", "multi_match", "simple_query_string"]
AGG_PROBES = ["terms", "cardinality", "min", "missing", "value_count", "range"]
PROBES = (QUERY_PROBES + [f"aggs.{k}" for k in AGG_PROBES + ["filter"]]
          + ["sort", "highlight", "_source"] + ["every field"] * 3)


@st.composite
def probed(draw):
    """A small body over visible fields, and one probe: a hidden or missing field in
    one place where a field is named (a query clause where it decides the hits, a
    sort, an aggregation, a highlight, ``_source``), or a value only a hidden field
    or another project holds, searched for in "every field"."""
    place = draw(st.sampled_from(PROBES))
    f = draw(field([], probe=True))
    body: dict = {"type": draw(st.sampled_from([SERVER, [SERVER, VOLUME], None])),
                  "limit": 50}
    if draw(st.booleans()):
        body["query"] = draw(leaves())
    if draw(_sometimes()):
        body["_source"] = draw(_sources())
    v = draw(value(f))
    query = body.get("query") or {"match_all": {}}
    how = draw(st.sampled_from(["filter", "must_not"]))
    if place in QUERY_PROBES:
        clause = {"term": {f: v}, "terms": {f: [v]}, "match": {f: {"query": v}},
                  "prefix": {f: str(v)[:6]}, "wildcard": {f: str(v)[:6] + "*"},
                  "range": {f: {"gte": v}}, "exists": {"field": f},
                  "query_string": {"query": f"{_escaped(f)}:{json.dumps(v)}"},
                  "multi_match": {"query": str(v), "fields": [f]},
                  "simple_query_string": {"query": str(v), "fields": [f]}}[place]
        body["query"] = {"bool": {"must": [query], how: [{place: clause}]}}
    elif place == "every field":              # the visible ones, never a hidden one
        kind = draw(st.sampled_from(["query_string", "simple_query_string",
                                     "multi_match"]))
        v = draw(st.sampled_from(["KEYSECRET-d1", "KEYSECRET-d4", "HOSTSECRET-d1",
                                  "ALTONLY", "altonly1", "alttag"]))
        text = json.dumps(v) if kind != "multi_match" else str(v)
        body["query"] = {"bool": {"must": [query], how: [{kind: {"query": text}}]}}
    elif place.startswith("aggs."):
        kind = place[5:]
        agg = {"filter": {"term": {f: v}}} if kind == "filter" else \
            {"range": {"field": f, "ranges": [{"to": 2}]}} if kind == "range" else \
            {kind: {"field": f}}
        body["aggs"] = {**body.get("aggs", {}), "probe": agg}
    elif place == "sort":
        body["sort"] = [{f: draw(st.sampled_from(["asc", "desc"]))},
                        *body.get("sort", [])]
    elif place == "highlight":       # and a query term that would light it up
        body["highlight"] = {"fields": {f: {}}}
        body["query"] = {"bool": {"must": [query], "should": [{"term": {"name": v}}]}}
    else:
        body["_source"] = draw(st.sampled_from([[f], {"includes": [f]},
                                                {"excludes": [f]}]))
    return body


def renamed(node, names: dict[str, str]):
    """``node`` with every hidden field name (plain or escaped in a query string)
    replaced by one that does not exist."""
    if isinstance(node, dict):
        return {renamed(k, names): renamed(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [renamed(v, names) for v in node]
    if isinstance(node, str):
        for hidden, missing in names.items():
            node = node.replace(hidden, missing).replace(_escaped(hidden), missing)
        return node
    return node


def strings(node):
    """Every string in a body, keys included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def named(body: dict, hidden: str) -> bool:
    return any(hidden in text or _escaped(hidden) in text for text in strings(body))


@pytest.fixture
def stack(config_file, names, keystone, es, writer):
    """The API over: demo's live servers (hidden values marked), a deleted one, a
    volume with an admin-only field, and alt's servers (marked ALTONLY)."""
    projects = {u: keystone.users[u]["project_id"] for u in ("demo", "alt")}
    writer.changes(
        [document_change(rid, projects["demo"], 1, status=status, tags=[tag],
                         locked=rid == "d1", key_name=f"KEYSECRET-{rid}",
                         description=f"server {rid}", created_at="2026-03-01T00:00:00Z",
                         flavor={"vcpus": int(rid[1:])}, image={"id": "img"},
                         **{HOST: f"HOSTSECRET-{rid}", HYPERVISOR: f"HOSTSECRET-h{rid}"})
         for rid, status, tag in DEMO]
        + [document_change(rid, projects["alt"], 1, status=status, tags=[tag],
                           description="ALTONLY", flavor={"vcpus": 7},
                           **{HOST: "HOSTSECRET-alt"}) for rid, status, tag in ALT]
        + [document_change("gonesecret", projects["demo"], 1, status="ACTIVE",
                           **{HOST: "HOSTSECRET-gone"})])
    writer.changes([document_change("gonesecret", projects["demo"], 2, deleted=True)])
    writer.changes([document_change("v1", projects["demo"], 1, rtype=VOLUME,
                                    status="in-use", **{VOLUME_HOST: "HOSTSECRET-vol"})])
    api = start_api(config_file, names, keystone)
    tokens = {"member": keystone.token("demo"), "admin": keystone.token("admin")}
    yield api, tokens
    api.stop()


def hidden_from(who: str, types) -> list[str]:
    """What ``who`` may not name searching ``types``: a Cinder admin-only field is
    only hidden in a search of volumes (a server search may name it, as any field
    of the index's mapping; servers have none)."""
    if who == "member" and types == SERVER:
        return [h for h in HIDDEN[who] if h != VOLUME_HOST]
    return HIDDEN[who]


def assert_no_leak(answer: dict, who: str) -> None:
    text = json.dumps(answer)
    for hidden in HIDDEN[who]:
        assert json.dumps(hidden)[1:-1] not in text, (who, hidden, answer)
    if who == "member":
        for marker in MARKERS:
            assert marker.lower() not in text.lower(), (marker, answer)
        own = {rid for rid, *_ in DEMO} | {"v1"}
        assert answer["hits"]["total"] <= len(own), answer
        for hit in answer["hits"]["hits"]:
            rid, role = hit["_id"].rsplit("_", 1)
            assert rid in own and role == "USER", hit
    else:
        assert "KEYSECRET" not in text and "gonesecret" not in text, answer
        for hit in answer["hits"]["hits"]:
            assert hit["_id"].endswith("_ADMIN"), hit


def assert_names_where(error: dict, status: int, body: dict) -> None:
    assert error["code"] == status and error["title"] and error["message"], error
    if error["message"] == MALFORMED:        # Elasticsearch's own refusal: not where
        return
    where = error.get("field")
    assert isinstance(where, str) and where, error
    assert re.split(r"[.\[]", where)[0] in body, (where, body)


def comparable(answer: dict) -> dict:
    hits = answer["hits"]
    return {"total": hits["total"], "aggregations": answer.get("aggregations"),
            "hits": [(h["_id"], h.get("_source"), h.get("highlight"))
                     for h in hits["hits"]]}


def check(api, token: str, body: dict, who: str) -> None:
    """The property, for one body sent by ``who`` (member or admin)."""
    if who == "admin":
        body = {**body, "all_projects": True}
    resp = api.call("POST", SEARCH, token, body=body)
    assert resp.status_code in (200, 400, 403), (body, resp.text)
    if resp.status_code != 200:
        assert_names_where(resp.json()["error"], resp.status_code, body)
    else:
        assert_no_leak(resp.json(), who)
    # The same body, every hidden field and every value it cannot see renamed to
    # ones that exist nowhere: the same answer, or the body could tell them apart.
    swap = {h: f"zz_missing_{i}" for i, h in enumerate(hidden_from(who, body.get("type")))
            if named(body, h)}
    swap.update({v: n for v, n in SECRET_VALUES[who].items()
                 if any(v in text for text in strings(body))})
    event(f"{who} {resp.status_code}, {'something' if swap else 'nothing'} hidden named")
    if not swap:
        return
    other = api.call("POST", SEARCH, token, body=renamed(body, swap))
    assert other.status_code == resp.status_code, (body, resp.text, other.text)
    if resp.status_code == 200:
        assert comparable(other.json()) == comparable(resp.json()), body
    else:
        assert resp.json() == renamed(other.json(), {n: h for h, n in swap.items()}), \
            (body, resp.text, other.text)


SETTINGS = dict(deadline=None, derandomize=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],  # real servers:
                suppress_health_check=[HealthCheck.function_scoped_fixture,  # no shrinking
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
WHO = st.sampled_from(["member", "member", "admin"])


@settings(max_examples=150, **SETTINGS)
@given(body=bodies(), who=WHO)
def test_no_answer_holds_a_field_or_document_the_role_cannot_see(stack, body, who):
    """Bodies over visible fields, most of them answered: nothing hidden comes back."""
    api, tokens = stack
    check(api, tokens[who], body, who)


@settings(max_examples=300, **SETTINGS)
@given(body=probed(), who=WHO)
def test_a_hidden_field_or_value_anywhere_reads_as_a_missing_one(stack, body, who):
    """One hidden or missing field (or hidden value) in one place: refused as a
    missing field is, word for word, or answered as if it were not there."""
    api, tokens = stack
    check(api, tokens[who], body, who)
