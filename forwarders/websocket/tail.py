"""The live source and the resume source, both read from Elasticsearch.

Every write to a document gets a new ``_seq_no``; with one primary shard (the
project's default) ``_seq_no`` totally orders the writes of the index, whichever
listener process made them. So the index itself is the change log:

* the tailer keeps ``position`` (a seq_no). A poll reads the shard's
  ``local_checkpoint`` (every operation up to it is processed), refreshes the index
  (so they are searchable), and searches ``position < _seq_no <= checkpoint`` on the
  ``<group>-listener`` alias's concrete index - tombstones included, both role
  copies - sorted by ``_seq_no`` and paged with ``search_after``. Each page is
  handed to the server as it comes, and ``position`` follows it.
* a resume is the same query for one connection (its role copy, project and
  types), from its cursor up to the tailer's position at that instant; the live
  stream takes over above it, so there is no gap.

A document rewritten while a poll reads moves to a seq_no above the checkpoint; the
next poll reads its newest state. Polls run when the doorbell rings and every
``poll_interval`` in case a ring is lost; rings that arrive during a poll make one
more poll, not one each.

When the alias moves to another concrete index (``searchlight-forward-manage
rebuild``), the tailer reads the new index from the start, marked as a
resynchronisation; per-connection version tracking makes that cheap for clients.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, AsyncIterator, Callable, Sequence

import elasticsearch

from forwarders.websocket.protocol import Change, Subscription
from searchlight_forward.indexer import layout
from searchlight_forward.indexer.documents import ADMIN, DELETED_FIELD, ROLE_FIELD, USER

LOG = logging.getLogger(__name__)

PAGE_SIZE = 500
ROLE_COPIES = (ADMIN, USER)     # not the indexer's "removal" item tombstones


class TailError(RuntimeError):
    """The group's index cannot be tailed (e.g. more than one primary shard)."""


class NoIndex(LookupError):
    """The group has no index (yet, or it was deleted)."""


def range_query(after: int, upto: int, roles: Sequence[str] = ROLE_COPIES,
                resource_types: Sequence[str] | None = None,
                project_id: str | None = None, live_only: bool = False) -> dict:
    """Documents written at ``after < _seq_no <= upto``, narrowed for a connection."""
    filters: list[dict] = [{"range": {"_seq_no": {"gt": after, "lte": upto}}},
                           {"terms": {ROLE_FIELD: list(roles)}}]
    if resource_types is not None:
        filters.append({"terms": {"resource_type": sorted(resource_types)}})
    if project_id is not None:
        filters.append({"term": {"project_id": project_id}})
    query: dict = {"bool": {"filter": filters}}
    if live_only:
        query["bool"]["must_not"] = [{"term": {DELETED_FIELD: True}}]
    return query


def subscription_query(sub: Subscription, after: int, upto: int, full: bool) -> dict:
    return range_query(after, upto, roles=(sub.role,), resource_types=sub.resource_types,
                       project_id=None if sub.all_projects else sub.project_id,
                       live_only=full)


