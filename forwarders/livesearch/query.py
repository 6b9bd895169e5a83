"""Live search queries: a safe subset of Elasticsearch's query DSL (pure).

A query is checked against the resource types' mappings (from the plugins) and the
fields the asker's role may see, then has two faces that agree exactly:

* ``dsl()``: the Elasticsearch query, always inside the asker's scope (role copy,
  project, resource types, live resources only) so no clause can widen it;
* ``matches(document)``: the same decision in Python on a role copy after the
  pipeline's filters, for every change the stream brings.

Exact agreement is why the subset is small: ``term``, ``terms``, ``prefix``,
``range``, ``exists`` and ``bool`` over keyword, integer, long, boolean and date
fields (``match`` on a keyword field is ES's exact match too). Full-text fields,
IP, flattened (free-form metadata) and nested fields are refused, as are wildcard,
regexp, query_string and scripts (expensive, or not reproducible exactly).

A field that does not exist and a field the role may not see get the same answer,
so a refusal tells nothing about admin-only fields (no side channel).
"""
from __future__ import annotations

import dataclasses
import datetime
import re
import struct
from typing import Any, Iterable, Mapping, Sequence

from forwarders.pipeline.probe import field_paths, probe_document
from searchlight_forward.model.documents import ADMIN, DELETED_FIELD, ROLE_FIELD, redact

KEYWORD, INTEGER, LONG, BOOLEAN, DATE = "keyword", "integer", "long", "boolean", "date"
QUERYABLE = (KEYWORD, INTEGER, LONG, BOOLEAN, DATE)
SORTABLE = QUERYABLE
NUMERIC = (INTEGER, LONG)
BOUNDS = {INTEGER: (-2 ** 31, 2 ** 31 - 1), LONG: (-2 ** 63, 2 ** 63 - 1)}

MAX_CLAUSES = 32          # leaf clauses in one query
MAX_DEPTH = 4             # nested bool levels
MAX_TERMS = 100           # values in one terms clause
MAX_STRING = 256          # characters in one value
MAX_SORT = 3              # sort keys (the id is always the last tie-breaker)
MAX_PAGE = 200            # results in the first page
DEFAULT_PAGE = 50
RANGE_OPS = ("gt", "gte", "lt", "lte")


