"""opensearch-py, spoken to in elasticsearch-py 8's keyword style.

elasticsearch-py 8 takes a request body as keyword arguments (``query=``,
``mappings=``, ``document=``, ``operations=``, ``searches=``) and per-request
settings through ``client.options(request_timeout=..., ignore_status=...)``;
opensearch-py 3 takes one ``body=`` and ``request_timeout=``/``ignore=`` on each
call. :class:`OpenSearchClient` moves the body keywords of the calls this project
makes into ``body`` and everything else through as query parameters, so a call
site is written once for both servers. A keyword it does not know stays a query
parameter, and opensearch-py rejects an unknown one with a TypeError: a call the
table misses fails loudly, never silently sends a different request.

One mapping type differs: Elasticsearch's ``flattened`` is OpenSearch's
``flat_object`` (2.7+); index creation and mapping updates translate it.

opensearch-py reads a call's ``timeout=`` as the client's request timeout unless
``request_timeout=`` is also given; elasticsearch-py 8 sends it to the server (how
long to wait for shards). Every call here carries ``request_timeout``, so
``timeout=`` keeps the server's meaning.

Responses are opensearch-py's plain dicts (elasticsearch-py 8's responses read the
same way: ``resp["hits"]``, ``resp.get(...)``).
"""
from __future__ import annotations

from typing import Any

import opensearchpy
import orjson
from opensearchpy.client.utils import NamespacedClient
from opensearchpy.serializer import JSONSerializer

# Per call: the keyword that is the whole body, and the keywords that are fields
# of the body (elasticsearch-py 8 names).
WHOLE_BODY = {
    "index": "document", "create": "document", "bulk": "operations",
    "msearch": "searches", "indices.put_settings": "settings",
}
_SEARCH_FIELDS = frozenset({
    "query", "aggs", "aggregations", "sort", "search_after", "_source", "post_filter",
    "collapse", "highlight", "fields", "docvalue_fields", "stored_fields",
    "suggest", "track_total_hits", "min_score", "runtime_mappings"})
BODY_FIELDS = {
    "search": _SEARCH_FIELDS,
    "count": frozenset({"query"}),
    "delete_by_query": frozenset({"query"}),
    "mget": frozenset({"ids", "docs"}),
    "update": frozenset({"doc", "upsert", "script", "doc_as_upsert", "scripted_upsert"}),
    "indices.create": frozenset({"mappings", "settings", "aliases"}),
    "indices.put_mapping": frozenset({
        "properties", "dynamic", "_source", "_meta", "dynamic_templates",
        "date_detection", "numeric_detection"}),
    "indices.update_aliases": frozenset({"actions"}),
}
# Mapping types named differently (Elasticsearch -> OpenSearch).
MAPPING_TYPES = {"flattened": "flat_object"}


class OrjsonSerializer(JSONSerializer):
    """orjson for request bodies, as the Elasticsearch client is configured."""

    def dumps(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        try:
            return orjson.dumps(data, default=self.default,
                                option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return super().dumps(data)

    def loads(self, s: str | bytes) -> Any:
        return orjson.loads(s)


def opensearch_mapping(value: Any) -> Any:
    """``value`` (a mapping or part of one) with Elasticsearch-only type names
    replaced by OpenSearch's."""
    if isinstance(value, dict):
        out = {k: opensearch_mapping(v) for k, v in value.items()}
        if isinstance(out.get("type"), str) and out["type"] in MAPPING_TYPES:
            out["type"] = MAPPING_TYPES[out["type"]]
        return out
    if isinstance(value, list):
        return [opensearch_mapping(v) for v in value]
    return value


def translate(path: str, kwargs: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """elasticsearch-py 8 keywords of call ``path`` -> opensearch-py keywords."""
    out = dict(defaults)
    whole = WHOLE_BODY.get(path)
    fields = BODY_FIELDS.get(path, frozenset())
    body: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key == whole:
            out["body"] = value
        elif key in fields:
            body[key] = value
        else:
            out[key] = value
    if path in ("indices.create", "indices.put_mapping"):
        if "mappings" in body:
            body["mappings"] = opensearch_mapping(body["mappings"])
        if "properties" in body:
            body["properties"] = opensearch_mapping(body["properties"])
    if body:
        if "body" in out:
            raise TypeError(f"{path}: both {whole}= and body fields {sorted(body)}")
        out["body"] = body
    return out


class _Namespace:
    """A namespace of the raw client (``indices``, ``cluster``, ...) or the client
    itself: attribute access yields translated methods."""

    def __init__(self, target: Any, prefix: str, defaults: dict[str, Any]):
        self._target = target
        self._prefix = prefix
        self._defaults = defaults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        path = f"{self._prefix}{name}"
        if isinstance(attr, NamespacedClient):
            return _Namespace(attr, f"{path}.", self._defaults)
        if not callable(attr):
            return attr
        defaults = self._defaults

        def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **translate(path, kwargs, defaults))
        call.__name__ = name
        return call


class OpenSearchClient(_Namespace):
    """opensearch-py's client behind elasticsearch-py 8's calling convention."""

    def __init__(self, raw: opensearchpy.OpenSearch, request_timeout: float,
                 defaults: dict[str, Any] | None = None):
        super().__init__(raw, "", {"request_timeout": request_timeout, **(defaults or {})})
        self.raw = raw
        self.request_timeout = request_timeout

    @classmethod
    def connect(cls, hosts: list[str] | str, *, request_timeout: float,
                dead_timeout: float, pool_maxsize: int = 10) -> OpenSearchClient:
        # timeout_cutoff=0: a dead node is retried after dead_timeout, not after
        # an exponentially growing wait (elasticsearch-py's max_dead_node_backoff).
        return cls(opensearchpy.OpenSearch(
            hosts, serializer=OrjsonSerializer(), timeout=request_timeout,
            dead_timeout=dead_timeout, timeout_cutoff=0, pool_maxsize=pool_maxsize),
            request_timeout)

    def options(self, *, request_timeout: float | None = None,
                ignore_status: int | tuple[int, ...] | None = None) -> OpenSearchClient:
        """elasticsearch-py 8's per-request settings (the two this project uses)."""
        defaults = dict(self._defaults)
        if request_timeout is not None:
            defaults["request_timeout"] = request_timeout
        if ignore_status is not None:
            defaults["ignore"] = ignore_status
        return OpenSearchClient(self.raw, self.request_timeout, defaults)

    def close(self) -> None:
        self.raw.close()
