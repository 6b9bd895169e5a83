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

A round is read (``execute.Store``), plan (``plan``, pure), write (``Store.bulk``)
and classify (``classify``, pure), orchestrated by ``Indexer._round``; changes that
name a list item and item removals are ``removals``'s, the locks ``locks``'s.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Hashable, Iterable

from searchlight_forward import search
from searchlight_forward.counters import Counters
from searchlight_forward.indexer import classify, removals
from searchlight_forward.indexer.execute import StateCache, Store
from searchlight_forward.indexer.locks import KeyLocks
from searchlight_forward.indexer.plan import Items, Read, Stored, plan_round
from searchlight_forward.indexer.results import BatchResult, Key, Rejection
from searchlight_forward.model.change import DocumentChange
from searchlight_forward.retry import Policy, Retry, TransientError

# Names the listener, the tests and the bench import from here.
__all__ = ["BatchResult", "Indexer", "KeyLocks", "Rejection",
           "StateCache", "Stored"]

LOG = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS = 20
RETRY_HINT = ("The batch stays unacknowledged until it is indexed. Check the cluster: "
              "`curl $ES/_cluster/health` and `searchlight-forward-manage show`.")


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
        self.counters: Counters = Counters()
        stop_event = stop_event or threading.Event()
        self._lookup_retry = Retry(retry, "Elasticsearch lookup", RETRY_HINT, stop_event, probe)
        self._write_retry = Retry(retry, "Elasticsearch write", RETRY_HINT, stop_event, probe)
        self._locks = KeyLocks()
        self._states = StateCache(state_cache_size)
        self.max_item_attempts = max_item_attempts
        self._took = 0          # rounds in which Elasticsearch took documents (any batch)
        self.write_timeout = f"{max(1, round(write_timeout * 1000))}ms"  # no fractions
        #: the round's I/O (reads, bulks); the unit tests put answers built by hand here
        self.store = Store(es, groups, self.write_timeout)
        self.locator = removals.Locator(es, groups, self.counters)

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
        # Batches run side by side, lookups (locate_by) too: one that misses a write
        # of a batch in flight is settled as between two processes (removals.py).
        self._apply(pending, result)
        for _, r in result.results:
            self.counters.add(r.outcome.value)
        self.counters.add("rejected", len(result.rejected))
        return result

    def _apply(self, pending: Items, result: BatchResult) -> None:
        located = self._lookup_retry.call(lambda: self.locator.locate(pending, result))
        by_key: dict[Key, Items] = collections.defaultdict(list)
        for origin, change in located:
            by_key[(change.resource_type, change.id)].append((origin, change))
        self._write(by_key, result)

    def _write(self, by_key: dict[Key, Items], result: BatchResult) -> None:
        rounds = 0
        attempts = classify.ItemAttempts(self.max_item_attempts, took_before=self._took)
        while by_key:
            rounds += 1
            done = self._write_retry.call(lambda: self._locked_round(
                by_key, result, attempts))
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

    # -- one round: read, plan, write, classify ----------------------------------

    def _locked_round(self, by_key: dict[Key, Items], result: BatchResult,
                      attempts: classify.ItemAttempts) -> set[Key]:
        # Held for the round only: a resource settled in an earlier round, or one
        # waiting out a backoff, does not hold back other batches' changes to it.
        with self._locks.holding(list(by_key)):
            return self._round(by_key, result, attempts)

    def _round(self, by_key: dict[Key, Items], result: BatchResult,
               attempts: classify.ItemAttempts) -> set[Key]:
        """Returns the keys settled (written, or rejected for good); those left in
        ``by_key`` go round again: conflicts at once, ``TransientError`` after a
        backoff (the keys settled so far are then removed from ``by_key`` here)."""
        read = self._read(by_key)
        plan = plan_round(by_key, read, self.store.index_of, self.admin_only,
                          written_at=int(time.time() * 1000))
        done = set(plan.settled) | set(plan.refused)
        for key in plan.settled:
            result.results.extend(plan.folded[key])
        result.rejected.extend(plan.rejected)
        unavailable = dict(read.unreadable)    # keys to retry after a backoff, and why

        # First the admin copies, each conditional on the state it was folded onto ...
        admin = classify.classify_admin([w.key for w in plan.writes],
                                        self.store.bulk([w.admin for w in plan.writes]))
        arrived = self.store.arrived_removals({key: read.absent[key] for key in admin.won
                                               if read.absent.get(key)})
        user_writes = list(plan.user_rewrites)
        for write in plan.writes:
            info = admin.won.get(write.key)
            if info is None:
                self._states.drop(write.key)        # read it afresh next round
                continue
            self._states.put(write.key, Stored(write.state, info["_seq_no"],
                                               info["_primary_term"]))
            if write.key in arrived:
                self.counters.add("late_item_removals")   # fold it in next round
            else:
                user_writes.append((write.key, write.user))
        if admin.conflicts:                     # another writer got there: fold again
            self.counters.add("conflicts", len(admin.conflicts))
        unavailable.update(admin.retry_later)
        for key, why in admin.refused.items():
            done.add(key)
            result.rejected.extend(Rejection(o, c, why) for o, c in by_key[key])

        # ... then the user copies of the states that won, so a user copy never shows
        # a state the admin copy did not take.
        user = classify.classify_user([key for key, _ in user_writes],
                                      self.store.bulk([u for _, u in user_writes]))
        for key in user.won:
            done.add(key)
            result.results.extend(plan.folded[key])
        unavailable.update(user.retry_later)

        if admin.won or user.won or done:
            self._took += 1
        for key, why in attempts.count(unavailable, self._took).items():
            done.add(key)
            self.counters.add("rejected_after_attempts")
            result.rejected.extend(Rejection(o, c, why) for o, c in by_key[key])
        if set(unavailable) - done:
            # Keep what succeeded; the caller retries the rest after a backoff.
            for key in done:
                del by_key[key]
            left = {k: a for k, a in unavailable.items() if k not in done}
            raise TransientError(f"Elasticsearch answered {next(iter(left.values()))} "
                                 f"for {len(left)} document(s)")
        return done

    def _read(self, by_key: dict[Key, Items]) -> Read:
        """What the round folds onto: the states this process holds (if another
        wrote since, the conditional write is refused and the next round reads it),
        the others and the item removals read from Elasticsearch."""
        wanted = removals.wanted_removals(by_key, self.item_lists)
        held = {key: stored for key in by_key
                if (stored := self._states.get(key)) is not None}
        read = self.store.read([key for key in by_key if key not in held], wanted)
        for key, stored in read.stored.items():
            self._states.put(key, stored)
        read.stored.update(held)
        return read
