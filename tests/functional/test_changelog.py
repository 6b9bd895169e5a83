"""The change reader on a three-shard index (run on OpenSearch too): each round of
writes is read exactly once after the previous round's head, in `_seq_no` order per
shard, across pages; a cursor taken after any entry resumes with exactly the entries
after it; a selection reads only its project's role copy.

The oracle is the rounds themselves: the changes written, two role copies each."""
from __future__ import annotations

from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, Selection
from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from tests.functional.websocket_support import (A, ADMIN_ONLY, ALL_TYPES, B, PLUGINS,
                                                document_change)

SHARDS = 3
IDS = [f"srv-{i:02d}" for i in range(30)]


def project_of(rid: str) -> str:
    return A if int(rid[-2:]) % 2 else B


def rounds() -> list[list]:
    """Creates, then updates and deletes, then more updates (versions 1, 2, 3)."""
    return [[document_change(rid, project_of(rid), 1) for rid in IDS],
            [document_change(rid, project_of(rid), 2, deleted=i % 5 == 0)
             for i, rid in enumerate(IDS[:20])],
            [document_change(rid, project_of(rid), 3) for rid in IDS[21:27]]]


def read(log: ChangeLog, after: Position, upto: Position, selection=Selection()) -> list:
    return [e for page in log.pages(after, upto, selection) for e in page.entries]


def written(batch, roles=("admin", "user"), project=None) -> list[tuple]:
    return sorted((c.id, role, c.version) for c in batch for role in roles
                  if project is None or c.project_id == project)


def test_a_three_shard_log_is_read_once_in_order_across_pages_and_cursors(es, names):
    group = names["group"]
    index = indices.ensure(es, group, PLUGINS.plugins, shards=SHARDS)
    indexer = Indexer(es, {t: group for t in ALL_TYPES}, ADMIN_ONLY)
    log = ChangeLog(es, group, page_size=7)          # several pages per shard
    position = Position.start(index, SHARDS)
    try:
        for batch in rounds():
            indexer.apply(list(enumerate(batch)))
            log.refresh(index)
            head = log.head().position
            entries = read(log, position, head)
            assert sorted((e.source["id"], e.role, e.version) for e in entries) \
                == written(batch)
            for shard in range(SHARDS):
                seqs = [e.seq_no for e in entries if e.shard == shard]
                assert seqs == sorted(set(seqs))          # in order, none twice
            assert {e.shard for e in entries} == set(range(SHARDS))
            for k in (0, len(entries) // 3, len(entries) - 1):
                rest = read(log, entries[k].after, head)
                assert sorted((e.shard, e.seq_no) for e in rest) == \
                    sorted((e.shard, e.seq_no) for e in entries[k + 1:])
            mine = read(log, position, head, Selection(roles=("user",), project_id=A))
            assert sorted((e.source["id"], e.role, e.version) for e in mine) == \
                written(batch, ("user",), A)
            position = head
    finally:
        es.indices.delete(index=f"{group}-*", ignore_unavailable=True,
                          allow_no_indices=True)