class QueryError(ValueError):
    """A query the server refuses; ``path`` says where (``query.bool.must[1]``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# -- what may be asked -----------------------------------------------------------------

def field_types(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field path -> mapping type, objects followed, nested marked ``nested``
    (their insides too), multi-fields included (``name.text``)."""
    found: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        kind = spec.get("type", "object")
        found[path] = kind
        for sub, sub_spec in (spec.get("fields") or {}).items():
            found[f"{path}.{sub}"] = sub_spec.get("type", "object")
        inner = spec.get("properties")
        if inner:
            for inner_path, inner_kind in field_types(inner, f"{path}.").items():
                found[inner_path] = "nested" if kind == "nested" else inner_kind
    return found


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The fields one asker may query and sort on, with their types, for the
    resource types asked (a field must have one type across them)."""
    types: Mapping[str, str]

    @classmethod
    def build(cls, mappings: Iterable[Mapping[str, Any]],
              visible: Iterable[Iterable[str]]) -> "Vocabulary":
        """``mappings`` and ``visible`` (the dotted paths the role's copy keeps after
        the pipeline's filters) per resource type asked."""
        types: dict[str, str] = {}
        for mapping, paths in zip(mappings, visible):
            shown = set(paths)
            for path, kind in field_types(mapping).items():
                if path in shown:
                    types[path] = kind if types.get(path, kind) == kind else "conflict"
        return cls(types)

    def field(self, path: str, where: str, usable=QUERYABLE) -> str:
        kind = self.types.get(path) if isinstance(path, str) else None
        if kind is None:
            raise QueryError(where, f"unknown field {str(path)[:64]!r}, or not visible "
                             "to you")
        if kind not in usable:
            raise QueryError(where, f"field {path!r} is {kind}: live search takes "
                             f"{', '.join(usable)} fields")
        return kind


# -- the query --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Clause:
    kind: str                  # term, terms, prefix, range, exists, bool
    field: str = ""
    ftype: str = ""
    values: tuple = ()         # term/terms: normalised values; prefix: (prefix,)
    ranges: tuple = ()         # range: ((op, normalised bound), ...)
    raw: Any = None            # the clause as Elasticsearch gets it
    must: tuple = ()
    should: tuple = ()
    must_not: tuple = ()
    minimum_should_match: int = 0


@dataclasses.dataclass(frozen=True)
class Query:
    root: Clause | None               # None: every resource in scope
    sort: tuple[tuple[str, str], ...]  # (field, asc|desc), then id
    page_size: int

    def matches(self, document: Mapping[str, Any] | None) -> bool:
        """Would Elasticsearch return this role copy (after filters) for the query?"""
        if document is None:
            return False
        return self.root is None or _evaluate(self.root, document)

    def dsl(self, role: str, resource_types: Sequence[str],
            project_id: str | None) -> dict:
        """The query inside the asker's scope (``project_id`` None: all projects)."""
        scope: list[dict] = [{"term": {ROLE_FIELD: role}},
                             {"terms": {"resource_type": sorted(resource_types)}}]
        if project_id is not None:
            scope.append({"term": {"project_id": project_id}})
        if self.root is not None:
            scope.append(self.root.raw)
        return {"bool": {"filter": scope, "must_not": [{"term": {DELETED_FIELD: True}}]}}

    def sort_dsl(self) -> list[dict]:
        return [{field: {"order": order, "missing": "_last"}} for field, order in self.sort
                ] + [{"id": {"order": "asc"}}]


def parse(request: Mapping[str, Any], vocabulary: Vocabulary) -> Query:
    """A ``Query`` from a subscription's ``query``, ``sort`` and ``page_size``."""
    counter = [0]
    raw_query = request.get("query")
    root = None if raw_query is None else _clause(raw_query, vocabulary, "query", 0,
                                                  counter)
    return Query(root, _sort(request.get("sort"), vocabulary),
                 _page_size(request.get("page_size")))


def _page_size(value: Any) -> int:
    if value is None:
        return DEFAULT_PAGE
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise QueryError("page_size", f"an integer from 1 to {MAX_PAGE}")
    return value


def _sort(value: Any, vocabulary: Vocabulary) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SORT:
        raise QueryError("sort", f"a list of at most {MAX_SORT} {{field: asc|desc}}")
    keys = []
    for i, item in enumerate(value):
        where = f"sort[{i}]"
        if isinstance(item, str):
            item = {item: "asc"}
        if not isinstance(item, Mapping) or len(item) != 1:
            raise QueryError(where, "one {field: asc|desc} per item")
        ((field, order),) = item.items()
        vocabulary.field(field, where, SORTABLE)
        if order not in ("asc", "desc"):
            raise QueryError(where, "order is asc or desc")
        keys.append((field, order))
    return tuple(keys)


def _one(body: Any, where: str) -> tuple[str, Any]:
    if not isinstance(body, Mapping) or len(body) != 1:
        raise QueryError(where, "one field per clause")
    return next(iter(body.items()))


def _clause(node: Any, vocabulary: Vocabulary, where: str, depth: int,
            counter: list[int]) -> Clause:
    if not isinstance(node, Mapping) or len(node) != 1:
        raise QueryError(where, "a clause is an object with one key: term, terms, match, "
                         "prefix, range, exists or bool")
    ((kind, body),) = node.items()
    if kind == "bool":
        return _bool(body, vocabulary, f"{where}.bool", depth, counter)
    counter[0] += 1
    if counter[0] > MAX_CLAUSES:
        raise QueryError(where, f"more than {MAX_CLAUSES} clauses")
    where = f"{where}.{kind}"
    if kind == "exists":
        if not isinstance(body, Mapping) or set(body) != {"field"}:
            raise QueryError(where, '{"field": name}')
        field = body["field"]
        ftype = vocabulary.field(field, where)
        return Clause("exists", field, ftype, raw={"exists": {"field": field}})
    if kind in ("term", "match"):
        field, value = _one(body, where)
        ftype = vocabulary.field(field, where)
        key = "query" if kind == "match" else "value"
        if isinstance(value, Mapping):
            if set(value) != {key}:
                raise QueryError(where, f'{{"{field}": value}} or {{"{field}": '
                                 f'{{"{key}": value}}}}')
            value = value[key]
        if kind == "match" and ftype != KEYWORD:
            raise QueryError(where, "match is for keyword fields (an exact match); use "
                             "term or range on other fields")
        normal = _value(value, ftype, where)
        return Clause("term", field, ftype, values=(normal,), raw={"term": {field: value}})
    if kind == "terms":
        field, values = _one(body, where)
        ftype = vocabulary.field(field, where)
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_TERMS:
            raise QueryError(where, f"a list of 1 to {MAX_TERMS} values")
        normal = tuple(_value(v, ftype, where) for v in values)
        return Clause("terms", field, ftype, values=normal, raw={"terms": {field: values}})
    if kind == "prefix":
        field, value = _one(body, where)
        ftype = vocabulary.field(field, where, (KEYWORD,))
        if isinstance(value, Mapping):
            if set(value) != {"value"}:
                raise QueryError(where, f'{{"{field}": "start"}}')
            value = value["value"]
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_STRING:
            raise QueryError(where, f"a non-empty string of at most {MAX_STRING} characters")
        return Clause("prefix", field, ftype, values=(value,), raw={"prefix": {field: value}})
    if kind == "range":
        field, bounds = _one(body, where)
        ftype = vocabulary.field(field, where)
        if ftype == BOOLEAN:
            raise QueryError(where, "range is for keyword, number and date fields")
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - set(RANGE_OPS):
            raise QueryError(where, f"bounds are {', '.join(RANGE_OPS)}")
        if {"gt", "gte"} <= set(bounds) or {"lt", "lte"} <= set(bounds):
            raise QueryError(where, "one lower bound (gt or gte) and one upper bound "
                             "(lt or lte) at most")
        ranges = tuple((op, _value(bounds[op], ftype, where, round_up=op in ("gt", "lte")))
                       for op in RANGE_OPS if op in bounds)
        raw = dict(bounds)
        if ftype == DATE:
            raw["format"] = "strict_date_optional_time||epoch_millis"
        return Clause("range", field, ftype, ranges=ranges, raw={"range": {field: raw}})
    raise QueryError(where, "not in the live search subset (term, terms, match, prefix, "
                     "range, exists, bool)")


def _bool(body: Any, vocabulary: Vocabulary, where: str, depth: int,
          counter: list[int]) -> Clause:
    if depth >= MAX_DEPTH:
        raise QueryError(where, f"bool nested deeper than {MAX_DEPTH}")
    known = {"must", "filter", "should", "must_not", "minimum_should_match"}
    if not isinstance(body, Mapping) or set(body) - known:
        raise QueryError(where, f"a bool takes {', '.join(sorted(known))}")
    parts: dict[str, tuple[Clause, ...]] = {}
    raw: dict[str, Any] = {}
    for key in ("must", "filter", "should", "must_not"):
        items = body.get(key, [])
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            raise QueryError(f"{where}.{key}", "a clause or a list of clauses")
        parts[key] = tuple(_clause(c, vocabulary, f"{where}.{key}[{i}]", depth + 1,
                                   counter) for i, c in enumerate(items))
        if items:       # must and filter alike: live search does not score
            raw.setdefault("filter" if key == "must" else key, []).extend(
                c.raw for c in parts[key])
    spec = body.get("minimum_should_match")
    required = bool(parts["must"] or parts["filter"])
    msm = 0 if spec is None else should_minimum(spec, len(parts["should"]),
                                                f"{where}.minimum_should_match")
    if spec is not None:
        raw["minimum_should_match"] = spec
    if not required and not parts["should"]:
        msm = 0     # ES: an empty bool matches all; a must_not-only one drops the minimum
    elif not required and msm == 0:
        msm = 1     # Lucene: should clauses alone are a disjunction
    return Clause("bool", raw={"bool": raw}, must=parts["must"] + parts["filter"],
                  should=parts["should"], must_not=parts["must_not"],
                  minimum_should_match=msm)


_COUNT = r"[+-]?\d{1,4}%?"      # small numbers: Java's int arithmetic never overflows
_SPEC = re.compile(rf"^(?:{_COUNT}|\d{{1,4}}<{_COUNT}(?: \d{{1,4}}<{_COUNT})*)$")


def should_minimum(spec: Any, optional: int, where: str = "minimum_should_match") -> int:
    """How many of ``optional`` should clauses must match, as Elasticsearch computes
    it from ``minimum_should_match`` (``Queries.calculateMinShouldMatch``): ``3``,
    ``-2`` (all but two), ``75%`` (rounded down), ``-25%`` (all but that share,
    rounded down), ``3<90%`` (all of up to 3, else 90%), several conditions
    separated by a space (``2<-25% 9<-3``). More than ``optional``: nothing matches.
    Percentages are computed in 32-bit floats, as Java does (10 * 70% is 7, but
    3 * 33% is 0.99, so 0)."""
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise QueryError(where, "a number (3, -1) or a string (\"75%\", \"3<90%\")")
    text = str(spec)
    if not _SPEC.match(text):
        raise QueryError(where, "3, -1, \"75%\", \"-25%\" or conditions like "
                         "\"2<-25% 9<-3\"")
    result = optional
    if "<" in text:
        for condition in text.split(" "):
            bound, then = condition.split("<")
            if optional <= int(bound):
                return result
            result = should_minimum(then, optional, where)
        return result
    if text.endswith("%"):
        calc = _float32(_float32(result * int(text[:-1])) * _float32(0.01))
        result = result + int(calc) if calc < 0 else int(calc)
    else:
        calc = int(text)
        result = result + calc if calc < 0 else calc
    return max(result, 0)


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


# -- values, as Elasticsearch reads them --------------------------------------------------

def _value(value: Any, ftype: str, where: str, round_up: bool = False):
    """A query value normalised for comparison; refused if ES would refuse it or
    read it differently from us."""
    if ftype == KEYWORD:
        if not isinstance(value, str) or len(value) > MAX_STRING:
            raise QueryError(where, f"a string of at most {MAX_STRING} characters")
        return value
    if ftype in NUMERIC:
        low, high = BOUNDS[ftype]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise QueryError(where, f"a whole number ({ftype})")
        return value
    if ftype == BOOLEAN:
        if not isinstance(value, bool):
            raise QueryError(where, "true or false")
        return value
    if ftype == DATE:
        millis = date_millis(value, round_up)
        if millis is None:
            raise QueryError(where, "a date: 2026-03-02, 2026-03-02T12:00:00[.123][Z|"
                             "+01:00] (parts may be left out from the right) or "
                             "milliseconds since the epoch")
        return millis
    raise QueryError(where, f"{ftype} fields are not in the live search subset")


_ISO = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})"
                  r"(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$")
