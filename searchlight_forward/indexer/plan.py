"""Plan one write round (pure): from a batch's changes and what was read, the writes.

Each resource's changes are folded onto the admin copy as read. The admin copy is
written on the condition that the document is still the one read
(``if_seq_no``/``if_primary_term``), or created where there was none; any write in
between makes ours fail with 409, and the resource is read and planned again. The
user copy is versioned externally with the state's version and is written only once
its admin copy has won (``execute`` and ``classify`` see to that order).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Hashable

from searchlight_forward.indexer import merge
from searchlight_forward.indexer.results import Key, Rejection
from searchlight_forward.model import documents
from searchlight_forward.model.change import DocumentChange
from searchlight_forward.model.documents import ADMIN, USER, ResourceState

# The origin of an item removal read from the index (removals.py): folded in like a
# change of the batch, but no notification of the batch to report it to.
ITEM_REMOVAL = object()

Items = list[tuple[Hashable, DocumentChange]]   # (origin, change) pairs of one resource


@dataclasses.dataclass
class Stored:
    """A resource's admin copy as read: its state and where it is in the shard."""
    state: ResourceState
    seq_no: int
    primary_term: int


@dataclasses.dataclass
class Read:
    """What one round read of the batch's resources."""
    stored: dict[Key, Stored] = dataclasses.field(default_factory=dict)
    #: item removals to fold in before late upserts of the removed items
    removals: dict[Key, Items] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))
    #: keys whose id another resource type of the group already uses: refused
    foreign: dict[Key, str] = dataclasses.field(default_factory=dict)
    #: keys Elasticsearch could not read now (shard unavailable): not planned
    unreadable: dict[Key, str] = dataclasses.field(default_factory=dict)
    #: ids of the item removals looked for and not found, per key
    absent: dict[Key, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))


@dataclasses.dataclass
class Write:
    """A resource's two copies to write: the admin one first, conditional."""
    key: Key
    state: ResourceState
    admin: dict        # bulk action
    user: dict         # bulk action, sent once ``admin`` has won


@dataclasses.dataclass
class Plan:
    writes: list[Write] = dataclasses.field(default_factory=list)
    #: user copies of states already stored (a redelivery: the process that wrote
    #: the admin copy may have died before the user copy)
    user_rewrites: list[tuple[Key, dict]] = dataclasses.field(default_factory=list)
    #: every planned key's fold results, reported once its writes are done
    folded: dict[Key, list[tuple[Hashable, merge.ChangeResult]]] = dataclasses.field(
        default_factory=dict)
    #: keys with nothing to write (stale, duplicate): done, their results stand
    settled: list[Key] = dataclasses.field(default_factory=list)
    #: keys refused for good in planning (and their rejected changes)
    refused: list[Key] = dataclasses.field(default_factory=list)
    rejected: list[Rejection] = dataclasses.field(default_factory=list)


def plan_round(by_key: dict[Key, Items], read: Read, index_of: Callable[[str], str],
               admin_only: dict[str, tuple[str, ...]], written_at: int) -> Plan:
    """The writes that bring each resource of ``by_key`` from what ``read`` found to
    the fold of its changes. ``index_of``: resource type -> the index to write;
    ``written_at``: now, in ms since the epoch (stamped on the copies)."""
    plan = Plan()
    for key, items in by_key.items():
        if key in read.unreadable:
            continue                           # not read: not written this round
        if key in read.foreign:
            plan.refused.append(key)
            plan.rejected.extend(Rejection(origin, change, read.foreign[key])
                                 for origin, change in items)
            continue
        items = items + read.removals.get(key, [])
        found = read.stored.get(key)
        state, results, dirty = merge.fold(found.state if found else None,
                                           [c for _, c in items])
        origins = _origins_by_change(items)
        plan.folded[key] = [(origin, r) for origin, r in
                            ((origins[id(r.change)].pop(), r) for r in results)
                            if origin is not ITEM_REMOVAL]
        if dirty:
            admin, user = write_actions(state, found, index_of(state.resource_type),
                                        admin_only.get(state.resource_type, ()),
                                        written_at)
            plan.writes.append(Write(key, state, admin, user))
        elif found is not None and any(r.outcome is merge.Outcome.DUPLICATE and
                                       r.change.version == found.state.version
                                       for r in results):
            _, user = write_actions(found.state, found, index_of(found.state.resource_type),
                                    admin_only.get(found.state.resource_type, ()),
                                    written_at)
            plan.user_rewrites.append((key, user))
        else:
            plan.settled.append(key)
    return plan


def write_actions(state: ResourceState, found: Stored | None, index: str,
                  admin_only: tuple[str, ...], written_at: int) -> tuple[dict, dict]:
    """The admin copy's write, conditional on the document it was folded onto
    (created if there was none), and the user copy's, versioned externally."""
    sources = documents.es_sources(state, admin_only, written_at=written_at)
    admin = {"_index": index, "_id": documents.doc_id(state.id, ADMIN),
             "_source": sources[ADMIN]}
    if found is None:
        admin["_op_type"] = "create"
    else:
        admin.update(_op_type="index", if_seq_no=found.seq_no,
                     if_primary_term=found.primary_term)
    user = {"_op_type": "index", "_index": index,
            "_id": documents.doc_id(state.id, USER), "version": state.version,
            "version_type": "external_gte", "_source": sources[USER]}
    return admin, user


def _origins_by_change(items: Items) -> dict[int, list]:
    origins: dict[int, list] = collections.defaultdict(list)
    for origin, change in items:
        origins[id(change)].append(origin)
    return origins
