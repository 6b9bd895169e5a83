"""The message every way out carries for one resource change (pure).

    {"resource_type": "OS::Nova::Server", "id": "...", "project_id": "...",
     "version": 1772452807000000270, "operation": "index" | "delete",
     "event_type": "instance.update", "priority": "info",
     "timestamp": "2026-03-02 12:00:07.270156", "document": {...} | null,
     "alert": {"priority": "error", "event_type": "compute.instance.create.error",
               "version": ..., "timestamp": ...}}

``priority`` is that of the newest notification folded into the change; ``alert``
(only present when there is one) is the resource's newest warn, error or critical
notification, which rides on the routine changes sent right after it
(``model.priority``).

``version`` orders the states of one resource: a consumer keeps, per ``id``, the
highest version it has seen and ignores anything not higher, which also makes
redeliveries harmless. ``document`` is the full enriched resource as indexed (after
the way out's filters), never the raw notification payload; it is null on delete.

Two control envelopes frame a resynchronisation (a consumer whose cursor is older
than the tombstone horizon, or an index rebuilt under it): ``resync_begin`` says
"what follows is the current state of every resource you may see", ``resync_end``
says it is complete; a consumer may then forget resources it was not sent since
``resync_begin``. Their ``resource_type`` and ``id`` are empty and ``document``
carries ``{"reason": ...}``.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from searchlight_forward.model import priority as priorities
from searchlight_forward.model.documents import (ALERT_FIELD, CHANGED_AT_FIELD,
                                                 DELETED_FIELD, EVENT_TYPE_FIELD,
                                                 INTERNAL_FIELDS, PRIORITY_FIELD)

INDEX = "index"
DELETE = "delete"
RESYNC_BEGIN = "resync_begin"
RESYNC_END = "resync_end"
CONTROL = (RESYNC_BEGIN, RESYNC_END)


@dataclasses.dataclass(frozen=True)
class Envelope:
    resource_type: str
    id: str
    project_id: str | None
    version: int
    operation: str
    event_type: str
    timestamp: str
    document: dict | None
    priority: str = "info"
    alert: dict | None = None

    @property
    def is_control(self) -> bool:
        return self.operation in CONTROL

    @property
    def routing_priority(self) -> str:
        """The more severe of its priority and its alert's: what ``{priority}``
        in a queue name routes on."""
        return priorities.routing_priority(self.priority, self.alert)

    def with_document(self, document: dict | None) -> "Envelope":
        return dataclasses.replace(self, document=document)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies the document, and this runs for every
        # change in every sink (profiled at a fifth of the listener's time).
        data = {"resource_type": self.resource_type, "id": self.id,
                "project_id": self.project_id, "version": self.version,
                "operation": self.operation, "event_type": self.event_type,
                "priority": self.priority, "timestamp": self.timestamp,
                "document": self.document}
        if self.alert is not None:
            data["alert"] = self.alert
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True,
                          default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Envelope":
        fields = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        if fields["priority"] is None:
            fields["priority"] = "info"
        return cls(**fields)


def from_source(source: Mapping[str, Any], version: int) -> Envelope:
    """The envelope for a stored role copy (``_source`` of an indexed document)."""
    deleted = bool(source.get(DELETED_FIELD))
    document = None if deleted else {k: v for k, v in source.items()
                                     if k not in INTERNAL_FIELDS}
    return Envelope(
        resource_type=source.get("resource_type") or "", id=str(source.get("id")),
        project_id=source.get("project_id"), version=version,
        operation=DELETE if deleted else INDEX,
        event_type=source.get(EVENT_TYPE_FIELD) or "",
        timestamp=source.get(CHANGED_AT_FIELD) or "", document=document,
        priority=source.get(PRIORITY_FIELD) or "info",
        alert=source.get(ALERT_FIELD) or None)


def control(operation: str, reason: str, timestamp: str = "") -> Envelope:
    """A ``resync_begin`` or ``resync_end`` envelope."""
    if operation not in CONTROL:
        raise ValueError(f"not a control operation: {operation!r}")
    return Envelope(resource_type="", id="", project_id=None, version=0,
                    operation=operation, event_type="", timestamp=timestamp,
                    document={"reason": reason})


def summary(envelope: Envelope) -> str:
    """One line a person reads: type, id (name), what happened, status, the event
    (and the alert it follows, if any): syslog messages, feed entries' titles."""
    document = envelope.document or {}
    name = document.get("name") or document.get("stack_name")
    who = f"{envelope.resource_type} {envelope.id}" + (f" ({name})" if name else "")
    if envelope.is_control:
        return f"{envelope.operation}: {(envelope.document or {}).get('reason', '')}"
    if envelope.operation == DELETE:
        what = "deleted"
    else:
        status = document.get("status") or document.get("stack_status")
        what = f"updated: {status}" if status else "updated"
    text = f"{who} {what} ({envelope.event_type})"
    if envelope.alert and envelope.alert.get("version") != envelope.version:
        text += f" after {envelope.alert.get('event_type')} [{envelope.alert.get('priority')}]"
    return " ".join(text.split())
