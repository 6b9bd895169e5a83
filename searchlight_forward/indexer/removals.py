"""Changes that name a list item, not their resource, and item removals.

A security group rule delete names only the rule (``locate_by =
("security_group_rules.id", rule_id)``): ``Locator`` finds the group that holds
the rule, first in the batch, then by a search. If the delete overtook the rule's
create, no group holds the rule yet: an item tombstone remembers the removal
(hidden from search like any tombstone) so the late create cannot add it back. Each
round reads the tombstones that could hold back the batch's items
(``wanted_removals``) and folds them in (``removal_change``).

With several listener processes the create and the delete may be folded at the
same moment in two of them: the process that writes the removal refreshes and looks
for the group once more, and the process that writes the group reads the removals
again after its write (``execute.Store.arrived_removals``), so one of the two always
sees the other (tests/functional/test_indexer_races.py forces both interleavings).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Hashable

from searchlight_forward import search
from searchlight_forward.counters import Counters
from searchlight_forward.indexer import layout, merge
from searchlight_forward.indexer.plan import ITEM_REMOVAL, Items
from searchlight_forward.indexer.results import BatchResult, Key
from searchlight_forward.model import documents
from searchlight_forward.model.change import (DocumentChange, Operation, RemoveItem,
                                              SetFields, UpsertItem, chain, remove_item,
                                              set_fields)
from searchlight_forward.model.documents import ADMIN, ROLE_FIELD
from searchlight_forward.retry import TransientError
from searchlight_forward.search import helpers

Item = tuple[str, str, object]   # (list field, item key, the item's key value)


def removal_id(resource_type: str, list_field: str, key: str, value) -> str:
    """The id of the item tombstone of one list item."""
    return f"sf-removed:{resource_type}:{list_field}:{key}={value}"


def wanted_removals(by_key: dict[Key, Items], item_lists: dict[str, dict[str, str]]
                    ) -> dict[str, tuple[Key, Item]]:
    """Ids of the item tombstones that could hold back this batch's items."""
    wanted: dict[str, tuple[Key, Item]] = {}
    for key, items in by_key.items():
        for _, change in items:
            for op in change.patch.ops if change.patch else ():
                if isinstance(op, UpsertItem):
                    item = (op.list_field, op.key, op.value)
                    wanted[removal_id(key[0], *item)] = (key, item)
            # A full document may still list an item removed after it was made.
            for list_field, item_key in item_lists.get(key[0], {}).items():
                for element in (change.document or {}).get(list_field) or []:
                    item = (list_field, item_key, element.get(item_key))
                    wanted[removal_id(key[0], *item)] = (key, item)
    return wanted


def removal_change(key: Key, item: Item, doc: dict) -> tuple[object, DocumentChange]:
    """The item tombstone ``doc`` as a change to fold in, with its origin."""
    list_field, item_key, value = item
    patch = chain(remove_item(list_field, item_key, value),
                  set_fields(doc["_source"].get("set_fields") or {}))
    return ITEM_REMOVAL, DocumentChange(key[0], key[1], None, Operation.UPDATE,
                                        doc["_version"], "item removal", "", patch=patch)