class Tailer:
    """Follows one resource group's index; hands pages of ``Change`` to ``on_changes``.

    Runs in an asyncio loop; Elasticsearch calls go to a worker thread.
    """

    def __init__(self, es: elasticsearch.Elasticsearch, group: str,
                 on_changes: Callable[[list[Change]], None] = lambda changes: None,
                 poll_interval: float = 1.0, page_size: int = PAGE_SIZE,
                 executor: concurrent.futures.Executor | None = None):
        self.es = es
        self.group = group
        self.alias = layout.listener_alias(group)
        self.on_changes = on_changes
        self.poll_interval = poll_interval
        self.page_size = page_size
        self.index: str | None = None
        self.position = -1
        self._resync_upto = -1       # after an index switch: the first pass
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"tail-{group}")
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.polls = 0
        self.rings = 0
        self.changes = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- control ---------------------------------------------------------------

    async def start(self) -> None:
        """Start at the index's current checkpoint (clients resume from their cursor)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            located = await self._call(self._checkpoint)
        except NoIndex:
            located = None
            LOG.warning("resource group %s has no index yet (alias %s); waiting for "
                        "the listener to create it", self.group, self.alias)
        if located:
            index, checkpoint = located
            # Resumes read up to ``position``: it must be searchable already.
            await self._call(lambda: self.es.indices.refresh(index=index))
            self.index, self.position = index, checkpoint
            LOG.info("tailing %s (%s) from seq_no %d", self.alias, self.index,
                     self.position)
        self._task = asyncio.create_task(self._run(), name=f"tail-{self.group}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    def ring(self) -> None:
        """Poll soon (call in the loop's thread)."""
        self.rings += 1
        if self._wake is not None:
            self._wake.set()

    def ring_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.ring)

    # -- polling ---------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep tailing; say why
                failures += 1
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(30.0, self.poll_interval * 2 ** min(failures, 5))
                (LOG.error if failures in (1, 10) or failures % 100 == 0 else LOG.debug)(
                    "poll of %s failed (%s); retrying in %.1fs", self.alias,
                    self.last_error, delay)
                await asyncio.sleep(delay)

    async def poll(self) -> int:
        """One poll; returns the number of changes handed over."""
        self.polls += 1
        try:
            index, checkpoint = await self._call(self._checkpoint)
        except NoIndex:
            return 0     # no index (yet, or deleted): nothing to tail
        if index != self.index:
            if self.index is not None:
                LOG.warning("%s moved from %s to %s (rebuild?): reading the new index "
                            "from the start", self.alias, self.index, index)
            self.index, self.position, self._resync_upto = index, -1, checkpoint
        if checkpoint <= self.position:
            return 0
        count = 0
        try:
            await self._call(lambda: self.es.indices.refresh(index=index))
            query = range_query(self.position, checkpoint)
            async for page in self.pages(index, query):
                changes = [Change.from_hit(h, resync=h["_seq_no"] <= self._resync_upto)
                           for h in page]
                count += len(changes)
                self.changes += len(changes)
                try:
                    self.on_changes(changes)
                finally:
                    self.position = max(self.position, page[-1]["_seq_no"])
        except elasticsearch.NotFoundError:
            # The index went away under us (a rebuild deleted it): the next poll
            # finds the alias's new index.
            LOG.info("%s disappeared while being read; polling the alias again", index)
            self.ring()
            return count
        self.position = max(self.position, checkpoint)
        return count

    def _checkpoint(self) -> tuple[str, int]:
        """(concrete index, local checkpoint of its primary shard)."""
        try:
            resp = self.es.indices.stats(
                index=self.alias, metric="docs", level="shards",
                filter_path="indices.*.shards.*.routing.primary,indices.*.shards.*.seq_no")
        except elasticsearch.NotFoundError:
            raise NoIndex(self.alias) from None
        indices = (resp.body or {}).get("indices") or {}
        if not indices:
            raise NoIndex(self.alias)
        if len(indices) > 1:
            raise TailError(f"{self.alias} points at {len(indices)} indices; expected one")
        (index, stats), = indices.items()
        shards = stats.get("shards") or {}
        if len(shards) != 1:
            raise TailError(
                f"{index} has {len(shards)} primary shards: the WebSocket server needs "
                f"one ([elasticsearch] number_of_shards = 1), because _seq_no orders "
                f"writes only within a shard")
        copies = next(iter(shards.values()))
        primary = next((c for c in copies if (c.get("routing") or {}).get("primary")),
                       copies[0])
        return index, int(primary["seq_no"]["local_checkpoint"])

    # -- reading ---------------------------------------------------------------

    async def pages(self, index: str, query: dict) -> AsyncIterator[list[dict]]:
        """Hits of ``query`` in ``index``, in ``_seq_no`` order, a page at a time."""
        after = None
        while True:
            hits = await self._call(lambda a=after: self._search(index, query, a))
            if not hits:
                return
            yield hits
            if len(hits) < self.page_size:
                return
            after = hits[-1]["sort"]

    def _search(self, index: str, query: dict, after: list | None) -> list[dict]:
        kwargs: dict[str, Any] = {}
        if after is not None:
            kwargs["search_after"] = after
        resp = self.es.search(index=index, query=query, sort=[{"_seq_no": "asc"}],
                              size=self.page_size, seq_no_primary_term=True,
                              version=True, track_total_hits=False, **kwargs)
        return resp["hits"]["hits"]

    async def resume_pages(self, index: str, sub: Subscription, after: int, upto: int,
                           full: bool, executor: concurrent.futures.Executor | None = None
                           ) -> AsyncIterator[list[Change]]:
        """A connection's resume: its documents at ``after < _seq_no <= upto``."""
        query = subscription_query(sub, after, upto, full)
        cursor = None
        while True:
            hits = await self._call(lambda a=cursor: self._search(index, query, a),
                                    executor)
            if not hits:
                return
            yield [Change.from_hit(h, resync=full) for h in hits]
            if len(hits) < self.page_size:
                return
            cursor = hits[-1]["sort"]

    async def _call(self, fn, executor: concurrent.futures.Executor | None = None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self._executor, fn)

    def stats(self) -> dict:
        return {"index": self.index, "position": self.position, "polls": self.polls,
                "rings": self.rings, "changes": self.changes, "failures": self.failures,
                "last_error": self.last_error, "at": time.time()}
