"""A search that reflects exactly one change-log position.

A live search answers with the first page of a query's results and a cursor, and
then streams the changes after that cursor; nothing may be missed or doubled in
between. A plain search cannot promise that: it sees whatever was refreshed when it
ran. So each shard is searched on its own (``preference=_shards:N``) for documents
written at or below the position's ``_seq_no`` for that shard:

* a resource whose newest write is at or below the position is in the answer if
  (and only if) it matches;
* a resource written after the position is left out whatever it held before (its
  older state is gone from the index), and the change-log stream, which starts at
  the position, brings its newer state.

The position must be visible (refreshed) already, as for ``ChangeLog.pages``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

from searchlight_forward import search
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import IndexGone
from searchlight_forward.retry import TransientError


class TooBroad(ValueError):
    """More resources match than a live search may follow."""

    def __init__(self, total: int, cap: int):
        super().__init__(f"{total} resources match; live search follows at most {cap}: "
                         "narrow the query")
        self.total = total
        self.cap = cap


@dataclasses.dataclass
class Snapshot:
    position: Position
    page: list[Entry]                   # the first page, in the query's sort order
    members: set[tuple]                 # (resource_type, id) of every match
    total: int


def take(es: search.Client, position: Position, query: dict, sort: list[dict],
         page_size: int, cap: int) -> Snapshot:
    """The query's matches as of ``position``: its first ``page_size`` in ``sort``
    order, and every match's key (``TooBroad`` above ``cap``)."""
    searches: list[dict] = []
    for shard, seq_no in enumerate(position.seq_nos):
        scoped = {"bool": {"filter": [query, {"range": {"_seq_no": {"lte": seq_no}}}]}}
        header = {"index": position.index, "preference": f"_shards:{shard}"}
        searches += [header, {"query": scoped, "sort": sort, "size": page_size,
                              "seq_no_primary_term": True, "version": True,
                              "track_total_hits": True}]
        searches += [header, {"query": scoped, "size": cap + 1, "track_total_hits": False,
                              "_source": ["resource_type", "id"], "sort": ["_doc"]}]
    responses = es.msearch(searches=searches)["responses"]
    for resp in responses:
        if "error" in resp:
            error = resp["error"]
            if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                raise IndexGone(position.index)
            raise TransientError(f"live search of {position.index} failed: {error}")
    hits: list[tuple[list, Entry]] = []
    members: set[tuple] = set()
    total = 0
    for shard in range(len(position.seq_nos)):
        page, keys = responses[2 * shard], responses[2 * shard + 1]
        total += page["hits"]["total"]["value"]
        hits += [(hit.get("sort") or [], Entry.from_hit(hit, shard)) for hit in
                 page["hits"]["hits"]]
        for hit in keys["hits"]["hits"]:
            source = hit.get("_source") or {}
            members.add((source.get("resource_type"), str(source.get("id"))))
    if total > cap or len(members) > cap:
        raise TooBroad(max(total, len(members)), cap)
    orders = [_order(s) for s in sort]
    hits.sort(key=functools.cmp_to_key(lambda a, b: _compare(a[0], b[0], orders)))
    return Snapshot(position, [entry for _, entry in hits[:page_size]], members, total)


def _order(sort: Any) -> str:
    if isinstance(sort, dict):
        ((_, spec),) = sort.items()
        return spec.get("order", "asc") if isinstance(spec, dict) else spec
    return "asc"


def _compare(left: Sequence, right: Sequence, orders: Sequence[str]) -> int:
    """Merge the shards' pages as Elasticsearch orders them: per key, missing
    values (null) last whatever the order."""
    for a, b, order in zip(left, right, orders):
        if a == b:
            continue
        if a is None or b is None:
            return 1 if a is None else -1
        smaller = -1 if a < b else 1
        return smaller if order == "asc" else -smaller
    return 0
