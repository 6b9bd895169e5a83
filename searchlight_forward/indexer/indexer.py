"""Versioned, role-separated writes of document changes into Elasticsearch.

One ``apply`` call handles a listener batch with one ``mget`` (the stored states of
the batch's resources) and one bulk request (their new states), whatever the number
of notifications per resource. Writes use external versions (``external_gte``: an
equal version is the same state written again), so a concurrent writer's newer state
makes ours fail with 409; we then re-read that resource and fold again.

Errors fall in three kinds. Transient (unreachable, 429, 5xx): retried with backoff
and jitter, indefinitely, because the batch is not acknowledged until it is indexed.
Permanent for one resource (400, e.g. a value the mapping refuses): the changes are
returned as rejected, for the dead-letter index. Conflict (409): fold again.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any, Callable, Hashable, Iterable

import elasticsearch
from elasticsearch import helpers

from searchlight_forward.backoff import Backoff, TransientError
from searchlight_forward.change import DocumentChange
from searchlight_forward.indexer import documents, layout, merge
from searchlight_forward.indexer.documents import ADMIN, ROLE_FIELD, ResourceState

LOG = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS = 20
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
RETRY_HINT = ("The batch stays unacknowledged until it is indexed. Check the cluster: "
              "`curl $ES/_cluster/health` and `searchlight-forward-manage show`.")

Key = tuple[str, str]  # (resource_type, id)


@dataclasses.dataclass
class Rejection:
    origin: Hashable
    change: DocumentChange
    reason: str


@dataclasses.dataclass
class BatchResult:
    results: list[tuple[Hashable, merge.ChangeResult]] = dataclasses.field(default_factory=list)
    rejected: list[Rejection] = dataclasses.field(default_factory=list)

    def count(self, outcome: merge.Outcome) -> int:
        return sum(1 for _, r in self.results if r.outcome is outcome)


class Indexer:
    """Writes document changes for a set of resource plugins."""

    def __init__(self, es: elasticsearch.Elasticsearch, groups: dict[str, str],
                 admin_only: dict[str, tuple[str, ...]],
                 backoff: Backoff | None = None):
        self.es = es
        self.groups = groups            # resource_type -> resource group
        self.admin_only = admin_only    # resource_type -> fnmatch patterns
        self.counters: collections.Counter = collections.Counter()
        self.backoff = backoff or Backoff()

    # -- public ------------------------------------------------------------------

    def apply(self, changes: Iterable[tuple[Hashable, DocumentChange]]) -> BatchResult:
        """Index ``(origin, change)`` pairs; returns once every one is settled.

        Raises ``backoff.Stopping`` if asked to stop while Elasticsearch is unavailable;
        nothing is then known to be written and the batch must not be acknowledged.
        """
        result = BatchResult()
        pending = list(changes)
        located = self.backoff.until_done(lambda: self._locate(pending, result),
                                          "Elasticsearch lookup", RETRY_HINT)
        by_key: dict[Key, list[tuple[Hashable, DocumentChange]]] = collections.defaultdict(list)
        for origin, change in located:
            by_key[(change.resource_type, change.id)].append((origin, change))

        rounds = 0
        while by_key:
            rounds += 1
            done = self.backoff.until_done(lambda: self._round(by_key, result),
                                           "Elasticsearch write", RETRY_HINT)
            for key in done:
                del by_key[key]
            if by_key:
                self.counters["conflict_rounds"] += 1
                if rounds >= MAX_CONFLICT_ROUNDS:
                    # Someone keeps writing these resources: treat as contention.
                    LOG.warning("%d resources still conflicting after %d rounds; backing off",
                                len(by_key), rounds)
                    self.backoff.sleep(self.backoff.delay(rounds - MAX_CONFLICT_ROUNDS + 1))
        for _, r in result.results:
            self.counters[r.outcome.value] += 1
        self.counters["rejected"] += len(result.rejected)
        return result

    # -- one round: read, fold, write --------------------------------------------

    def _round(self, by_key, result: BatchResult) -> set[Key]:
        stored = self._read_states(list(by_key))
        actions: list[dict] = []
        action_keys: list[Key] = []
        folded: dict[Key, list[tuple[Hashable, merge.ChangeResult]]] = {}
        done: set[Key] = set()
        for key, items in by_key.items():
            state, results, dirty = merge.fold(stored.get(key), [c for _, c in items])
            origins = _origins_by_change(items)
            folded[key] = [(origins[id(r.change)].pop(), r) for r in results]
            if dirty:
                writes = self._write_actions(state)
                actions.extend(writes)
                action_keys.extend([key] * len(writes))
            else:
                done.add(key)
                result.results.extend(folded[key])
        if not actions:
            return done

        status_by_key: dict[Key, list[tuple[int, Any]]] = collections.defaultdict(list)
        # streaming_bulk yields one item per action, in order.
        for key, (_, item) in zip(action_keys, helpers.streaming_bulk(
                self.es, actions, raise_on_error=False, raise_on_exception=True,
                max_retries=0, yield_ok=True, chunk_size=1000)):
            info = item["index"]
            status_by_key[key].append((info.get("status"), info.get("error")))

        transient = False
        for key, statuses in status_by_key.items():
            codes = {s for s, _ in statuses}
            if codes <= {200, 201}:
                done.add(key)
                result.results.extend(folded[key])
            elif 409 in codes:
                self.counters["conflicts"] += 1   # a newer write won the race: fold again
            elif codes & TRANSIENT_STATUSES:
                transient = True
            else:
                # Both copies fail alike; the admin copy's error says it all.
                reason = next(_reason(e) for s, e in statuses if s not in (200, 201))
                done.add(key)
                for origin, change in by_key[key]:
                    result.rejected.append(Rejection(origin, change,
                                                     f"Elasticsearch refused the document: {reason}"))
        if transient:
            # Keep what succeeded; the caller retries the rest after a backoff.
            for key in done:
                del by_key[key]
            raise TransientError("Elasticsearch answered 429/5xx for some documents")
        return done

    def _write_actions(self, state: ResourceState) -> list[dict]:
        index = layout.listener_alias(self.groups[state.resource_type])
        sources = documents.es_sources(state, self.admin_only.get(state.resource_type, ()))
        return [{"_op_type": "index", "_index": index,
                 "_id": documents.doc_id(state.id, role), "version": state.version,
                 "version_type": "external_gte", "_source": source}
                for role, source in sources.items()]

    def _read_states(self, keys: list[Key]) -> dict[Key, ResourceState]:
        states: dict[Key, ResourceState] = {}
        by_group: dict[str, list[Key]] = collections.defaultdict(list)
        for key in keys:
            by_group[self.groups[key[0]]].append(key)
        for group, group_keys in by_group.items():
            ids = [documents.doc_id(rid, ADMIN) for _, rid in group_keys]
            resp = self.es.mget(index=layout.listener_alias(group), ids=ids)
            for key, doc in zip(group_keys, resp["docs"]):
                if doc.get("found"):
                    state = documents.state_from_source(doc["_source"], doc["_version"])
                    if state.resource_type == key[0]:
                        states[key] = state
                elif "error" in doc:
                    raise TransientError(f"mget failed: {doc['error']}")
        return states

    # -- changes that name another field than the id ------------------------------

    def _locate(self, pending, result: BatchResult):
        """Resolve ``locate_by`` lookups (e.g. a rule id -> its security group)."""
        plain = [(o, c) for o, c in pending if c.locate_by is None]
        lookups = [(o, c) for o, c in pending if c.locate_by is not None]
        if not lookups:
            return plain
        searches: list[dict] = []
        for _, change in lookups:
            field, value = change.locate_by
            searches.append({"index": layout.listener_alias(self.groups[change.resource_type])})
            searches.append({"size": 1, "_source": False, "query": {"bool": {"filter": [
                {"term": {field: value}}, {"term": {ROLE_FIELD: ADMIN}},
                {"term": {"resource_type": change.resource_type}}]}}})
        responses = self.es.msearch(searches=searches)["responses"]
        for (origin, change), resp in zip(lookups, responses):
            if "error" in resp:
                raise TransientError(f"lookup failed: {resp['error']}")
            hits = resp["hits"]["hits"]
            if not hits:
                # The owner was never indexed (or is gone): nothing to patch.
                self.counters["unlocated"] += 1
                result.results.append((origin, merge.ChangeResult(
                    change, merge.Outcome.STALE, None)))
                continue
            resource_id = hits[0]["_id"].rsplit("_", 1)[0]
            plain.append((origin, dataclasses.replace(change, id=resource_id,
                                                      locate_by=None)))
        return plain


def _origins_by_change(items) -> dict[int, list]:
    origins: dict[int, list] = collections.defaultdict(list)
    for origin, change in items:
        origins[id(change)].append(origin)
    return origins


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
