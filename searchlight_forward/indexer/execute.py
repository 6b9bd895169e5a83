"""The indexer's I/O for a write round: reads (``mget``) and bulk writes.

``Store`` turns what Elasticsearch answers into the plain values ``plan`` and
``classify`` work on; it decides nothing. ``StateCache`` saves reads of what this
process wrote last.
"""
from __future__ import annotations

import collections
import threading

import cachetools

from searchlight_forward import search
from searchlight_forward.indexer import layout, removals
from searchlight_forward.indexer.classify import Answer, reason
from searchlight_forward.indexer.plan import Read, Stored
from searchlight_forward.indexer.results import Key
from searchlight_forward.model import documents
from searchlight_forward.model.documents import ADMIN
from searchlight_forward.search import helpers


class Store:
    """Reads and writes the admin and user copies of one listener's groups."""

    def __init__(self, es: search.Client, groups: dict[str, str], write_timeout: str):
        self.es = es
        self.groups = groups                # resource_type -> resource group
        self.write_timeout = write_timeout  # e.g. "60000ms"

    def index_of(self, resource_type: str) -> str:
        return layout.listener_alias(self.groups[resource_type])

    def read(self, keys: list[Key], wanted: dict[str, tuple[Key, removals.Item]]) -> Read:
        """One mget per group: the admin copies of ``keys`` (with the ``_seq_no`` and
        ``_primary_term`` the writes are conditional on) and the ``wanted`` item
        tombstones (removal id -> the key and item it could hold back)."""
        read = Read()
        ids_by_group: dict[str, list[tuple[str, object]]] = collections.defaultdict(list)
        for key in keys:
            ids_by_group[self.groups[key[0]]].append((documents.doc_id(key[1], ADMIN), key))
        for removal_id, (key, item) in wanted.items():
            ids_by_group[self.groups[key[0]]].append((removal_id, (key, item)))
        for group, entries in ids_by_group.items():
            resp = self.es.mget(index=layout.listener_alias(group),
                                ids=[doc_id for doc_id, _ in entries])
            for (doc_id, what), doc in zip(entries, resp["docs"]):
                if "error" in doc:
                    key = what[0] if doc_id in wanted else what
                    read.unreadable[key] = f"{reason(doc['error'])} to a read"
                    continue
                if not doc.get("found"):
                    if doc_id in wanted:
                        read.absent[what[0]].append(doc_id)
                    continue
                if doc_id in wanted:
                    key, item = what
                    read.removals[key].append(removals.removal_change(key, item, doc))
                    continue
                state = documents.state_from_source(doc["_source"], doc["_version"])
                if state.resource_type != what[0]:
                    read.foreign[what] = (f"id {what[1]} is already used by a "
                                          f"{state.resource_type} in resource group {group}")
                    continue
                read.stored[what] = Stored(state, doc["_seq_no"], doc["_primary_term"])
        return read

    def bulk(self, actions: list[dict]) -> list[Answer]:
        """(status, the item's answer) per action, in order."""
        if not actions:
            return []
        found = []
        # streaming_bulk yields one item per action, in order.
        for _, item in helpers.streaming_bulk(self.es, actions, raise_on_error=False,
                                              raise_on_exception=True, max_retries=0,
                                              yield_ok=True, chunk_size=1000,
                                              timeout=self.write_timeout):
            (info,) = item.values()
            found.append((info.get("status"), info))
        return found

    def arrived_removals(self, absent: dict[Key, list[str]]) -> set[Key]:
        """The keys for which an item removal looked for at the read is there now:
        written by another process between this round's read and its write."""
        ids = [(doc_id, key) for key, doc_ids in absent.items() for doc_id in doc_ids]
        if not ids:
            return set()
        arrived: set[Key] = set()
        by_group: dict[str, list[tuple[str, Key]]] = collections.defaultdict(list)
        for doc_id, key in ids:
            by_group[self.groups[key[0]]].append((doc_id, key))
        for group, entries in by_group.items():
            resp = self.es.mget(index=layout.listener_alias(group),
                                ids=[doc_id for doc_id, _ in entries])
            for (_, key), doc in zip(entries, resp["docs"]):
                if doc.get("found") or "error" in doc:   # unreadable: read it again
                    arrived.add(key)
        return arrived


class StateCache:
    """The admin copies this process read or wrote last (LRU, thread-safe).

    Most notifications are about a resource changed moments before; folding onto the
    state this process holds saves a realtime ``mget`` (which makes Elasticsearch
    refresh a shard in place when the document is not searchable yet). The write
    stays conditional on that state's ``_seq_no``, so a stale entry only costs a
    conflict and a read."""

    def __init__(self, size: int):
        self._entries = cachetools.LRUCache(maxsize=max(1, size)) if size else None
        self._lock = threading.Lock()

    def get(self, key) -> Stored | None:
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(key)

    def put(self, key, stored: Stored) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries[key] = stored

    def drop(self, key) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries.pop(key, None)
