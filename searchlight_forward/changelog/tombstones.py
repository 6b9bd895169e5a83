"""Tombstones: how long a delete stays in the log, and what readers behind it get.

A deleted resource keeps a tombstone document (``sf_deleted``) so that no late
update brings it back and every reader sees the delete. They cannot stay for ever;
``purge`` removes those that

* are older than ``min_age`` and every durable cursor has passed (``passed``), or
* are older than ``retention``, whoever has not read them.

The highest ``_seq_no`` purged per shard is the group's *horizon*, kept in the
state index. A reader whose position is below the horizon on any shard may have
missed a delete: it must start over (a resynchronisation), never carry on with a
silent gap. ``horizon`` tells readers where it is.

Ages are counted from when the tombstone was written (``sf_written_at``, the
listener's clock), not from the resource's own timestamps, which may be old.
"""
from __future__ import annotations

import datetime
import logging
from typing import Iterable

from searchlight_forward import search
from searchlight_forward.search import helpers
from searchlight_forward.changelog.position import Position
from searchlight_forward.model.documents import DELETED_FIELD, WRITTEN_AT_FIELD

LOG = logging.getLogger(__name__)


def horizon_id(group: str) -> str:
    return f"horizon:{group}"


def _millis(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


class Tombstones:
    def __init__(self, es: search.Client, group: str, state_index: str):
        self.es = es
        self.group = group
        self.state_index = state_index

    def horizon(self, index: str) -> Position | None:
        """The purge horizon of ``index`` (None: nothing purged there yet)."""
        try:
            doc = self.es.get(index=self.state_index, id=horizon_id(self.group))
        except search.NotFoundError:
            return None
        found = Position.from_dict(doc["_source"].get("position"))
        return found if found is not None and found.index == index else None

    def _save_horizon(self, horizon: Position) -> None:
        self.es.index(index=self.state_index, id=horizon_id(self.group), refresh=True,
                      document={"kind": "horizon", "group": self.group,
                                "position": horizon.to_dict(),
                                "updated_at": _now().isoformat()})

    def purge(self, head: Position, passed: Position | None, min_age: float,
              retention: float, now: datetime.datetime | None = None) -> int:
        """Delete the tombstones that may go; returns how many. ``head``: the log's
        current end (its index is the one purged); ``passed``: the least advanced
        durable cursor on that index (None: no cursor, only retention applies)."""
        now = now or _now()
        young = _millis(now - datetime.timedelta(seconds=min_age))
        old = _millis(now - datetime.timedelta(seconds=retention))
        horizon = self.horizon(head.index) or Position.start(head.index, head.shards)
        # Make every tombstone up to ``head`` searchable: otherwise those written in
        # the last refresh interval wait for the next purge (one refresh per purge).
        self.es.indices.refresh(index=head.index)
        purged = 0
        for shard in range(head.shards):
            expired = [{"range": {WRITTEN_AT_FIELD: {"lt": old}}}]
            if passed is not None and passed.same_log(head) and passed.seq_nos[shard] >= 0:
                expired.append({"bool": {"filter": [
                    {"range": {WRITTEN_AT_FIELD: {"lt": young}}},
                    {"range": {"_seq_no": {"lte": passed.seq_nos[shard]}}}]}})
            query = {"bool": {"filter": [{"term": {DELETED_FIELD: True}}],
                              "should": expired, "minimum_should_match": 1}}
            hits = helpers.scan(self.es, index=head.index, query={"query": query},
                                preference=f"_shards:{shard}", seq_no_primary_term=True,
                                _source=False, size=500)
            done, highest = self._delete(head.index, hits)
            purged += done
            if highest >= 0:
                horizon = horizon.advanced(shard, highest)
        if purged:
            self._save_horizon(horizon)
            LOG.info("purged %d tombstones of %s; horizon now %s", purged, head.index,
                     horizon)
        return purged

    def _delete(self, index: str, hits: Iterable[dict]) -> tuple[int, int]:
        """Delete the hits unless rewritten since they were read (if_seq_no)."""
        highest = -1
        seqs: dict[str, int] = {}

        def actions():
            for hit in hits:
                seqs[hit["_id"]] = hit["_seq_no"]
                yield {"_op_type": "delete", "_index": index, "_id": hit["_id"],
                       "if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"]}

        done = 0
        for ok, item in helpers.streaming_bulk(self.es, actions(), raise_on_error=False,
                                               max_retries=0, chunk_size=500):
            info = item["delete"]
            if ok:
                done += 1
                highest = max(highest, seqs.get(info["_id"], -1))
            elif info.get("status") not in (404, 409):   # gone or rewritten: fine
                raise RuntimeError(f"tombstone {info.get('_id')} not purged: "
                                   f"{info.get('error')}")
        return done, highest


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
