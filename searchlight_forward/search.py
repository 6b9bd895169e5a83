"""The search server: its options, the client every process uses, and a probe.

The indexer, the change-log readers, the WebSocket server and
``searchlight-forward-manage`` all get their client from ``client(conf)``, so a
cluster setting (hosts, timeouts, how fast a dead node is tried again) is set once.
"""
from __future__ import annotations

import elasticsearch
from elasticsearch.serializer import OrjsonSerializer
from oslo_config import cfg

GROUP = "elasticsearch"

opts = [
    cfg.ListOpt("hosts", default=["http://127.0.0.1:9200"],
                help="Elasticsearch URLs."),
    cfg.FloatOpt("request_timeout", default=30.0, min=0.1,
                 help="Seconds before an Elasticsearch request is abandoned."),
    cfg.FloatOpt("max_dead_node_backoff", default=2.0, min=0.1,
                 help="Longest time, in seconds, the client leaves a node it found "
                      "unreachable before trying it again. Short, so that processes "
                      "resume within seconds of a node's return."),
    cfg.FloatOpt("write_timeout", default=60.0, min=0.1,
                 help="Longest time, in seconds, a bulk write waits for an unavailable "
                      "shard before Elasticsearch answers 503 for its documents (they "
                      "are retried; see [listener] max_item_attempts)."),
    cfg.IntOpt("number_of_shards", default=1, min=1,
               help="Primary shards of a new index. Every reader keeps a position "
                    "per shard, so any number works."),
    cfg.IntOpt("number_of_replicas", default=0, min=0,
               help="Replicas of a new index (0 on a single-node cluster)."),
    cfg.StrOpt("dead_letter_index", default="searchlight-forward-deadletter",
               help="Index holding what could never be processed or delivered, "
                    "with the reason. Read it with "
                    "`searchlight-forward-manage dead-letters list`."),
]


def list_opts():
    return [(GROUP, opts)]


def client(conf: cfg.ConfigOpts) -> elasticsearch.Elasticsearch:
    # orjson encodes bulk bodies several times faster than json (profiled: JSON
    # encoding was a fifth of the indexer's CPU).
    section = conf[GROUP]
    return elasticsearch.Elasticsearch(
        section.hosts, serializer=OrjsonSerializer(),
        request_timeout=section.request_timeout,
        max_dead_node_backoff=section.max_dead_node_backoff)


def reachable(es: elasticsearch.Elasticsearch) -> bool:
    """A cheap probe: does the cluster answer (any health colour)?"""
    es.options(request_timeout=2.0).cluster.health()
    return True


def ensure_index(es: elasticsearch.Elasticsearch, index: str, mappings: dict,
                 settings: dict) -> None:
    """Create ``index`` unless it exists (another process creating it meanwhile is
    fine): the service's own small indices (state, dead letters, subscriptions)."""
    if es.indices.exists(index=index):
        return
    try:
        es.indices.create(index=index, mappings=mappings, settings=settings)
    except elasticsearch.BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
