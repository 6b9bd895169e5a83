"""searchlight-forward-websocket --config-file FILE

Serves a resource group's changes to WebSocket clients, apart from the listeners:
it reads them from Elasticsearch (any number of listener processes may write, any
number of these servers may read) and wakes up when a listener's ``websocket``
sink rings the RabbitMQ doorbell. Protocol: docs/websocket.md.

Settings come from the ``[websocket]`` section of the main configuration and from
the forwarders.ini pipeline that ends in a ``websocket`` sink (``[websocket]
pipeline``, found automatically when there is exactly one): that pipeline's
filters apply to every document sent, its ``resource_types`` limit what is served,
and the options set in its ``[sink:...]`` section (host, port, auth, token_file,
queue_size, poll_interval, auth_timeout, admin_role) override ``[websocket]``.
Role separation and admin-only redaction apply whatever the pipeline says.
"""
from __future__ import annotations

import asyncio
import signal
import sys

from oslo_config import cfg

from searchlight_forward.commands.common import setup

WEBSOCKET = "websocket"

websocket_opts = [
    cfg.HostAddressOpt("host", default="127.0.0.1",
                       help="Address the WebSocket server binds to. Put a TLS-"
                            "terminating proxy in front of it for browsers."),
    cfg.PortOpt("port", default=8765, help="Port of the WebSocket server."),
    cfg.StrOpt("auth", default="token_file",
               help="Token validator: a name registered in the "
                    "searchlight_forward.websocket_auth entry points. keystone: "
                    "Keystone tokens, validated as the service user of "
                    "[websocket_keystone] (production). token_file: a DEMO (static "
                    "tokens in a JSON file), not for production."),
    cfg.StrOpt("token_file",
               help="For auth = token_file: JSON file of token -> {user_id, project_id, "
                    "roles, expires_at}. Re-read when it changes."),
    cfg.StrOpt("resource_group",
               help="Resource group to serve; defaults to [resource_plugins] "
                    "resource_group_name."),
    cfg.IntOpt("queue_size", default=1000, min=1,
               help="Outgoing frames queued per connection; a client that lets more "
                    "pile up is closed with code 4008 and resumes with its cursor."),
    cfg.FloatOpt("poll_interval", default=1.0, min=0.01,
                 help="Seconds between Elasticsearch polls when no doorbell rings "
                      "(the most a lost ring delays a change)."),
    cfg.FloatOpt("auth_timeout", default=10.0, min=0.1,
                 help="Seconds a connection has to authenticate before it is "
                      "closed with code 4001."),
    cfg.FloatOpt("token_recheck_interval", default=15.0, min=0,
                 help="Seconds between re-validations of the tokens of open "
                      "connections, past any cache: a revoked token stops receiving "
                      "within this time (closed with 4006). 0: never re-check."),
    cfg.FloatOpt("expiry_warning", default=60.0, min=0,
                 help="Seconds before its token expires that a connection gets a "
                      "token_expiring frame, to send a fresh token in-band."),
    cfg.FloatOpt("max_frame_rate", default=5.0, min=0.1,
                 help="Client frames per second a connection may send, sustained; "
                      "beyond that (and frame_burst) it is closed with 4029."),
    cfg.IntOpt("frame_burst", default=20, min=1,
               help="Client frames a connection may send at once."),
    cfg.IntOpt("max_unauthenticated", default=500, min=1,
               help="Connections that have not authenticated yet; further WebSocket "
                    "handshakes are answered HTTP 503 with Retry-After."),
    cfg.IntOpt("max_connections_per_user", default=50, min=1,
               help="Authenticated connections of one user (Keystone user id); one "
                    "more is closed with 4029."),
    cfg.StrOpt("admin_role", default="admin",
               help="Role that sees admin copies and may ask for all projects."),
    cfg.IntOpt("max_frame_size", default=65536, min=256,
               help="Largest client frame in bytes; bigger ones close with 1009."),
    cfg.FloatOpt("ping_interval", default=20.0, min=0,
                 help="Seconds between keepalive pings (0: none)."),
    cfg.StrOpt("pipeline", default="",
               help="Pipeline of [forwarding] config_file (forwarders.ini) whose filters "
                    "apply to every document sent and whose [sink:...] options override "
                    "these. Empty: the one pipeline ending in a websocket sink, if there "
                    "is exactly one. 'none': no pipeline."),
    cfg.BoolOpt("doorbell", default=True,
                help="Listen for the listeners' doorbell on [DEFAULT] transport_url; "
                     "without it changes arrive every poll_interval."),
]


def list_opts():
    return [(WEBSOCKET, websocket_opts)]


ENDPOINT_OPTIONS = ("host", "port", "auth", "token_file", "queue_size", "poll_interval",
                    "auth_timeout", "admin_role")


def _fail(message: str):
    sys.exit(f"searchlight-forward-websocket: {message}")


