"""The API as a WSGI application behind ``auth_token``, built from the configuration
(``searchlight-forward-api`` serves it on waitress: ``api.server``). The operator
endpoints (``/status``, ``/metrics``, ``/healthz``, ``/readyz``: ``api.status``) are
in front of both and need no token.

Under uWSGI or mod_wsgi, point the server at ``forwarders.cmd.api:init_application``
(it reads the configuration files named by ``SEARCHLIGHT_FORWARD_CONFIG``,
comma-separated).
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
import time

from keystoneauth1 import exceptions as ks_exceptions
from keystonemiddleware import auth_token
from oslo_config import cfg
import webob.exc

from forwarders.feeds.api import Feeds
from forwarders.feeds.websub import WebSubHub
from forwarders.livesearch.endpoint import Searcher
from forwarders.pipeline import loader
from forwarders.pipeline.view import CALLER, SUBSCRIPTIONS, WEBSOCKET
from forwarders.livesearch.query import Vocabularies
from forwarders.sinks import destinations
from forwarders.subscriptions import policy
from forwarders.api.app import APISettings, SubscriptionsAPI
from forwarders.api.server import APIServer
from forwarders.api.status import StatusRoutes
from forwarders.subscriptions.model import Rules
from forwarders.subscriptions.store import SubscriptionStore
from forwarders.pipeline.render import Renderer
from searchlight_forward import search
from searchlight_forward.changelog.reader import ChangeLog, NoIndex
from searchlight_forward.deployment import Deployment
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.changelog.unhandled import UnhandledEntries

LOG = logging.getLogger(__name__)


def heads_of(es, groups: list[str]):
    """() -> {group: position dict}: where each group's change log ends now."""
    def heads() -> dict:
        found = {}
        for group in groups:
            try:
                found[group] = ChangeLog(es, group).head().position.to_dict()
            except NoIndex:
                continue              # a new index: its cursor starts at its start
        return found
    return heads


def build(conf: cfg.ConfigOpts):
    """The application, ``auth_token`` in front."""
    deployment = Deployment.from_conf(conf)
    s = conf.subscriptions
    try:
        allowed = destinations.networks(s.allowed_networks)
    except ValueError as exc:
        raise ValueError(f"[subscriptions] allowed_networks: {exc}") from None
    es = search.client(conf)
    search.log_server(es, "subscriptions API")
    store = SubscriptionStore(es, s.index)
    store.ensure()
    settings = APISettings(
        rules=Rules(resource_types=deployment.resource_types,
                    default_rate_limit=min(s.default_rate_limit, s.max_rate_limit),
                    max_rate_limit=s.max_rate_limit,
                    min_digest_interval=s.min_digest_interval),
        allowed_networks=allowed,
        allow_http=s.allow_http, allow_plain_syslog=s.allow_plain_syslog,
        max_per_project=s.max_per_project,
        secret_overlap=s.secret_overlap)
    enforcer = policy.enforcer(conf)
    heads = heads_of(es, deployment.group_names())
    feed_api = feeds(conf, es, deployment, store, enforcer)
    app = SubscriptionsAPI(store, enforcer, settings, heads,
                           searcher=searcher(conf, es, deployment), feeds=feed_api,
                           hub=WebSubHub(store, feed_api, heads, allowed, s.allow_http,
                                   s.webhook_timeout))
    authenticated = _AuthToken(app, {"oslo_config_config": conf,
                                     "delay_auth_decision": True},
                               s.api_refused_token_cache_time)
    # /status, /metrics, /healthz and /readyz answer first, without a token. Bodies
    # over [subscriptions] api_max_body_size never get here: the server answers 413.
    return StatusRoutes(authenticated, es)


# Seconds a client is asked to wait when Keystone did not answer (Retry-After).
KEYSTONE_RETRY_AFTER = 5
# What keystonemiddleware turns into "invalid token" when Keystone did not answer.
_UNAVAILABLE = (ks_exceptions.ConnectFailure, ks_exceptions.DiscoveryFailure,
                ks_exceptions.RequestTimeout, auth_token.ServiceError)


