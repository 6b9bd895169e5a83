"""The WebSub hub (W3C Recommendation, 2018) for our feeds.

    POST /v1/websub   (application/x-www-form-urlencoded)
      hub.mode=subscribe|unsubscribe  hub.topic=<a secret feed URL>
      hub.callback=<URL>  [hub.lease_seconds=N]  [hub.secret=<under 200 bytes>]

The topic must be one of this hub's secret feed URLs: holding it is the permission
to read the feed, so no Keystone token is involved. The hub answers ``202 Accepted``
and then verifies the subscriber's intent (section 5.3): a GET to the callback with
``hub.mode``, ``hub.topic``, ``hub.challenge`` and ``hub.lease_seconds``; only a 2xx
whose body is exactly the challenge activates the subscription (or, for
``unsubscribe``, removes it). A callback that echoes anything else gets nothing.

A verified subscription is a ``websub`` subscription of the feed's project, role
copy and selection: the delivery service gives it its own cursor, ordered
per-resource delivery with the subscriptions' retry schedule, and ends it when its
lease expires (a new subscribe request renews it).
"""
from __future__ import annotations

import dataclasses
import logging
import secrets as random
import threading
import time
import uuid
from typing import Callable, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

import urllib3
import webob

from forwarders.feeds.api import FeedError, Feeds
from forwarders.sinks import destinations
from forwarders.sinks.destinations import Network
from forwarders.sinks.webhook.client import WebhookClient
from forwarders.subscriptions.model import ACTIVE, WEBSUB, Subscription
from forwarders.subscriptions.store import SubscriptionStore

LOG = logging.getLogger(__name__)

DEFAULT_LEASE = 86400
MAX_LEASE = 10 * 86400
MAX_SECRET = 199            # bytes: "MUST be less than 200 bytes"


class HubError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class HubRequest:
    mode: str
    topic: str
    callback: str
    lease_seconds: int
    secret: str


def parse(form: Mapping[str, str], allow_http: bool) -> HubRequest:
    """A hub request from its form fields (pure); ``HubError`` (400) says what is wrong."""
    mode = form.get("hub.mode", "")
    if mode not in ("subscribe", "unsubscribe"):
        raise HubError(400, "hub.mode: subscribe or unsubscribe")
    topic, callback = form.get("hub.topic", ""), form.get("hub.callback", "")
    if not topic:
        raise HubError(400, "hub.topic: the feed's URL")
    parts = urlsplit(callback)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise HubError(400, "hub.callback: an http(s) URL without credentials")
    if parts.scheme == "http" and not allow_http:
        raise HubError(400, "hub.callback: an https URL (this hub refuses http)")
    lease = form.get("hub.lease_seconds") or str(DEFAULT_LEASE)
    if not lease.isdigit() or int(lease) < 1:
        raise HubError(400, "hub.lease_seconds: a whole number of seconds")
    secret = form.get("hub.secret", "")
    if len(secret.encode()) > MAX_SECRET:
        raise HubError(400, "hub.secret: less than 200 bytes")
    return HubRequest(mode, topic, callback, min(int(lease), MAX_LEASE), secret)


