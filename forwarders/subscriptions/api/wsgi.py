"""The API as a WSGI application behind ``auth_token``, built from the configuration,
and the small threaded server ``searchlight-forward-api`` runs it in. The operator
endpoints (``/status``, ``/metrics``, ``/healthz``, ``/readyz``: ``api.status``) are
in front of both and need no token.

Under uWSGI or mod_wsgi, point the server at ``init_application`` (it reads the
configuration files named by ``SEARCHLIGHT_FORWARD_CONFIG``, comma-separated).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import socketserver
import threading
import time
import wsgiref.simple_server

from keystoneauth1 import exceptions as ks_exceptions
from keystonemiddleware import auth_token
from oslo_config import cfg
import webob.exc

from forwarders.feeds.api import Feeds
from forwarders.feeds.websub import Hub
from forwarders.livesearch.endpoint import Searcher
from forwarders.pipeline import loader
from forwarders.pipeline.view import CALLER, SUBSCRIPTIONS, WEBSOCKET
from forwarders.livesearch.query import Vocabularies
from forwarders.sinks import destinations
from forwarders.subscriptions import policy
from forwarders.subscriptions.api.app import BodyLimit, Settings, SubscriptionsAPI
from forwarders.subscriptions.api.status import StatusRoutes
from forwarders.subscriptions.model import Rules
from forwarders.subscriptions.store import SubscriptionStore
from forwarders.websocket.protocol import Renderer
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
    settings = Settings(
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
                           hub=Hub(store, feed_api, heads, allowed, s.allow_http,
                                   s.webhook_timeout))
    authenticated = _AuthToken(app, {"oslo_config_config": conf,
                                     "delay_auth_decision": True},
                               s.api_refused_token_cache_time)
    # /status, /metrics, /healthz and /readyz answer first, without a token.
    return StatusRoutes(BodyLimit(authenticated, s.api_max_body_size), es)


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


def _canned(status: str, message: str) -> bytes:
    code, title = status.split(" ", 1)
    body = json.dumps({"error": {"code": int(code), "title": title,
                                 "message": message}}).encode()
    return (f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


_TOO_MANY = _canned("503 Service Unavailable", "too many connections; try again")
_TOO_SLOW = _canned("408 Request Timeout", "the request did not arrive in time")


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    """One thread per connection, at most ``max_connections`` at once (more are
    answered 503 from the accepting thread and closed); ``max_connections`` and
    ``client_timeout`` are set by ``APIServer`` from the configuration."""

    daemon_threads = True
    max_connections: int
    client_timeout: float

    def server_activate(self):
        self._lock = threading.Lock()
        self.active = 0
        self.refused = 0
        super().server_activate()

    def process_request(self, request, client_address):
        with self._lock:
            full = self.active >= self.max_connections
            if full:
                self.refused += 1
            else:
                self.active += 1
        if full:                     # the accepting thread: never wait here
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_TOO_MANY)
                request.shutdown(socket.SHUT_WR)
            self.close_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            with self._lock:
                self.active -= 1
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.active -= 1

    def shutdown_request(self, request):
        """Close without a reset: a client still sending (a refused oversized body)
        must be able to read the answer. At most 1 s and 1 MiB are read and dropped."""
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
            request.settimeout(0.2)
            deadline, drained = time.monotonic() + 1.0, 0
            while time.monotonic() < deadline and drained < 2 ** 20:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        self.close_request(request)

    def handle_error(self, request, client_address):
        LOG.debug("connection from %s failed", client_address, exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """The client's socket for reading, every read bounded by one deadline for the
    whole request: a client sending a byte a second (slowloris) is cut off."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client did not send its request in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Writer(io.RawIOBase):
    """The client's socket for writing, each write bounded by ``timeout``."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock, self.timeout = sock, timeout

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        return len(data)


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def setup(self):
        timeout = self.server.client_timeout
        self.connection = self.request
        self.rfile = io.BufferedReader(_DeadlineReader(self.request,
                                                       time.monotonic() + timeout))
        self.wfile = _Writer(self.request, timeout)

    def handle(self):
        try:
            super().handle()
        except TimeoutError:
            with contextlib.suppress(OSError):
                self.wfile.write(_TOO_SLOW)
            LOG.debug("%s - too slow: disconnected", self.address_string())
        except OSError as exc:
            LOG.debug("%s - %s", self.address_string(), exc)

    def log_message(self, fmt, *args):          # oslo.log, not stderr
        LOG.debug("%s - %s", self.address_string(), fmt % args)


class APIServer:
    """The application on a threaded HTTP server (``serve_forever`` in a thread),
    with the connection limits of [subscriptions] (``api_client_timeout``,
    ``api_max_connections``)."""

    def __init__(self, app, host: str, port: int, conf: cfg.ConfigOpts):
        server = type("Server", (_Server,), {
            "client_timeout": conf.subscriptions.api_client_timeout,
            "max_connections": conf.subscriptions.api_max_connections})
        self.httpd = wsgiref.simple_server.make_server(host, port, app,
                                                       server_class=server,
                                                       handler_class=_Quiet)
        self.port = self.httpd.server_address[1]
        if isinstance(app, StatusRoutes):
            httpd = self.httpd
            app.connections = lambda: {"open": httpd.active, "refused": httpd.refused}
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="api")

    def start(self) -> "APIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def init_application():
    """For uWSGI / mod_wsgi."""
    from searchlight_forward.commands.common import setup
    files = [f for f in os.environ.get("SEARCHLIGHT_FORWARD_CONFIG", "").split(",") if f]
    conf = setup([arg for f in files for arg in ("--config-file", f)])
    return build(conf)
