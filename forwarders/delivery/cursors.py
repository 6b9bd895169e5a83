"""Durable cursors and who owns them, in Elasticsearch (the state index).

A consumer (a pipeline of one resource group) has one cursor document::

    cursor:<group>:<consumer>  {position, partition, owner, resyncing, delivered,
                                skipped, last_error, updated_at}

Cursors are owned by *partition*: a delivery process owns a partition while its
lease runs, and with it every cursor in it. An operator's pipeline (forwarders.ini)
is a partition of its own; tenants' subscriptions are hashed into ``[delivery]
partitions`` partitions, so ten thousand subscriptions cost a few lease documents::

    lease:<partition>          {owner, lease_until, updated_at}

Every write is conditional on the document's ``_seq_no`` and ``_primary_term`` as
last seen (Elasticsearch's optimistic concurrency), so two processes can never both
believe they own a partition: the second writer gets 409 and stands down
(``LeaseLost``). A process renews all its leases in one bulk request; a killed
process's partitions are claimed by another once their lease has run out.

An owner delivers only while its lease has more than ``margin`` seconds left (its
own monotonic clock, counted from before the write that granted it), so a process
that stalls stops delivering before anyone else can start: the sink never sees two
owners interleave. A new owner takes every cursor of the partition (one bulk of
conditional writes naming it) before delivering, so a late write of the old owner
fails; cursors are written again only when they move. Processes also write a
heartbeat document (``member:<id>``) so that each can take its fair share.

Elasticsearch's conditional writes are the fencing: tooz (OpenStack's coordination
library) was weighed for membership and partitioning and not taken, because its
hash ring has no fencing (two members deliver the same object until both have run
their watchers) and it would add Redis as a second source of truth (docs/operations.md).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket
import threading
import time
import uuid

from searchlight_forward import search
from searchlight_forward.changelog.position import Position

LOG = logging.getLogger(__name__)

MAPPING = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "group": {"type": "keyword"},
        "consumer": {"type": "keyword"},
        "owner": {"type": "keyword"},
        "partition": {"type": "keyword"},
        "lease_until": {"type": "double"},
        "updated_at": {"type": "date"},
    },
}


class LeaseLost(Exception):
    """Another process owns the cursor now (or the lease ran out): stop delivering."""


def cursor_id(group: str, consumer: str) -> str:
    return f"cursor:{group}:{consumer}"


def lease_id(partition: str) -> str:
    return f"lease:{partition}"


def member_id(owner: str) -> str:
    return f"member:{owner}"


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass
class CursorState:
    """What a cursor document says (the part consumers care about)."""
    position: Position | None = None
    resyncing: bool = False
    delivered: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    failing_since: float | None = None     # epoch seconds of the first failure in a row
    last_move: str | None = None           # an operator moved the cursor (replay): how
    last_move_at: str | None = None

    def to_source(self) -> dict:
        return {"position": self.position.to_dict() if self.position else None,
                "resyncing": self.resyncing, "delivered": self.delivered,
                "skipped": self.skipped, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "failing_since": self.failing_since,
                "last_move": self.last_move, "last_move_at": self.last_move_at}

    @classmethod
    def from_source(cls, source: dict) -> "CursorState":
        return cls(position=Position.from_dict(source.get("position")),
                   resyncing=bool(source.get("resyncing")),
                   delivered=int(source.get("delivered") or 0),
                   skipped=int(source.get("skipped") or 0),
                   last_error=source.get("last_error"),
                   last_error_at=source.get("last_error_at"),
                   failing_since=source.get("failing_since"),
                   last_move=source.get("last_move"),
                   last_move_at=source.get("last_move_at"))


class CursorStore:
    def __init__(self, es: search.Client, index: str, owner: str,
                 lease_seconds: float = 15.0):
        self.es = es
        self.index = index
        self.owner = owner
        self.lease_seconds = lease_seconds

    def ensure(self) -> None:
        search.ensure_index(self.es, self.index, MAPPING, {"number_of_shards": 1})

    # -- reading -------------------------------------------------------------------

    def read(self, ids: list[str]) -> dict[str, dict]:
        """The documents with these ids (realtime), with ``_seq_no`` and
        ``_primary_term``; absent ids are left out."""
        if not ids:
            return {}
        resp = self.es.mget(index=self.index, ids=ids)
        return {d["_id"]: d for d in resp["docs"] if d.get("found")}

    def cursors(self, group: str | None = None) -> list[dict]:
        """Every cursor document (of ``group``): for status, purges and manage."""
        self.es.indices.refresh(index=self.index)
        filters = [{"term": {"kind": "cursor"}}]
        if group is not None:
            filters.append({"term": {"group": group}})
        resp = self.es.search(index=self.index, query={"bool": {"filter": filters}},
                              size=10000, seq_no_primary_term=True)
        return [dict(h["_source"], _id=h["_id"]) for h in resp["hits"]["hits"]]

    def move(self, group: str, consumer: str, position: Position, reason: str) -> dict:
        """Put a cursor at ``position`` (an operator's replay) and free it: the owner's
        next write conflicts (``LeaseLost``) and the cursor is claimed again from
        there. Returns the document as it was. ``KeyError`` if there is no cursor."""
        doc_id = cursor_id(group, consumer)
        for _ in range(20):                   # the owner writes about once a second
            found = self.read([doc_id]).get(doc_id)
            if found is None:
                raise KeyError(doc_id)
            state = CursorState.from_source(found["_source"])
            state.position, state.resyncing = position, False
            # Not an error: the pipeline's last error stays what its sink said.
            state.last_move, state.last_move_at = reason[:300], _now()
            try:
                self.es.index(index=self.index, id=doc_id,
                              document=self._source(group, consumer, state,
                                                    found["_source"].get("partition"),
                                                    owner=None),
                              if_seq_no=found["_seq_no"],
                              if_primary_term=found["_primary_term"], refresh=True)
            except search.ConflictError:
                continue                      # the owner wrote in between: read again
            return found["_source"]
        raise RuntimeError(f"{doc_id}: its owner kept writing; try again")

    def delete(self, group: str, consumer: str) -> None:
        """Forget a cursor (its consumer, a subscription, was deleted)."""
        try:
            self.es.delete(index=self.index, id=cursor_id(group, consumer))
        except search.NotFoundError:
            pass

    # -- membership ------------------------------------------------------------------

    def heartbeat(self, owned: list[str]) -> None:
        self.es.index(index=self.index, id=member_id(self.owner), document={
            "kind": "member", "owner": self.owner, "lease_until": time.time() + self.lease_seconds,
            "owned": owned, "updated_at": _now()})

    def members(self) -> list[str]:
        """Delivery processes whose heartbeat is current (this one included)."""
        self.es.indices.refresh(index=self.index)
        resp = self.es.search(index=self.index, size=1000, query={"bool": {"filter": [
            {"term": {"kind": "member"}},
            {"range": {"lease_until": {"gt": time.time()}}}]}})
        found = sorted({h["_source"]["owner"] for h in resp["hits"]["hits"]})
        return found if self.owner in found else sorted(found + [self.owner])

    def leave(self) -> None:
        try:
            self.es.delete(index=self.index, id=member_id(self.owner))
        except search.NotFoundError:
            pass

    def moved(self, groups: list[str]) -> dict[str, int]:
        """The cursors of ``groups`` nobody has taken since an operator moved them
        (``move`` leaves them without an owner), with the ``_seq_no`` of that write:
        their owner starts them again (``Cursor.written_after`` tells a search that
        did not see its own later write yet)."""
        if not groups:
            return {}
        resp = self.es.search(index=self.index, size=10000, _source=False,
                              seq_no_primary_term=True, query={
            "bool": {"filter": [{"term": {"kind": "cursor"}},
                                {"terms": {"group": groups}}],
                     "must_not": [{"exists": {"field": "owner"}}]}})
        return {h["_id"]: h["_seq_no"] for h in resp["hits"]["hits"]}

    # -- ownership ---------------------------------------------------------------------

    def leases(self, partitions: list[str]) -> dict[str, dict]:
        """The lease documents of ``partitions`` (realtime), by partition."""
        found = self.read([lease_id(p) for p in partitions])
        return {doc["_id"].split(":", 1)[1]: doc for doc in found.values()}

    def claim(self, partition: str, found: dict | None) -> "Lease | None":
        """Own ``partition`` if nobody does (or their lease ran out, or it is this
        process's own from a previous life); None if taken. ``found``: its lease
        document as just read (None: there is none yet)."""
        started = time.monotonic()
        doc_id = lease_id(partition)
        writer = uuid.uuid4().hex
        source = self._lease_source(partition, self.lease_seconds, writer)
        try:
            if found is None:
                resp = self.es.index(index=self.index, id=doc_id, document=source,
                                     op_type="create")
            else:
                src = found["_source"]
                if src.get("owner") not in (None, self.owner) and \
                        float(src.get("lease_until") or 0) > time.time():
                    return None
                resp = self.es.index(index=self.index, id=doc_id, document=source,
                                     if_seq_no=found["_seq_no"],
                                     if_primary_term=found["_primary_term"])
        except search.ConflictError:
            return None
        return Lease(self, partition, resp["_seq_no"], resp["_primary_term"],
                     started + self.lease_seconds, writer)

    def renew(self, leases: list["Lease"]) -> list["Lease"]:
        """Renew ``leases`` in one bulk request; returns those lost (another process
        owns them now), which are marked lost."""
        leases = [lease for lease in leases if not lease.lost]
        if not leases:
            return []
        started = time.monotonic()
        operations: list[dict] = []
        for lease in leases:
            operations += [{"index": {"_index": self.index, "_id": lease_id(lease.partition),
                                      "if_seq_no": lease._seq_no,
                                      "if_primary_term": lease._primary_term}},
                           self._lease_source(lease.partition, self.lease_seconds,
                                              lease.writer)]
        resp = self.es.bulk(operations=operations)
        conflicts = []
        for lease, item in zip(leases, resp["items"]):
            result = item["index"]
            status = result.get("status", 500)
            if status in (200, 201):
                lease.renewed(result["_seq_no"], result["_primary_term"],
                              started + self.lease_seconds)
            elif status in (404, 409):
                conflicts.append(lease)
            # anything else (a shard busy): the lease runs on; renewed next turn
        lost = []
        found = self.read([lease_id(lease.partition) for lease in conflicts]) \
            if conflicts else {}
        for lease in conflicts:
            if not lease.own_lost_write(found.get(lease_id(lease.partition))):
                lease.lost = True
                lost.append(lease)
        return lost

    def take(self, lease: "Lease", keys: list[tuple[str, str]]) -> dict[tuple, "Cursor"]:
        """The cursors ``(group, consumer)`` of ``lease``'s partition, taken by this
        process: one read, then one bulk of conditional writes naming it as the
        owner (creating what does not exist), so that a late write of a previous
        owner fails. Cursors someone else wrote in between are left out (taken at
        the next turn)."""
        if not keys:
            return {}
        found = self.read([cursor_id(g, c) for g, c in keys])
        operations: list[dict] = []
        states = []
        writers: list[str] = []
        for group, consumer in keys:
            doc = found.get(cursor_id(group, consumer))
            state = CursorState.from_source(doc["_source"]) if doc else CursorState()
            states.append(state)
            action = {"_index": self.index, "_id": cursor_id(group, consumer)}
            if doc is None:
                operations.append({"create": action})
            else:
                action.update(if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"])
                operations.append({"index": action})
            writers.append(uuid.uuid4().hex)
            operations.append(self._source(group, consumer, state, lease.partition,
                                           writer=writers[-1]))
        resp = self.es.bulk(operations=operations)
        taken = {}
        for (group, consumer), state, writer, item in zip(keys, states, writers,
                                                          resp["items"]):
            result = next(iter(item.values()))
            if result.get("status") in (200, 201):
                taken[(group, consumer)] = Cursor(self, lease, group, consumer, state,
                                                  result["_seq_no"], result["_primary_term"],
                                                  writer)
        return taken

    def _source(self, group: str, consumer: str, state: CursorState,
                partition: str | None, owner: str | None = "",
                writer: str | None = None) -> dict:
        return dict(state.to_source(), kind="cursor", group=group, consumer=consumer,
                    partition=partition, owner=self.owner if owner == "" else owner,
                    writer=writer, updated_at=_now())

    def _lease_source(self, partition: str, lease: float, writer: str | None = None) -> dict:
        return {"kind": "lease", "partition": partition,
                "owner": self.owner if lease else None, "writer": writer,
                "lease_until": time.time() + lease if lease else 0.0, "updated_at": _now()}


class Lease:
    """This process's ownership of one partition: the service renews it (in bulk),
    consumers deliver only while it has time left. Its writes carry ``writer`` (a
    token of this object alone), as a cursor's do: a renewal whose answer was lost
    is not taken for another process's."""

    def __init__(self, store: CursorStore, partition: str, seq_no: int,
                 primary_term: int, valid_until: float, writer: str):
        self.store = store
        self.partition = partition
        self._seq_no = seq_no
        self._primary_term = primary_term
        self._valid_until = valid_until      # monotonic
        self.writer = writer
        self.lost = False

    def remaining(self) -> float:
        """Seconds this process may still act as the owner."""
        return 0.0 if self.lost else self._valid_until - time.monotonic()

    def renewed(self, seq_no: int, primary_term: int, valid_until: float) -> None:
        self._seq_no, self._primary_term = seq_no, primary_term
        self._valid_until = valid_until

    def own_lost_write(self, doc: dict | None) -> bool:
        """After a conflict: is the lease document (as just read) one this object
        wrote, whose answer never came? Then go on from it, keeping the time this
        process counted on (the document promises others no less)."""
        if not _written_with(doc, writer=self.writer, owner=self.store.owner):
            return False
        self._seq_no, self._primary_term = doc["_seq_no"], doc["_primary_term"]
        return True

    def release(self) -> None:
        """Give the partition up (it is free at once); ``LeaseLost`` if it was not
        ours any more."""
        if self.lost:
            return
        self.lost = True
        store = self.store
        doc_id = lease_id(self.partition)
        for attempt in range(2):
            try:
                store.es.index(index=store.index, id=doc_id,
                               document=store._lease_source(self.partition, 0),
                               if_seq_no=self._seq_no, if_primary_term=self._primary_term)
                return
            except (search.ConflictError, search.NotFoundError):
                if attempt or not self.own_lost_write(store.read([doc_id]).get(doc_id)):
                    raise LeaseLost(f"partition {self.partition}: another delivery "
                                    "process owns it now") from None


class Cursor:
    """One cursor document, taken by this process under a partition ``lease``: every
    write is conditional on what it last wrote (``LeaseLost`` if anybody else wrote
    it since: another owner, an operator's move, a delete).

    Each write carries ``writer``, a token of this object alone: a write whose answer
    was lost (a reset connection, a timeout) may still have been applied, and its
    retry then conflicts with nobody but itself."""

    def __init__(self, store: CursorStore, lease: Lease, group: str, consumer: str,
                 state: CursorState, seq_no: int, primary_term: int, writer: str):
        self.store = store
        self.lease = lease
        self.group = group
        self.consumer = consumer
        self.state = state
        self._seq_no = seq_no
        self._primary_term = primary_term
        self.writer = writer
        self._lock = threading.Lock()
        self.lost = False

    def written_after(self, seq_no: int) -> bool:
        """Has this process written the cursor since the write numbered ``seq_no``?"""
        return self._seq_no > seq_no

    def write(self, state: CursorState | None = None, release: bool = False) -> None:
        """Store ``state`` (or the current one); ``release``: without an owner (its
        pipeline is not delivered any more)."""
        with self._lock:
            if self.lost or self.lease.lost:
                raise LeaseLost(f"{self.consumer}: lease already lost")
            if state is not None:
                self.state = state
            try:
                resp = self._index(release)
            except search.ConflictError:
                if not self._own_lost_write():
                    self.lost = True
                    raise LeaseLost(f"{self.consumer}: its cursor was written by somebody "
                                    "else (another owner, or an operator's move)") from None
                resp = self._index(release)
            except search.NotFoundError:
                self.lost = True
                raise LeaseLost(f"{self.consumer}: the cursor was deleted") from None
            self._seq_no, self._primary_term = resp["_seq_no"], resp["_primary_term"]
            if release:
                self.lost = True

    def _index(self, release: bool) -> dict:
        store = self.store
        return store.es.index(
            index=store.index, id=cursor_id(self.group, self.consumer),
            document=store._source(self.group, self.consumer, self.state,
                                   self.lease.partition, owner=None if release else "",
                                   writer=self.writer),
            if_seq_no=self._seq_no, if_primary_term=self._primary_term)

    def _own_lost_write(self) -> bool:
        """After a conflict: was the write that moved the cursor one of ours whose
        answer never came? Then go on from it (the next write replaces it)."""
        doc_id = cursor_id(self.group, self.consumer)
        doc = self.store.read([doc_id]).get(doc_id)
        if not _written_with(doc, writer=self.writer):
            return False
        self._seq_no, self._primary_term = doc["_seq_no"], doc["_primary_term"]
        return True


def _written_with(doc: dict | None, **fields) -> bool:
    """Does ``doc`` (as just read; None: absent) hold these fields' values?"""
    return doc is not None and all(doc["_source"].get(k) == v for k, v in fields.items())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
