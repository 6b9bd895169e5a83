"""Options of the change log's readers and of its tombstones ([changelog])."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "changelog"

opts = [
    cfg.FloatOpt("poll_interval", default=1.0, min=0.01,
                 help="Seconds a reader (delivery service, WebSocket server) waits "
                      "for a doorbell ring before asking Elasticsearch where the log "
                      "ends; the most a lost ring delays a change (two intervals if "
                      "the reader must refresh the index itself)."),
    cfg.IntOpt("page_size", default=500, min=1, max=10000,
               help="Entries read per shard and request."),
    cfg.StrOpt("state_index", default="searchlight-forward-state",
               help="Index holding the delivery cursors, their leases, the "
                    "delivery processes' heartbeats and each group's tombstone "
                    "horizon. One per deployment."),
    cfg.FloatOpt("tombstone_min_age", default=86400.0, min=0,
                 help="Seconds a delete's tombstone is kept at least, even once "
                      "every cursor has passed it: it also stops a late update of a "
                      "deleted resource from bringing it back."),
    cfg.FloatOpt("tombstone_retention", default=604800.0, min=60,
                 help="Seconds after which a tombstone is purged even if a cursor "
                      "has not read it; such a cursor then gets a resynchronisation "
                      "(resync_begin ... resync_end), never a silent gap."),
    cfg.FloatOpt("purge_interval", default=600.0, min=1,
                 help="Seconds between tombstone purges (by one delivery process)."),
]


def list_opts():
    return [(GROUP, opts)]
