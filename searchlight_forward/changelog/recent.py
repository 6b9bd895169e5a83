"""The newest entries of a change log, newest first, a page at a time.

A feed shows the latest changes and pages back through older ones. Each shard is
read on its own below its own bound (``_seq_no`` descending), the shards' pages are
merged by write time, and the next page's cursor keeps, per shard, the lowest
``_seq_no`` shown: an entry is shown at most once while paging back, and one not
shown yet stays reachable (changes written meanwhile appear on the first page, not
in the older ones).
"""
from __future__ import annotations

from searchlight_forward import search
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, IndexGone, Selection
from searchlight_forward.model.documents import WRITTEN_AT_FIELD
from searchlight_forward.retry import TransientError


def newest(es: search.Client, changelog: ChangeLog, selection: Selection,
           before: Position | None, size: int) -> tuple[list[Entry], Position | None]:
    """Up to ``size`` entries written below ``before`` (None: the newest), newest
    first, and the cursor of the next (older) page (None: nothing older)."""
    head = changelog.head().position
    if before is not None and not before.same_log(head):
        raise IndexGone(before.index)       # a rebuild: the cursor means nothing now
    bounds = list(before.seq_nos) if before is not None else [s + 1 for s in head.seq_nos]
    searches: list[dict] = []
    for shard, bound in enumerate(bounds):
        searches.append({"index": head.index, "preference": f"_shards:{shard}"})
        searches.append({"query": {"bool": {"filter": [
            {"range": {"_seq_no": {"lt": bound}}}, *selection.filters()]}},
            "sort": [{"_seq_no": "desc"}], "size": size + 1, "version": True,
            "seq_no_primary_term": True, "track_total_hits": False})
    responses = es.msearch(searches=searches)["responses"]
    found: list[Entry] = []
    for shard, resp in enumerate(responses):
        if "error" in resp:
            raise TransientError(f"feed read of {head.index} failed: {resp['error']}")
        found += [Entry.from_hit(hit, shard) for hit in resp["hits"]["hits"]]
    found.sort(key=lambda e: (e.source.get(WRITTEN_AT_FIELD) or 0, e.shard, e.seq_no),
               reverse=True)
    page = found[:size]
    if len(found) <= size:
        return page, None
    for entry in page:
        bounds[entry.shard] = min(bounds[entry.shard], entry.seq_no)
    return page, Position(head.index, tuple(bounds))
