"""oslo.messaging message dicts -> Notification (pure)."""
from __future__ import annotations

import json
from typing import Any

from searchlight_forward.model.change import Notification


class UnreadableMessage(ValueError):
    """Not a notification anyone can read; dead-letter it at the parse stage."""


def to_notification(priority: str, message: dict[str, Any]) -> Notification:
    event_type = message.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise UnreadableMessage("message has no event_type")
    payload = message.get("payload")
    if isinstance(payload, (str, bytes)):
        # Some publishers double-encode; anything else is not a notification payload.
        try:
            payload = json.loads(payload)
        except ValueError:
            raise UnreadableMessage(
                f"payload of {event_type} is a string that is not JSON") from None
    if payload is None:
        raise UnreadableMessage(f"{event_type} has no payload")
    meta = message.get("metadata") or {}
    ctxt = message.get("ctxt")
    return Notification(
        event_type=event_type, payload=payload,
        publisher_id=str(message.get("publisher_id") or ""),
        priority=priority, timestamp=str(meta.get("timestamp") or ""),
        message_id=str(meta.get("message_id") or ""),
        context=ctxt if isinstance(ctxt, dict) else {})
