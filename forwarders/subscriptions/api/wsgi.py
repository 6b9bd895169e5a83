"""The API as a WSGI application behind ``auth_token``, built from the configuration,
and the small threaded server ``searchlight-forward-api`` runs it in.

Under uWSGI or mod_wsgi, point the server at ``init_application`` (it reads the
configuration files named by ``SEARCHLIGHT_FORWARD_CONFIG``, comma-separated).
"""
from __future__ import annotations

import logging
import os
import socketserver
import threading
import wsgiref.simple_server

from keystonemiddleware import auth_token
from oslo_config import cfg

from forwarders.feeds.api import Feeds
from forwarders.feeds.websub import Hub
from forwarders.livesearch.endpoint import Searcher
from forwarders.pipeline import loader
from forwarders.livesearch.query import Vocabularies
from forwarders.sinks import destinations
from forwarders.subscriptions import policy
from forwarders.subscriptions.api.app import Settings, SubscriptionsAPI
from forwarders.subscriptions.model import Rules
from forwarders.subscriptions.store import SubscriptionStore
from forwarders.websocket.protocol import Renderer
from forwarders.websocket.service import ConfigError, find_pipeline
from searchlight_forward import search
from searchlight_forward.changelog.reader import ChangeLog, NoIndex
from searchlight_forward.deployment import Deployment

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
    return auth_token.AuthProtocol(app, {"oslo_config_config": conf,
                                         "delay_auth_decision": True})


def searcher(conf: cfg.ConfigOpts, es, deployment: Deployment) -> Searcher:
    """The search endpoint, redacting exactly as the WebSocket server does (the same
    pipeline's filters, the same renderer)."""
    try:
        pipeline = find_pipeline(conf, deployment)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    filters = tuple(pipeline.filters) if pipeline is not None else ()
    return Searcher(
        es, dict(deployment.groups),
        Vocabularies({p.resource_type: p.search_mapping()
                      for p in deployment.plugins.plugins}, deployment.admin_only, filters),
        Renderer(filters, deployment.admin_only))


def feeds(conf: cfg.ConfigOpts, es, deployment: Deployment, store: SubscriptionStore,
          enforcer) -> Feeds:
    """Atom feeds, through the subscriptions template pipeline's filters (what a
    subscription's webhook would receive)."""
    try:
        pipelines = loader.load_from_conf(conf, deployment, required=False)
    except loader.ForwardingConfigError as exc:
        raise ValueError(str(exc)) from None
    template = next((p for p in pipelines if p.sink.serves_subscriptions), None)
    filters = tuple(template.filters) if template is not None else ()

    def allowed(rule: str, caller, project_id) -> bool:
        return enforcer.authorize(rule, {"project_id": project_id},
                                  {"user_id": caller.user_id, "roles": list(caller.roles),
                                   "project_id": caller.project_id})
    return Feeds(store, es, dict(deployment.groups), Renderer(filters, deployment.admin_only),
                 conf.subscriptions.public_url, allowed)


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):          # oslo.log, not stderr
        LOG.debug("%s - %s", self.address_string(), fmt % args)


class APIServer:
    """The application on a threaded HTTP server (``serve_forever`` in a thread)."""

    def __init__(self, app, host: str, port: int):
        self.httpd = wsgiref.simple_server.make_server(host, port, app,
                                                       server_class=_Server,
                                                       handler_class=_Quiet)
        self.port = self.httpd.server_address[1]
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
