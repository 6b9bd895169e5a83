"""The doorbell: "something was indexed, poll now", over a RabbitMQ fanout exchange.

Listener processes ring it (``WebSocketSink.deliver``) after their batch is in
Elasticsearch; every WebSocket server has an exclusive, auto-deleted queue bound to
the exchange and wakes its tailer. A ring carries only the resource groups it is
about (or ``*``): the changes themselves are read from Elasticsearch, so a lost ring
costs at most one ``poll_interval`` of delay, never a change. Messages are
transient, expire after a few seconds and the queues are capped, so a stuck server
cannot make RabbitMQ hoard rings.
"""
from __future__ import annotations

import logging
import threading
import time
import urllib.parse
import uuid
from typing import Callable, Iterable

import kombu

LOG = logging.getLogger(__name__)

EXCHANGE_NAME = "searchlight-forward.doorbell"
EXCHANGE = kombu.Exchange(EXCHANGE_NAME, type="fanout", durable=False,
                          auto_delete=False, delivery_mode="transient")
ALL_GROUPS = "*"
MESSAGE_TTL_MS = 10_000
QUEUE_MAX_LENGTH = 100


class DoorbellError(Exception):
    """The ring could not be published (RabbitMQ unreachable)."""


def kombu_url(transport_url: str) -> str:
    """oslo.messaging's ``rabbit://u:p@h1:5672,u:p@h2:5672/vhost`` as kombu spells
    it (``amqp://u:p@h1:5672/vhost;amqp://u:p@h2:5672/vhost``). Other schemes kombu
    knows (``amqp://``, ``memory://``) pass through."""
    if not transport_url:
        raise ValueError("no transport_url: the doorbell needs RabbitMQ")
    parsed = urllib.parse.urlsplit(transport_url)
    if parsed.scheme not in ("rabbit", "kombu+rabbit"):
        return transport_url
    vhost = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    vhost = vhost or "/"
    vhost_part = "/" + urllib.parse.quote(vhost, safe="") if vhost != "/" else "//"
    hosts = [h for h in parsed.netloc.split(",") if h]
    return ";".join(f"amqp://{host}{vhost_part}" for host in hosts)


class Doorbell:
    """The ringing side (listener). Thread-safe; one connection, opened on demand.

    After a failure it does not try again for ``retry_after`` seconds, so a dead
    broker costs the pipeline one fast ``DoorbellError`` per batch, not a timeout.
    """

    def __init__(self, url: str, connect_timeout: float = 2.0, retry_after: float = 5.0):
        self.url = kombu_url(url)
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._failed_at: float | None = None
        self.rings = 0
        self.failures = 0

    def ring(self, groups: Iterable[str] = (ALL_GROUPS,)) -> None:
        body = {"groups": sorted(set(groups)) or [ALL_GROUPS], "at": time.time()}
        with self._lock:
            if self._failed_at is not None and \
                    time.monotonic() - self._failed_at < self.retry_after:
                raise DoorbellError("RabbitMQ was unreachable moments ago; not retrying yet")
            try:
                if self._producer is None:
                    self._conn = kombu.Connection(self.url,
                                                  connect_timeout=self.connect_timeout)
                    self._conn.ensure_connection(max_retries=1)
                    self._producer = kombu.Producer(self._conn.channel(), exchange=EXCHANGE)
                    EXCHANGE(self._producer.channel).declare()
                self._producer.publish(body, serializer="json", routing_key="",
                                       expiration=MESSAGE_TTL_MS / 1000, retry=False)
            except Exception as exc:  # noqa: BLE001 - any broker trouble means "not rung"
                self.failures += 1
                self._failed_at = time.monotonic()
                self._reset()
                raise DoorbellError(f"doorbell not rung: {type(exc).__name__}: {exc}") from exc
            self._failed_at = None
            self.rings += 1

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        with self._lock:
            self._reset()


class DoorbellListener:
    """The server side: a thread consuming rings for ``groups`` and calling ``on_ring``.

    It reconnects with backoff when RabbitMQ goes away and calls ``on_ring`` after
    each (re)connection, since rings may have been missed meanwhile.
    """

    def __init__(self, url: str, groups: Iterable[str], on_ring: Callable[[], None],
                 heartbeat: int = 30):
        self.url = kombu_url(url)
        self.groups = set(groups) | {ALL_GROUPS}
        self.on_ring = on_ring
        self.heartbeat = heartbeat
        self.queue_name = f"{EXCHANGE_NAME}.{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="doorbell-listener")
        self.received = 0
        self.connected = False

    def start(self, wait: float | None = 5.0) -> bool:
        """Start consuming; returns whether the queue is bound within ``wait`` s."""
        self._thread.start()
        return self._ready.wait(wait) if wait else False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _queue(self) -> kombu.Queue:
        return kombu.Queue(self.queue_name, exchange=EXCHANGE, routing_key="",
                           durable=False, exclusive=True, auto_delete=True,
                           queue_arguments={"x-max-length": QUEUE_MAX_LENGTH,
                                            "x-message-ttl": MESSAGE_TTL_MS})

    def _on_message(self, body, message) -> None:
        self.received += 1
        groups = body.get("groups") if isinstance(body, dict) else None
        if not isinstance(groups, list) or self.groups.intersection(
                g for g in groups if isinstance(g, str)):
            self.on_ring()

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with kombu.Connection(self.url, heartbeat=self.heartbeat,
                                      connect_timeout=5) as conn:
                    conn.ensure_connection(max_retries=1)
                    with conn.Consumer(self._queue(), callbacks=[self._on_message],
                                       accept=["json"], no_ack=True):
                        self.connected = True
                        self._ready.set()
                        delay = 0.5
                        LOG.info("doorbell: listening on %s", self.queue_name)
                        self.on_ring()      # rings may have been missed while away
                        while not self._stop.is_set():
                            try:
                                conn.drain_events(timeout=1.0)
                            except TimeoutError:
                                conn.heartbeat_check()
            except Exception as exc:  # noqa: BLE001 - reconnect; polls keep going
                self.connected = False
                if self._stop.is_set():
                    break
                LOG.warning("doorbell: %s: %s; reconnecting in %.1fs (changes still "
                            "arrive every poll_interval)", type(exc).__name__, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self.connected = False
