"""The ``webhook`` sink: each change as one signed POST (Standard Webhooks).

Options (an ini section, or a subscription's settings):

* ``url`` (required), ``secrets`` (``whsec_...``; several during a rotation: each
  signs; ``whsec_...@<epoch seconds>`` signs only until then, so a rotated secret
  stops signing at its expiry without the sink being rebuilt), ``timeout`` (seconds for a 2xx, default 10), ``concurrency`` (requests in
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
newest version delivered per resource (``base.Sent``), so a resent change never
arrives after a newer one of the same resource, nor twice in one consumer's run;
``deliver`` returns how many it did not send for that reason. A new run (an
operator's replay, a cursor taken over) sends everything it reads again.

Classification: a 2xx is delivered; ``410 Gone`` means the receiver wants nothing
more (``SinkGone``: a subscription is disabled); any other answer, a timeout, a
refused connection or a refused address is ``SinkUnavailable``, and the pipeline's
(subscription's) failure policy decides what happens next.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import re
import threading
import time
from typing import Sequence

import orjson
import urllib3

from forwarders.options import Float, Integer
from forwarders.sinks import destinations
from forwarders.sinks.base import (Sent, Sink, SinkConfigError, SinkGone,
                                   SinkUnavailable)
from forwarders.sinks.ratelimit import Pacer, Stopped
from forwarders.sinks.webhook import signing
from forwarders.sinks.webhook.client import WebhookClient
from searchlight_forward.model.envelope import (DELETE, RESYNC_BEGIN, RESYNC_END,
                                                Envelope)

TYPES = {DELETE: "resource.deleted", RESYNC_BEGIN: "resync.begin",
         RESYNC_END: "resync.end"}
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


def _urllib3_reason(exc: Exception) -> str:
    """urllib3's message without the connection object's repr it starts with."""
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>: ", "", str(exc)).strip()
    return text or type(exc).__name__


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
        try:
            #: (secret, epoch seconds it stops signing at or None), newest first
            self.secrets = tuple(signing.parse_secret(s)
                                 for s in o.listing("secrets", []) or [])
        except ValueError as exc:
            raise SinkConfigError("secrets", str(exc)) from None
        if not self.secrets and self.signs_with_secrets:
            raise SinkConfigError("secrets", "give at least one whsec_ secret")
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
        self.limiter = Pacer(rate)
        # A batch takes at most ~2 s of pacing, so that a call stays well inside a
        # cursor lease (lanes fail fast: one timeout ends the call).
        self.batch_size = max(1, min(100, int(rate * PACING))) if rate else 100
        self.call_timeout = call_timeout(timeout)
        self._sent = Sent()

    # -- one POST ----------------------------------------------------------------------

    def post(self, msg_id: str, kind: str, data: dict) -> None:
        """POST one message, signed; ``Failed``, or ``SinkGone`` on 410."""
        body = body_of(kind, data)
        now = time.time()
        self.send(body, signing.headers(self.signing_secrets(now), msg_id, int(now), body))

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets that sign now (an expired one never does)."""
        current = tuple(s for s, until in self.secrets if until is None or until > now)
        if not current:
            raise Failed("every signing secret has expired: give a current one "
                         "in secrets")
        return current

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
            raise Failed(f"{self.client.url}: {_urllib3_reason(exc)}"[:300]) from None
        if resp.status == 410:
            raise SinkGone(f"{self.client.url} answered 410 Gone")
        if not 200 <= resp.status < 300:
            excerpt = resp.body[:200].decode("utf-8", "replace")
            raise Failed(f"{self.client.url} answered {resp.status}"
                         + (f": {excerpt}" if excerpt else ""))

    # -- a batch -----------------------------------------------------------------------

    def deliver(self, envelopes: Sequence[Envelope]) -> int:
        lanes: dict[tuple, list[int]] = {}
        for i, e in enumerate(envelopes):
            lanes.setdefault((e.resource_type, e.id), []).append(i)
        done = [False] * len(envelopes)
        not_sent = [False] * len(envelopes)
        failures: list[str] = []
        gone: list[SinkGone] = []
        abandon = threading.Event()
        memory = self._sent.for_caller()        # the calling consumer's run

        def run_lane(indexes: list[int]) -> None:
            for i in indexes:
                if abandon.is_set():
                    return
                e = envelopes[i]
                if memory.wanted(e):
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
                    memory.record(e)
                else:
                    not_sent[i] = True
                done[i] = True

        if len(lanes) == 1 or self.concurrency == 1:
            for indexes in lanes.values():
                run_lane(indexes)
        else:
            _run_bounded(run_lane, list(lanes.values()), self.concurrency)
        if gone:
            raise gone[0]
        if failures:
            prefix = next((i for i, ok in enumerate(done) if not ok), len(done))
            raise SinkUnavailable(failures[0], delivered=prefix)
        return sum(not_sent)

    def close(self) -> None:
        self.limiter.close()
        self.client.close()


#: Threads every webhook sink of the process shares for its lanes (a sink posts at
#: most ``concurrency`` at once): ten thousand subscriptions do not keep a pool each.
LANE_THREADS = 64
_lanes: concurrent.futures.ThreadPoolExecutor | None = None
_lanes_lock = threading.Lock()


def _lane_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _lanes
    with _lanes_lock:
        if _lanes is None:
            _lanes = concurrent.futures.ThreadPoolExecutor(
                LANE_THREADS, thread_name_prefix="webhook-lanes")
        return _lanes


def _run_bounded(fn, items: list, limit: int) -> None:
    """``fn(item)`` for each item on the shared lane threads, at most ``limit`` at
    once; an exception of ``fn`` is raised here."""
    pool = _lane_pool()
    pending: set = set()
    for item in items:
        if len(pending) >= limit:
            done, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                future.result()
        pending.add(pool.submit(fn, item))
    for future in concurrent.futures.as_completed(pending):
        future.result()