class Locator:
    """Resolves ``locate_by`` lookups (e.g. a rule id -> its security group)."""

    def __init__(self, es: search.Client, groups: dict[str, str], counters: Counters):
        self.es = es
        self.groups = groups
        self.counters = counters

    def locate(self, pending: Items, result: BatchResult) -> Items:
        """``pending`` with each change that names an item addressed to the resource
        holding it; those held by none are reported stale (their removal is kept)."""
        plain = [(o, c) for o, c in pending if c.locate_by is None]
        lookups = []
        for origin, change in pending:
            if change.locate_by is None:
                continue
            owner = owner_in_batch(change, plain)
            if owner:
                plain.append((origin, dataclasses.replace(change, id=owner, locate_by=None)))
            else:
                lookups.append((origin, change))
        if not lookups:
            return plain
        # Search is near-real-time: the owner is almost always visible already (the
        # announcer refreshes every announce_interval); those not found are looked
        # for again below, after a refresh.
        orphans = []
        for (origin, change), resp in zip(lookups, self._search_owners(lookups)):
            if "error" in resp:
                raise TransientError(f"lookup failed: {resp['error']}")
            hits = resp["hits"]["hits"]
            if hits:
                plain.append((origin, located(change, hits[0])))
            else:
                orphans.append((origin, change))
        if not orphans:
            return plain
        # The owner is not visible yet, or unknown, or gone: remember the removals,
        # then refresh and look once more. Another listener process may be writing
        # the owner right now: it reads the removals after its write, this one
        # searches after writing them, so one of the two sees the other.
        self._write_item_removals([change for _, change in orphans])
        for group in {self.groups[change.resource_type] for _, change in orphans}:
            self.es.indices.refresh(index=layout.listener_alias(group))
        for (origin, change), resp in zip(orphans, self._search_owners(orphans)):
            if "error" in resp:
                raise TransientError(f"lookup failed: {resp['error']}")
            hits = resp["hits"]["hits"]
            if hits:
                plain.append((origin, located(change, hits[0])))
                continue
            self.counters.add("unlocated")
            result.results.append((origin, merge.ChangeResult(
                change, merge.Outcome.STALE, None)))
        return plain

    def _write_item_removals(self, orphans: list[DocumentChange]) -> None:
        actions = []
        for change in orphans:
            # Fields the change also sets (the group's updated_at) apply with it later.
            fields = {k: v for op in change.patch.ops if isinstance(op, SetFields)
                      for k, v in op.fields.items()}
            for op in change.patch.ops:
                if isinstance(op, RemoveItem):
                    actions.append({
                        "_op_type": "index",
                        "_index": layout.listener_alias(self.groups[change.resource_type]),
                        "_id": removal_id(change.resource_type, op.list_field,
                                          op.key, op.value),
                        "version": change.version, "version_type": "external_gte",
                        "_source": {ROLE_FIELD: "removal", documents.DELETED_FIELD: True,
                                    documents.VERSION_FIELD: change.version,
                                    documents.WRITTEN_AT_FIELD: int(time.time() * 1000),
                                    "resource_type": change.resource_type,
                                    "removed": [op.list_field, op.key, op.value],
                                    "set_fields": fields}})
        for ok, item in helpers.streaming_bulk(self.es, actions, raise_on_error=False,
                                               raise_on_exception=True, max_retries=0):
            status = item["index"].get("status")
            if not ok and status != 409:   # 409: a newer removal is already there
                raise TransientError(f"item removal not stored: {item['index'].get('error')}")

    def _search_owners(self, lookups: Items) -> list[dict]:
        searches: list[dict] = []
        for _, change in lookups:
            field, value = change.locate_by
            searches.append({"index": layout.listener_alias(self.groups[change.resource_type])})
            # The list may be mapped as objects or as nested documents: ask both ways.
            holds = {"bool": {"minimum_should_match": 1, "should": [
                {"term": {field: value}},
                {"nested": {"path": field.split(".", 1)[0], "ignore_unmapped": True,
                            "query": {"term": {field: value}}}}]}}
            searches.append({"size": 1, "_source": False, "query": {"bool": {"filter": [
                holds, {"term": {ROLE_FIELD: ADMIN}},
                {"term": {"resource_type": change.resource_type}}]}}})
        return self.es.msearch(searches=searches)["responses"]


def located(change: DocumentChange, hit: dict) -> DocumentChange:
    """The change addressed to the resource the search found."""
    return dataclasses.replace(change, id=hit["_id"].rsplit("_", 1)[0], locate_by=None)


def owner_in_batch(change: DocumentChange, others: list[tuple[Hashable, DocumentChange]]
                   ) -> str | None:
    """The id of a resource of this batch that holds the item ``change`` looks for."""
    field, value = change.locate_by
    list_field, key = field.split(".", 1)
    for _, other in reversed(others):
        if other.resource_type != change.resource_type:
            continue
        if other.document and any(i.get(key) == value
                                  for i in other.document.get(list_field) or []):
            return other.id
        for op in other.patch.ops if other.patch else ():
            if isinstance(op, UpsertItem) and op.list_field == list_field \
                    and op.key == key and op.value == value:
                return other.id
    return None
