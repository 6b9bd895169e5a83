"""Create, inspect, delete and rebuild a resource group's index (Elasticsearch I/O)."""
from __future__ import annotations

import logging
from typing import Callable

from searchlight_forward import search
from searchlight_forward.search import helpers
from searchlight_forward.indexer import layout
from searchlight_forward.model.documents import ADMIN, ROLE_FIELD, VERSION_FIELD

LOG = logging.getLogger(__name__)


def current_index(es: search.Client, group: str) -> str | None:
    alias = layout.listener_alias(group)
    if not es.indices.exists_alias(name=alias):
        return None
    indices = list(es.indices.get_alias(name=alias))
    return indices[0] if indices else None


def create(es, group: str, plugins, shards: int = 1, replicas: int = 0) -> str:
    """The group's first concrete index, created with both aliases in one request."""
    name = layout.new_index_name(group)
    es.indices.create(index=name, aliases=layout.aliases(group),
                      **layout.index_body(plugins, shards, replicas))
    return name


# What a process that lost the race to create a group's first index is told.
_LOST_RACE = ("resource_already_exists_exception", "invalid_alias_name_exception",
              "illegal_state_exception")


def ensure(es, group: str, plugins, shards: int = 1, replicas: int = 0) -> str:
    """The group's index, created if there is none (safe when processes race)."""
    for _ in range(5):
        existing = current_index(es, group)
        if existing:
            _add_new_fields(es, existing, plugins)
            return existing
        try:
            name = create(es, group, plugins, shards, replicas)
            LOG.info("created index %s for resource group %s", name, group)
            return name
        except search.ApiError as exc:
            if search.error_type(exc) not in _LOST_RACE:
                raise
    raise RuntimeError(f"could not create or find the index of resource group {group}")


def _add_new_fields(es, index: str, plugins) -> None:
    """Map fields this release added (adding a field is allowed on a live index);
    a field whose mapping changed needs a rebuild, which the error says."""
    try:
        es.indices.put_mapping(index=index, **layout.index_body(plugins, 1, 0)["mappings"])
    except search.BadRequestError as exc:
        LOG.warning("index %s keeps its old mappings (%s); run "
                    "`searchlight-forward-manage rebuild` to apply the new ones",
                    index, exc)


def show(es, group: str) -> dict:
    index = current_index(es, group)
    if index is None:
        return {"group": group, "index": None}
    stats = es.indices.stats(index=index, metric="docs")["indices"][index]["primaries"]
    searchable = es.count(index=layout.search_alias(group))["count"]
    health = es.cluster.health(index=index)["status"]
    return {"group": group, "index": index, "health": health,
            "stored_docs": stats["docs"]["count"],
            "searchable_docs": searchable,
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
    bulk-written (``_copy``). Listeners keep writing to the old index meanwhile;
    after the alias switch a second pass copies what changed during the first, and
    never over a newer state a listener wrote into the new index since.
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
    """Copy every document of ``source`` into ``target``, never over a newer state.

    Admin copies are written on the condition that the target still holds what was
    read there (or nothing), and only if it is older, as listeners write them;
    user copies and item tombstones carry their version externally."""
    done = 0
    batch: list[dict] = []
    for hit in helpers.scan(es, index=source, query={"query": {"match_all": {}}},
                            version=True, size=500):
        batch.append(hit)
        if len(batch) == 500:
            done += _copy_batch(es, target, batch)
            batch = []
            progress(done)
    done += _copy_batch(es, target, batch)
    progress(done)
    return done


def _copy_batch(es, target: str, hits: list[dict]) -> int:
    if not hits:
        return 0
    admin_ids = [h["_id"] for h in hits if h["_source"].get(ROLE_FIELD) == ADMIN]
    there = {}
    if admin_ids:
        for doc in es.mget(index=target, ids=admin_ids)["docs"]:
            if doc.get("found"):
                there[doc["_id"]] = doc
    actions = []
    for hit in hits:
        source = hit["_source"]
        if source.get(ROLE_FIELD) != ADMIN:
            actions.append({"_op_type": "index", "_index": target, "_id": hit["_id"],
                            "version": hit["_version"], "version_type": "external_gte",
                            "_source": source})
            continue
        current = there.get(hit["_id"])
        if current is None:
            actions.append({"_op_type": "create", "_index": target, "_id": hit["_id"],
                            "_source": source})
        elif int(current["_source"].get(VERSION_FIELD) or 0) < int(source.get(VERSION_FIELD) or 0):
            actions.append({"_op_type": "index", "_index": target, "_id": hit["_id"],
                            "if_seq_no": current["_seq_no"],
                            "if_primary_term": current["_primary_term"], "_source": source})
    for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False,
                                           max_retries=0, chunk_size=500):
        (info,) = item.values()
        # 409: a listener wrote a newer state meanwhile, which stays.
        if not ok and info.get("status") != 409:
            raise RuntimeError(f"copy failed for {info.get('_id')}: {info.get('error')}")
    return len(hits)
