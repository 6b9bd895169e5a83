"""Searchlight's v1 search API on this service (docs/searchlight-api.md): so far
``GET /v1/search/plugins``, ``GET /v1/search/facets`` and ``GET``/``POST
/v1/search`` (its body checked by ``searchlight_query``), in Searchlight's shapes.

The request parsing, the facet listing, the Elasticsearch requests and the answers
are pure functions; ``SearchlightV1`` only asks policy and sends one ``msearch``.

Facets are scoped as live search is (``forwarders.livesearch``, the same
``Searcher``): the caller's role copy (the view's role rule), the caller's project
unless ``all_projects`` is asked by someone ``search:all_projects`` allows, live
resources only; the fields listed are those the role's copy keeps after the
WebSocket view's filters (``Vocabularies.visible``), so an admin-only or filtered
field is neither listed nor aggregated. Options come from terms aggregations on
keyword and boolean fields (nested ones through ``nested`` + ``reverse_nested``, as
Searchlight did); no scripts.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any, Callable, Iterable, Mapping, Sequence

from forwarders.api import searchlight_query
from forwarders.api.searchlight_query import Refused  # noqa: F401 - app.py catches it
from searchlight_forward import search
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.indexer.layout import listener_alias, search_alias
from searchlight_forward.model.documents import ADMIN, DELETED_FIELD, ROLE_FIELD, USER

MAX_TERMS = 100                          # buckets per field (limit_terms 0: this many)
NO_OPTIONS = frozenset({"id", "name", "resource_type"})   # one value per resource
OPTION_TYPES = ("keyword", "boolean")
NOT_LISTED = ("flattened",)             # free-form maps: no field name to offer
TYPE_NAMES = {"keyword": "string", "text": "string"}     # Searchlight's (ES 2) names


# -- parameters ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FacetsRequest:
    types: tuple[str, ...]
    index: str | None = None
    all_projects: bool = False
    include_fields: bool = True
    exclude_options: bool = False
    limit_terms: int = MAX_TERMS


def _flag(params, name: str, default: str) -> bool:
    """As Searchlight reads it: ``true`` in any case is true, anything else false."""
    return str(params.get(name, default)).lower() == "true"


def parse_facets(params, served: Iterable[str]) -> FacetsRequest:
    """``params``: the query string (a webob MultiDict: ``type`` may repeat)."""
    served = sorted(served)
    asked = [t for t in params.getall("type") if t] if "type" in params else []
    for rtype in asked:
        if rtype not in served:
            raise Refused(400, f"Resource type '{rtype[:64]}' is not in the list of "
                          f"enabled plugins", "type")
    raw = params.get("limit_terms", "0")
    try:
        limit = int(raw)
    except ValueError:
        raise Refused(400, "limit_terms param must be an integer", "limit_terms") from None
    if limit < 0:
        raise Refused(400, "limit_terms param must be greater than or equal to 0",
                      "limit_terms")
    return FacetsRequest(
        types=tuple(dict.fromkeys(asked)) or tuple(served),
        index=params.get("index") or None,
        all_projects=_flag(params, "all_projects", "false"),
        include_fields=_flag(params, "include_fields", "true"),
        exclude_options=_flag(params, "exclude_options", "false"),
        limit_terms=MAX_TERMS if limit == 0 else min(limit, MAX_TERMS))


# -- what a role may see ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Facet:
    name: str                    # dotted path
    type: str                    # as Searchlight names it
    nested: bool | None          # inside a nested (True) or object (False) field
    nested_path: str | None      # the nested field to aggregate inside
    options: bool                # offered with terms options


def facet_fields(properties: Mapping[str, Any], visible: Iterable[str]) -> list[Facet]:
    """The facets of a mapping, in its order, restricted to ``visible`` dotted paths
    (a role's copy after the view's filters). Multi-field subfields, unindexed and
    flattened fields are not listed."""
    shown = set(visible)
    found: list[Facet] = []

    def walk(props: Mapping[str, Any], prefix: str, inside: bool | None,
             nested_path: str | None) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if path not in shown or not isinstance(spec, Mapping):
                continue
            kind = spec.get("type", "object")
            if spec.get("properties"):
                is_nested = kind == "nested"
                walk(spec["properties"], f"{path}.", is_nested,
                     path if is_nested else nested_path)
            elif kind in ("object", "nested") or kind in NOT_LISTED \
                    or spec.get("index") is False or spec.get("enabled") is False:
                continue
            else:
                found.append(Facet(path, TYPE_NAMES.get(kind, kind), inside, nested_path,
                                   kind in OPTION_TYPES and path not in NO_OPTIONS))
    walk(properties, "", None, None)
    return found


# -- Elasticsearch ------------------------------------------------------------------

def facets_search(resource_type: str, role: str, project_id: str | None,
                  facets: Sequence[Facet], limit: int, with_options: bool) -> dict:
    """The ``size: 0`` search of one type: the count in scope and, if asked, a terms
    aggregation per option field (``f<i>``, i its place in ``facets``)."""
    scope: list[dict] = [{"term": {ROLE_FIELD: role}},
                         {"term": {"resource_type": resource_type}}]
    if project_id is not None:
        scope.append({"term": {"project_id": project_id}})
    body: dict = {"size": 0, "track_total_hits": True, "query": {"bool": {
        "filter": scope, "must_not": [{"term": {DELETED_FIELD: True}}]}}}
    aggs: dict = {}
    for i, facet in enumerate(facets):
        if not (with_options and facet.options):
            continue
        terms = {"terms": {"field": facet.name, "size": limit}}
        if facet.nested_path:
            terms["aggs"] = {"docs": {"reverse_nested": {}}}
            aggs[f"f{i}"] = {"nested": {"path": facet.nested_path}, "aggs": {"terms": terms}}
        else:
            aggs[f"f{i}"] = terms
    if aggs:
        body["aggs"] = aggs
    return body


def _buckets(agg: Mapping[str, Any] | None, nested: bool) -> list[dict]:
    if not agg:
        return []
    if nested:
        agg = agg.get("terms") or {}
    options = []
    for bucket in agg.get("buckets", []):
        option = {"key": bucket["key"], "doc_count": bucket["doc_count"]}
        if nested:          # documents, not nested objects (Searchlight's __unique_docs)
            option["doc_count"] = bucket["docs"]["doc_count"]
        if "key_as_string" in bucket:
            option["key_as_string"] = bucket["key_as_string"]
        options.append(option)
    return options


def _total(response: Mapping[str, Any]) -> int:
    total = response.get("hits", {}).get("total", 0)
    return total["value"] if isinstance(total, Mapping) else int(total)


def facets_answer(facets: Sequence[Facet], response: Mapping[str, Any],
                  include_fields: bool, with_options: bool) -> dict:
    """One type's entry of Searchlight's facets answer."""
    entry: dict = {"doc_count": _total(response)}
    if include_fields:
        aggs = response.get("aggregations") or {}
        listed = []
        for i, facet in enumerate(facets):
            item: dict = {"name": facet.name, "type": facet.type}
            if facet.nested is not None:
                item["nested"] = facet.nested
            if with_options and facet.options:
                item["options"] = _buckets(aggs.get(f"f{i}"), facet.nested_path is not None)
            listed.append(item)
        entry["facets"] = listed
    return entry


def plugins_answer(groups: Mapping[str, str]) -> dict:
    """Searchlight's plugins answer (its api-ref sample's shape), sorted by type."""
    return {"plugins": [{"type": rtype, "alias-indexing": listener_alias(group),
                         "alias-searching": search_alias(group)}
                        for rtype, group in sorted(groups.items())]}


# -- the endpoints ------------------------------------------------------------------

class SearchlightV1:
    """``searcher``: live search's ``Searcher`` (its client, groups, vocabularies and
    renderer: the same scope and view). ``allowed(rule, caller, target)``: policy."""

    def __init__(self, searcher: Any, allowed: Callable[[str, Any, dict], bool]):
        self.es = searcher.es
        self.groups = dict(searcher.groups)
        self.vocabularies = searcher.vocabularies
        self.role_for = searcher.renderer.role_for
        self.renderer = searcher.renderer
        self._fields: dict[tuple, searchlight_query.Fields] = {}
        self.allowed = allowed
        self._facets: dict[tuple[str, str], list[Facet]] = {}
        self._lock = threading.Lock()

    def _enforce(self, rule: str, caller, project_id: str | None) -> None:
        if not self.allowed(rule, caller, {"project_id": project_id}):
            raise Refused(403, f"policy does not allow {rule}")

    def plugins(self, params, caller) -> dict:
        self._enforce("search:plugins_info", caller, caller.project_id)
        return plugins_answer(self.groups)

    def facets_of(self, resource_type: str, role: str) -> list[Facet]:
        key = (resource_type, role)
        with self._lock:
            if key not in self._facets:
                self._facets[key] = facet_fields(
                    self.vocabularies.mappings[resource_type],
                    self.vocabularies.visible(resource_type, role))
            return self._facets[key]

    def facets(self, params, caller) -> dict:
        request = parse_facets(params, self.groups)
        self._enforce("search:facets", caller, caller.project_id)
        # As Searchlight: all_projects from a caller not allowed it is ignored.
        project = caller.project_id
        if request.all_projects and self.allowed("search:all_projects", caller,
                                                 {"project_id": None}):
            project = None
        role = self.role_for(ADMIN if caller.admin_copy else USER)
        types = [t for t in request.types
                 if request.index is None or search_alias(self.groups[t]) == request.index]
        with_options = not request.exclude_options
        listed = {t: self.facets_of(t, role) if request.include_fields else []
                  for t in types}
        searches: list[dict] = []
        for rtype in types:
            searches.append({"index": search_alias(self.groups[rtype]),
                             "ignore_unavailable": True})
            searches.append(facets_search(rtype, role, project, listed[rtype],
                                          request.limit_terms, with_options))
        responses = self.es.msearch(searches=searches)["responses"] if searches else []
        answer = {}
        for rtype, response in zip(types, responses):
            if "error" in response:
                raise RuntimeError(f"facets of {rtype}: {response['error']}")
            answer[rtype] = facets_answer(listed[rtype], response,
                                          request.include_fields, with_options)
        return answer

    # -- GET/POST /v1/search ----------------------------------------------------------

    def fields_for(self, role: str, types: tuple[str, ...]) -> searchlight_query.Fields:
        key = (role, tuple(sorted(types)))
        with self._lock:
            if key not in self._fields:
                if len(self._fields) >= 256:       # one per set of types asked
                    self._fields.clear()
                v = self.vocabularies
                self._fields[key] = searchlight_query.Fields.build(
                    v.mappings, v.admin_only, v.filters, role, key[1])
            return self._fields[key]

    def render(self, hit: dict) -> tuple[dict, int] | None:
        """A hit's stored role copy as the view serves it (None: withheld)."""
        shared = self.renderer.shared_envelope(Entry(hit.get("_index", ""), 0,
                                                     hit.get("_seq_no") or 0,
                                                     hit.get("_source") or {}))
        if shared is None or shared[0].document is None:
            return None
        return shared[0].document, shared[0].version

    def search(self, body, caller) -> dict:
        """Searchlight's search: ``body`` is the request's JSON."""
        self._enforce("search:query", caller, caller.project_id)
        role = self.role_for(ADMIN if caller.admin_copy else USER)
        request = searchlight_query.parse(body, self.groups, search_alias,
                                          lambda types: self.fields_for(role, types))
        # As Searchlight: all_projects from a caller not allowed it is ignored.
        project = caller.project_id
        if request.all_projects and self.allowed("search:all_projects", caller,
                                                 {"project_id": None}):
            project = None
        if not request.types:
            return searchlight_query.answer({}, request, self.render)
        try:
            response = self.es.msearch(searches=[
                {"index": ",".join(request.indices), "ignore_unavailable": True},
                request.es_body(role, project)])["responses"][0]
        except search.BadRequestError:     # refused as a whole (not in responses)
            response = {"error": "bad request", "status": 400}
        if "error" in response:
            if response.get("status") == 400:
                raise Refused(400, "Query malformed or search parse failure, please "
                                   "check the syntax", "query")
            raise RuntimeError(f"search: {response['error']}")
        return searchlight_query.answer(response, request, self.render)


def is_live_search(raw: bytes) -> bool:
    """Is this ``POST /v1/search`` body live search's (docs/searchlight-api.md)?"""
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return False
    return searchlight_query.is_live_search(body)
