"""Index naming and mappings for a resource group (pure).

A group's documents live in a concrete index ``<group>-<UTC timestamp>`` reached
through two aliases: ``<group>-listener`` for writes and partial-update reads, and
``<group>-search`` for queries, which also hides tombstones. A rebuild creates a new
concrete index, copies into it and moves both aliases in one atomic call.
"""
from __future__ import annotations

import datetime
from typing import Iterable, Mapping

from searchlight_forward.model.documents import DELETED_FIELD, INTERNAL_MAPPING


class MappingConflict(ValueError):
    pass


def listener_alias(group: str) -> str:
    return f"{group}-listener"


def search_alias(group: str) -> str:
    return f"{group}-search"


def new_index_name(group: str, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{group}-{now.strftime('%Y%m%d%H%M%S%f')}"


def merge_properties(sources: Iterable[tuple[str, Mapping]]) -> dict:
    """Merge (owner, properties) pairs into one mapping; same field, same mapping."""
    merged: dict = {}
    owners: dict[str, str] = {}
    for owner, properties in sources:
        for field, spec in properties.items():
            if field in merged and merged[field] != spec:
                raise MappingConflict(
                    f"field {field!r} is mapped as {merged[field]} by {owners[field]} "
                    f"and as {dict(spec)} by {owner}; one index needs one mapping")
            merged[field] = dict(spec)
            owners.setdefault(field, owner)
    return merged


def index_body(plugins, shards: int, replicas: int) -> dict:
    """Settings and mappings for the index of a group holding these plugins.

    ``dynamic: false`` keeps unmapped fields (Nova metadata, Glance properties) in
    ``_source`` without letting arbitrary keys grow the mapping.
    """
    properties = merge_properties(
        [("searchlight-forward", INTERNAL_MAPPING)]
        + [(p.resource_type, p.search_mapping()) for p in plugins])
    return {
        "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
        "mappings": {"dynamic": False, "properties": properties},
    }


def aliases(group: str) -> dict:
    """Both aliases as an index's creation request gives them: processes that create
    a group's first index at the same moment cannot both win (Elasticsearch refuses
    a second write index for an alias in the same request that creates the index)."""
    return {listener_alias(group): {"is_write_index": True},
            search_alias(group): {"filter": _LIVE_ONLY}}


_LIVE_ONLY = {"bool": {"must_not": [{"term": {DELETED_FIELD: True}}]}}


def alias_actions(group: str, index: str, old_indices: Iterable[str] = ()) -> list:
    """Atomic alias moves pointing both aliases of ``group`` at ``index``."""
    actions: list = [{"remove": {"index": old, "alias": alias}}
                     for old in old_indices
                     for alias in (listener_alias(group), search_alias(group))]
    actions.append({"add": {"index": index, "alias": listener_alias(group),
                            "is_write_index": True}})
    actions.append({"add": {"index": index, "alias": search_alias(group),
                            "filter": _LIVE_ONLY}})
    return actions
