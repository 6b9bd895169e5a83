"""The WebSocket server as a process: built from the configuration.

Its settings are ``[websocket]`` (forwarders/websocket/opts.py), their one source of
truth. The forwarders.ini view it serves (``[websocket] view``; empty: the view
named ``websocket``, else the only one) gives the filters applied to every document
sent, the ``resource_types`` served and the role rule. Role separation and
admin-only redaction apply whatever the view says.
"""
from __future__ import annotations

import logging

from oslo_config import cfg

from forwarders.pipeline import loader
from forwarders.pipeline.opts import beside_config
from forwarders.pipeline.view import CALLER, WEBSOCKET, View
from forwarders.websocket import auth
from forwarders.websocket.server import WebSocketServer, WebSocketSettings
from forwarders.options import ConfigError
from searchlight_forward import search
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment

LOG = logging.getLogger(__name__)


def find_view(conf: cfg.ConfigOpts, deployment: Deployment) -> View | None:
    """The forwarders.ini view the WebSocket server (and search) serves, or None."""
    try:
        return loader.view_from_conf(conf, deployment, WEBSOCKET)
    except ValueError as exc:        # the file, or the choice of view
        raise ConfigError(str(exc)) from None


def build(conf: cfg.ConfigOpts) -> WebSocketServer:
    ws = conf.websocket
    deployment = Deployment.from_conf(conf)
    group = ws.resource_group or conf.resource_plugins.resource_group_name
    types = set(deployment.types_of(group))
    if not types:
        raise ConfigError(f"no enabled resource plugin uses the resource group {group!r}; "
                          f"groups: {', '.join(deployment.group_names())}")
    filters, admin_copies = (), True
    view = find_view(conf, deployment)
    if view is not None:
        filters, admin_copies = view.filters, view.role == CALLER
        if view.resource_types is not None:
            types &= set(view.resource_types)
        LOG.info("view %s: %d filters (%s), role = %s", view.name, len(filters),
                 ", ".join(f.name for f in filters) or "none", view.role)
    try:
        token_file = beside_config(conf, ws.token_file) if ws.token_file else None
        validator = auth.load_validator(ws.auth, {"token_file": token_file, "conf": conf})
    except auth.AuthConfigError as exc:
        raise ConfigError(f"[websocket] {exc}") from None
    settings = WebSocketSettings(host=ws.host, port=ws.port, queue_size=ws.queue_size,
                        poll_interval=conf.changelog.poll_interval,
                        auth_timeout=ws.auth_timeout, admin_role=ws.admin_role,
                        max_size=ws.max_frame_size, ping_interval=ws.ping_interval or None,
                        compression=None if ws.compression == "none" else ws.compression,
                        token_recheck_interval=ws.token_recheck_interval,
                        expiry_warning=ws.expiry_warning,
                        max_frame_rate=ws.max_frame_rate, frame_burst=ws.frame_burst,
                        max_unauthenticated=ws.max_unauthenticated,
                        max_connections_per_user=ws.max_connections_per_user,
                        page_size=conf.changelog.page_size)
    es = search.client(conf)
    search.log_server(es, f"WebSocket server ({group})")
    server = WebSocketServer(
        es, group, validator, sorted(types), filters=filters,
        admin_only={t: deployment.admin_only.get(t, ()) for t in types},
        doorbell_url=conf.transport_url if ws.doorbell else None, settings=settings,
        state_index=conf.changelog.state_index,
        dead_letters=DeadLetterIndex(es, conf.elasticsearch.dead_letter_index),
        mappings={p.resource_type: p.search_mapping() for p in deployment.plugins.plugins})
    server.renderer.admin_copies = admin_copies       # the view's role rule
    return server
