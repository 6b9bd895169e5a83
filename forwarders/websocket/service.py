"""The WebSocket server as a process: built from the configuration.

Its settings are ``[websocket]`` (forwarders/websocket/opts.py), their one source of
truth. The forwarders.ini pipeline ending in the ``websocket`` sink (``[websocket]
pipeline``, found automatically when there is exactly one) gives the filters
applied to every document sent and the ``resource_types`` served. Role separation
and admin-only redaction apply whatever the pipeline says.
"""
from __future__ import annotations

import logging

from oslo_config import cfg

from forwarders.pipeline import loader
from forwarders.pipeline.opts import beside_config
from forwarders.pipeline.pipeline import Pipeline
from forwarders.websocket import auth
from forwarders.websocket.server import Settings, WebSocketServer
from searchlight_forward import search
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment

LOG = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration cannot run: the message says what to change."""


def find_pipeline(conf: cfg.ConfigOpts, deployment: Deployment) -> Pipeline | None:
    """The forwarders.ini pipeline ending in a websocket sink, or None."""
    wanted = conf.websocket.pipeline.strip()
    if wanted.lower() == "none":
        return None
    try:
        pipelines = loader.load_from_conf(conf, deployment, required=bool(wanted))
    except loader.ForwardingConfigError as exc:
        raise ConfigError(str(exc)) from None
    ours = [p for p in pipelines if p.served_by_websocket]
    if wanted:
        chosen = [p for p in pipelines if p.name == wanted]
        if not chosen:
            raise ConfigError(f"[websocket] pipeline = {wanted}: no such active pipeline "
                              f"(active: {', '.join(p.name for p in pipelines) or 'none'})")
        if chosen[0] not in ours:
            raise ConfigError(f"[websocket] pipeline = {wanted}: it does not end in a "
                              "websocket sink")
        return chosen[0]
    if len(ours) > 1:
        raise ConfigError(f"several pipelines end in a websocket sink "
                          f"({', '.join(p.name for p in ours)}): name one with "
                          "[websocket] pipeline")
    return ours[0] if ours else None


def build(conf: cfg.ConfigOpts) -> WebSocketServer:
    ws = conf.websocket
    deployment = Deployment.from_conf(conf)
    group = ws.resource_group or conf.resource_plugins.resource_group_name
    types = set(deployment.types_of(group))
    if not types:
        raise ConfigError(f"no enabled resource plugin uses the resource group {group!r}; "
                          f"groups: {', '.join(deployment.group_names())}")
    filters = ()
    pipeline = find_pipeline(conf, deployment)
    if pipeline is not None:
        filters = tuple(pipeline.filters)
        if pipeline.resource_types is not None:
            types &= set(pipeline.resource_types)
        LOG.info("pipeline %s: %d filters (%s)", pipeline.name, len(filters),
                 ", ".join(f.name for f in filters) or "none")
    try:
        token_file = beside_config(conf, ws.token_file) if ws.token_file else None
        validator = auth.load_validator(ws.auth, {"token_file": token_file, "conf": conf})
    except auth.AuthConfigError as exc:
        raise ConfigError(f"[websocket] {exc}") from None
    settings = Settings(host=ws.host, port=ws.port, queue_size=ws.queue_size,
                        poll_interval=conf.changelog.poll_interval,
                        auth_timeout=ws.auth_timeout, admin_role=ws.admin_role,
                        max_size=ws.max_frame_size, ping_interval=ws.ping_interval or None,
                        token_recheck_interval=ws.token_recheck_interval,
                        expiry_warning=ws.expiry_warning,
                        max_frame_rate=ws.max_frame_rate, frame_burst=ws.frame_burst,
                        max_unauthenticated=ws.max_unauthenticated,
                        max_connections_per_user=ws.max_connections_per_user,
                        page_size=conf.changelog.page_size)
    es = search.client(conf)
    search.log_server(es, f"WebSocket server ({group})")
    return WebSocketServer(
        es, group, validator, sorted(types), filters=filters,
        admin_only={t: deployment.admin_only.get(t, ()) for t in types},
        doorbell_url=conf.transport_url if ws.doorbell else None, settings=settings,
        state_index=conf.changelog.state_index,
        dead_letters=DeadLetterIndex(es, conf.elasticsearch.dead_letter_index),
        mappings={p.resource_type: p.search_mapping() for p in deployment.plugins.plugins})