def find_pipeline(conf: cfg.ConfigOpts, plugins, admin_only):
    """The forwarders.ini pipeline ending in a websocket sink, or None."""
    import os

    from forwarders import loader
    from forwarders.websocket.sink import WebSocketSink
    from searchlight_forward.listener import service

    wanted = conf[WEBSOCKET].pipeline.strip()
    if wanted.lower() == "none":
        return None
    path, filter_context, sink_context = service.forwarding_setup(conf, plugins, admin_only)
    if not os.path.exists(path):
        if wanted:
            _fail(f"[websocket] pipeline = {wanted}, but {path} does not exist")
        return None
    try:
        pipelines = loader.load(path, filter_context, sink_context)
    except loader.ForwardingConfigError as exc:
        _fail(str(exc))
    ours = [p for p in pipelines if isinstance(p.sink, WebSocketSink)]
    if wanted:
        chosen = [p for p in pipelines if p.name == wanted]
        if not chosen:
            _fail(f"[websocket] pipeline = {wanted}: no such active pipeline in {path} "
                  f"(active: {', '.join(p.name for p in pipelines) or 'none'})")
        if chosen[0] not in ours:
            _fail(f"[websocket] pipeline = {wanted}: it does not end in a websocket sink")
        return chosen[0]
    if len(ours) > 1:
        _fail(f"several pipelines of {path} end in a websocket sink "
              f"({', '.join(p.name for p in ours)}): name one with [websocket] pipeline")
    return ours[0] if ours else None


def build_server(conf: cfg.ConfigOpts):
    """The server for ``conf`` (also used by tests and embedding)."""
    import logging

    from forwarders.websocket import auth
    from forwarders.websocket.server import Settings, WebSocketServer
    from searchlight_forward.listener import service

    log = logging.getLogger(__name__)
    ws = conf[WEBSOCKET]
    names, plugins = service.load(conf)
    groups, admin_only = service.plugin_settings(conf, names, plugins)
    group = ws.resource_group or conf.resource_plugins.resource_group_name
    types = sorted(t for t, g in groups.items() if g == group)
    if not types:
        _fail(f"no enabled resource plugin uses the resource group {group!r}; groups: "
              f"{', '.join(sorted(set(groups.values())))}")

    endpoint = {name: getattr(ws, name) for name in ENDPOINT_OPTIONS}
    filters = ()
    pipeline = find_pipeline(conf, plugins, admin_only)
    if pipeline is not None:
        filters = tuple(pipeline.filters)
        explicit = [n for n in ENDPOINT_OPTIONS if n in pipeline.sink.options]
        endpoint.update({n: getattr(pipeline.sink.settings, n) for n in explicit})
        if pipeline.resource_types is not None:
            types = sorted(set(types) & set(pipeline.resource_types))
        if pipeline.event_types is not None:
            log.warning("pipeline %s: event_types does not apply to WebSocket clients "
                        "(they get every change of the resources they may see)",
                        pipeline.name)
        log.info("pipeline %s: %d filters (%s)%s", pipeline.name, len(filters),
                 ", ".join(f.name for f in filters) or "none",
                 f"; [sink:{pipeline.sink_name}] sets {', '.join(explicit)}" if explicit else "")
    try:
        validator = auth.load_validator(endpoint["auth"],
                                        {"token_file": endpoint["token_file"], "conf": conf})
    except auth.AuthConfigError as exc:
        _fail(f"[websocket] {exc}")
    settings = Settings(host=endpoint["host"], port=endpoint["port"],
                        queue_size=endpoint["queue_size"],
                        poll_interval=endpoint["poll_interval"],
                        auth_timeout=endpoint["auth_timeout"],
                        admin_role=endpoint["admin_role"], max_size=ws.max_frame_size,
                        ping_interval=ws.ping_interval or None,
                        token_recheck_interval=ws.token_recheck_interval,
                        expiry_warning=ws.expiry_warning,
                        max_frame_rate=ws.max_frame_rate, frame_burst=ws.frame_burst,
                        max_unauthenticated=ws.max_unauthenticated,
                        max_connections_per_user=ws.max_connections_per_user)
    return WebSocketServer(
        service.elasticsearch_client(conf), group, validator, types, filters=filters,
        admin_only={t: admin_only.get(t, ()) for t in types},
        doorbell_url=conf.transport_url if ws.doorbell else None, settings=settings)


def main(argv: list[str] | None = None) -> None:
    conf = cfg.ConfigOpts()
    conf.register_opts(websocket_opts, WEBSOCKET)
    conf = setup(argv, conf)
    if not any(level.startswith("websockets=") for level in conf.default_log_levels or ()):
        import logging
        logging.getLogger("websockets").setLevel(logging.WARNING)   # a line per connection
    server = build_server(conf)

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.serve_until(stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
