"""Durable cursors and who owns them, in Elasticsearch (the state index).

A consumer (a pipeline of one resource group) has one cursor document::

    cursor:<group>:<consumer>  {position, owner, lease_until, resyncing,
                                delivered, skipped, last_error, updated_at}

A delivery process owns a cursor while its lease runs. Every write to the document
is conditional on the document's ``_seq_no`` and ``_primary_term`` as last seen
(Elasticsearch's optimistic concurrency), so two processes can never both believe
they own it: the second writer gets 409 and stands down (``LeaseLost``). A killed
process's cursors are claimed by another once their lease has run out.

An owner delivers only while its lease has more than ``margin`` seconds left (its
own monotonic clock, counted from before the write that granted it), so a process
that stalls stops delivering before anyone else can start: the sink never sees two
owners interleave. Processes also write a heartbeat document (``member:<id>``) so
that each can take its fair share of the cursors.
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
        "lease_until": {"type": "double"},
        "updated_at": {"type": "date"},
    },
}


class LeaseLost(Exception):
    """Another process owns the cursor now (or the lease ran out): stop delivering."""


def cursor_id(group: str, consumer: str) -> str:
    return f"cursor:{group}:{consumer}"


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
                              document=self._source(group, consumer, state, 0, owner=None),
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

    # -- ownership ---------------------------------------------------------------------

    def claim(self, group: str, consumer: str, found: dict | None) -> "Lease | None":
        """Own the cursor if nobody does (or their lease ran out); None if taken.
        ``found``: the document as just read (None: there is none yet)."""
        started = time.monotonic()
        doc_id = cursor_id(group, consumer)
        if found is None:
            state = CursorState()
            source = self._source(group, consumer, state, self.lease_seconds)
            try:
                resp = self.es.index(index=self.index, id=doc_id, document=source,
                                     op_type="create")
            except search.ConflictError:
                return None
        else:
            src = found["_source"]
            if src.get("owner") not in (None, self.owner) and \
                    float(src.get("lease_until") or 0) > time.time():
                return None
            state = CursorState.from_source(src)
            source = self._source(group, consumer, state, self.lease_seconds)
            try:
                resp = self.es.index(index=self.index, id=doc_id, document=source,
                                     if_seq_no=found["_seq_no"],
                                     if_primary_term=found["_primary_term"])
            except search.ConflictError:
                return None
        return Lease(self, group, consumer, state, resp["_seq_no"], resp["_primary_term"],
                     started + self.lease_seconds)

    def _source(self, group: str, consumer: str, state: CursorState, lease: float,
                owner: str | None = "") -> dict:
        return dict(state.to_source(), kind="cursor", group=group, consumer=consumer,
                    owner=self.owner if owner == "" else owner,
                    lease_until=time.time() + lease if lease else 0.0,
                    updated_at=_now())


class Lease:
    """This process's ownership of one cursor: every write checks it still holds."""

    def __init__(self, store: CursorStore, group: str, consumer: str, state: CursorState,
                 seq_no: int, primary_term: int, valid_until: float):
        self.store = store
        self.group = group
        self.consumer = consumer
        self.state = state
        self._seq_no = seq_no
        self._primary_term = primary_term
        self._valid_until = valid_until      # monotonic
        self._lock = threading.Lock()
        self.lost = False

    def remaining(self) -> float:
        """Seconds this process may still act as the owner."""
        return 0.0 if self.lost else self._valid_until - time.monotonic()

    def write(self, state: CursorState | None = None, release: bool = False) -> None:
        """Store ``state`` (or the current one) and renew the lease; ``release``
        gives the cursor up. ``LeaseLost`` if another process took it."""
        with self._lock:
            if self.lost:
                raise LeaseLost(f"{self.consumer}: lease already lost")
            if state is not None:
                self.state = state
            started = time.monotonic()
            store = self.store
            source = store._source(self.group, self.consumer, self.state,
                                   0 if release else store.lease_seconds,
                                   owner=None if release else "")
            try:
                resp = store.es.index(index=store.index,
                                      id=cursor_id(self.group, self.consumer),
                                      document=source, if_seq_no=self._seq_no,
                                      if_primary_term=self._primary_term)
            except search.ConflictError:
                self.lost = True
                raise LeaseLost(f"{self.consumer}: another delivery process owns it "
                                "now") from None
            except search.NotFoundError:
                self.lost = True
                raise LeaseLost(f"{self.consumer}: the cursor was deleted") from None
            self._seq_no, self._primary_term = resp["_seq_no"], resp["_primary_term"]
            if release:
                self.lost = True
            else:
                self._valid_until = started + store.lease_seconds


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