class WebSubHub:
    def __init__(self, store: SubscriptionStore, feeds: Feeds, heads: Callable[[], dict],
                 allowed: Sequence[Network], allow_http: bool, timeout: float = 10.0):
        self.store = store
        self.feeds = feeds
        self.heads = heads
        self.allowed = tuple(allowed)
        self.allow_http = allow_http
        self.timeout = timeout
        self.verified = threading.Event()       # set after each verification (tests)

    def handle(self, req: webob.Request) -> webob.Response:
        try:
            if req.method != "POST":
                raise HubError(405, "POST a form: hub.mode, hub.topic, hub.callback")
            request = parse(req.POST, self.allow_http)
            feed = self._feed_of(request.topic)
            parts = urlsplit(request.callback)
            try:
                destinations.resolve(parts.hostname, parts.port or (
                    443 if parts.scheme == "https" else 80), self.allowed)
            except destinations.DestinationRefused as exc:
                raise HubError(400, f"hub.callback refused: {exc}") from None
        except HubError as exc:
            return webob.Response(text=exc.message + "\n", status=exc.status,
                                  content_type="text/plain", charset="utf-8")
        threading.Thread(target=self._verify, args=(request, feed), daemon=True,
                         name="websub-verify").start()
        return webob.Response(status=202)

    def _feed_of(self, topic: str) -> Subscription:
        prefix = f"{self.feeds.public_url}/v1/feeds/"
        rest = topic.split("?", 1)[0]
        parts = rest[len(prefix):].split("/") if rest.startswith(prefix) else []
        if len(parts) != 2:
            raise HubError(400, "hub.topic: not a feed of this hub (use a feed "
                                "subscription's feed_url)")
        try:
            return self.feeds.by_token(*parts)
        except FeedError as exc:
            raise HubError(400 if exc.status == 404 else exc.status,
                           f"hub.topic: {exc.message}") from None

    # -- verification of intent, then the subscription ----------------------------------

    def _verify(self, request: HubRequest, feed: Subscription) -> None:
        try:
            challenge = random.token_urlsafe(24)
            query = urlencode({"hub.mode": request.mode, "hub.topic": request.topic,
                               "hub.challenge": challenge,
                               "hub.lease_seconds": request.lease_seconds})
            client = WebhookClient(request.callback, self.allowed, self.timeout)
            try:
                resp = client.get(query)
            except (urllib3.exceptions.HTTPError, destinations.DestinationRefused) as exc:
                LOG.warning("websub %s of %s: verification request failed: %s",
                            request.mode, request.callback, exc)
                return
            finally:
                client.close()
            if not 200 <= resp.status < 300 or resp.body.decode("utf-8", "replace") \
                    != challenge:
                LOG.warning("websub %s of %s refused: the callback answered %s without "
                            "echoing hub.challenge", request.mode, request.callback,
                            resp.status)
                return
            existing = [s for s in self.store.listing(feed.project_id)
                        if s.subscription.protocol == WEBSUB
                        and s.subscription.websub_topic == feed.id
                        and s.subscription.endpoint == request.callback]
            if request.mode == "unsubscribe":
                for stored in existing:
                    self.store.delete(stored)
                LOG.info("websub: %s unsubscribed from feed %s", request.callback, feed.id)
                return
            now = time.time()
            if existing:
                self.store.update(existing[0], existing[0].subscription.replace(
                    lease_expires_at=now + request.lease_seconds, websub_topic_url=request.topic,
                    websub_feed_hash=feed.feed_token_hash, websub_secret=request.secret,
                    state=ACTIVE, state_reason=None, updated_at=now))
            else:
                self.store.create(Subscription(
                    id=str(uuid.uuid4()), project_id=feed.project_id, protocol=WEBSUB,
                    endpoint=request.callback, role=feed.role,
                    created_by=f"websub:{feed.created_by}", created_at=now,
                    updated_at=now, state=ACTIVE, name=f"websub of {feed.id}",
                    resource_types=feed.resource_types, event_types=feed.event_types,
                    priorities=feed.priorities, rate_limit=feed.rate_limit,
                    start_from="now", confirmed_at=now, start_positions=self.heads(),
                    websub_topic=feed.id, websub_topic_url=request.topic,
                    websub_feed_hash=feed.feed_token_hash, websub_secret=request.secret,
                    lease_expires_at=now + request.lease_seconds))
            LOG.info("websub: %s subscribed to feed %s for %d s", request.callback,
                     feed.id, request.lease_seconds)
        except Exception:  # noqa: BLE001 - a background thread: log, never die silently
            LOG.exception("websub verification of %s failed", request.callback)
        finally:
            self.verified.set()
