"""Options of the delivery service ([delivery])."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "delivery"

opts = [
    cfg.IntOpt("workers", default=1, min=1,
               help="Delivery processes to run on this host. Every delivery process "
                    "of the deployment (on any host) shares the pipelines: each "
                    "pipeline's cursor is owned by one process at a time."),
    cfg.FloatOpt("lease_seconds", default=30.0, min=3.0,
                 help="How long a process owns a partition of the cursors without "
                      "renewing it (each process renews all of its partitions in one "
                      "request). A killed process's pipelines are taken over within "
                      "about lease_seconds + lease_seconds / 3. Must be more than twice "
                      "the longest sink call (a Zaqar sink's is 3 x its timeout)."),
    cfg.IntOpt("partitions", default=16, min=1, max=1024,
               help="Partitions tenants' subscriptions are hashed into: the unit the "
                    "delivery processes share them by (an operator's pipeline is a "
                    "partition of its own). Each is one lease document renewed every "
                    "lease_seconds / 3; more partitions share the subscriptions more "
                    "evenly among many processes. The same on every delivery process."),
    cfg.IntOpt("threads", default=64, min=1, max=1024,
               help="Threads a delivery process runs its pipelines on. A pipeline "
                    "holds one only while it works (an idle subscription holds none); "
                    "a slow destination holds one for at most its sink's timeout, so "
                    "more than this many destinations hanging at once delay the "
                    "others by up to that timeout."),
    cfg.FloatOpt("commit_interval", default=1.0, min=0.05,
                 help="Longest time, in seconds, between two writes of a moving "
                      "cursor. After a crash, what was delivered since the last write "
                      "is delivered again (consumers ignore versions they have)."),
    cfg.IntOpt("batch_size", default=100, min=1, max=1000,
               help="Envelopes per sink call."),
    cfg.IntOpt("queue_pages", default=20, min=1,
               help="Pages a live pipeline may have waiting; a pipeline further "
                    "behind reads from its own cursor until it has caught up, so it "
                    "never slows the others."),
    cfg.FloatOpt("stall_seconds", default=60.0, min=1.0,
                 help="A pipeline with changes pending that delivered nothing for this "
                      "long (its sink away, a hold) makes GET /readyz answer 503."),
    cfg.HostAddressOpt("status_host", default="127.0.0.1",
                       help="Address of the delivery service's status endpoint."),
    cfg.PortOpt("status_port", default=8791,
                help="Port of the status endpoint (GET /status, /metrics, /healthz, "
                     "/readyz); worker N uses status_port + N. 0 turns it off. A "
                     "second delivery process on the same host needs ports of its own "
                     "(docs/operations.md, \"Several processes on one host\")."),
]


def list_opts():
    return [(GROUP, opts)]
