"""What ``Indexer.apply`` returns for a batch (pure data)."""
from __future__ import annotations

import dataclasses
from typing import Hashable

from searchlight_forward.indexer import merge
from searchlight_forward.model.change import DocumentChange

Key = tuple[str, str]  # (resource_type, id)


@dataclasses.dataclass
class Rejection:
    """A change that can never be indexed, with the reason (for the dead letters)."""
    origin: Hashable
    change: DocumentChange
    reason: str


@dataclasses.dataclass
class BatchResult:
    results: list[tuple[Hashable, merge.ChangeResult]] = dataclasses.field(default_factory=list)
    rejected: list[Rejection] = dataclasses.field(default_factory=list)

    def count(self, outcome: merge.Outcome) -> int:
        return sum(1 for _, r in self.results if r.outcome is outcome)
