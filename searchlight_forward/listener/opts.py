"""Options of the listener ([listener]) and oslo.messaging's, registered up front."""
from __future__ import annotations

from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

GROUP = "listener"

opts = [
    cfg.StrOpt("notifications_pool", default="searchlight-forward",
               help="RabbitMQ queue (oslo.messaging pool) shared by every listener "
                    "process of this deployment. Processes in one pool split the "
                    "stream; a second deployment with another pool gets its own copy. "
                    "Never leave it empty: the default notifications.* queues are "
                    "consumed by other services (Ceilometer) too."),
    cfg.IntOpt("workers", default=1, min=1,
               help="Listener processes to run on this host (cotyledon workers); "
                    "they share the pool, and a worker that dies is replaced."),
    cfg.IntOpt("batch_size", default=500, min=1,
               help="Notifications handed to the indexer in one batch (one "
                    "Elasticsearch mget and one bulk request per batch)."),
    cfg.FloatOpt("batch_timeout", default=0.2, min=0.01,
                 help="Longest wait, in seconds, for a batch to fill when "
                      "notifications are scarce. The wait follows the cost of a "
                      "batch: twice the recent batches' processing time, between "
                      "min_batch_timeout and this (docs/benchmarks.md)."),
    cfg.FloatOpt("min_batch_timeout", default=0.02, min=0.001,
                 help="Shortest wait, in seconds, for a batch to fill: the delay "
                      "floor at low rates while Elasticsearch answers quickly. "
                      "Set it to batch_timeout for a fixed wait."),
    cfg.IntOpt("executor_threads", default=4, min=1,
               help="Batches handled at once in one process."),
    cfg.IntOpt("prefetch", default=0, min=0,
               help="RabbitMQ prefetch per consumer. 0 means 2 x batch_size."),
    cfg.FloatOpt("retry_initial_backoff", default=0.5, min=0.01,
                 help="First wait, in seconds, before retrying a batch that "
                      "Elasticsearch refused (unreachable, 429 or 5xx)."),
    cfg.FloatOpt("retry_max_backoff", default=30.0, min=0.1,
                 help="Longest wait between retries of one batch; retries go on "
                      "until Elasticsearch accepts it, without acknowledging it. The "
                      "wait ends early when a probe finds Elasticsearch back."),
    cfg.StrOpt("rejected_queue", default="searchlight-forward.rejected",
               help="Exchange and queue (both durable, same name) where RabbitMQ puts "
                    "what it dead-letters from the pool queue: the messages "
                    "oslo.messaging rejects because it cannot read them. The listener "
                    "records each as a dead letter with its raw body. RabbitMQ routes "
                    "them there only if the pool queue has a dead-letter-exchange "
                    "policy naming it (docs/reliability.md). Empty: not read."),
    cfg.IntOpt("max_item_attempts", default=10, min=1,
               help="A document Elasticsearch answers 429 or 5xx this many times in a "
                    "row, while it takes the others of the batch, is dead-lettered "
                    "(its content is at fault, e.g. too big for a circuit breaker). "
                    "When Elasticsearch refuses everything, the batch waits instead."),
    cfg.IntOpt("max_batch_failures", default=5, min=1,
               help="A message whose batch failed this many times in one process (a "
                    "bug met by a payload, not an outage: those are retried without "
                    "failing the batch) is dead-lettered at its next delivery instead "
                    "of being processed again."),
    cfg.FloatOpt("announce_interval", default=0.1, min=0.01,
                 help="Longest time, in seconds, between a batch being indexed and "
                      "the refresh that makes it visible to readers (the doorbell "
                      "rings right after). One refresh per interval at most, "
                      "whatever the number of readers: a shorter interval lowers "
                      "the delay to sinks and WebSocket clients and costs "
                      "Elasticsearch more refreshes (docs/benchmarks.md)."),
    cfg.IntOpt("state_cache_size", default=10000, min=0,
               help="Resources whose last written state a listener process keeps, to "
                    "fold the next change onto it without reading it back from "
                    "Elasticsearch (writes stay conditional on it, so another "
                    "process's write is never lost). 0: always read back."),
    cfg.HostAddressOpt("status_host", default="127.0.0.1",
                       help="Address of the listener's status endpoint (GET /status)."),
    cfg.PortOpt("status_port", default=8790,
                help="Port of the status endpoint; worker N of a multi-process "
                     "listener uses status_port + N. 0 turns it off. A second "
                     "listener process on the same host needs ports of its own "
                     "(docs/operations.md, \"Several processes on one host\")."),
]


def list_opts():
    return [(GROUP, opts)]


def register_messaging(conf: cfg.ConfigOpts) -> None:
    """oslo.messaging's options, registered up front so they can be overridden
    before the transport (and its driver) exists."""
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=None if group == "DEFAULT" else group)
