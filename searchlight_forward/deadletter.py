"""The dead-letter index: notifications that can never become a document, and why.

A record is written (durably: the bulk request returns after the translog has it)
before the notification is acknowledged, so a bad message is never silently lost.
Operators read them with ``searchlight-forward-manage dead-letters list|show`` and,
after fixing a plugin or a mapping, feed them back with ``dead-letters replay``.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import uuid
from typing import Any, Iterable

import elasticsearch
from elasticsearch import helpers

# Context keys worth keeping: never the caller's auth token.
_CONTEXT_KEYS = ("request_id", "global_request_id", "project_id", "user_id",
                 "project_name", "user_name", "roles", "is_admin")

MAPPING = {
    "dynamic": False,
    "properties": {
        "dead_at": {"type": "date"},
        "stage": {"type": "keyword"},
        "reason": {"type": "text"},
        "event_type": {"type": "keyword"},
        "publisher_id": {"type": "keyword"},
        "priority": {"type": "keyword"},
        "message_id": {"type": "keyword"},
        "timestamp": {"type": "keyword"},
        "host": {"type": "keyword"},
        "notification": {"type": "text", "index": False},
    },
}

# Where in the flow a notification was given up on.
PARSE = "parse"      # not a notification we can read (no event type, payload not JSON)
PLUGIN = "plugin"    # its plugin refused the payload (wrong shape, missing id)
INDEX = "index"      # Elasticsearch refused the resulting document
FORWARD = "forward"  # a consumer could not deliver it: refused, filter failed, skipped


@dataclasses.dataclass
class DeadLetter:
    stage: str
    reason: str
    message: dict           # the oslo.messaging message dict as received
    priority: str = ""

    def record(self) -> dict:
        meta = self.message.get("metadata") or {}
        ctxt = self.message.get("ctxt") or {}
        kept = {k: ctxt[k] for k in _CONTEXT_KEYS if isinstance(ctxt, dict) and k in ctxt}
        notification = {"event_type": self.message.get("event_type"),
                        "publisher_id": self.message.get("publisher_id"),
                        "priority": self.priority, "metadata": meta,
                        "ctxt": kept, "payload": self.message.get("payload")}
        return {
            "dead_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "stage": self.stage, "reason": self.reason,
            "event_type": _text(self.message.get("event_type")),
            "publisher_id": _text(self.message.get("publisher_id")),
            "priority": self.priority,
            "message_id": _text(meta.get("message_id")),
            "timestamp": _text(meta.get("timestamp")),
            "host": f"{socket.gethostname()}:{os.getpid()}",
            "notification": json.dumps(notification, default=repr, sort_keys=True),
        }


class DeadLetterIndex:
    def __init__(self, es: elasticsearch.Elasticsearch, index: str):
        self.es = es
        self.index = index

    def ensure(self) -> None:
        if not self.es.indices.exists(index=self.index):
            try:
                self.es.indices.create(index=self.index, mappings=MAPPING,
                                       settings={"number_of_replicas": 0})
            except elasticsearch.BadRequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise

    def write(self, letters: Iterable[DeadLetter]) -> int:
        """Store the records; raises on any failure so the batch is not acked."""
        actions = [{"_index": self.index, "_id": _record_id(letter),
                    "_source": letter.record()} for letter in letters]
        if not actions:
            return 0
        ok, _ = helpers.bulk(self.es, actions, raise_on_error=True, max_retries=0)
        return ok

    def forward(self, consumer: str, reason: str, payload: dict, key: str,
                event_type: str = "") -> None:
        """A record of the forward stage: something a consumer (pipeline or
        subscription) could not deliver: an envelope a sink refused for good, a
        change a filter failed on, a range skipped after its retries."""
        self.write([DeadLetter(
            FORWARD, f"{consumer}: {reason}",
            {"event_type": event_type, "publisher_id": f"consumer:{consumer}",
             "payload": payload, "metadata": {"message_id": f"{consumer}-{key}"}},
            "forward")])

    def search(self, size: int = 20, event_type: str | None = None,
               stage: str | None = None) -> list[dict]:
        filters: list[dict] = []
        if event_type:
            filters.append({"term": {"event_type": event_type}})
        if stage:
            filters.append({"term": {"stage": stage}})
        resp = self.es.search(index=self.index, size=size,
                              query={"bool": {"filter": filters}},
                              sort=[{"dead_at": "desc"}])
        return [dict(h["_source"], id=h["_id"]) for h in resp["hits"]["hits"]]

    def get(self, record_id: str) -> dict:
        return self.es.get(index=self.index, id=record_id)["_source"]

    def delete(self, record_id: str) -> None:
        self.es.delete(index=self.index, id=record_id, refresh=True)


def _record_id(letter: DeadLetter) -> str:
    # A redelivered bad message overwrites its own record instead of piling up.
    message_id = (letter.message.get("metadata") or {}).get("message_id")
    return f"{letter.stage}-{message_id}" if message_id else str(uuid.uuid4())


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
