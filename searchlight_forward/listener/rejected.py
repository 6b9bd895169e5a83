"""What RabbitMQ dead-lettered from the pool queue, into the dead-letter index.

oslo.messaging rejects, without requeueing, what it cannot read (a body that is not
JSON, a content type other than ``application/json``, a broken envelope): it logs
one line and RabbitMQ drops the message, unless the pool queue has a dead-letter
exchange. With the policy of docs/reliability.md, RabbitMQ routes such messages
(and those a quorum queue's delivery limit or a length limit removes) to
``[listener] rejected_queue``; the listener reads that queue and writes each one as a
dead letter (stage ``rejected``) with its raw body and RabbitMQ's reason, then
acknowledges it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading

import kombu

from searchlight_forward import deadletter
from searchlight_forward.changelog.doorbell import kombu_url
from searchlight_forward.consuming import ConsumerThread
from searchlight_forward.deadletter import DeadLetter, DeadLetterIndex
from searchlight_forward.logs import Throttled

LOG = logging.getLogger(__name__)


class RejectedReader:
    def __init__(self, transport_url: str, queue: str, dead_letters: DeadLetterIndex,
                 stop_event: threading.Event | None = None):
        self.queue = queue
        self.dead_letters = dead_letters
        self.stop_event = stop_event or threading.Event()
        self.exchange = kombu.Exchange(queue, type="fanout", durable=True)
        self.recorded = 0
        self._log = Throttled(LOG)
        self._consumer = ConsumerThread(kombu_url(transport_url), "rejected-reader",
                                        self._queues, self._on_message, no_ack=False,
                                        accept=None, prefetch=50)

    def start(self) -> None:
        self._consumer.start(wait=None)

    def stop(self) -> None:
        self._consumer.stop()

    def stats(self) -> dict:
        return {"queue": self.queue, "connected": self._consumer.connected,
                "recorded": self.recorded}

    def _queues(self) -> list[kombu.Queue]:
        return [kombu.Queue(self.queue, exchange=self.exchange, routing_key="",
                            durable=True)]

    def _on_message(self, message) -> None:
        try:
            self.dead_letters.write([letter_of(message)])
        except Exception as exc:  # noqa: BLE001 - keep it in the queue, try again later
            self._log.failure("recording a rejected message", exc, "it stays queued")
            message.requeue()
            self.stop_event.wait(1.0)
            return
        message.ack()
        self.recorded += 1


def letter_of(message) -> DeadLetter:
    """A dead letter for a raw AMQP message: its body as text (base64 if it is not
    UTF-8), what can be read of it, and why RabbitMQ dead-lettered it."""
    body: bytes = message.body if isinstance(message.body, bytes) else \
        str(message.body).encode("utf-8", "backslashreplace")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(body).decode("ascii")
    readable = _readable(text)
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths else {}
    content_type = message.properties.get("content_type") or message.content_type
    reason = (f"RabbitMQ dead-lettered it ({_text(death.get('reason')) or 'unknown'}) "
              f"from queue {_text(death.get('queue'))} (routing keys "
              f"{_text(death.get('routing-keys'))}; content type {content_type!r}); "
              f"oslo.messaging rejects what it cannot read")
    return DeadLetter(deadletter.REJECTED, reason, {
        "event_type": readable.get("event_type"),
        "publisher_id": readable.get("publisher_id"),
        "payload": text,
        # Redelivered, the same body overwrites its record.
        "metadata": {"message_id": readable.get("message_id")
                     or "sha256:" + hashlib.sha256(body).hexdigest()}},
        _text(readable.get("priority")) or "")


def _readable(text: str) -> dict:
    """event_type, publisher_id, message_id, priority, if the body is a JSON object
    (an oslo envelope or a bare notification)."""
    try:
        found = json.loads(text)
        if isinstance(found, dict) and isinstance(found.get("oslo.message"), str):
            found = json.loads(found["oslo.message"])
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)
