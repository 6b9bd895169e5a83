"""Create, inspect, delete and rebuild a resource group's index (Elasticsearch I/O)."""
from __future__ import annotations

import logging
from typing import Callable

import elasticsearch
from elasticsearch import helpers

from searchlight_forward.indexer import layout

LOG = logging.getLogger(__name__)


def current_index(es: elasticsearch.Elasticsearch, group: str) -> str | None:
    alias = layout.listener_alias(group)
    if not es.indices.exists_alias(name=alias):
        return None
    indices = list(es.indices.get_alias(name=alias))
    return indices[0] if indices else None


def create(es, group: str, plugins, shards: int = 1, replicas: int = 0) -> str:
    """A new concrete index for ``group``, with both aliases pointing at it."""
    name = layout.new_index_name(group)
    es.indices.create(index=name, **layout.index_body(plugins, shards, replicas))
    old = [i for i in (current_index(es, group),) if i]
    es.indices.update_aliases(actions=layout.alias_actions(group, name, old))
    return name


def ensure(es, group: str, plugins, shards: int = 1, replicas: int = 0) -> str:
    """The group's index, created if there is none (safe when workers race)."""
    existing = current_index(es, group)
    if existing:
        return existing
    try:
        name = create(es, group, plugins, shards, replicas)
        LOG.info("created index %s for resource group %s", name, group)
        return name
    except elasticsearch.BadRequestError as exc:
        if exc.error not in ("resource_already_exists_exception",
                             "invalid_alias_name_exception"):
            raise
        return current_index(es, group) or ensure(es, group, plugins, shards, replicas)


def show(es, group: str) -> dict:
    index = current_index(es, group)
    if index is None:
        return {"group": group, "index": None}
    stats = es.indices.stats(index=index, metric="docs")["indices"][index]["primaries"]
    search = es.count(index=layout.search_alias(group))["count"]
    health = es.cluster.health(index=index)["status"]
    return {"group": group, "index": index, "health": health,
            "stored_docs": stats["docs"]["count"],
            "searchable_docs": search,
            "aliases": [layout.listener_alias(group), layout.search_alias(group)]}


def delete(es, group: str) -> list[str]:
    """Delete every concrete index of the group (both aliases go with them)."""
    names = set()
    for alias in (layout.listener_alias(group), layout.search_alias(group)):
        if es.indices.exists_alias(name=alias):
            names.update(es.indices.get_alias(name=alias))
    for name in sorted(names):
        es.indices.delete(index=name)
    return sorted(names)


def rebuild(es, group: str, plugins, shards: int = 1, replicas: int = 0,
            progress: Callable[[int, int], None] = lambda done, total: None) -> str:
    """Copy the group into a fresh index (new mappings) and switch the aliases.

    This Elasticsearch build has no ``_reindex``, so documents are scrolled out and
    bulk-written with their external versions. Listeners keep writing to the old
    index meanwhile; after the alias switch a second pass copies what changed during
    the first, and external versions make every copy idempotent and newest-wins.
    """
    old = current_index(es, group)
    if old is None:
        raise LookupError(f"resource group {group!r} has no index; create it first")
    new = layout.new_index_name(group)
    es.indices.create(index=new, **layout.index_body(plugins, shards, replicas))
    total = es.count(index=old)["count"]
    copied = _copy(es, old, new, lambda n: progress(n, total))
    es.indices.update_aliases(actions=layout.alias_actions(group, new, [old]))
    # Writes that reached the old index before the switch: copy them once more.
    es.indices.refresh(index=old)
    _copy(es, old, new, lambda n: progress(copied + n, total))
    es.indices.delete(index=old)
    return new


def _copy(es, source: str, target: str, progress: Callable[[int], None]) -> int:
    def actions():
        for hit in helpers.scan(es, index=source, query={"query": {"match_all": {}}},
                                version=True, size=500):
            yield {"_op_type": "index", "_index": target, "_id": hit["_id"],
                   "version": hit["_version"], "version_type": "external_gte",
                   "_source": hit["_source"]}
    done = 0
    for ok, item in helpers.streaming_bulk(es, actions(), raise_on_error=False,
                                           chunk_size=500):
        status = item["index"].get("status")
        if not ok and status != 409:  # 409: the target already has a newer state
            raise RuntimeError(f"copy failed for {item['index'].get('_id')}: "
                               f"{item['index'].get('error')}")
        done += 1
        if done % 500 == 0:
            progress(done)
    progress(done)
    return done
