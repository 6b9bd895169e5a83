"""A sink's durable outbox: a RabbitMQ queue that outlives the process.

Pipelines whose sink holds changes (``on_failure = hold``) put every envelope here,
published persistent and confirmed by the broker, before (must-deliver) or just after
the notification is acknowledged. A delivery loop takes them out in order and
acknowledges them only once the sink has them, so a kill -9 or a sink outage only
delays them. The queue has a single active consumer: with several listener processes
only one delivers at a time, which keeps each resource's changes in order.
"""
from __future__ import annotations

import json
import threading

import amqp
import kombu
import kombu.exceptions

from forwarders.envelope import Envelope
from searchlight_forward.backoff import TransientError

PREFIX = "searchlight-forward.outbox."


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
                for envelope in envelopes:
                    producer.publish(envelope.to_json(), routing_key=self.name,
                                     content_type="application/json", delivery_mode=2,
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
        with kombu.Connection(self.url) as conn:
            return self.queue.bind(conn.channel()).queue_declare(passive=False).message_count

    def close(self) -> None:
        with self._lock:
            self._reset()

    # -- reading (the delivery loop's own thread) --------------------------------

    def reader(self, prefetch: int) -> "OutboxReader":
        return OutboxReader(self, prefetch)


class OutboxReader:
    """Takes envelopes in queue order; each stays unacknowledged until ``ack``."""

    def __init__(self, outbox: Outbox, prefetch: int):
        self.conn = kombu.Connection(outbox.url)
        self.buffer: list = []
        self.consumer = self.conn.Consumer([outbox.queue], callbacks=[self._on_message],
                                           prefetch_count=prefetch, accept=["json"])
        self.consumer.consume()

    def _on_message(self, body, message):
        self.buffer.append(message)

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
        return [(Envelope.from_dict(json.loads(m.body)), m) for m in taken]

    def close(self) -> None:
        try:
            self.consumer.cancel()
        finally:
            self.conn.release()
