"""Options of subscriptions ([subscriptions], [smtp]): the API service's and the
delivery service's one source of truth."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "subscriptions"
SMTP_GROUP = "smtp"

opts = [
    cfg.StrOpt("index", default="searchlight-forward-subscriptions",
               help="Elasticsearch index holding the subscriptions."),
    cfg.StrOpt("view", default="",
               help="View of [forwarding] config_file (forwarders.ini: [view:NAME]) "
                    "whose filters and role rule every subscription and Atom feed "
                    "passes through (then its own selection, its creator's role copy "
                    "and project). Empty: the view named subscriptions, else the only "
                    "view. 'none': subscriptions are not delivered."),
    cfg.HostAddressOpt("api_host", default="127.0.0.1",
                       help="Address searchlight-forward-api binds to (put a TLS-"
                            "terminating proxy in front of it)."),
    cfg.PortOpt("api_port", default=8785, help="Port of searchlight-forward-api."),
    cfg.IntOpt("api_max_body_size", default=1048576, min=1024,
               help="Largest request body, in bytes, the API accepts (waitress's "
                    "max_request_body_size); a larger one is refused with 413 as soon "
                    "as its Content-Length is read, before its token is validated."),
    cfg.IntOpt("api_max_header_size", default=65536, min=4096,
               help="Largest request line and headers together, in bytes (waitress's "
                    "max_request_header_size); larger is refused with 431, or 414 "
                    "when the request line alone is. More than 100 header fields are "
                    "refused with 431 too."),
    cfg.FloatOpt("api_client_timeout", default=30.0, min=0.1,
                 help="Seconds a client has to send its whole request (headers and "
                      "body) to searchlight-forward-api from its first byte; a slower "
                      "one gets 408 and is disconnected. Also waitress's "
                      "channel_timeout (rounded up to whole seconds): a connection "
                      "idle that long is closed."),
    cfg.IntOpt("api_refused_token_cache_time", default=60, min=0,
               help="Seconds searchlight-forward-api answers a token Keystone refused "
                    "(401) without asking Keystone again (keystonemiddleware caches "
                    "valid tokens only); at most 10,000 tokens are remembered, by "
                    "hash. 0: ask Keystone every time. A Keystone outage is never "
                    "remembered."),
    cfg.IntOpt("api_max_connections", default=100, min=1,
               help="Most connections searchlight-forward-api keeps open at once "
                    "(waitress's connection_limit); more are answered 503 at once and "
                    "closed."),
    cfg.IntOpt("api_threads", default=16, min=1,
               help="Worker threads of searchlight-forward-api (waitress's threads): "
                    "requests answered at once (each may wait on Keystone or "
                    "Elasticsearch). Slow clients do not hold one: waitress reads "
                    "every request whole before a thread takes it."),
    cfg.URIOpt("public_url", default="http://127.0.0.1:8785",
               help="The API's URL as endpoints reach it: confirmation links point "
                    "there."),
    cfg.ListOpt("allowed_networks", default=[],
                help="Networks (CIDR) a subscription's endpoint may resolve to although "
                     "they are loopback, link-local, private or reserved. Empty: only "
                     "globally routable addresses."),
    cfg.BoolOpt("allow_http", default=False,
                help="Accept http:// webhook endpoints (https only otherwise)."),
    cfg.BoolOpt("allow_plain_syslog", default=False,
                help="Accept syslog+tcp:// and syslog+udp:// endpoints (syslog+tls:// "
                     "only otherwise: changes cross networks the operator does not "
                     "control)."),
    cfg.StrOpt("syslog_ca_file",
               help="CA bundle that tenants' syslog servers' TLS certificates must chain "
                    "to. Empty: the system's CAs."),
    cfg.IntOpt("max_per_project", default=100, min=1,
               help="Most subscriptions one project may have."),
    cfg.FloatOpt("default_rate_limit", default=10.0, min=0.01,
                 help="Deliveries per second a new subscription gets at most."),
    cfg.FloatOpt("max_rate_limit", default=100.0, min=0.01,
                 help="Highest rate_limit a subscription may ask for."),
    cfg.ListOpt("retry_schedule", default=["5", "300", "1800", "7200", "18000",
                                           "36000"],
                item_type=cfg.types.Float(min=0.0),
                help="Seconds to wait before each retry of a failing endpoint (after "
                     "an immediate first attempt); the last one repeats. Order is kept "
                     "meanwhile: the subscription's cursor waits."),
    cfg.FloatOpt("disable_after", default=432000.0, min=1.0,
                 help="A subscription whose endpoint has failed for this many seconds "
                      "without a success is disabled, with the reason in the API."),
    cfg.FloatOpt("webhook_timeout", default=10.0, min=0.1, max=120.0,
                 help="Seconds a webhook endpoint has to answer 2xx. [delivery] "
                      "lease_seconds must be more than 2 x timeout + 6."),
    cfg.IntOpt("webhook_concurrency", default=4, min=1, max=64,
               help="Requests in flight per webhook subscription (different resources; "
                    "one resource's changes are always sent one after the other)."),
    cfg.IntOpt("confirmation_attempts", default=5, min=1,
               help="Attempts to deliver a confirmation request before the "
                    "subscription is disabled."),
    cfg.FloatOpt("confirmation_interval", default=60.0, min=0.1,
                 help="Seconds between two attempts to deliver a confirmation request."),
    cfg.FloatOpt("secret_overlap", default=86400.0, min=0.0,
                 help="Default seconds a rotated-out webhook secret still signs."),
    cfg.IntOpt("min_digest_interval", default=60, min=1,
               help="Shortest digest interval an e-mail subscription may ask for."),
    cfg.FloatOpt("refresh_interval", default=5.0, min=0.1,
                 help="Seconds between two reads of the subscriptions by the delivery "
                      "service (new, changed and deleted ones are picked up then)."),
]

smtp_opts = [
    cfg.HostAddressOpt("host", default="127.0.0.1", help="SMTP server."),
    cfg.PortOpt("port", default=25, help="SMTP port (587 with starttls, 465 with ssl)."),
    cfg.BoolOpt("starttls", default=False, help="Upgrade the connection with STARTTLS."),
    cfg.BoolOpt("ssl", default=False, help="Connect with TLS from the start (SMTPS)."),
    cfg.StrOpt("ca_file", help="CA bundle to verify the server's certificate."),
    cfg.StrOpt("username", help="SMTP AUTH user (none: no authentication)."),
    cfg.StrOpt("password", secret=True, help="SMTP AUTH password."),
    cfg.StrOpt("from_address", default="searchlight-forward@localhost",
               help="The From: of every message."),
    cfg.FloatOpt("timeout", default=5.0, min=0.1,
                 help="Seconds per SMTP exchange. [delivery] lease_seconds must be more "
                      "than 4 x timeout + 6."),
]


def list_opts():
    return [(GROUP, opts), (SMTP_GROUP, smtp_opts)]