_DAY, _HOUR, _MINUTE = 86400000, 3600000, 60000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def date_millis(value: Any, round_up: bool = False) -> int | None:
    """An ES date (``strict_date_optional_time||epoch_millis``) in ms since the
    epoch, UTC when no offset is given; None if unreadable. As Elasticsearch reads
    it: four digits are a year (``2026`` and ``"2026"`` alike), other digits are
    milliseconds; missing month and day are 1. ``round_up`` (``gt`` and ``lte``
    bounds) fills missing time components with their largest value, as ES's
    rounding parser does: ``lte: 2026-03-02`` is the whole day, but ``lte: 2026-03``
    is only the first day of March (ES does not round the month or the day)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if 1000 <= value <= 9999:
            value = str(value)
        else:
            return value
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    match = _ISO.match(value)
    if match is None:
        return int(value) if value.lstrip("-").isdigit() else None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month or 1), int(day or 1),
                                   int(hour or 0), int(minute or 0), int(second or 0),
                                   tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * datetime.timedelta(hours=int(digits[:2]),
                                            minutes=int(digits[2:4] or 0))
    millis = (int((moment - _EPOCH).total_seconds()) * 1000
              + int((fraction or "0")[:3].ljust(3, "0")))
    if round_up:
        if hour is None:
            millis += _DAY - 1
        elif minute is None:
            millis += _HOUR - 1
        elif second is None:
            millis += _MINUTE - 1
        elif fraction is None or len(fraction) < 3:
            millis += 10 ** (3 - len(fraction or "")) - 1
    return millis


def _document_values(document: Mapping[str, Any], path: str, ftype: str) -> list:
    """The field's indexed values, as ES indexes them (arrays flattened, nulls
    skipped, numbers and booleans coerced from strings)."""
    nodes: list = [document]
    for part in path.split("."):
        nxt: list = []
        for node in nodes:
            if isinstance(node, Mapping) and part in node:
                value = node[part]
                nxt.extend(value if isinstance(value, list) else [value])
        nodes = nxt
    values = []
    for raw in nodes:
        if isinstance(raw, list):
            continue
        value = _indexed(raw, ftype)
        if value is not None:
            values.append(value)
    return values


def _indexed(raw: Any, ftype: str):
    if raw is None or isinstance(raw, Mapping):
        return None
    if ftype == KEYWORD:
        if isinstance(raw, bool):
            return "true" if raw else "false"
        return str(raw) if isinstance(raw, (str, int, float)) else None
    if ftype in NUMERIC:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            return int(raw)                     # ES truncates (coerce)
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
        return None
    if ftype == BOOLEAN:
        if isinstance(raw, bool):
            return raw
        return {"true": True, "false": False}.get(raw) if isinstance(raw, str) else None
    if ftype == DATE:
        return date_millis(raw)
    return None


def _evaluate(clause: Clause, document: Mapping[str, Any]) -> bool:
    if clause.kind == "bool":
        if not all(_evaluate(c, document) for c in clause.must):
            return False
        if any(_evaluate(c, document) for c in clause.must_not):
            return False
        if clause.minimum_should_match:
            hits = sum(1 for c in clause.should if _evaluate(c, document))
            return hits >= clause.minimum_should_match
        return True
    values = _document_values(document, clause.field, clause.ftype)
    if clause.kind == "exists":
        return bool(values)
    if clause.kind in ("term", "terms"):
        return any(v in clause.values for v in values)
    if clause.kind == "prefix":
        return any(isinstance(v, str) and v.startswith(clause.values[0]) for v in values)
    if clause.kind == "range":
        return any(all(_compare(v, op, bound) for op, bound in clause.ranges)
                   for v in values)
    return False


def _compare(value, op: str, bound) -> bool:
    if op == "gt":
        return value > bound
    if op == "gte":
        return value >= bound
    if op == "lt":
        return value < bound
    return value <= bound


class Vocabularies:
    """The vocabulary of each (role, resource types) a server is asked for, from the
    plugins' search mappings (what the index makes searchable), their admin-only
    patterns and the pipeline's filters (pure; cached)."""

    def __init__(self, mappings: Mapping[str, Mapping[str, Any]],
                 admin_only: Mapping[str, Iterable[str]], filters: Sequence[Any] = ()):
        self.mappings = dict(mappings)
        self.admin_only = {t: tuple(p) for t, p in admin_only.items()}
        self.filters = tuple(filters)
        self._cache: dict[tuple, Vocabulary] = {}

    def visible(self, resource_type: str, role: str) -> set[str]:
        """Dotted paths (leaves and their parents) of a role's copy after the filters."""
        patterns = self.admin_only.get(resource_type, ())
        document = probe_document(self.mappings[resource_type], patterns)
        if role != ADMIN:
            document = redact(document, patterns)
        for f in self.filters:
            document = f.apply(resource_type, document)
        paths: set[str] = set()
        for path in field_paths(document):
            parts = path.split(".")
            paths.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        return paths

    def get(self, role: str, resource_types: Iterable[str]) -> Vocabulary:
        key = (role, tuple(sorted(resource_types)))
        if key not in self._cache:
            known = [t for t in key[1] if t in self.mappings]
            self._cache[key] = Vocabulary.build(
                [self.mappings[t] for t in known], [self.visible(t, role) for t in known])
        return self._cache[key]
