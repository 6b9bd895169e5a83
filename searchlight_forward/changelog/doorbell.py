"""The doorbell: "the log grew and is visible up to here", over a RabbitMQ fanout.

A listener process rings it (``announcer``) once a refresh has made its writes
searchable; the ring carries the group, the concrete index and, per shard, the
checkpoint that refresh covers, so a reader that hears it can read straight up to
there without asking Elasticsearch where the log ends or refreshing anything.

Every reader (delivery service, WebSocket server) has an exclusive, auto-deleted
queue bound to the exchange. Rings are hints, never the data: a lost ring costs a
reader at most a poll interval, never a change. Messages are transient, expire
after a few seconds and the queues are capped, so a stuck reader cannot make
RabbitMQ hoard rings.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.parse
import uuid
from typing import Callable, Iterable

import kombu
import oslo_messaging
from oslo_config import cfg

from searchlight_forward.consuming import ConsumerThread

LOG = logging.getLogger(__name__)

EXCHANGE_NAME = "searchlight-forward.doorbell"
EXCHANGE = kombu.Exchange(EXCHANGE_NAME, type="fanout", durable=False,
                          auto_delete=False, delivery_mode="transient")
MESSAGE_TTL_MS = 10_000
QUEUE_MAX_LENGTH = 100


class DoorbellError(Exception):
    """The ring could not be published (RabbitMQ unreachable)."""


@dataclasses.dataclass(frozen=True)
class Ring:
    group: str
    index: str
    checkpoints: tuple[int, ...]     # per shard: every write at or below is visible

    def to_body(self) -> dict:
        return {"group": self.group, "index": self.index,
                "checkpoints": list(self.checkpoints), "at": time.time()}

    @classmethod
    def from_body(cls, body: object) -> "Ring | None":
        """A ring from a message body; None if it is not one (ignored)."""
        if not isinstance(body, dict):
            return None
        group, index, checkpoints = body.get("group"), body.get("index"), body.get("checkpoints")
        if not (isinstance(group, str) and isinstance(index, str)
                and isinstance(checkpoints, list) and checkpoints
                and all(isinstance(c, int) and not isinstance(c, bool) for c in checkpoints)):
            return None
        return cls(group, index, tuple(checkpoints))


def kombu_url(transport_url: str) -> str:
    """oslo.messaging's ``rabbit://u:p@h1:5672,u:p@h2:5672/vhost`` as kombu spells
    it (``amqp://u:p@h1:5672/vhost;amqp://u:p@h2:5672/vhost``), parsed by
    oslo.messaging itself (``TransportURL``) so both agree on every host."""
    if not transport_url:
        raise ValueError("no transport_url: the doorbell needs RabbitMQ")
    url = oslo_messaging.TransportURL.parse(cfg.ConfigOpts(), transport_url)
    if url.transport not in ("rabbit", "kombu+rabbit", "amqp"):
        return transport_url          # memory://, ... : kombu's own spelling
    vhost = url.virtual_host or "/"
    path = "/" + urllib.parse.quote(vhost, safe="") if vhost != "/" else "//"
    urls = []
    for host in url.hosts:
        login = ""
        if host.username:
            login = urllib.parse.quote(host.username, safe="")
            if host.password:
                login += ":" + urllib.parse.quote(host.password, safe="")
            login += "@"
        port = f":{host.port}" if host.port else ""
        urls.append(f"amqp://{login}{host.hostname}{port}{path}")
    return ";".join(urls)


class Doorbell:
    """The ringing side. Thread-safe; one connection, opened on demand.

    After a failure it does not try again for ``retry_after`` seconds, so a dead
    broker costs the caller one fast ``DoorbellError``, not a timeout each time.
    """

    def __init__(self, transport_url: str, connect_timeout: float = 2.0,
                 retry_after: float = 5.0):
        self.url = kombu_url(transport_url)
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._query = None                 # a channel for passive declares
        self._failed_at: float | None = None
        self.rings = 0
        self.failures = 0

    def ring(self, ring: Ring) -> None:
        with self._lock:
            if self._backing_off():
                raise DoorbellError("RabbitMQ was unreachable moments ago; not retrying yet")
            try:
                if self._producer is None:
                    self._producer = kombu.Producer(self._connection().channel(),
                                                    exchange=EXCHANGE)
                    EXCHANGE(self._producer.channel).declare()
                self._producer.publish(ring.to_body(), serializer="json", routing_key="",
                                       expiration=MESSAGE_TTL_MS / 1000, retry=False)
            except Exception as exc:  # noqa: BLE001 - any broker trouble means "not rung"
                self.failures += 1
                self._failed()
                raise DoorbellError(f"doorbell not rung: {type(exc).__name__}: {exc}") from exc
            self._failed_at = None
            self.rings += 1

    def waiting(self, queue: str) -> int | None:
        """Messages ready in ``queue`` (the listener's pool queue: is it behind?), by a
        passive declare on this connection; None if not known (no such queue, or
        RabbitMQ away: then not asked again for ``retry_after``)."""
        with self._lock:
            if self._backing_off():
                return None
            try:
                if self._query is None:
                    self._query = self._connection().channel()
                _, ready, _ = self._query.queue_declare(queue, passive=True)
                return ready
            except Exception:  # noqa: BLE001 - unknown is "not behind"
                self._failed()
                return None

    def _backing_off(self) -> bool:
        return self._failed_at is not None and \
            time.monotonic() - self._failed_at < self.retry_after

    def _connection(self) -> kombu.Connection:
        """The connection, opened on demand (under the lock)."""
        if self._conn is None:
            self._conn = kombu.Connection(self.url, connect_timeout=self.connect_timeout)
            self._conn.ensure_connection(max_retries=1)
        return self._conn

    def _failed(self) -> None:
        self._failed_at = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self._query = None
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def close(self) -> None:
        with self._lock:
            self._reset()


class DoorbellListener:
    """A thread consuming rings for ``groups`` and calling ``on_ring(ring)``.

    It survives the broker (``consuming.ConsumerThread``) and calls ``on_ring(None)``
    after each (re)connection, since rings may have been missed meanwhile.
    """

    def __init__(self, transport_url: str, groups: Iterable[str],
                 on_ring: Callable[[Ring | None], None], heartbeat: int = 30):
        self.groups = frozenset(groups)
        self.on_ring = on_ring
        self.queue_name = f"{EXCHANGE_NAME}.{uuid.uuid4().hex[:12]}"
        self.received = 0
        self._consumer = ConsumerThread(
            kombu_url(transport_url), "doorbell-listener", self._queues, self._on_message,
            on_connect=self._connected, heartbeat=heartbeat)

    @property
    def connected(self) -> bool:
        return self._consumer.connected

    @property
    def connections(self) -> int:
        return self._consumer.connections

    def stats(self) -> dict:
        return {"connected": self.connected, "connections": self.connections,
                "received": self.received}

    def start(self, wait: float | None = 5.0) -> bool:
        """Start consuming; returns whether the queue is bound within ``wait`` s."""
        return self._consumer.start(wait)

    def stop(self, timeout: float = 5.0) -> None:
        self._consumer.stop(timeout)

    def _queues(self) -> list[kombu.Queue]:
        return [kombu.Queue(self.queue_name, exchange=EXCHANGE, routing_key="",
                            durable=False, exclusive=True, auto_delete=True,
                            queue_arguments={"x-max-length": QUEUE_MAX_LENGTH,
                                             "x-message-ttl": MESSAGE_TTL_MS})]

    def _connected(self) -> None:
        LOG.info("doorbell: listening on %s", self.queue_name)
        self.on_ring(None)

    def _on_message(self, body, message) -> None:
        self.received += 1
        ring = Ring.from_body(body)
        if ring is not None and ring.group in self.groups:
            self.on_ring(ring)
