"""oslo.messaging's batch dispatcher, without its silent drops.

oslo.messaging acknowledges a notification whose priority is missing or unknown with
one warning per batch and nothing else, and a priority that is not a string (null, a
number) makes its dispatcher raise, which hands the whole batch back to RabbitMQ, for
ever. Here such messages are taken out of the batch first and given to ``on_bad``
(the listener dead-letters them with the reason); the rest is dispatched as usual.
If ``on_bad`` fails, the whole batch goes back (nothing is acknowledged unrecorded).

What no dispatcher sees, because oslo.messaging drops it before (a body that is not
JSON, a content type other than application/json): RabbitMQ rejects it, and a
dead-letter exchange policy on the pool queue keeps it (docs/reliability.md).
"""
from __future__ import annotations

import logging
from typing import Callable

from oslo_messaging.notify import dispatcher as oslo_dispatcher

LOG = logging.getLogger(__name__)

#: ``on_bad(priority_as_received, [message dict as endpoints get them, ...])``
OnBad = Callable[[object, list[dict]], None]


class RecordingDispatcher(oslo_dispatcher.BatchNotificationDispatcher):
    def __init__(self, endpoints, on_bad: OnBad, serializer=None):
        super().__init__(endpoints, serializer)
        self.on_bad = on_bad

    def dispatch(self, incoming):
        good, bad = [], {}
        for message in incoming:
            priority = message.message.get("priority")
            if isinstance(priority, str) and priority.lower() in self.supported_priorities:
                good.append(message)
            else:
                bad.setdefault(repr(priority)[:100], []).append(message)
        try:
            for priority, messages in bad.items():
                self.on_bad(priority, [_as_endpoint_message(m) for m in messages])
        except Exception:  # noqa: BLE001 - not recorded: not acknowledged either
            LOG.warning("could not record %d message(s) with a bad priority; the batch "
                        "goes back to RabbitMQ", sum(map(len, bad.values())))
            return set(incoming)
        return super().dispatch(good) if good else set()


def _as_endpoint_message(incoming) -> dict:
    """The dict an endpoint receives for ``incoming`` (see oslo's
    ``_extract_user_message``), built without trusting its priority."""
    message = incoming.message
    return {"ctxt": incoming.ctxt if isinstance(incoming.ctxt, dict) else {},
            "publisher_id": message.get("publisher_id"),
            "event_type": message.get("event_type"),
            "payload": message.get("payload"),
            "metadata": {"message_id": message.get("message_id"),
                         "timestamp": message.get("timestamp")}}
