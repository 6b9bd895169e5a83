"""Versioned, role-separated writes of document changes into Elasticsearch.

One ``apply`` call handles a listener batch with one ``mget`` (the stored states of
the batch's resources) and two bulk requests (admin copies, then user copies),
whatever the number of notifications per resource.

Every admin copy is written on the condition that the document is still the one
the fold read (``if_seq_no``/``if_primary_term``, or ``create`` where there was
none). Any other write in between, by any listener process, makes ours fail with
409; we re-read that resource and fold again. So no process ever writes a fold of a
state another has since replaced, and each resource's version only goes up in its
shard's write order. The user copy is written once its admin copy has won, with the
state's version as external version, so it never shows a state the admin copy did
not take (a redelivery rewrites it, should a process die between the two).

Errors fall in three kinds. Transient (unreachable, 429, 5xx): retried with backoff
and jitter, indefinitely, because the batch is not acknowledged until it is indexed;
but a document answered 429/5xx ``max_item_attempts`` times while Elasticsearch
took others is the document's fault (too big for a circuit breaker, say), and its
changes are rejected. Permanent for one resource (400, e.g. a value the mapping
refuses): the changes are returned as rejected, for the dead-letter index.
Conflict (409): fold again. Anything else raised (a document the client cannot
serialize) is the caller's to isolate.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any, Hashable, Iterable

import cachetools

from searchlight_forward import search
from searchlight_forward.counters import Counters
from searchlight_forward.search import helpers
from searchlight_forward.model.change import (DocumentChange, Operation, RemoveItem,
                                        SetFields, UpsertItem, chain, remove_item,
                                        set_fields)
from searchlight_forward.indexer import layout, merge
from searchlight_forward.model import documents
from searchlight_forward.retry import TRANSIENT_STATUSES, Policy, Retry, TransientError
from searchlight_forward.model.documents import ADMIN, ROLE_FIELD, ResourceState

LOG = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS = 20
RETRY_HINT = ("The batch stays unacknowledged until it is indexed. Check the cluster: "
              "`curl $ES/_cluster/health` and `searchlight-forward-manage show`.")

Key = tuple[str, str]  # (resource_type, id)
_REMOVAL = object()    # origin of synthetic item removals: nothing to report


@dataclasses.dataclass
class Rejection:
    origin: Hashable
    change: DocumentChange
    reason: str


@dataclasses.dataclass
class Stored:
    """A resource's admin copy as read: its state and where it is in the shard."""
    state: ResourceState
    seq_no: int
    primary_term: int


@dataclasses.dataclass
class BatchResult:
    results: list[tuple[Hashable, merge.ChangeResult]] = dataclasses.field(default_factory=list)
    rejected: list[Rejection] = dataclasses.field(default_factory=list)

    def count(self, outcome: merge.Outcome) -> int:
        return sum(1 for _, r in self.results if r.outcome is outcome)


