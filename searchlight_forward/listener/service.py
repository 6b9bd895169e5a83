"""The listener process: oslo.messaging batch listener -> BatchProcessor -> index.

``[listener] workers`` processes (cotyledon workers, replaced if they die) share one
RabbitMQ queue (the pool); inside each, ``executor_threads`` batches are in flight
at once. Order does not matter: versions make the index converge whatever the
interleaving. The listener only indexes and acknowledges; its announcer makes what
it wrote visible and rings the doorbell for the readers.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import oslo_messaging
from oslo_config import cfg
from oslo_messaging.notify.dispatcher import NotificationResult
from oslo_messaging.notify.listener import BatchNotificationServer

from searchlight_forward import metrics, search
from searchlight_forward.changelog.announcer import Announcer
from searchlight_forward.changelog.doorbell import Doorbell
from searchlight_forward.changelog.reader import ChangeLog
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment
from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.batch import BatchProcessor
from searchlight_forward.listener.dispatcher import RecordingDispatcher
from searchlight_forward.listener.pacing import BatchPacer
from searchlight_forward.listener.rejected import RejectedReader
from searchlight_forward.logs import Throttled, describe
from searchlight_forward.plugins.base import exchanges_and_topics
from searchlight_forward.retry import Policy, Retry, Stopping
from searchlight_forward.status import StatusServer
from searchlight_forward.worker import StatusPorts, Worker, run_workers
from searchlight_forward.model.priority import PRIORITIES

LOG = logging.getLogger(__name__)



class BatchEndpoint:
    """Receives every priority: error-priority events (create.error) change resources too."""

    def __init__(self, processor: BatchProcessor, stop_event: threading.Event,
                 batch_seconds: metrics.Histogram | None = None,
                 pacer: BatchPacer | None = None):
        self.processor = processor
        self.stop_event = stop_event
        self.batch_seconds = batch_seconds
        self.pacer = pacer
        self._log = Throttled(LOG)
        for priority in PRIORITIES:
            setattr(self, priority, self._handler(priority))

    def _handler(self, priority):
        def handle(messages):
            started = time.monotonic()
            try:
                self.processor.handle(priority, messages)
            except Stopping:
                # Shutting down before the batch was safe: hand it back to the broker.
                return NotificationResult.REQUEUE
            except Exception as exc:  # noqa: BLE001 - a bug, not bad input: do not ack
                self._log.failure("batch", exc, "it will be redelivered")
                self.stop_event.wait(1.0)      # pace the redelivery
                return NotificationResult.REQUEUE
            took = time.monotonic() - started
            if self.batch_seconds is not None:
                self.batch_seconds.observe(took)
            if self.pacer is not None:
                self.pacer.observe(took)
            return None
        return handle


def ensure_indices(es, deployment: Deployment, shards: int, replicas: int) -> None:
    for group in deployment.group_names():
        indices.ensure(es, group, deployment.plugins_of(group), shards, replicas)


class Listener:
    """One listener process's worth of machinery, startable and stoppable."""

    def __init__(self, conf: cfg.ConfigOpts, stop_event: threading.Event | None = None,
                 worker_index: int = 0, status_socket: socket.socket | None = None):
        self.conf = conf
        self.stop_event = stop_event or threading.Event()
        self._stopped = False
        self.deployment = deployment = Deployment.from_conf(conf)
        es = self.es = search.client(conf)
        policy = Policy(conf.listener.retry_initial_backoff, conf.listener.retry_max_backoff)
        probe = lambda: search.reachable(es)  # noqa: E731
        setup = Retry(policy, "index setup",
                      "is the search server up? `python3 scripts/servers.py status`",
                      self.stop_event, probe)
        search.log_server(es, "listener")
        setup.call(lambda: ensure_indices(es, deployment, conf.elasticsearch.number_of_shards,
                                          conf.elasticsearch.number_of_replicas))
        dead_letters = self.dead_letters = DeadLetterIndex(
            es, conf.elasticsearch.dead_letter_index)
        setup.call(dead_letters.ensure)
        self.indexer = Indexer(es, deployment.groups, deployment.admin_only, policy,
                               deployment.item_lists, self.stop_event, probe,
                               conf.listener.state_cache_size,
                               conf.listener.max_item_attempts,
                               conf.elasticsearch.write_timeout)
        doorbell = Doorbell(conf.transport_url) if conf.transport_url else None
        pool, batch = conf.listener.notifications_pool, conf.listener.batch_size
        self.announcer = Announcer(
            {g: ChangeLog(es, g) for g in deployment.group_names()}, doorbell,
            conf.listener.announce_interval,
            # Behind: more than a batch waits in the pool queue (refreshes spaced more).
            behind=(lambda: (doorbell.waiting(pool) or 0) > batch) if doorbell else
            (lambda: False))
        self.processor = BatchProcessor(
            deployment.plugins, self.indexer, dead_letters,
            Retry(policy, "dead-letter write", "the batch stays unacknowledged until it "
                  "is written", self.stop_event, probe),
            deployment.groups, self._indexed, conf.listener.max_batch_failures)
        self.rejected = None
        if conf.listener.rejected_queue and conf.transport_url:
            self.rejected = RejectedReader(conf.transport_url, conf.listener.rejected_queue,
                                           dead_letters, self.stop_event)
        self.status = None
        if status_socket is not None:       # bound by the cotyledon master
            self.status = StatusServer("", 0, self.snapshot, metrics.registry(self.metrics),
                                       live=self.liveness, ready=self.readiness,
                                       sock=status_socket)
        elif conf.listener.status_port:
            self.status = StatusServer(conf.listener.status_host,
                                       conf.listener.status_port + worker_index,
                                       self.snapshot, metrics.registry(self.metrics),
                                       live=self.liveness, ready=self.readiness)

        # The batch poll's timeout follows the batches' cost (pacing.py), from the
        # shortest on.
        self.pacer = BatchPacer(conf.listener.min_batch_timeout, conf.listener.batch_timeout,
                                self._set_batch_timeout)
        # Prefetch must be fixed before the transport exists.
        prefetch = conf.listener.prefetch or 2 * conf.listener.batch_size
        conf.set_override("rabbit_qos_prefetch_count", prefetch,
                          group="oslo_messaging_rabbit")
        conf.set_override("executor_thread_pool_size", conf.listener.executor_threads)
        self.transport = oslo_messaging.get_notification_transport(conf)
        self.targets = [oslo_messaging.Target(exchange=exchange, topic=topic)
                        for exchange, topic in
                        exchanges_and_topics(deployment.plugins.plugins)]
        # get_batch_notification_listener with our dispatcher (dispatcher.py): what
        # oslo.messaging would drop for its priority is dead-lettered instead.
        # Batch latency: plugins, reads, bulk writes and dead letters, per batch.
        self.batch_seconds = metrics.Histogram(
            metrics.metric_name("listener", "batch_seconds"),
            "time to process one batch (plugins, Elasticsearch reads and writes, dead "
            "letters)", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=None)
        dispatcher = RecordingDispatcher([BatchEndpoint(self.processor, self.stop_event,
                                                        self.batch_seconds, self.pacer)],
                                         self.processor.bad_priority)
        self.server = BatchNotificationServer(
            self.transport, self.targets, dispatcher, "threading", True,
            conf.listener.notifications_pool, conf.listener.batch_size, self.pacer.window)

    def _poll_listener(self):
        # oslo.messaging's poll thread reads this object's batch_timeout before every
        # poll (PollStyleListenerAdapter); it exists once the server has started.
        return getattr(self.server, "listener", None)

    def _set_batch_timeout(self, seconds: float) -> None:
        listener = self._poll_listener()
        if listener is not None:
            listener.batch_timeout = seconds

    def batch_timeout(self) -> float | None:
        """The batch poll's timeout now (None before the server starts)."""
        return getattr(self._poll_listener(), "batch_timeout", None)

    def _indexed(self, groups) -> None:
        for group in groups:
            self.announcer.written(group)

    def start(self) -> None:
        self.announcer.start()
        if self.rejected:
            self.rejected.start()
        if self.status:
            self.status.start()
        self.server.start()
        LOG.info("listening on %s in pool %r (batch %d / %.3f-%.2fs)",
                 ", ".join(f"{t.exchange}/{t.topic}" for t in self.targets),
                 self.conf.listener.notifications_pool, self.conf.listener.batch_size,
                 self.pacer.least, self.pacer.most)

    def stop(self) -> None:
        """Finish in-flight batches; a batch still waiting for Elasticsearch goes back."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        self.server.stop()
        self.server.wait()
        self.transport.cleanup()
        self.announcer.stop()
        if self.rejected:
            self.rejected.stop()
        if self.status:
            self.status.stop()
        LOG.info("stopped: %s", self.stats_line())

    def counters(self) -> dict:
        counts = dict(self.processor.counters)
        counts.update(self.indexer.counters)
        counts["transient_retries"] = (self.indexer.retries
                                       + self.processor.dead_letter_retry.retries)
        counts.update({f"announcer_{k}": v for k, v in self.announcer.counters.items()})
        return counts

    def snapshot(self) -> dict:
        return {"listener": self.counters(), "batch_timeout_seconds": self.pacer.window,
                "rejected": self.rejected.stats() if self.rejected else None}

    def liveness(self) -> list[str]:
        return ["stopping"] if self.stop_event.is_set() else []

    def readiness(self) -> list[str]:
        """Elasticsearch answers (nothing is indexed or acknowledged otherwise), and
        the rejected-queue reader, when configured, is connected to RabbitMQ."""
        problems = []
        try:
            search.reachable(self.es)
        except Exception as exc:  # noqa: BLE001 - any failure: not ready
            problems.append(f"Elasticsearch: {describe(exc)}")
        if self.rejected is not None and not self.rejected.stats()["connected"]:
            problems.append("RabbitMQ: the rejected-queue reader is not connected")
        return problems

    def metrics(self) -> list:
        """Prometheus families: every counter of ``/status``, the rejected-queue
        reader's, and whether it is connected."""
        out = metrics.counters("listener", self.counters(), "listener counter",
                               known=LISTENER_COUNTERS)     # at 0 before they count
        out.append(metrics.gauge("listener", "batch_timeout_seconds",
                                 "how long a batch may wait to fill now: twice the recent "
                                 "batches' processing time, within [listener] "
                                 "min_batch_timeout and batch_timeout", self.pacer.window))
        out += list(self.batch_seconds.collect())
        out += list(self.announcer.visible_seconds.collect())
        out.append(metrics.by_label("listener", "dead_letters",
                                    "dead-letter records written, by stage", "stage",
                                    self.dead_letters.written, LISTENER_STAGES))
        if self.rejected is not None:
            stats = self.rejected.stats()
            out += metrics.counters("listener_rejected_queue",
                                    {k: v for k, v in stats.items() if k != "connected"},
                                    "rejected-queue reader counter")
            out.append(metrics.gauge("listener_rejected_queue", "connected",
                                     "1 while the rejected-queue reader is connected",
                                     int(bool(stats.get("connected")))))
        return out

    def stats_line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.counters().items()))


# Exported at 0 before they are first counted (metrics.py): alerts see 0, not "no data".
LISTENER_COUNTERS = ("notifications", "applied", "duplicate", "stale", "ignored",
                     "dead_lettered", "rejected", "conflicts", "transient_retries",
                     "failed_batches", "bad_priority", "announcer_refreshes",
                     "announcer_rings", "announcer_refresh_failures",
                     "announcer_ring_failures", "announcer_behind_pacings")
LISTENER_STAGES = ("parse", "plugin", "index", "batch", "dispatch", "rejected")


class ListenerWorker(Worker):
    """One listener process: in-flight batches are handed back on SIGTERM."""

    name = "searchlight-forward-listener"

    def start_work(self) -> Listener:
        listener = Listener(self.conf, self.stop_event, self.worker_id,
                            self.status_socket)
        listener.start()
        return listener


def run(conf: cfg.ConfigOpts) -> None:
    """``[listener] workers`` processes until SIGTERM or SIGINT (``StatusPortInUse``
    before any starts if their status ports are taken)."""
    listener = conf.listener
    run_workers(ListenerWorker, listener.workers, conf,
                status=StatusPorts(listener.status_host, listener.status_port, "listener"))
