"""A sink's durable outbox: a RabbitMQ queue that outlives the process.

Pipelines whose sink holds changes (``on_failure = hold``) put every envelope here,
published persistent and confirmed by the broker, before (must-deliver) or just after
the notification is acknowledged. A delivery loop takes them out in order and
acknowledges them only once the sink has them, so a kill -9 or a sink outage only
delays them. The queue has a single active consumer: with several listener processes
only one delivers at a time, which keeps each resource's changes in order.

A batch of envelopes travels as one AMQP message (a JSON list): a per-envelope
publish cost more CPU than the rest of forwarding together. The price is that a
message is acknowledged only when all its envelopes are delivered, so after a crash
in the middle of one, its first envelopes are delivered again: in order, and
harmless to consumers that keep the newest version per resource.
"""
from __future__ import annotations

import threading

import amqp
import kombu
import orjson
import kombu.exceptions

from forwarders.envelope import Envelope
from searchlight_forward.backoff import TransientError

PREFIX = "searchlight-forward.outbox."
MESSAGE_ENVELOPES = 500    # envelopes per AMQP message (bounds a message's size)


def amqp_url(transport_url: str) -> str:
    """oslo.messaging says rabbit://, kombu says amqp://."""
    return transport_url.replace("rabbit://", "amqp://", 1)


class Outbox:
    def __init__(self, transport_url: str, name: str):
        self.name = PREFIX + name
        self.url = amqp_url(transport_url)
        self.queue = kombu.Queue(self.name, exchange=kombu.Exchange(""), routing_key=self.name,
                                 durable=True, auto_delete=False,
                                 queue_arguments={"x-single-active-consumer": True})
        self._lock = threading.Lock()      # publishers share one connection
        self._conn: kombu.Connection | None = None
        self._producer = None

    # -- writing (listener threads) ----------------------------------------------

    def put(self, envelopes: list[Envelope]) -> None:
        """Returns once the broker has the whole batch on disk.

        One AMQP transaction per batch: its commit returns after RabbitMQ has
        written the persistent messages, at one round trip per batch instead of
        one publisher confirm per message. On any error the connection is dropped
        (the uncommitted batch with it) and the caller retries the whole batch.
        """
        if not envelopes:
            return
        with self._lock:
            try:
                channel, producer = self._ensure_producer()
                for start in range(0, len(envelopes), MESSAGE_ENVELOPES):
                    body = orjson.dumps([e.to_dict() for e in
                                         envelopes[start:start + MESSAGE_ENVELOPES]])
                    producer.publish(body, routing_key=self.name,
                                     content_type="application/json",
                                     content_encoding="binary", delivery_mode=2,
                                     declare=[self.queue])
                channel.tx_commit()
            except (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError) as exc:
                self._reset()
                raise TransientError(f"outbox {self.name}: {exc}") from exc

    def _ensure_producer(self):
        if self._conn is None:
            self._conn = kombu.Connection(self.url)
            channel = self._conn.channel()
            channel.tx_select()
            self._producer = (channel, kombu.Producer(channel))
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    def depth(self) -> int:
        """Batches (AMQP messages of up to MESSAGE_ENVELOPES envelopes) waiting."""
        with kombu.Connection(self.url) as conn:
            return self.queue.bind(conn.channel()).queue_declare(passive=False).message_count

    def close(self) -> None:
        with self._lock:
            self._reset()

    # -- reading (the delivery loop's own thread) --------------------------------

    def reader(self, prefetch: int) -> "OutboxReader":
        return OutboxReader(self, prefetch)


class _Part:
    """One envelope's share of an AMQP message: the message is acked with its last."""

    def __init__(self, message, remaining: list):
        self.message, self.remaining = message, remaining

    def ack(self) -> None:
        self.remaining[0] -= 1
        if self.remaining[0] == 0:
            self.message.ack()


class OutboxReader:
    """Takes envelopes in queue order; each stays unacknowledged until ``ack``."""

    def __init__(self, outbox: Outbox, prefetch: int):
        self.conn = kombu.Connection(outbox.url)
        self.buffer: list = []
        self.consumer = self.conn.Consumer([outbox.queue], callbacks=[self._on_message],
                                           prefetch_count=prefetch, accept=["json"])
        self.consumer.consume()

    def _on_message(self, body, message):
        items = orjson.loads(message.body)
        remaining = [len(items)]
        self.buffer.extend((Envelope.from_dict(item), _Part(message, remaining))
                           for item in items)

    def take(self, limit: int, timeout: float) -> list[tuple[Envelope, object]]:
        """Up to ``limit`` (envelope, message) pairs; waits up to ``timeout`` for one."""
        if not self.buffer:
            try:
                self.conn.drain_events(timeout=timeout)
            except TimeoutError:
                return []
            except OSError:
                raise
        # Let everything already on the wire land, without waiting.
        while len(self.buffer) < limit:
            try:
                self.conn.drain_events(timeout=0)
            except (TimeoutError, OSError):
                break
        taken, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return taken

    def close(self) -> None:
        try:
            self.consumer.cancel()
        finally:
            self.conn.release()
