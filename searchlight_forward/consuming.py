"""A RabbitMQ consumer thread that outlives its broker (kombu).

The doorbell's listeners and the listener's reader of rejected messages each
consume a queue of their own beside oslo.messaging. Whatever the broker does
(restart, connection reset, a node gone for minutes), the thread reconnects with
the one retry policy, probing the broker's port so that it is back within about a
second of the broker's return, and ``on_connect`` is called after each
(re)connection. No exception ends the thread except a stop.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from typing import Callable

import kombu

from searchlight_forward.logs import Throttled
from searchlight_forward.retry import Policy, Retry, Stopping

LOG = logging.getLogger(__name__)


def broker_answers(url: str, timeout: float = 1.0) -> bool:
    """Does any broker of a kombu URL (``;``-separated) accept a TCP connection?"""
    for one in url.split(";"):
        parts = urllib.parse.urlsplit(one)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672),
                                          timeout=timeout):
                return True
        except OSError:
            continue
    return False


class ConsumerThread:
    """Consume ``queues()`` with ``on_message(body, message)`` until ``stop``;
    with ``accept=None``, ``on_message(message)`` gets the raw message, undecoded."""

    def __init__(self, url: str, what: str, queues: Callable[[], list[kombu.Queue]],
                 on_message: Callable, on_connect: Callable[[], None] = lambda: None,
                 no_ack: bool = True, accept: tuple[str, ...] | None = ("json",),
                 prefetch: int = 0, heartbeat: int = 30, retry: Policy = Policy(0.5, 30.0)):
        self.url = url
        self.what = what
        self.queues = queues
        self.on_message = on_message
        self.on_connect = on_connect
        self.no_ack = no_ack
        self.accept = accept
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.policy = retry
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=what)
        self._log = Throttled(LOG)
        self.connected = False
        self.connections = 0
        self.heartbeat_checks = 0

    def start(self, wait: float | None = 5.0) -> bool:
        """Start consuming; returns whether the queues are consumed within ``wait`` s."""
        self._thread.start()
        return self._ready.wait(wait) if wait else False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _connect(self) -> kombu.Connection:
        conn = kombu.Connection(self.url, heartbeat=self.heartbeat, connect_timeout=5)
        try:
            conn.ensure_connection(max_retries=1)
        except Exception:
            conn.release()
            raise
        return conn

    def _drain(self, conn: kombu.Connection) -> None:
        """Consume until stopped, checking heartbeats on a clock: every
        ``heartbeat / 4`` seconds whether messages keep coming or not (checked only
        when ``drain_events`` timed out, a steady stream of messages meant the
        client never sent a heartbeat, and the broker dropped the connection for
        "missed heartbeats from client" every two intervals)."""
        # The interval negotiated with the broker (the lower of both sides).
        negotiated = getattr(conn.connection, "heartbeat", None) or self.heartbeat
        every = max(0.05, negotiated / 4) if negotiated else None
        wait = min(1.0, every) if every else 1.0
        last_check = time.monotonic()
        while not self._stop.is_set():
            try:
                conn.drain_events(timeout=wait)
            except TimeoutError:
                pass
            if every is not None and time.monotonic() - last_check >= every:
                last_check = time.monotonic()
                # py-amqp sends a heartbeat frame when nothing went out for half
                # the interval (rate 2), and fails if nothing came in for two.
                conn.heartbeat_check(rate=2)
                self.heartbeat_checks += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            # A fresh retry per connection: the backoff starts small after each outage.
            retry = Retry(self.policy, self.what, stop_event=self._stop, log=self._log,
                          probe=lambda: broker_answers(self.url))
            try:
                conn = retry.call(self._connect)
            except Stopping:
                break
            try:
                how = ({"callbacks": [self.on_message], "accept": list(self.accept)}
                       if self.accept is not None else {"on_message": self.on_message})
                with conn, conn.Consumer(self.queues(), no_ack=self.no_ack,
                                         prefetch_count=self.prefetch or None, **how):
                    self.connected = True
                    self.connections += 1
                    self._ready.set()
                    self.on_connect()
                    self._drain(conn)
            except Exception as exc:  # noqa: BLE001 - any trouble: reconnect
                self._log.failure(self.what, exc, "reconnecting", with_traceback=False)
            finally:
                self.connected = False
