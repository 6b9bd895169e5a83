"""Subscriptions in Elasticsearch: one document each, written with optimistic
concurrency (``_seq_no``/``_primary_term``), so two writers (the API and a delivery
process disabling a failing endpoint) never overwrite each other's change."""
from __future__ import annotations

from forwarders.subscriptions.model import Subscription
from searchlight_forward import search
from searchlight_forward.search import helpers

MAPPING = {
    "dynamic": False,
    "properties": {
        "project_id": {"type": "keyword"},
        "protocol": {"type": "keyword"},
        "state": {"type": "keyword"},
        "created_at": {"type": "double"},
    },
}


class Conflict(Exception):
    """Someone else changed the subscription meanwhile: read it again."""


class Stored:
    """A subscription as read, with what a conditional write needs."""

    def __init__(self, subscription: Subscription, seq_no: int, primary_term: int):
        self.subscription = subscription
        self.seq_no = seq_no
        self.primary_term = primary_term

    @property
    def revision(self) -> tuple[int, int]:
        return (self.primary_term, self.seq_no)


class SubscriptionStore:
    def __init__(self, es: search.Client, index: str):
        self.es = es
        self.index = index

    def ensure(self) -> None:
        search.ensure_index(self.es, self.index, MAPPING, {"number_of_shards": 1})

    def create(self, sub: Subscription) -> Stored:
        resp = self.es.index(index=self.index, id=sub.id, document=sub.to_source(),
                             op_type="create", refresh="wait_for")
        return Stored(sub, resp["_seq_no"], resp["_primary_term"])

    def get(self, sub_id: str) -> Stored | None:
        try:
            doc = self.es.get(index=self.index, id=sub_id)
        except search.NotFoundError:
            return None
        return Stored(Subscription.from_source(doc["_source"]), doc["_seq_no"],
                      doc["_primary_term"])

    def update(self, stored: Stored, sub: Subscription) -> Stored:
        """Write ``sub`` if nobody changed ``stored`` since it was read; ``Conflict``
        otherwise (``KeyError`` if it was deleted)."""
        try:
            resp = self.es.index(index=self.index, id=sub.id, document=sub.to_source(),
                                 if_seq_no=stored.seq_no,
                                 if_primary_term=stored.primary_term, refresh="wait_for")
        except search.ConflictError:
            if self.get(sub.id) is None:
                raise KeyError(sub.id) from None
            raise Conflict(sub.id) from None
        return Stored(sub, resp["_seq_no"], resp["_primary_term"])

    def change(self, sub_id: str, fn, attempts: int = 5) -> Stored | None:
        """Apply ``fn(subscription) -> subscription | None`` until it sticks (None:
        leave it); None if the subscription is gone."""
        for _ in range(attempts):
            stored = self.get(sub_id)
            if stored is None:
                return None
            changed = fn(stored.subscription)
            if changed is None:
                return stored
            try:
                return self.update(stored, changed)
            except Conflict:
                continue
            except KeyError:
                return None
        raise Conflict(sub_id)

    def delete(self, stored: Stored) -> None:
        try:
            self.es.delete(index=self.index, id=stored.subscription.id,
                           if_seq_no=stored.seq_no, if_primary_term=stored.primary_term,
                           refresh="wait_for")
        except search.ConflictError:
            raise Conflict(stored.subscription.id) from None
        except search.NotFoundError:
            raise KeyError(stored.subscription.id) from None

    def listing(self, project_id: str | None, limit: int = 1000) -> list[Stored]:
        """A project's subscriptions (None: every project's, for admins), oldest first.
        (Every write waits for a refresh, so a search sees it.)"""
        query = {"term": {"project_id": project_id}} if project_id else {"match_all": {}}
        resp = self.es.search(index=self.index, query=query, size=limit,
                              sort=[{"created_at": "asc"}], seq_no_primary_term=True)
        return [Stored(Subscription.from_source(h["_source"]), h["_seq_no"],
                       h["_primary_term"]) for h in resp["hits"]["hits"]]

    def count(self, project_id: str) -> int:
        return self.es.count(index=self.index,
                             query={"term": {"project_id": project_id}})["count"]

    def signature(self) -> tuple | None:
        """Changes whenever a subscription is written or deleted (the primaries'
        indexing counters): a reader rereads them only then. None: no index."""
        try:
            stats = self.es.indices.stats(index=self.index, metric="indexing")
        except search.NotFoundError:
            return None
        indexing = stats["_all"]["primaries"].get("indexing", {})
        return (indexing.get("index_total"), indexing.get("delete_total"),
                tuple(sorted(stats.get("indices", {}))))

    def all(self) -> list[Stored]:
        """Every subscription (the delivery service's catalog), any number."""
        try:
            self.es.indices.refresh(index=self.index)
        except search.NotFoundError:
            return []
        return [Stored(Subscription.from_source(h["_source"]), h["_seq_no"],
                       h["_primary_term"])
                for h in helpers.scan(self.es, index=self.index, size=1000,
                                      seq_no_primary_term=True,
                                      query={"query": {"match_all": {}}})]
