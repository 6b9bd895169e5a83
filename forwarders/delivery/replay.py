"""Where an operator's replay puts a cursor: the start of the log, its end, the first
write at or after a time, or a position as the status pages print it."""
from __future__ import annotations

import datetime

from searchlight_forward import search
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog
from searchlight_forward.model.documents import WRITTEN_AT_FIELD

START, NOW = "start", "now"


def target(es: search.Client, group: str, where: str) -> Position:
    """``start``, ``now``, an ISO 8601 time (``2026-11-28T14:00:00Z``) or
    ``<index>:<seq_no>[,...]``; ``ValueError`` saying what is accepted."""
    head = ChangeLog(es, group).head()
    if where == START:
        return Position.start(head.index, len(head.checkpoints))
    if where == NOW:
        return head.position
    try:
        when = datetime.datetime.fromisoformat(where.replace("Z", "+00:00"))
    except ValueError:
        try:
            position = Position.parse(where)
        except ValueError:
            raise ValueError(f"{where!r}: use start, now, an ISO 8601 time "
                             f"(2026-11-28T14:00:00Z) or <index>:<seq_no>[,...]") from None
        if not position.same_log(head.position):
            raise ValueError(f"{where} is not a position of {group}'s index "
                             f"{head.index} with {len(head.checkpoints)} shard(s)")
        return position
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return before(es, head.index, len(head.checkpoints), int(when.timestamp() * 1000))


def before(es: search.Client, index: str, shards: int, millis: int
           ) -> Position:
    """Per shard, the last write indexed before ``millis``: a cursor there reads every
    change written at or after that time."""
    seq_nos = []
    for shard in range(shards):
        resp = es.search(index=index, preference=f"_shards:{shard}", size=1,
                         seq_no_primary_term=True, _source=False,
                         query={"range": {WRITTEN_AT_FIELD: {"lt": millis}}},
                         sort=[{"_seq_no": "desc"}])
        hits = resp["hits"]["hits"]
        seq_nos.append(hits[0]["_seq_no"] if hits else -1)
    return Position(index, tuple(seq_nos))