class Indexer:
    """Writes document changes for a set of resource plugins."""

    def __init__(self, es: search.Client, groups: dict[str, str],
                 admin_only: dict[str, tuple[str, ...]],
                 retry: Policy = Policy(),
                 item_lists: dict[str, dict[str, str]] | None = None,
                 stop_event: threading.Event | None = None, probe=None,
                 state_cache_size: int = 10000, max_item_attempts: int = 10,
                 write_timeout: float = 60.0):
        self.es = es
        self.groups = groups            # resource_type -> resource group
        self.admin_only = admin_only    # resource_type -> fnmatch patterns
        self.item_lists = item_lists or {}  # resource_type -> {list field: item key}
        self._gate = ReadWriteLock()
        self.counters: Counters = Counters()
        stop_event = stop_event or threading.Event()
        self._lookup_retry = Retry(retry, "Elasticsearch lookup", RETRY_HINT, stop_event, probe)
        self._write_retry = Retry(retry, "Elasticsearch write", RETRY_HINT, stop_event, probe)
        self._locks = KeyLocks()
        self._states = StateCache(state_cache_size)
        self.max_item_attempts = max_item_attempts
        self._took = 0          # rounds in which Elasticsearch took documents (any batch)
        self.write_timeout = f"{max(1, round(write_timeout * 1000))}ms"  # no fractions

    # -- public ------------------------------------------------------------------

    @property
    def retries(self) -> int:
        return self._lookup_retry.retries + self._write_retry.retries

    def apply(self, changes: Iterable[tuple[Hashable, DocumentChange]]) -> BatchResult:
        """Index ``(origin, change)`` pairs; returns once every one is settled.

        Raises ``retry.Stopping`` if asked to stop while Elasticsearch is unavailable;
        nothing is then known to be written and the batch must not be acknowledged.
        """
        result = BatchResult()
        pending = list(changes)
        # A lookup by search must see every write of the batches in flight: it waits
        # for them, and they for it; batches without lookups run side by side.
        needs_lookup = any(c.locate_by is not None for _, c in pending)
        with (self._gate.exclusive() if needs_lookup else self._gate.shared()):
            self._apply(pending, result)
        for _, r in result.results:
            self.counters.add(r.outcome.value)
        self.counters.add("rejected", len(result.rejected))
        return result

    def _apply(self, pending, result: BatchResult) -> None:
        located = self._lookup_retry.call(lambda: self._locate(pending, result))
        by_key: dict[Key, list[tuple[Hashable, DocumentChange]]] = collections.defaultdict(list)
        for origin, change in located:
            by_key[(change.resource_type, change.id)].append((origin, change))
        self._write(by_key, result)

    def _write(self, by_key, result: BatchResult) -> None:
        rounds = 0
        # key -> (429/5xx answers counted, self._took at the last one counted)
        failures: dict[Key, tuple[int, int]] = {}
        took_before = self._took
        while by_key:
            rounds += 1
            done = self._write_retry.call(lambda: self._locked_round(
                by_key, result, failures, took_before))
            for key in done:
                del by_key[key]
            if by_key:
                self.counters.add("conflict_rounds")
                if rounds >= MAX_CONFLICT_ROUNDS:
                    # Someone keeps writing these resources: treat as contention.
                    LOG.warning("%d resources still conflicting after %d rounds; backing off",
                                len(by_key), rounds)
                    self._write_retry.sleep(min(self._write_retry.policy.maximum,
                                                self._write_retry.policy.initial
                                                * 2 ** (rounds - MAX_CONFLICT_ROUNDS)))

    # -- one round: read, fold, write --------------------------------------------

    def _locked_round(self, by_key, *args) -> set[Key]:
        # Held for the round only: a resource settled in an earlier round, or one
        # waiting out a backoff, does not hold back other batches' changes to it.
        with self._locks.holding(list(by_key)):
            return self._round(by_key, *args)

    def _round(self, by_key, result: BatchResult, failures: dict[Key, tuple[int, int]],
               took_before: int) -> set[Key]:
        stored, removals, foreign, unavailable, absent = self._read(by_key)
        admin_writes: list[tuple[Key, dict, dict]] = []
        user_rewrites: list[tuple[Key, dict]] = []
        folded: dict[Key, list[tuple[Hashable, merge.ChangeResult]]] = {}
        done: set[Key] = set()
        for key, items in by_key.items():
            if key in unavailable:
                continue                           # not read: not written this round
            if key in foreign:
                done.add(key)
                for origin, change in items:
                    result.rejected.append(Rejection(origin, change, foreign[key]))
                continue
            items = items + removals.get(key, [])
            found = stored.get(key)
            state, results, dirty = merge.fold(found.state if found else None,
                                               [c for _, c in items])
            origins = _origins_by_change(items)
            folded[key] = [(origin, r) for origin, r in
                           ((origins[id(r.change)].pop(), r) for r in results)
                           if origin is not _REMOVAL]
            if dirty:
                admin_writes.append((key, *self._write_actions(state, found)))
            elif found is not None and any(r.outcome is merge.Outcome.DUPLICATE and
                                           r.change.version == found.state.version
                                           for r in results):
                # A redelivery of what is stored: the process that wrote it may have
                # died between the admin copy and the user copy.
                user_rewrites.append((key, self._write_actions(found.state, found)[1]))
            else:
                done.add(key)
                result.results.extend(folded[key])

        # First the admin copies, each conditional on the state it was folded onto ...
        user_writes = list(user_rewrites)
        # ``unavailable``: keys answered 429/5xx (or not readable) in this round.
        written = False
        answers = self._bulk([a for _, a, _ in admin_writes])
        arrived = self._removals_since({key: absent[key] for (key, _, _), (status, _)
                                        in zip(admin_writes, answers)
                                        if status in (200, 201) and absent.get(key)})
        for (key, admin, user), (status, info) in zip(admin_writes, answers):
            if status in (200, 201):
                written = True
                self._states.put(key, Stored(admin["_state"], info["_seq_no"],
                                             info["_primary_term"]))
                if key in arrived:
                    self.counters.add("late_item_removals")   # fold it in next round
                else:
                    user_writes.append((key, user))
                continue
            self._states.drop(key)               # read it afresh next round
            if status == 409:
                self.counters.add("conflicts")   # another writer got there: fold again
            elif status in TRANSIENT_STATUSES:
                unavailable[key] = f"{status} {_reason(info.get('error'))}"
            else:
                error = info.get("error")
                done.add(key)
                for origin, change in by_key[key]:
                    result.rejected.append(Rejection(
                        origin, change, f"Elasticsearch refused the document: {_reason(error)}"))
        # ... then the user copies of the states that won, so a user copy never shows
        # a state the admin copy did not take.
        for (key, _), (status, info) in zip(
                user_writes, self._bulk([u for _, u in user_writes])):
            if status in (200, 201, 409):         # 409: a newer state's copy is there
                written = True
                done.add(key)
                result.results.extend(folded[key])
            else:                                 # the admin copy is in: next round rewrites
                unavailable[key] = f"{status} {_reason(info.get('error'))}"
        if written or done:
            self._took += 1
        # A document refused again while Elasticsearch took others (of any batch)
        # since its last refusal is at fault; one refused while nothing is taken is
        # waiting for an outage to end, however long.
        for key, answer in unavailable.items():
            count, mark = failures.get(key, (0, took_before))
            if self._took > mark:
                count, mark = count + 1, self._took
            failures[key] = (count, mark)
            if count >= self.max_item_attempts:
                done.add(key)
                self.counters.add("rejected_after_attempts")
                for origin, change in by_key[key]:
                    result.rejected.append(Rejection(origin, change, (
                        f"Elasticsearch answered {answer} {count} times while it "
                        f"took other documents")))
        if set(unavailable) - done:
            # Keep what succeeded; the caller retries the rest after a backoff.
            for key in done:
                del by_key[key]
            left = {k: a for k, a in unavailable.items() if k not in done}
            raise TransientError(f"Elasticsearch answered {next(iter(left.values()))} "
                                 f"for {len(left)} document(s)")
        return done

    def _bulk(self, actions: list[dict]) -> list[tuple[int, dict]]:
        """(status, the item's answer) per action, in order."""
        if not actions:
            return []
        found = []
        # streaming_bulk yields one item per action, in order.
        sendable = ({k: v for k, v in a.items() if k != "_state"} for a in actions)
        for _, item in helpers.streaming_bulk(self.es, sendable, raise_on_error=False,
                                              raise_on_exception=True, max_retries=0,
                                              yield_ok=True, chunk_size=1000,
                                              timeout=self.write_timeout):
            (info,) = item.values()
            found.append((info.get("status"), info))
        return found

    def _write_actions(self, state: ResourceState, found: "Stored | None"
                       ) -> tuple[dict, dict]:
        """The admin copy's write, conditional on the document it was folded onto
        (created if there was none), and the user copy's, versioned externally."""
        index = layout.listener_alias(self.groups[state.resource_type])
        sources = documents.es_sources(state, self.admin_only.get(state.resource_type, ()),
                                       written_at=int(time.time() * 1000))
        admin = {"_index": index, "_id": documents.doc_id(state.id, ADMIN),
                 "_source": sources[ADMIN], "_state": state}
        if found is None:
            admin["_op_type"] = "create"
        else:
            admin.update(_op_type="index", if_seq_no=found.seq_no,
                         if_primary_term=found.primary_term)
        user = {"_op_type": "index", "_index": index,
                "_id": documents.doc_id(state.id, documents.USER), "version": state.version,
                "version_type": "external_gte", "_source": sources[documents.USER]}
        return admin, user

    def _read(self, by_key) -> tuple[dict[Key, "Stored"], dict[Key, list], dict[Key, str],
                                     dict[Key, str], dict[Key, list[str]]]:
        """One mget per group: the stored admin copies (with the ``_seq_no`` and
        ``_primary_term`` the writes are conditional on), the item removals that
        must be folded in before late upserts of removed items (see below), the
        keys whose id another resource type already uses (refused), the keys
        Elasticsearch could not read now (their shard is unavailable: try again),
        and the ids of the item removals looked for and not found, per key."""
        wanted = self._wanted_removals(by_key)
        states: dict[Key, Stored] = {}
        foreign: dict[Key, str] = {}
        unreadable: dict[Key, str] = {}
        removals: dict[Key, list] = collections.defaultdict(list)
        absent: dict[Key, list[str]] = collections.defaultdict(list)
        ids_by_group: dict[str, list[tuple[str, object]]] = collections.defaultdict(list)
        for key in by_key:
            known = self._states.get(key)
            if known is not None:
                # What this process wrote last: if another wrote since, the write is
                # refused (if_seq_no) and the next round reads it.
                states[key] = known
                continue
            ids_by_group[self.groups[key[0]]].append((documents.doc_id(key[1], ADMIN), key))
        for removal_id, (key, item) in wanted.items():
            ids_by_group[self.groups[key[0]]].append((removal_id, (key, item)))
        for group, entries in ids_by_group.items():
            resp = self.es.mget(index=layout.listener_alias(group),
                                ids=[doc_id for doc_id, _ in entries])
            for (doc_id, what), doc in zip(entries, resp["docs"]):
                if "error" in doc:
                    key = what[0] if doc_id in wanted else what
                    unreadable[key] = f"{_reason(doc['error'])} to a read"
                    continue
                if not doc.get("found"):
                    if doc_id in wanted:
                        absent[what[0]].append(doc_id)
                    continue
                if doc_id in wanted:
                    key, (list_field, item_key, value) = what
                    patch = chain(remove_item(list_field, item_key, value),
                                  set_fields(doc["_source"].get("set_fields") or {}))
                    removals[key].append((_REMOVAL, DocumentChange(
                        key[0], key[1], None, Operation.UPDATE, doc["_version"],
                        "item removal", "", patch=patch)))
                    continue
                state = documents.state_from_source(doc["_source"], doc["_version"])
                if state.resource_type != what[0]:
                    foreign[what] = (f"id {what[1]} is already used by a "
                                     f"{state.resource_type} in resource group {group}")
                    continue
                states[what] = Stored(state, doc["_seq_no"], doc["_primary_term"])
                self._states.put(what, states[what])
        return states, removals, foreign, unreadable, absent

    # -- list items removed before the owner was known -----------------------------
    #
    # A security group rule delete names only the rule. If it overtakes the rule's
    # create, no group holds the rule yet: an item tombstone remembers the removal
    # (hidden from search like any tombstone) so the late create cannot add it back.

    @staticmethod
    def _removal_id(resource_type: str, list_field: str, key: str, value) -> str:
        return f"sf-removed:{resource_type}:{list_field}:{key}={value}"

    def _write_item_removals(self, orphans) -> None:
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
                        "_id": self._removal_id(change.resource_type, op.list_field,
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

    def _wanted_removals(self, by_key) -> dict[str, tuple[Key, tuple]]:
        """Ids of the item tombstones that could hold back this batch's items."""
        wanted: dict[str, tuple[Key, tuple]] = {}
        for key, items in by_key.items():
            for _, change in items:
                for op in change.patch.ops if change.patch else ():
                    if isinstance(op, UpsertItem):
                        item = (op.list_field, op.key, op.value)
                        wanted[self._removal_id(key[0], *item)] = (key, item)
                # A full document may still list an item removed after it was made.
                for list_field, item_key in self.item_lists.get(key[0], {}).items():
                    for element in (change.document or {}).get(list_field) or []:
                        item = (list_field, item_key, element.get(item_key))
                        wanted[self._removal_id(key[0], *item)] = (key, item)
        return wanted

    # -- changes that name another field than the id ------------------------------

    def _locate(self, pending, result: BatchResult):
        """Resolve ``locate_by`` lookups (e.g. a rule id -> its security group)."""
        plain = [(o, c) for o, c in pending if c.locate_by is None]
        lookups = []
        for origin, change in pending:
            if change.locate_by is None:
                continue
            owner = _owner_in_batch(change, plain)
            if owner:
                plain.append((origin, dataclasses.replace(change, id=owner, locate_by=None)))
            else:
                lookups.append((origin, change))
        if not lookups:
            return plain
        # Search is near-real-time: the owner is almost always visible already (the
        # announcer refreshes every announce_interval); those not found are looked
        # for again below, after a refresh.
        responses = self._search_owners(lookups)
        orphans = []
        for (origin, change), resp in zip(lookups, responses):
            if "error" in resp:
                raise TransientError(f"lookup failed: {resp['error']}")
            hits = resp["hits"]["hits"]
            if hits:
                plain.append((origin, _located(change, hits[0])))
            else:
                orphans.append((origin, change))
        if not orphans:
            return plain
        # The owner is not visible yet, or unknown, or gone: remember the removals,
        # then refresh and look once more. Another listener process may be writing
        # the owner right now: it reads the removals after its write
        # (``_removals_since``), this one searches after writing them, so one of
        # the two sees the other.
        self._write_item_removals([change for _, change in orphans])
        for group in {self.groups[change.resource_type] for _, change in orphans}:
            self.es.indices.refresh(index=layout.listener_alias(group))
        for (origin, change), resp in zip(orphans, self._search_owners(orphans)):
            if "error" in resp:
                raise TransientError(f"lookup failed: {resp['error']}")
            hits = resp["hits"]["hits"]
            if hits:
                plain.append((origin, _located(change, hits[0])))
                continue
            self.counters.add("unlocated")
            result.results.append((origin, merge.ChangeResult(
                change, merge.Outcome.STALE, None)))
        return plain

    def _removals_since(self, absent: dict[Key, list[str]]) -> set[Key]:
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

    def _search_owners(self, lookups) -> list[dict]:
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


def _located(change: DocumentChange, hit: dict) -> DocumentChange:
    """The change addressed to the resource the search found."""
    return dataclasses.replace(change, id=hit["_id"].rsplit("_", 1)[0], locate_by=None)


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

    def get(self, key) -> "Stored | None":
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(key)

    def put(self, key, stored: "Stored") -> None:
        if self._entries is not None:
            with self._lock:
                self._entries[key] = stored

    def drop(self, key) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries.pop(key, None)


class ReadWriteLock:
    """Many shared holders or one exclusive holder; a waiting exclusive goes first."""

    def __init__(self):
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class KeyLocks:
    """Striped locks: one batch at a time reads-folds-writes a given resource.

    External versions order writes but cannot tell that a writer folded onto a state
    another batch has since replaced; serialising per resource in the process closes
    that window for concurrent batches (see docs: several processes still race on
    partial updates of one resource).
    """

    STRIPES = 1024

    def __init__(self):
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    @contextlib.contextmanager
    def holding(self, keys):
        # Always in stripe order, so two batches cannot deadlock.
        stripes = sorted({hash(k) % self.STRIPES for k in keys})
        for i in stripes:
            self._stripes[i].acquire()
        try:
            yield
        finally:
            for i in reversed(stripes):
                self._stripes[i].release()


def _owner_in_batch(change: DocumentChange, others) -> str | None:
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
