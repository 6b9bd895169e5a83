"""Reading a resource group's change log from Elasticsearch.

``head`` says where the log ends: the concrete index behind ``<group>-listener``
and, per primary shard, its global checkpoint (every write at or below it is
processed on every in-sync copy). After a refresh that starts later, all of those
writes are searchable; ``announcer`` and ``feed`` arrange that.

``pages`` reads the entries written between two positions in ``_seq_no`` order,
one ``_msearch`` per page for all shards (a sub-search per shard, pinned with
``preference=_shards:N``), each shard's part in its write order. Shards are
independent logs: a resource's role copies always live in the same shard, so
reading shard by shard never shows an older version of a resource after a newer
one, whatever the interleaving of shards.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

from searchlight_forward import search
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.indexer import layout
from searchlight_forward.model.documents import DELETED_FIELD, ROLE_FIELD, ROLES
from searchlight_forward.retry import TransientError

PAGE_SIZE = 500


class NoIndex(LookupError):
    """The group has no index (yet, or it was deleted)."""


class IndexGone(LookupError):
    """The index being read was deleted (a rebuild moved the group elsewhere)."""


@dataclasses.dataclass(frozen=True)
class Head:
    """The end of the log: what a reader may read once it is visible."""
    index: str
    checkpoints: tuple[int, ...]

    @property
    def position(self) -> Position:
        return Position(self.index, self.checkpoints)


@dataclasses.dataclass
class Page:
    """Entries read between two positions; ``end`` is the position after them
    (higher than the last entry's where the rest of the range held nothing)."""
    entries: list[Entry]
    end: Position
    resync: bool = False


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which entries a reader wants: role copies, and optionally one project's, some
    types' and only live resources (no tombstones)."""
    roles: tuple[str, ...] = ROLES
    project_id: str | None = None
    resource_types: frozenset[str] | None = None
    live_only: bool = False

    def filters(self) -> list[dict]:
        found: list[dict] = [{"terms": {ROLE_FIELD: list(self.roles)}}]
        if self.resource_types is not None:
            found.append({"terms": {"resource_type": sorted(self.resource_types)}})
        if self.project_id is not None:
            found.append({"term": {"project_id": self.project_id}})
        return found


class ChangeLog:
    """One resource group's index, read as a change log (blocking calls)."""

    def __init__(self, es: search.Client, group: str,
                 page_size: int = PAGE_SIZE):
        self.es = es
        self.group = group
        self.alias = layout.listener_alias(group)
        self.page_size = page_size
        self._shards: dict[str, int] = {}     # index -> its primary shards (fixed)

    def head(self) -> Head:
        """Where the log ends now; ``NoIndex`` if the group has no index."""
        try:
            resp = self.es.indices.stats(
                index=self.alias, metric="docs", level="shards",
                filter_path="indices.*.shards.*.routing.primary,"
                            "indices.*.shards.*.seq_no.global_checkpoint")
        except search.NotFoundError:
            raise NoIndex(self.alias) from None
        indices = resp.get("indices") or {}
        if not indices:
            raise NoIndex(self.alias)
        if len(indices) > 1:
            raise RuntimeError(f"{self.alias} points at {len(indices)} indices; "
                               f"expected one (see searchlight-forward-manage show)")
        (index, stats), = indices.items()
        shards = stats.get("shards") or {}
        checkpoints = []
        # Stats list the shards that have started; a position needs every one (a
        # fresh or recovering index may not have them all yet).
        for shard in range(self._shard_count(index)):
            primary = next((c for c in shards.get(str(shard), ())
                            if (c.get("routing") or {}).get("primary")), None)
            checkpoint = int(primary["seq_no"]["global_checkpoint"]) if primary else -2
            if checkpoint < -1:
                raise TransientError(f"shard {shard} of {index} has not started yet")
            checkpoints.append(checkpoint)
        return Head(index, tuple(checkpoints))

    def _shard_count(self, index: str) -> int:
        if index not in self._shards:
            resp = self.es.indices.get_settings(
                index=index, name="index.number_of_shards",
                filter_path="*.settings.index.number_of_shards")
            self._shards[index] = int(resp[index]["settings"]["index"]["number_of_shards"])
        return self._shards[index]

    def refresh(self, index: str) -> None:
        self.es.indices.refresh(index=index)

    def pages(self, after: Position, upto: Position, selection: Selection = Selection(),
              resync: bool = False) -> Iterator[Page]:
        """Entries written at ``after < _seq_no <= upto`` (shard by shard), a page at
        a time. ``upto`` must be visible (refreshed) already."""
        if not after.same_log(upto):
            raise ValueError(f"cannot read from {after} to {upto}: not the same index")
        position = after
        pending = [s for s in range(upto.shards) if after.seq_nos[s] < upto.seq_nos[s]]
        while pending:
            responses = self._search(upto.index, position, upto, pending, selection)
            entries: list[Entry] = []
            still = []
            for shard, resp in zip(pending, responses):
                hits = resp["hits"]["hits"]
                for hit in hits:
                    entry = Entry.from_hit(hit, shard, resync)
                    position = position.advanced(shard, entry.seq_no)
                    entry.after = position
                    entries.append(entry)
                if len(hits) < self.page_size:
                    position = position.advanced(shard, upto.seq_nos[shard])
                else:
                    position = position.advanced(shard, hits[-1]["_seq_no"])
                    still.append(shard)
            pending = still
            yield Page(entries, position, resync)

    def _search(self, index: str, after: Position, upto: Position,
                shards: Sequence[int], selection: Selection) -> list[dict]:
        searches: list[dict] = []
        for shard in shards:
            query: dict = {"bool": {"filter": [
                {"range": {"_seq_no": {"gt": after.seq_nos[shard],
                                       "lte": upto.seq_nos[shard]}}},
                *selection.filters()]}}
            if selection.live_only:
                query["bool"]["must_not"] = [{"term": {DELETED_FIELD: True}}]
            searches.append({"index": index, "preference": f"_shards:{shard}"})
            searches.append({"query": query, "sort": [{"_seq_no": "asc"}],
                             "size": self.page_size, "seq_no_primary_term": True,
                             "version": True, "track_total_hits": False})
        responses = self.es.msearch(searches=searches)["responses"]
        for resp in responses:
            if "error" in resp:
                error = resp["error"]
                if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                    raise IndexGone(index)
                raise TransientError(f"change log read of {index} failed: {error}")
        return responses
