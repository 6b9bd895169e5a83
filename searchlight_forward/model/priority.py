"""Notification priorities and the alert a change carries (pure).

oslo.messaging delivers every notification with a priority (its level). A change
carries the priority of the newest notification folded into it, so a pipeline or a
subscription can select priorities and a Zaqar queue name can use ``{priority}``.

The index keeps the newest state of each resource, not every step: Nova sends
``compute.instance.create.error`` (ERROR) and, milliseconds later,
``compute.instance.update`` (INFO) for the same server, and both are folded into one
write (or the second overwrites the first before a reader sees it). Routing on the
newest priority alone would lose the error. So a change also carries its resource's
**alert**: the newest warn, error or critical notification, for as long as the
changes after it were emitted within ``ALERT_WINDOW`` seconds of it. A pipeline that
selects a priority takes a change whose priority or whose alert's priority is
selected; ``{priority}`` routes on the more severe of the two.
"""
from __future__ import annotations

import datetime
from typing import Any, Mapping

#: oslo.messaging's notification levels, as its endpoints receive them
PRIORITIES = ("audit", "critical", "debug", "error", "info", "sample", "warn")
#: the levels an alert is made of, least severe first
ALERT_LEVELS = ("warn", "error", "critical")
#: seconds of notification time an alert rides on its resource's later changes: the
#: routine notifications that follow a failure (Nova's instance.update with state
#: ERROR) are sent within seconds of it
ALERT_WINDOW = 300.0

_SEVERITY = {"debug": 0, "sample": 0, "audit": 1, "info": 1, "warn": 2, "error": 3,
             "critical": 4}


def severity(priority: str | None) -> int:
    return _SEVERITY.get(priority or "info", 1)


def alert_of(priority: str, event_type: str, version: int, timestamp: str
             ) -> dict[str, Any] | None:
    """The alert a notification makes (None for routine levels)."""
    if priority not in ALERT_LEVELS:
        return None
    return {"priority": priority, "event_type": event_type, "version": version,
            "timestamp": timestamp}


def emitted_at(timestamp: str | None) -> datetime.datetime | None:
    """A notification timestamp (oslo's ``2026-03-02 12:00:07.270156``, ISO 8601
    with ``T``, ``Z`` or an offset) as an aware UTC datetime; None if unreadable."""
    if not timestamp:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def still_carried(alert: Mapping[str, Any] | None, timestamp: str) -> bool:
    """Does ``alert`` still ride on a change emitted at ``timestamp``? Unreadable
    times end it (a missed alert is better than a stuck one)."""
    if not alert:
        return False
    start, now = emitted_at(alert.get("timestamp")), emitted_at(timestamp)
    if start is None or now is None:
        return False
    return 0 <= (now - start).total_seconds() <= ALERT_WINDOW


def routing_priority(priority: str | None, alert: Mapping[str, Any] | None) -> str:
    """The more severe of a change's priority and its alert's."""
    priority = priority or "info"
    if alert and severity(alert.get("priority")) > severity(priority):
        return alert["priority"]
    return priority


def selects(priorities, priority: str | None, alert: Mapping[str, Any] | None) -> bool:
    """Does a selection of priorities take a change with this priority and alert?"""
    return (priority or "info") in priorities or bool(
        alert and alert.get("priority") in priorities)
