"""Options of the WebSocket server ([websocket]): its one source of truth."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "websocket"

opts = [
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
                    "roles, expires_at}, relative to the directory of the first "
                    "--config-file. Re-read when it changes. A DEMO, not for "
                    "production."),
    cfg.StrOpt("resource_group",
               help="Resource group to serve; defaults to [resource_plugins] "
                    "resource_group_name."),
    cfg.IntOpt("queue_size", default=1000, min=1,
               help="Outgoing frames queued per connection; a client that lets more "
                    "pile up is closed with code 4008 and resumes with its cursor."),
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
    cfg.StrOpt("compression", default="deflate", choices=("deflate", "none"),
               help="permessage-deflate for clients that offer it (browsers do). It "
                    "shrinks frames several times but keeps a zlib state per "
                    "connection once it has sent a frame: about 55 KB each against 16 KB "
                    "without it, measured (docs/benchmarks.md, \"Ten thousand "
                    "connections\"). 'none' for very many connections per process on a "
                    "fast network."),
    cfg.FloatOpt("ping_interval", default=20.0, min=0,
                 help="Seconds between keepalive pings (0: none)."),
    cfg.StrOpt("view", default="", deprecated_name="pipeline",
               help="View of [forwarding] config_file (forwarders.ini: [view:NAME]) "
                    "whose filters, resource_types and role rule apply to every "
                    "document the WebSocket server and POST /v1/search send. Empty: "
                    "the view named websocket, else the only view. 'none': no view "
                    "(role separation still applies)."),
    cfg.BoolOpt("doorbell", default=True,
                help="Listen for the listeners' doorbell on [DEFAULT] transport_url; "
                     "without it changes arrive every [changelog] poll_interval."),
]



def list_opts():
    return [(GROUP, opts)]
