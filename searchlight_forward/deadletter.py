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

from searchlight_forward import search
from searchlight_forward.counters import Counters
from searchlight_forward.search import helpers
from searchlight_forward.model.answers import TRANSIENT_STATUSES
from searchlight_forward.retry import TransientError

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
BATCH = "batch"      # its batch failed again and again (a bug): not processed again
DISPATCH = "dispatch"  # oslo.messaging would drop it (priority missing or unknown)
REJECTED = "rejected"  # oslo.messaging rejected it, RabbitMQ dead-lettered it to us

# A record must always be writable: text is valid UTF-8 (lone surrogates escaped) and
# the stored notification is cut below Elasticsearch's request limit.
MAX_REASON_CHARS = 10_000
MAX_NOTIFICATION_CHARS = 10_000_000


class DeadLetterWriteError(Exception):
    """The dead-letter index refused records for good (read-only, mapping...)."""


@dataclasses.dataclass
class DeadLetter:
    stage: str
    reason: str
    message: dict           # the oslo.messaging message dict as received
    priority: str = ""

    def record(self) -> dict:
        meta = self.message.get("metadata") if isinstance(self.message, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        ctxt = self.message.get("ctxt") or {}
        kept = {k: ctxt[k] for k in _CONTEXT_KEYS if isinstance(ctxt, dict) and k in ctxt}
        notification = {"event_type": self.message.get("event_type"),
                        "publisher_id": self.message.get("publisher_id"),
                        "priority": self.priority, "metadata": meta,
                        "ctxt": kept, "payload": self.message.get("payload")}
        text = json.dumps(notification, default=repr, sort_keys=True)   # ASCII
        if len(text) > MAX_NOTIFICATION_CHARS:
            text = (f"(cut from {len(text)} characters) "
                    + text[:MAX_NOTIFICATION_CHARS])
        return {
            "dead_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "stage": self.stage, "reason": _text(self.reason)[:MAX_REASON_CHARS],
            "event_type": _text(self.message.get("event_type"), 1000),
            "publisher_id": _text(self.message.get("publisher_id"), 1000),
            "priority": _text(self.priority, 100),
            "message_id": _text(meta.get("message_id"), 1000),
            "timestamp": _text(meta.get("timestamp"), 100),
            "host": f"{socket.gethostname()}:{os.getpid()}",
            "notification": text,
        }


class DeadLetterIndex:
    def __init__(self, es: search.Client, index: str):
        self.es = es
        self.index = index
        #: records this process stored, by stage (a fixed set: bounded metric labels)
        self.written: Counters = Counters()

    def ensure(self) -> None:
        search.ensure_index(self.es, self.index, MAPPING, {"number_of_replicas": 0})

    def write(self, letters: Iterable[DeadLetter]) -> int:
        """Store the records; raises on any failure so the batch is not acked
        (``TransientError`` if Elasticsearch may take them later)."""
        actions = [{"_index": self.index, "_id": _record_id(letter),
                    "_source": letter.record()} for letter in letters]
        if not actions:
            return 0
        ok, errors = helpers.bulk(self.es, actions, raise_on_error=False, max_retries=0)
        if errors:
            (first,) = errors[0].values()
            status, error = first.get("status"), first.get("error")
            reason = (f"{error.get('type')}: {error.get('reason')}"
                      if isinstance(error, dict) else str(error))
            message = (f"the dead-letter index {self.index} refused {len(errors)} "
                       f"record(s): {status} {reason}")
            if status in TRANSIENT_STATUSES:
                raise TransientError(message)
            raise DeadLetterWriteError(message)
        for action in actions:
            self.written.add(action["_source"]["stage"])
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
    meta = letter.message.get("metadata") if isinstance(letter.message, dict) else None
    message_id = meta.get("message_id") if isinstance(meta, dict) else None
    # Elasticsearch ids are at most 512 bytes.
    return f"{letter.stage}-{_text(message_id, 100)}" if message_id else str(uuid.uuid4())


def _text(value: Any, limit: int | None = None) -> str | None:
    """``str(value)`` as valid UTF-8 (a lone surrogate becomes its escape)."""
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the record
        text = f"<unprintable {type(value).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if limit is None else text[:limit]