class _AuthToken(auth_token.AuthProtocol):
    """``auth_token`` that also remembers, for ``refused_ttl`` seconds, the tokens
    Keystone refused: keystonemiddleware caches only valid tokens, so a client
    repeating a bad token would cost a Keystone call per request. Bounded (LRU,
    ``REFUSED_MAX`` hashes). When Keystone does not answer, the caller gets 503
    with Retry-After, not 401, and nothing is remembered."""

    REFUSED_MAX = 10_000

    def __init__(self, app, conf: dict, refused_ttl: float):
        super().__init__(app, conf)
        self._refused_ttl = refused_ttl
        self._refused: collections.OrderedDict = collections.OrderedDict()
        self._refused_lock = threading.Lock()

    def fetch_token(self, token, **kwargs):
        if not self._refused_ttl:
            return self._fetch(token, **kwargs)
        key = (hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest(),
               tuple(sorted(kwargs.items())))
        now = time.monotonic()
        with self._refused_lock:
            until = self._refused.get(key)
            if until is not None and until > now:
                raise auth_token.InvalidToken("refused by Keystone a moment ago")
            self._refused.pop(key, None)
        try:
            return self._fetch(token, **kwargs)
        except auth_token.InvalidToken:
            with self._refused_lock:
                self._refused[key] = now + self._refused_ttl
                while len(self._refused) > self.REFUSED_MAX:
                    self._refused.popitem(last=False)
            raise

    def _fetch(self, token, **kwargs):
        """Keystone's answer; 503 when it did not answer. (With delay_auth_decision,
        which the feeds' secret URLs need, keystonemiddleware marks the token invalid
        instead, and the caller would be told 401: log in again.)"""
        try:
            return super().fetch_token(token, **kwargs)
        except auth_token.InvalidToken as exc:
            if isinstance(exc.__context__, _UNAVAILABLE):
                raise _keystone_unavailable() from None
            raise


def _keystone_unavailable() -> webob.exc.HTTPServiceUnavailable:
    body = json.dumps({"error": {
        "code": 503, "title": "Service Unavailable",
        "message": "Keystone cannot validate the token now; try again"}}).encode()
    return webob.exc.HTTPServiceUnavailable(
        body=body, content_type="application/json", charset="utf-8",
        headers={"Retry-After": str(KEYSTONE_RETRY_AFTER)})


def searcher(conf: cfg.ConfigOpts, es, deployment: Deployment) -> Searcher:
    """The search endpoint, redacting exactly as the WebSocket server does (the same
    view: its filters and role rule, the same renderer)."""
    view = loader.view_from_conf(conf, deployment, WEBSOCKET)   # ValueError: why not
    filters = tuple(view.filters) if view is not None else ()
    return Searcher(
        es, dict(deployment.groups),
        Vocabularies({p.resource_type: p.search_mapping()
                      for p in deployment.plugins.plugins}, deployment.admin_only, filters),
        Renderer(filters, deployment.admin_only, on_failure=UnhandledEntries(
            "search", DeadLetterIndex(es, conf.elasticsearch.dead_letter_index)).report,
            admin_copies=view is None or view.role == CALLER))


def feeds(conf: cfg.ConfigOpts, es, deployment: Deployment, store: SubscriptionStore,
          enforcer) -> Feeds:
    """Atom feeds, through the subscriptions' view (its filters and role rule: what a
    subscription's webhook would receive)."""
    view = loader.view_from_conf(conf, deployment, SUBSCRIPTIONS)  # ValueError: why not
    filters = tuple(view.filters) if view is not None else ()

    def allowed(rule: str, caller, project_id) -> bool:
        return enforcer.authorize(rule, {"project_id": project_id},
                                  {"user_id": caller.user_id, "roles": list(caller.roles),
                                   "project_id": caller.project_id})
    # Entries a feed cannot render are dead letters; the page goes on without them.
    unhandled = UnhandledEntries(
        "feeds", DeadLetterIndex(es, conf.elasticsearch.dead_letter_index))
    return Feeds(store, es, dict(deployment.groups),
                 Renderer(filters, deployment.admin_only, on_failure=unhandled.report,
                          admin_copies=view is None or view.role == CALLER),
                 conf.subscriptions.public_url, allowed)


def serve(app, host: str, port: int, conf: cfg.ConfigOpts) -> APIServer:
    """``app`` on waitress at ``host:port`` with [subscriptions]' limits, started; the
    answers waitress makes itself are counted with the API's."""
    count = app.responses.add if isinstance(app, StatusRoutes) else None
    server = APIServer(app, host, port, conf, count=count)
    if isinstance(app, StatusRoutes):
        app.connections = server.connections
    return server.start()
