"""A reader's place in the change log (pure).

A position names one concrete index and, for each of its primary shards, the
highest ``_seq_no`` read: every write of that shard at or below it has been read (or
was replaced by a later write, which sits above). ``-1`` means nothing read yet.

As text (the cursor WebSocket clients and operators see) it is
``<index>:<seq_no>[,<seq_no>...]``, one number per shard in shard order, e.g.
``searchlight-20261128093000000000:4711`` for a one-shard index or
``...:120,98,133`` for three shards.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

MAX_SHARDS = 1024
_TEXT = re.compile(r"(?P<index>[^:\s]{1,255}):(?P<seqs>(?:-1|\d{1,19})(?:,(?:-1|\d{1,19})){0,%d})"
                   % (MAX_SHARDS - 1))


@dataclasses.dataclass(frozen=True)
class Position:
    index: str
    seq_nos: tuple[int, ...]

    @classmethod
    def start(cls, index: str, shards: int) -> "Position":
        """Before the first write of every shard."""
        return cls(index, (-1,) * shards)

    @classmethod
    def of(cls, index: str, seq_nos: Iterable[int]) -> "Position":
        return cls(index, tuple(int(s) for s in seq_nos))

    @classmethod
    def parse(cls, text: object) -> "Position":
        if not isinstance(text, str):
            raise ValueError("a cursor is a string")
        match = _TEXT.fullmatch(text)
        if not match:
            raise ValueError("a cursor looks like '<index>:<seq_no>[,<seq_no>...]' as "
                             "the server sent it")
        return cls.of(match["index"], match["seqs"].split(","))

    def __str__(self) -> str:
        return f"{self.index}:{','.join(str(s) for s in self.seq_nos)}"

    @property
    def shards(self) -> int:
        return len(self.seq_nos)

    def same_log(self, other: "Position | None") -> bool:
        """Do both positions name the same index with the same shards?"""
        return (other is not None and other.index == self.index
                and other.shards == self.shards)

    def covers(self, shard: int, seq_no: int) -> bool:
        """Has the write at (``shard``, ``seq_no``) been read?"""
        return seq_no <= self.seq_nos[shard]

    def includes(self, other: "Position") -> bool:
        """Is every write ``other`` read also read here (same log)?"""
        return self.same_log(other) and all(
            a >= b for a, b in zip(self.seq_nos, other.seq_nos))

    def behind(self, other: "Position") -> list[int]:
        """The shards where ``other`` is ahead of this position (same log)."""
        return [s for s, (a, b) in enumerate(zip(self.seq_nos, other.seq_nos)) if b > a]

    def advanced(self, shard: int, seq_no: int) -> "Position":
        """This position with ``shard`` moved up to ``seq_no`` (never down)."""
        if seq_no <= self.seq_nos[shard]:
            return self
        seqs = list(self.seq_nos)
        seqs[shard] = seq_no
        return Position(self.index, tuple(seqs))

    def merged(self, other: "Position | Sequence[int]") -> "Position":
        """The furthest of both, shard by shard (same log)."""
        seqs = other.seq_nos if isinstance(other, Position) else tuple(other)
        if len(seqs) != self.shards:
            raise ValueError(f"{len(seqs)} shards, expected {self.shards}")
        return Position(self.index, tuple(max(a, b) for a, b in zip(self.seq_nos, seqs)))

    def lowest(self, other: "Position") -> "Position":
        """The least advanced of both, shard by shard (same log)."""
        return Position(self.index, tuple(min(a, b) for a, b in
                                          zip(self.seq_nos, other.seq_nos)))

    def to_dict(self) -> dict:
        return {"index": self.index, "seq_nos": list(self.seq_nos)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Position | None":
        if not data or not data.get("index"):
            return None
        return cls.of(data["index"], data.get("seq_nos") or ())
