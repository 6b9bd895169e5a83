"""The ``webhook`` sink: each change as one signed POST (Standard Webhooks).

Options (an ini section, or a subscription's settings):

* ``url`` (required), ``secrets`` (``whsec_...``; several during a rotation: each
  signs), ``timeout`` (seconds for a 2xx, default 10), ``concurrency`` (requests in
  flight, default 4), ``rate_limit`` (requests per second, 0: none),
  ``allowed_networks`` (addresses a tenant's URL may resolve to although private),
  ``id_salt`` (mixed into ``webhook-id``; a subscription's id).

The body is ``{"type", "timestamp", "data"}`` where ``data`` is the envelope and
``type`` is ``resource.updated``, ``resource.deleted``, ``resync.begin`` or
``resync.end``. ``webhook-id`` is the same for every attempt to deliver one change
(receivers deduplicate with it); ``webhook-timestamp`` is the attempt's time.

Order: a batch is split into lanes by resource; lanes run concurrently, each in
the batch's order, and a lane stops at its first failure. The cursor moves past the
longest delivered prefix; what follows is sent again later. The sink remembers the
newest version delivered per resource, so a resent change never arrives after a
newer one of the same resource (nor twice in a process's life).

Classification: a 2xx is delivered; ``410 Gone`` means the receiver wants nothing
more (``SinkGone``: a subscription is disabled); any other answer, a timeout, a
refused connection or a refused address is ``SinkUnavailable``, and the pipeline's
(subscription's) failure policy decides what happens next.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import threading
import time
from typing import Sequence

import cachetools
import orjson
import urllib3

from forwarders.options import Float, Integer
from forwarders.sinks import destinations
from forwarders.sinks.base import Sink, SinkConfigError, SinkGone, SinkUnavailable
from forwarders.sinks.ratelimit import Stopped, TokenBucket
from forwarders.sinks.webhook import signing
from forwarders.sinks.webhook.client import WebhookClient
from searchlight_forward.model.envelope import (DELETE, RESYNC_BEGIN, RESYNC_END,
                                                Envelope)

TYPES = {DELETE: "resource.deleted", RESYNC_BEGIN: "resync.begin",
         RESYNC_END: "resync.end"}
REMEMBERED = 10000        # resources whose last delivered version a sink keeps
PACING = 2.0              # seconds of rate-limited sending per call at most


def call_timeout(timeout: float) -> float:
    """Longest a deliver() call takes with this request timeout."""
    return timeout + PACING + 1.0


def event_type(envelope: Envelope) -> str:
    return TYPES.get(envelope.operation, "resource.updated")


def message_id(salt: str, envelope: Envelope) -> str:
    """Stable per change (and per subscription): the same for every attempt."""
    digest = hashlib.sha256(f"{salt}|{envelope.resource_type}|{envelope.id}|"
                            f"{envelope.version}|{envelope.operation}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def body_of(kind: str, data: dict) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    return orjson.dumps({"type": kind, "timestamp": now.isoformat(timespec="milliseconds")
                         .replace("+00:00", "Z"), "data": data}, default=str)


class Failed(Exception):
    """One POST did not get a 2xx (the reason is the message)."""


class WebhookSink(Sink):
    default_policy = "hold"
    #: Standard Webhooks signatures (a subclass may sign otherwise)
    signs_with_secrets = True

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        o = self.options
        url = o.text("url", required=True)
        self.secrets = tuple(o.listing("secrets", []) or [])
        if not self.secrets and self.signs_with_secrets:
            raise SinkConfigError("secrets", "give at least one whsec_ secret")
        for secret in self.secrets:
            try:
                signing.key_of(secret)
            except ValueError as exc:
                raise SinkConfigError("secrets", str(exc)) from None
        timeout = o.typed("timeout", Float(min=0.1, max=120), 10.0)
        self.concurrency = o.typed("concurrency", Integer(min=1, max=64), 4)
        rate = o.typed("rate_limit", Float(min=0), 0.0)
        try:
            allowed = destinations.networks(o.listing("allowed_networks", []) or [])
        except ValueError as exc:
            raise SinkConfigError("allowed_networks", str(exc)) from None
        try:
            self.client = WebhookClient(url, allowed, timeout,
                                        max_connections=self.concurrency)
        except ValueError as exc:
            raise SinkConfigError("url", str(exc)) from None
        self.salt = o.text("id_salt", name)
        self.limiter = TokenBucket(rate)
        # A batch takes at most ~2 s of pacing, so that a call stays well inside a
        # cursor lease (lanes fail fast: one timeout ends the call).
        self.batch_size = max(1, min(100, int(rate * PACING))) if rate else 100
        self.call_timeout = call_timeout(timeout)
        self._delivered = cachetools.LRUCache(REMEMBERED)
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- one POST ----------------------------------------------------------------------

    def post(self, msg_id: str, kind: str, data: dict) -> None:
        """POST one message, signed; ``Failed``, or ``SinkGone`` on 410."""
        body = body_of(kind, data)
        self.send(body, signing.headers(self.secrets, msg_id, int(time.time()), body))

    def send_change(self, envelope: Envelope) -> None:
        """One change (or control envelope) as this sink's request."""
        self.post(message_id(self.salt, envelope), event_type(envelope),
                  envelope.to_dict())

    def send(self, body: bytes, headers: dict, content_type: str = "application/json"
             ) -> None:
        """POST ``body``, classifying the answer: ``Failed``, or ``SinkGone`` on 410."""
        try:
            self.limiter.acquire()
            resp = self.client.post(body, headers, content_type)
        except Stopped:
            raise Failed("stopping") from None
        except destinations.DestinationRefused as exc:
            raise Failed(f"destination refused: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise Failed(f"{type(exc).__name__}: {exc}"[:300]) from None
        if resp.status == 410:
            raise SinkGone(f"{self.client.url} answered 410 Gone")
        if not 200 <= resp.status < 300:
            excerpt = resp.body[:200].decode("utf-8", "replace")
            raise Failed(f"{self.client.url} answered {resp.status}"
                         + (f": {excerpt}" if excerpt else ""))

    # -- a batch -----------------------------------------------------------------------

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        lanes: dict[tuple, list[int]] = {}
        for i, e in enumerate(envelopes):
            lanes.setdefault((e.resource_type, e.id), []).append(i)
        done = [False] * len(envelopes)
        failures: list[str] = []
        gone: list[SinkGone] = []
        abandon = threading.Event()

        def run_lane(indexes: list[int]) -> None:
            for i in indexes:
                if abandon.is_set():
                    return
                e = envelopes[i]
                key = (e.resource_type, e.id)
                with self._lock:
                    newest = self._delivered.get(key)
                if e.is_control or newest is None or e.version > newest:
                    try:
                        self.send_change(e)
                    except Failed as exc:
                        failures.append(str(exc))
                        abandon.set()       # the batch is resent: spare the rest
                        return
                    except SinkGone as exc:
                        gone.append(exc)
                        abandon.set()
                        return
                    if not e.is_control:
                        with self._lock:
                            self._delivered[key] = e.version
                done[i] = True

        if len(lanes) == 1 or self.concurrency == 1:
            for indexes in lanes.values():
                run_lane(indexes)
        else:
            list(self._executor().map(run_lane, lanes.values()))
        if gone:
            raise gone[0]
        if failures:
            prefix = next((i for i, ok in enumerate(done) if not ok), len(done))
            raise SinkUnavailable(failures[0], delivered=prefix)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix=f"webhook-{self.name}")
        return self._pool

    def close(self) -> None:
        self.limiter.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
