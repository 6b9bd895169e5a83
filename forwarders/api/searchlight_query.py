"""Searchlight's ``GET``/``POST /v1/search`` body, checked and scoped (pure).

Searchlight passed its body to Elasticsearch nearly as it came, inside its RBAC
filters. This module takes the same body (docs/searchlight-api.md) and lets
through only what cannot widen the caller's view:

* **Scope**: the query goes under ``bool.must``, beside filters the caller cannot
  touch (the role copy, the resource types, the caller's project unless an
  admin asked ``all_projects``, no tombstones), as Searchlight's RBAC filters did.
* **Fields**: every field named by a query, a sort, an aggregation, a highlight or
  ``_source`` must be one the role's copy keeps after the view's filters, in every
  resource type searched (``Fields``). A hidden field and a field that does not
  exist get the same answer, word for word (no side channel). Queries that search
  "every field" (``query_string``, ``simple_query_string``, ``multi_match`` without
  ``fields``) get the visible text and keyword fields instead, and the field names
  written inside a ``query_string`` are checked too.
* **No scripts** (``script``, ``script_score``, ``function_score``,
  ``script_fields``, ``runtime_mappings``, scripted aggregations), no lookups of
  other documents (terms lookup, ``more_like_this``), no ``global`` aggregation
  (it escapes the scope: 403, as Searchlight), no ``top_hits`` (documents that
  would bypass the view's renderer).
* **Bounds**: ``from + size`` at most 10,000; query depth, leaf clauses, sort keys,
  aggregations, their depth and the buckets one request may ask for.

Every refusal is a ``Refused`` naming the rule and where (``query.bool.must[0]``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from forwarders.pipeline.probe import field_paths, probe_document
from searchlight_forward.model.documents import ADMIN, DELETED_FIELD, ROLE_FIELD, redact

MAX_WINDOW = 10000          # from + size (Elasticsearch's max_result_window)
DEFAULT_LIMIT = 25          # Searchlight's limit_param_default
MAX_DEPTH = 8               # compound queries inside one another
MAX_CLAUSES = 128           # leaf clauses in one query
MAX_VALUES = 1024           # values in one terms clause
MAX_STRING = 1024           # characters in one value
MAX_SORT = 8                # sort keys
MAX_AGGS = 32               # aggregations in one request
MAX_AGG_DEPTH = 4           # aggregations inside one another
MAX_TERMS_SIZE = 1000       # buckets of one terms aggregation
MAX_BUCKETS = 10000         # buckets one request may ask for (product along a path)
MAX_RANGES = 100            # ranges of a range aggregation, filters of filters
MAX_HIGHLIGHT = 32          # highlighted fields

SCRIPTS = ("script", "script_score", "function_score", "script_fields",
           "runtime_mappings", "scripted_metric", "bucket_script", "bucket_selector",
           "_script")
NO_SCRIPTS = "scripts are refused"
UNKNOWN_FIELD = "unknown field {!r}, or not visible to you"
TEXT = ("text", "match_only_text")
EXACT = ("keyword", "constant_keyword", "wildcard")
NUMBERS = ("integer", "long", "short", "byte", "double", "float", "half_float",
           "scaled_float", "unsigned_long")
AGGREGATABLE = EXACT + NUMBERS + ("boolean", "date", "date_nanos", "ip")
SORTABLE = AGGREGATABLE
STATS = NUMBERS + ("date", "date_nanos")
CONTAINERS = ("object", "nested")


class Refused(ValueError):
    """A request answered with ``status`` (the API's error shape); ``field`` says
    where (a body key or a path inside it)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _bad(where: str, message: str, status: int = 400) -> Refused:
    return Refused(status, f"{where}: {message}", where)


# -- the fields a role may name ---------------------------------------------------

def mapped_fields(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted path -> mapping type (``object``, ``nested`` for containers), multi-field
    subfields included (``name.text``)."""
    found: dict[str, str] = {}
    for name, spec in properties.items():
        if not isinstance(spec, Mapping):
            continue
        path = f"{prefix}{name}"
        kind = spec.get("type", "object")
        found.setdefault(path, kind)
        for sub, sub_spec in (spec.get("fields") or {}).items():
            found.setdefault(f"{path}.{sub}", sub_spec.get("type", "object"))
        if spec.get("properties"):
            for inner, inner_kind in mapped_fields(spec["properties"], f"{path}.").items():
                found.setdefault(inner, inner_kind)
    return found


@dataclasses.dataclass(frozen=True)
class Fields:
    """The fields one caller may name: dotted path -> mapping type."""
    types: Mapping[str, str]

    @classmethod
    def build(cls, mappings: Mapping[str, Mapping[str, Any]],
              admin_only: Mapping[str, Iterable[str]], filters: Sequence[Any],
              role: str, searched: Iterable[str]) -> "Fields":
        """``mappings``: every served type's properties (one index may hold several:
        a field mapped by one plugin is indexed in another's documents too);
        ``searched``: the types asked. A field is kept if the role's copy of every
        type searched keeps it after the view's ``filters``."""
        union: dict[str, Any] = {}
        for props in mappings.values():
            _merge(union, props)
        table = mapped_fields(union)
        allowed: set[str] | None = None
        for rtype in searched:
            patterns = tuple(admin_only.get(rtype, ()))
            document = probe_document(union, patterns)
            if role != ADMIN:
                document = redact(document, patterns)
            for f in filters:
                document = f.apply(rtype, document)
            seen: set[str] = set()
            for path in field_paths(document):
                parts = path.split(".")
                seen.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            allowed = seen if allowed is None else allowed & seen
        allowed = allowed or set()
        types = {}
        for path, kind in table.items():
            parent = path.rsplit(".", 1)[0]
            subfield = parent != path and table.get(parent, "object") not in CONTAINERS
            if path in allowed or (subfield and parent in allowed):
                types[path] = kind
        return cls(types)

    def kind(self, name: Any, where: str) -> str:
        """The field's type; the same refusal for an unknown and a hidden field."""
        kind = self.types.get(name) if isinstance(name, str) else None
        if kind is None:
            raise _bad(where, UNKNOWN_FIELD.format(str(name)[:128]))
        return kind

    def check(self, name: Any, where: str, usable: Sequence[str] | None = None,
              what: str = "") -> str:
        kind = self.kind(name, where)
        if usable is not None and kind not in usable:
            raise _bad(where, f"field {name!r} is {kind}; {what or 'this'} takes "
                              f"{', '.join(usable)} fields")
        return kind

    def searchable(self) -> list[str]:
        """The text and keyword fields outside nested ones: what "every field" is."""
        return list(self._searchable)

    @functools.cached_property
    def _searchable(self) -> tuple[str, ...]:
        # Worked out once per Fields (SearchlightV1 keeps one per role and types).
        nested = [p for p, k in self.types.items() if k == "nested"]
        return tuple(sorted(p for p, k in self.types.items() if k in TEXT + EXACT
                            and not any(p.startswith(n + ".") for n in nested)))


def _merge(into: dict, props: Mapping[str, Any]) -> None:
    for name, spec in props.items():
        if not isinstance(spec, Mapping):
            continue
        if name not in into:
            into[name] = json.loads(json.dumps(spec))
        elif spec.get("properties") and isinstance(into[name], dict):
            _merge(into[name].setdefault("properties", {}), spec["properties"])


# -- the request ------------------------------------------------------------------

KNOWN = ("query", "type", "index", "offset", "from", "limit", "size", "sort",
         "_source", "highlight", "aggregations", "aggs", "all_projects", "version")
LIVE_SEARCH = ("resource_types", "page_size")


def is_live_search(body: Any) -> bool:
    """Live search's body (docs/websocket.md) rather than Searchlight's: it has a
    key only live search takes."""
    return isinstance(body, Mapping) and any(k in body for k in LIVE_SEARCH)


@dataclasses.dataclass(frozen=True)
class Request:
    types: tuple[str, ...]           # resource types searched
    indices: tuple[str, ...]         # search aliases
    body: dict                       # the caller's part: query, sort, highlight, aggs...
    offset: int
    limit: int
    includes: tuple[str, ...] | None     # None: every field; _source patterns
    excludes: tuple[str, ...]
    source: bool                     # False: no _source in the hits
    version: bool
    all_projects: bool

    def es_body(self, role: str, project_id: str | None) -> dict:
        """The search Elasticsearch runs: the caller's query inside the scope."""
        scope: list[dict] = [{"term": {ROLE_FIELD: role}},
                             {"terms": {"resource_type": list(self.types)}}]
        if project_id is not None:
            scope.append({"term": {"project_id": project_id}})
        body = dict(self.body)
        body["query"] = {"bool": {"must": [self.body.get("query") or {"match_all": {}}],
                                  "filter": scope,
                                  "must_not": [{"term": {DELETED_FIELD: True}}]}}
        body.update({"from": self.offset, "size": self.limit, "track_total_hits": True})
        return body


def _types(value: Any, served: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refused(400, "type: a resource type or a list of them", "type")
    for rtype in value:
        if rtype not in served:
            raise Refused(400, f"Resource type '{rtype[:64]}' is not in the list of "
                               f"enabled plugins", "type")
    return tuple(dict.fromkeys(value))


def _int(body: Mapping[str, Any], names: tuple[str, str], default: int) -> int:
    given = [n for n in names if n in body]
    if len(given) > 1:
        raise Refused(400, f"Provide '{names[0]}' or '{names[1]}', but not both",
                      names[1])
    if not given:
        return default
    name, value = given[0], body[given[0]]
    if isinstance(value, bool):
        raise Refused(400, f"{name} param must be an integer", name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Refused(400, f"{name} param must be an integer", name) from None
    if isinstance(value, float) and value != number:
        raise Refused(400, f"{name} param must be an integer", name)
    if number < 0:
        raise Refused(400, f"{name} param must be greater than or equal to 0", name)
    return number


def parse(body: Any, groups: Mapping[str, str], search_alias: Callable[[str], str],
          fields_for: Callable[[tuple[str, ...]], Fields]) -> Request:
    """A checked ``Request`` from Searchlight's body. ``groups``: served resource type
    -> its resource group; ``fields_for(types)``: the fields the caller may name
    when searching those types."""
    if not isinstance(body, Mapping):
        raise Refused(400, "body: a JSON object", "body")
    for name in ("self", "schema"):
        if name in body:
            raise Refused(403, f"Attribute '{name}' is read-only.", name)
    for name in body:
        if name in SCRIPTS:
            raise _bad(name, NO_SCRIPTS)
    unknown = sorted(set(body) - set(KNOWN))
    if unknown:
        raise Refused(400, f"{unknown[0][:64]}: not a search parameter (known: "
                           f"{', '.join(KNOWN)})", unknown[0][:64])
    served = sorted(groups)
    # As Searchlight: no type (absent, null or empty: `openstack search query`
    # without --type posts null) is every type; likewise no index.
    types = _types(body["type"], served) if body.get("type") else tuple(served)
    if body.get("index"):
        index = body["index"]
        index = [index] if isinstance(index, str) else index
        if not isinstance(index, list) or not all(isinstance(i, str) for i in index):
            raise Refused(400, "index: an index name or a list of them", "index")
        aliases = {search_alias(g) for g in groups.values()}
        for name in index:
            if name not in aliases:
                raise Refused(400, f"Index '{name[:64]}' is not in the list of enabled "
                                   f"plugins", "index")
        types = tuple(t for t in types if search_alias(groups[t]) in index)
    offset = _int(body, ("offset", "from"), 0)
    limit = _int(body, ("limit", "size"), DEFAULT_LIMIT)
    if offset + limit > MAX_WINDOW:
        raise Refused(400, f"from + size must be at most {MAX_WINDOW} (offset {offset}, "
                           f"limit {limit})", "limit" if "limit" in body else "size")
    if "aggs" in body and "aggregations" in body:
        raise Refused(400, "A request cannot include both 'aggs' and 'aggregations'",
                      "aggregations")
    all_projects = body.get("all_projects", False)
    if not isinstance(all_projects, bool):
        raise Refused(400, "all_projects: true or false", "all_projects")
    version = body.get("version", False)
    if not isinstance(version, bool):
        raise Refused(400, "version: true or false", "version")
    fields = fields_for(types)
    checker = _Checker(fields)
    es: dict = {}
    if body.get("query") is not None:
        es["query"] = checker.query(body["query"], "query", 0)
    if body.get("sort") is not None:
        es["sort"] = _sort(body["sort"], fields)
    if body.get("highlight") is not None:
        es["highlight"] = checker.highlight(body["highlight"], es.get("query"))
    aggs_key = "aggs" if "aggs" in body else "aggregations"
    if body.get(aggs_key) is not None:
        es["aggs"] = _Aggs(checker).check(body[aggs_key], aggs_key)
    source, includes, excludes = _source(body.get("_source", True), fields)
    return Request(types=types, indices=tuple(sorted({search_alias(groups[t])
                                                       for t in types})),
                   body=es, offset=offset, limit=limit, includes=includes,
                   excludes=excludes, source=source, version=version,
                   all_projects=all_projects)


# -- _source ------------------------------------------------------------------------

def _patterns(value: Any, where: str, fields: Fields) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where, "a field name or a list of them")
    for name in value:
        if not any(c in name for c in "*?["):
            fields.kind(name, where)
    return tuple(value)


def _source(value: Any, fields: Fields):
    """(send _source?, includes or None, excludes) from Searchlight's ``_source``."""
    if isinstance(value, bool):
        return value, None, ()
    if isinstance(value, (str, list)):
        return True, _patterns(value, "_source", fields), ()
    if isinstance(value, Mapping):
        keys = set(value)
        if keys - {"include", "includes", "exclude", "excludes"} or \
                {"include", "includes"} <= keys or {"exclude", "excludes"} <= keys:
            raise _bad("_source", "takes includes (or include) and excludes "
                                  "(or exclude)")
        inc = value.get("includes", value.get("include"))
        exc = value.get("excludes", value.get("exclude"))
        return (True, None if inc is None else _patterns(inc, "_source.includes", fields),
                () if exc is None else _patterns(exc, "_source.excludes", fields))
    raise _bad("_source", "true, false, a field name, a list of them or "
                          "{includes, excludes}")


def filter_source(document: Any, includes: Sequence[str] | None,
                  excludes: Sequence[str] = ()) -> Any:
    """A rendered document cut to ``_source``'s patterns, as Elasticsearch cuts it:
    an included object comes whole, an excluded one goes whole. (Not a copy: what is
    kept whole is ``document``'s own objects.)"""
    if includes is None and not excludes:
        return document
    excluded = _matcher(tuple(excludes))
    included_by = _matcher(tuple(includes or ()))

    def walk(node: Any, prefix: str, inside: bool) -> Any:
        if inside and not excludes:         # whole, as the walk below would copy it
            return node
        if isinstance(node, list):
            items = [walk(i, prefix, inside) for i in node]
            return [i for i in items if i is not _DROP and (inside or i != {})]
        if not isinstance(node, dict):
            return node if inside else _DROP
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if excluded(path):
                continue
            included = inside or includes is None or included_by(path)
            kept = walk(value, f"{path}.", included)
            if kept is _DROP or (not included and kept in ({}, [])):
                continue
            out[key] = kept
        return out
    return walk(document, "", includes is None)


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Does a path match any of the fnmatch ``patterns`` (case-sensitive, as
    ``fnmatch.fnmatchcase``)? One regular expression, compiled once per patterns."""
    if not patterns:
        return lambda path: False
    match = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
    return lambda path: match(path) is not None


_DROP = object()


# -- sort ---------------------------------------------------------------------------

SORT_OPTIONS = {"order", "missing", "mode", "unmapped_type"}


def _sort(value: Any, fields: Fields) -> list:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_SORT:
        raise _bad("sort", f"1 to {MAX_SORT} sort keys")
    out = []
    for i, item in enumerate(items):
        where = f"sort[{i}]" if isinstance(value, list) else "sort"
        if isinstance(item, str):
            name, spec = item, None
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, spec),) = item.items()
        else:
            raise _bad(where, "a field name or {field: asc|desc|{order: ...}}")
        if name in SCRIPTS:
            raise _bad(where, NO_SCRIPTS)
        if name not in ("_score", "_doc"):
            fields.check(name, where, SORTABLE, "sort")
        if isinstance(spec, str):
            spec = {"order": spec}
        if spec is not None:
            if not isinstance(spec, Mapping) or set(spec) - SORT_OPTIONS:
                raise _bad(where, f"sort options are {', '.join(sorted(SORT_OPTIONS))}")
            if spec.get("order", "asc") not in ("asc", "desc"):
                raise _bad(where, "order is asc or desc")
            for key, opt in spec.items():
                if not isinstance(opt, (str, int, float)) or isinstance(opt, bool):
                    raise _bad(where, f"{key}: a string or a number")
        out.append(name if spec is None else {name: dict(spec)})
    return out


# -- queries ------------------------------------------------------------------------

_COMMON = {"boost", "_name"}
MATCH_OPTIONS = _COMMON | {"query", "operator", "minimum_should_match", "fuzziness",
                           "prefix_length", "max_expansions", "analyzer",
                           "zero_terms_query", "lenient", "fuzzy_transpositions",
                           "auto_generate_synonyms_phrase_query", "slop",
                           "fuzzy_rewrite", "cutoff_frequency"}
# kind -> (options inside the field's object, the key a bare value stands for,
#          field types it takes (None: any leaf))
FIELD_LEAVES: dict[str, tuple[set, str | None, tuple | None]] = {
    "term": (_COMMON | {"value", "case_insensitive"}, "value", None),
    "match": (MATCH_OPTIONS, "query", None),
    "match_phrase": (_COMMON | {"query", "slop", "analyzer", "zero_terms_query"},
                     "query", None),
    "match_phrase_prefix": (_COMMON | {"query", "slop", "max_expansions", "analyzer",
                                       "zero_terms_query"}, "query", TEXT + EXACT),
    "match_bool_prefix": (MATCH_OPTIONS, "query", TEXT + EXACT),
    "prefix": (_COMMON | {"value", "case_insensitive", "rewrite"}, "value", TEXT + EXACT),
    "wildcard": (_COMMON | {"value", "wildcard", "case_insensitive", "rewrite"}, "value",
                 TEXT + EXACT),
    "regexp": (_COMMON | {"value", "flags", "max_determinized_states",
                          "case_insensitive", "rewrite"}, "value", TEXT + EXACT),
    "fuzzy": (_COMMON | {"value", "fuzziness", "max_expansions", "prefix_length",
                         "transpositions", "rewrite"}, "value", TEXT + EXACT),
    "range": (_COMMON | {"gt", "gte", "lt", "lte", "format", "time_zone", "relation"},
              None, None),
}
TEXT_SEARCH = {
    "multi_match": _COMMON | {"query", "fields", "type", "operator", "tie_breaker",
                              "minimum_should_match", "analyzer", "fuzziness",
                              "prefix_length", "max_expansions", "lenient",
                              "zero_terms_query", "slop", "fuzzy_transpositions",
                              "auto_generate_synonyms_phrase_query"},
    "query_string": _COMMON | {"query", "fields", "default_field", "default_operator",
                               "analyzer", "quote_analyzer", "lenient",
                               "analyze_wildcard", "allow_leading_wildcard",
                               "fuzziness", "fuzzy_max_expansions",
                               "fuzzy_prefix_length", "fuzzy_transpositions",
                               "phrase_slop", "minimum_should_match", "type",
                               "tie_breaker", "time_zone", "enable_position_increments",
                               "auto_generate_synonyms_phrase_query",
                               "max_determinized_states", "escape"},
    "simple_query_string": _COMMON | {"query", "fields", "default_operator", "analyzer",
                                      "flags", "lenient", "minimum_should_match",
                                      "analyze_wildcard", "fuzzy_max_expansions",
                                      "fuzzy_prefix_length", "fuzzy_transpositions",
                                      "auto_generate_synonyms_phrase_query"},
}
COMPOUND = ("bool", "constant_score", "dis_max", "boosting", "nested")
OTHER = ("terms", "exists", "ids", "match_all", "match_none")
SERVED = sorted(FIELD_LEAVES) + sorted(TEXT_SEARCH) + list(COMPOUND) + list(OTHER)
LOOKUPS = ("more_like_this", "percolate", "has_child", "has_parent", "parent_id",
           "wrapper", "terms_set", "pinned", "geo_shape", "shape")
_BOOSTED = re.compile(r"^(.+?)(\^\d+(?:\.\d+)?)?$")


def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _bad(where, f"a value of at most {MAX_STRING} characters")
        return value
    raise _bad(where, "a value is a string, a number, true, false or null")


def _options(body: Mapping[str, Any], allowed: set, where: str) -> dict:
    for key in body:
        if key in SCRIPTS:
            raise _bad(f"{where}.{key}", NO_SCRIPTS)
        if key not in allowed:
            raise _bad(where, f"{str(key)[:64]!r} is not an option here (options: "
                              f"{', '.join(sorted(allowed))})")
    return {k: _scalar(v, f"{where}.{k}") for k, v in body.items()}


class _Checker:
    def __init__(self, fields: Fields):
        self.fields = fields
        self.clauses = 0

    def _count(self, where: str) -> None:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise _bad(where, f"more than {MAX_CLAUSES} clauses in one query")

    def query(self, node: Any, where: str, depth: int) -> dict:
        if not isinstance(node, Mapping) or len(node) != 1:
            raise _bad(where, "a query is an object with one key (its kind)")
        ((kind, body),) = node.items()
        here = f"{where}.{kind}"
        if kind in SCRIPTS:
            raise _bad(here, NO_SCRIPTS)
        if kind in LOOKUPS:
            raise _bad(here, "queries that read other documents or indices are refused")
        if kind in COMPOUND:
            if depth >= MAX_DEPTH:
                raise _bad(here, f"queries nested deeper than {MAX_DEPTH}")
            return {kind: getattr(self, f"_{kind}")(body, here, depth + 1)}
        self._count(here)
        if kind in FIELD_LEAVES:
            return {kind: self._field_leaf(kind, body, here)}
        if kind in TEXT_SEARCH:
            return {kind: self._text_search(kind, body, here)}
        if kind in OTHER:
            return {kind: getattr(self, f"_{kind}")(body, here)}
        raise _bad(here, f"query kind {str(kind)[:64]!r} is not served (served: "
                         f"{', '.join(SERVED)})")

    def _object(self, body: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise _bad(where, "an object")
        for key in body:
            if key in SCRIPTS:
                raise _bad(f"{where}.{key}", NO_SCRIPTS)
        return body

    def _field_leaf(self, kind: str, body: Any, where: str) -> dict:
        body = self._object(body, where)
        if len(body) != 1:
            raise _bad(where, "one field per clause: {field: value} or {field: {...}}")
        ((field, value),) = body.items()
        allowed, key, usable = FIELD_LEAVES[kind]
        ftype = self.fields.check(field, where, usable, kind)
        if ftype in CONTAINERS:
            raise _bad(where, f"field {field!r} is {ftype}; name a field inside it")
        if isinstance(value, Mapping):
            return {field: _options(value, allowed, f"{where}.{field}")}
        if key is None:
            raise _bad(where, f"{{{field!r}: {{gt, gte, lt, lte}}}}")
        return {field: _scalar(value, where)}

    def _fields(self, names: Any, where: str) -> list[str]:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or len(names) > 256:
            raise _bad(where, "a list of field names")
        for name in names:
            if not isinstance(name, str):
                raise _bad(where, "a list of field names")
            self.fields.kind(_BOOSTED.match(name).group(1), where)
        return list(names)

    def _text_search(self, kind: str, body: Any, where: str) -> dict:
        body = self._object(body, where)
        out = _options({k: v for k, v in body.items() if k != "fields"},
                       TEXT_SEARCH[kind], where)
        if "query" not in out or not isinstance(out["query"], (str, int, float)):
            raise _bad(where, "needs a query")
        if "fields" in body:
            out["fields"] = self._fields(body["fields"], f"{where}.fields")
        if "default_field" in out:
            self._fields(out["default_field"], f"{where}.default_field")
        if kind == "query_string":
            for name in query_string_fields(str(out["query"])):
                self.fields.kind(name, f"{where}.query")
        if "fields" not in out and "default_field" not in out:
            out["fields"] = self.fields.searchable() or ["id"]
            out["lenient"] = True
        return out

    def _terms(self, body: Any, where: str) -> dict:
        body = self._object(body, where)
        names = [k for k in body if k not in _COMMON]
        if len(names) != 1:
            raise _bad(where, "one field per clause: {field: [values]}")
        field = names[0]
        self.fields.check(field, where)
        values = body[field]
        if isinstance(values, Mapping):
            raise _bad(where, "a terms lookup reads another document: refused")
        if not isinstance(values, list) or len(values) > MAX_VALUES:
            raise _bad(where, f"a list of at most {MAX_VALUES} values")
        out = {k: _scalar(v, f"{where}.{k}") for k, v in body.items() if k != field}
        out[field] = [_scalar(v, where) for v in values]
        return out

    def _exists(self, body: Any, where: str) -> dict:
        body = self._object(body, where)
        if "field" not in body:
            raise _bad(where, '{"field": name}')
        self.fields.kind(body["field"], where)
        return _options(body, _COMMON | {"field"}, where)

    def _ids(self, body: Any, where: str) -> dict:
        body = self._object(body, where)
        values = body.get("values")
        if not isinstance(values, list) or len(values) > MAX_VALUES or set(body) - (
                _COMMON | {"values"}):
            raise _bad(where, f'{{"values": [at most {MAX_VALUES} ids]}}')
        out = _options({k: v for k, v in body.items() if k != "values"}, _COMMON, where)
        out["values"] = [_scalar(v, where) for v in values]
        return out

    def _match_all(self, body: Any, where: str) -> dict:
        return _options(self._object(body, where), _COMMON, where)

    _match_none = _match_all

    def _clauses(self, items: Any, where: str, depth: int) -> list:
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            raise _bad(where, "a query or a list of queries")
        return [self.query(c, f"{where}[{i}]", depth) for i, c in enumerate(items)]

    def _bool(self, body: Any, where: str, depth: int) -> dict:
        body = self._object(body, where)
        parts = ("must", "filter", "should", "must_not")
        out = _options({k: v for k, v in body.items() if k not in parts},
                       _COMMON | {"minimum_should_match", "disable_coord"}, where)
        for key in parts:
            if key in body:
                out[key] = self._clauses(body[key], f"{where}.{key}", depth)
        return out

    def _constant_score(self, body: Any, where: str, depth: int) -> dict:
        body = self._object(body, where)
        if "filter" not in body:
            raise _bad(where, "needs a filter")
        out = _options({k: v for k, v in body.items() if k != "filter"}, _COMMON, where)
        out["filter"] = self.query(body["filter"], f"{where}.filter", depth)
        return out

    def _dis_max(self, body: Any, where: str, depth: int) -> dict:
        body = self._object(body, where)
        out = _options({k: v for k, v in body.items() if k != "queries"},
                       _COMMON | {"tie_breaker"}, where)
        out["queries"] = self._clauses(body.get("queries", []), f"{where}.queries", depth)
        return out

    def _boosting(self, body: Any, where: str, depth: int) -> dict:
        body = self._object(body, where)
        if not {"positive", "negative"} <= set(body):
            raise _bad(where, "needs positive and negative")
        out = _options({k: v for k, v in body.items() if k not in ("positive", "negative")},
                       _COMMON | {"negative_boost"}, where)
        for key in ("positive", "negative"):
            out[key] = self.query(body[key], f"{where}.{key}", depth)
        return out

    def _nested(self, body: Any, where: str, depth: int) -> dict:
        body = self._object(body, where)
        if "inner_hits" in body:
            raise _bad(f"{where}.inner_hits", "inner hits are refused (they would "
                                              "bypass the view's renderer)")
        if "path" not in body or "query" not in body:
            raise _bad(where, "needs path and query")
        self.fields.check(body["path"], f"{where}.path", ("nested",), "nested")
        out = _options({k: v for k, v in body.items() if k != "query"},
                       _COMMON | {"path", "score_mode", "ignore_unmapped"}, where)
        out["query"] = self.query(body["query"], f"{where}.query", depth)
        return out

    # -- highlight --

    HIGHLIGHT = {"pre_tags", "post_tags", "fragment_size", "number_of_fragments",
                 "type", "require_field_match", "order", "encoder", "no_match_size",
                 "fragmenter", "boundary_scanner", "boundary_chars",
                 "boundary_max_scan", "tags_schema", "phrase_limit",
                 "fragment_offset", "max_analyzed_offset"}

    def _highlight_options(self, body: Mapping, where: str) -> dict:
        out = {}
        for key, value in body.items():
            if key in SCRIPTS:
                raise _bad(f"{where}.{key}", NO_SCRIPTS)
            if key not in self.HIGHLIGHT | {"highlight_query", "matched_fields"}:
                raise _bad(where, f"{str(key)[:64]!r} is not a highlight option")
            if key in ("pre_tags", "post_tags"):
                if not isinstance(value, list) or len(value) > 16:
                    raise _bad(f"{where}.{key}", "a list of strings")
                out[key] = [_scalar(v, f"{where}.{key}") for v in value]
            elif key == "highlight_query":
                self.clauses = 0
                out[key] = self.query(value, f"{where}.highlight_query", 0)
            elif key == "matched_fields":
                out[key] = self._fields(value, f"{where}.matched_fields")
            else:
                out[key] = _scalar(value, f"{where}.{key}")
        return out

    def highlight(self, body: Any, query: dict | None) -> dict:
        """Searchlight's highlight: each field's ``highlight_query`` defaults to the
        caller's query (not the scope), ``require_field_match`` to false."""
        if not isinstance(body, Mapping) or "fields" not in body:
            raise _bad("highlight", "an object with fields")
        out = self._highlight_options({k: v for k, v in body.items() if k != "fields"},
                                      "highlight")
        raw = body["fields"]
        items = list(raw.items()) if isinstance(raw, Mapping) else None
        if isinstance(raw, list) and all(isinstance(i, Mapping) and len(i) == 1
                                         for i in raw):
            items = [next(iter(i.items())) for i in raw]
        if items is None or not items or len(items) > MAX_HIGHLIGHT:
            raise _bad("highlight.fields", f"an object of 1 to {MAX_HIGHLIGHT} "
                                           f"{{field: options}}")
        fields = {}
        for name, spec in items:
            where = f"highlight.fields.{name}"
            self.fields.kind(name, "highlight.fields")
            if not isinstance(spec, Mapping):
                raise _bad(where, "an object of highlight options")
            spec = self._highlight_options(spec, where)
            if query is not None:
                spec.setdefault("highlight_query", query)
            fields[name] = spec
        out["fields"] = fields
        out.setdefault("require_field_match", False)
        return out


def query_string_fields(text: str) -> list[str]:
    """The field names a Lucene query string names (``status:ACTIVE``,
    ``_exists_:host``, ``host\\:x:y``), read conservatively: quoted phrases and
    range brackets are skipped; every other ``:`` follows a field name (an empty
    or odd one, say inside a regular expression, is then refused as unknown). A
    name with a wildcard is returned as written (and refused as unknown)."""
    names: list[str] = []
    state = {"token": "", "exists": False}

    def end_token() -> None:
        if state["token"] and state["exists"]:
            names.append(state["token"].lstrip("+-!"))
            state["exists"] = False
        state["token"] = ""

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            state["token"] += text[i + 1]
            i += 2
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if state["exists"]:
                state["token"] = text[i + 1:j]
            end_token()
            i = j + 1
        elif c in "[{" and not state["token"]:
            j = i + 1
            while j < n and text[j] not in "]}":
                j += 2 if text[j] == "\\" else 1
            end_token()
            i = j + 1
        elif c == ":":
            name = state["token"].lstrip("+-!")
            if name == "_exists_":
                state["exists"] = True
            else:
                names.append(name)
            state["token"] = ""
            i += 1
        elif c.isspace() or c in "()":
            end_token()
            i += 1
        else:
            state["token"] += c
            i += 1
    end_token()
    return names


# -- aggregations -------------------------------------------------------------------

FIELD_METRICS = {"cardinality": AGGREGATABLE, "value_count": AGGREGATABLE,
                 "min": STATS, "max": STATS, "avg": STATS, "sum": STATS,
                 "stats": STATS, "extended_stats": STATS, "missing": None}
METRICS = tuple(k for k in FIELD_METRICS if k != "missing")    # one value, no buckets
METRIC_OPTIONS = {"field", "missing", "format", "precision_threshold", "sigma"}
TERMS_OPTIONS = {"field", "size", "shard_size", "min_doc_count", "shard_min_doc_count",
                 "order", "missing", "include", "exclude", "show_term_doc_count_error",
                 "execution_hint", "collect_mode", "value_type", "format"}
RANGE_OPTIONS = {"field", "ranges", "keyed", "format", "missing", "time_zone"}
AGG_SERVED = sorted(["terms", "filter", "filters", "nested", "reverse_nested", "range",
                     "date_range", *FIELD_METRICS])


class _Aggs:
    def __init__(self, checker: _Checker):
        self.checker = checker
        self.count = 0

    def check(self, aggs: Any, where: str, depth: int = 0, buckets: int = 1) -> dict:
        if not isinstance(aggs, Mapping) or not aggs:
            raise _bad(where, "an object of {name: aggregation}")
        if depth >= MAX_AGG_DEPTH:
            raise _bad(where, f"aggregations nested deeper than {MAX_AGG_DEPTH}")
        out = {}
        for name, spec in aggs.items():
            here = f"{where}.{name}"
            self.count += 1
            if self.count > MAX_AGGS:
                raise _bad(here, f"more than {MAX_AGGS} aggregations")
            if not isinstance(spec, Mapping):
                raise _bad(here, "an object: {kind: {...}, aggs: {...}}")
            subs = [k for k in spec if k in ("aggs", "aggregations")]
            kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
            if len(subs) > 1 or len(kinds) != 1:
                raise _bad(here, "one aggregation kind, and aggs inside it")
            kind = kinds[0]
            if kind == "global":
                raise _bad(f"{here}.global", "a global aggregation escapes the search's "
                                             "scope: refused", 403)
            if kind in SCRIPTS:
                raise _bad(f"{here}.{kind}", NO_SCRIPTS)
            if kind == "top_hits":
                raise _bad(f"{here}.top_hits", "top_hits is refused (its documents "
                                               "would bypass the view's renderer)")
            if kind not in AGG_SERVED:
                raise _bad(here, f"aggregation kind {str(kind)[:64]!r} is not served "
                                 f"(served: {', '.join(AGG_SERVED)})")
            body, width = self._one(kind, spec[kind], f"{here}.{kind}")
            total = buckets * width
            if total > MAX_BUCKETS:
                raise _bad(f"{here}.{kind}", f"more than {MAX_BUCKETS} buckets (sizes "
                                             f"multiply along nested aggregations)")
            item = {kind: body}
            if "meta" in spec:
                item["meta"] = spec["meta"]
            if subs and kind in METRICS:
                raise _bad(f"{here}.{subs[0]}", f"a {kind} aggregation (a metric) "
                                                f"takes no aggregations inside it")
            if subs:
                item["aggs"] = self.check(spec[subs[0]], f"{here}.{subs[0]}",
                                          depth + 1, total)
            out[name] = item
        return out

    def _one(self, kind: str, body: Any, where: str) -> tuple[dict, int]:
        fields = self.checker.fields
        body = self.checker._object(body, where)
        if kind == "terms":
            out = self._field_opts(body, TERMS_OPTIONS, where, AGGREGATABLE, kind)
            size = out.get("size", 10)
            if isinstance(size, bool) or not isinstance(size, int) or \
                    not 1 <= size <= MAX_TERMS_SIZE:
                raise _bad(f"{where}.size", f"a whole number from 1 to {MAX_TERMS_SIZE}")
            if out.get("min_doc_count", 1) in (0, False) or \
                    out.get("shard_min_doc_count", 1) in (0, False):
                raise _bad(f"{where}.min_doc_count", "at least 1 (terms with no "
                                                     "document in scope are refused)")
            return out, size + (1 if "missing" in out else 0)
        if kind in FIELD_METRICS:
            return self._field_opts(body, METRIC_OPTIONS, where, FIELD_METRICS[kind],
                                    kind), 1
        if kind in ("range", "date_range"):
            ranges = body.get("ranges")
            if not isinstance(ranges, list) or not 1 <= len(ranges) <= MAX_RANGES or \
                    not all(isinstance(r, Mapping) and not set(r) - {"from", "to", "key"}
                            for r in ranges):
                raise _bad(f"{where}.ranges", f"1 to {MAX_RANGES} {{from, to, key}}")
            out = self._field_opts({k: v for k, v in body.items() if k != "ranges"},
                                   RANGE_OPTIONS, where, STATS if kind == "range"
                                   else ("date", "date_nanos"), kind)
            out["ranges"] = [{k: _scalar(v, f"{where}.ranges") for k, v in r.items()}
                             for r in ranges]
            return out, len(ranges)
        if kind == "filter":
            self.checker.clauses = 0
            return self.checker.query(body, where, 0), 1
        if kind == "filters":
            out = _options({k: v for k, v in body.items() if k != "filters"},
                           {"other_bucket", "other_bucket_key"}, where)
            raw = body.get("filters")
            self.checker.clauses = 0
            if isinstance(raw, Mapping) and 1 <= len(raw) <= MAX_RANGES:
                out["filters"] = {k: self.checker.query(v, f"{where}.filters.{k}", 0)
                                  for k, v in raw.items()}
            elif isinstance(raw, list) and 1 <= len(raw) <= MAX_RANGES:
                out["filters"] = [self.checker.query(v, f"{where}.filters[{i}]", 0)
                                  for i, v in enumerate(raw)]
            else:
                raise _bad(f"{where}.filters", f"1 to {MAX_RANGES} named queries")
            return out, len(raw) + 1
        if kind == "nested":
            out = _options(body, {"path"}, where)
            fields.check(out.get("path"), f"{where}.path", ("nested",), "nested")
            return out, 1
        # reverse_nested
        out = _options(body, {"path"}, where)
        if "path" in out:
            fields.check(out["path"], f"{where}.path", ("nested",), "reverse_nested")
        return out, 1

    def _field_opts(self, body: Mapping, allowed: set, where: str,
                    usable: Sequence[str] | None, kind: str) -> dict:
        if "field" not in body:
            raise _bad(where, "needs a field (scripts are refused)")
        plain = {k: v for k, v in body.items() if k not in ("order", "include", "exclude")}
        out = _options(plain, allowed, where)
        self.checker.fields.check(out["field"], f"{where}.field",
                                  usable or AGGREGATABLE, kind)
        for key in ("order", "include", "exclude"):
            if key in body:
                if key not in allowed:
                    raise _bad(where, f"{key!r} is not an option here")
                value = body[key]
                text = json.dumps(value)
                if len(text) > 4 * MAX_STRING or "script" in text:
                    raise _bad(f"{where}.{key}", NO_SCRIPTS if "script" in text
                               else "too long")
                out[key] = value
        return out


# -- the answer ---------------------------------------------------------------------

def answer(response: Mapping[str, Any], request: Request,
           render: Callable[[Mapping[str, Any]], tuple[dict, int] | None]) -> dict:
    """Searchlight's answer from Elasticsearch's: each hit's ``_source`` is
    ``render(hit)`` (the view's document of the stored role copy, and its version;
    None: withheld, and left out)."""
    hits_in = response.get("hits") or {}
    total = hits_in.get("total", 0)
    hits = []
    for hit in hits_in.get("hits", []):
        rendered = render(hit)
        if rendered is None:
            continue
        document, version = rendered
        source = hit.get("_source") or {}
        out = {"_id": hit.get("_id"), "_index": hit.get("_index"),
               "_type": source.get("resource_type"), "_score": hit.get("_score")}
        if request.source:
            out["_source"] = filter_source(document, request.includes, request.excludes)
        if "highlight" in hit:
            out["highlight"] = hit["highlight"]
        if request.version:
            out["_version"] = version
        if "sort" in hit:
            out["sort"] = hit["sort"]
        hits.append(out)
    result = {"took": response.get("took", 0), "timed_out": response.get("timed_out", False),
              "_shards": response.get("_shards", {"total": 0, "successful": 0,
                                                  "skipped": 0, "failed": 0}),
              "hits": {"total": total["value"] if isinstance(total, Mapping) else total,
                       "max_score": hits_in.get("max_score"), "hits": hits}}
    if "aggregations" in response:
        result["aggregations"] = response["aggregations"]
    return result
