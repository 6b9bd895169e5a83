"""The listener process: oslo.messaging batch listener -> BatchProcessor.

``[listener] workers`` processes share one RabbitMQ queue (the pool); inside each,
``executor_threads`` batches are in flight at once. Order does not matter: versions
make the index converge whatever the interleaving.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import elasticsearch
from elasticsearch.serializer import OrjsonSerializer
import oslo_messaging
from oslo_config import cfg
from oslo_messaging.notify.dispatcher import NotificationResult

from forwarders.filters import FilterContext
from forwarders.forwarding import Forwarding
from forwarders.sinks import SinkContext
from searchlight_forward import config
from searchlight_forward.backoff import Backoff, Stopping
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.batch import BatchProcessor
from searchlight_forward.listener.status import StatusServer
from searchlight_forward.plugins import PluginSet, available_plugin_names, load_plugins
from searchlight_forward.plugins.base import exchanges_and_topics

LOG = logging.getLogger(__name__)

PRIORITIES = ("audit", "critical", "debug", "info", "error", "sample", "warn")
STATS_EVERY = 30.0


class BatchEndpoint:
    """Receives every priority: error-priority events (create.error) change resources too."""

    def __init__(self, processor: BatchProcessor, stop_event: threading.Event):
        self.processor = processor
        self.stop_event = stop_event
        for priority in PRIORITIES:
            setattr(self, priority, self._handler(priority))

    def _handler(self, priority):
        def handle(messages):
            try:
                self.processor.handle(priority, messages)
            except Stopping:
                # Shutting down before the batch was safe: hand it back to the broker.
                return NotificationResult.REQUEUE
            except Exception:
                # A bug, not bad input: do not ack; wait so the redelivery is paced.
                LOG.exception("batch failed; it will be redelivered")
                self.stop_event.wait(1.0)
                return NotificationResult.REQUEUE
            return None
        return handle


def load(conf: cfg.ConfigOpts) -> tuple[list[str], PluginSet]:
    """The enabled plugins (all installed when none are named) and their names."""
    names = list(conf.resource_plugins.enabled or available_plugin_names())
    config.register(conf, names)
    plugins = load_plugins(names)
    for name, plugin in zip(names, plugins.plugins):
        plugin.unsearchable_fields = tuple(conf[config.plugin_group(name)].unsearchable_fields)
    return names, plugins


def plugin_settings(conf: cfg.ConfigOpts, names: list[str], plugins: PluginSet):
    """resource_type -> group, resource_type -> admin-only patterns, from the config."""
    groups, admin_only = {}, {}
    for name, plugin in zip(names, plugins.plugins):
        section = conf[config.plugin_group(name)]
        groups[plugin.resource_type] = (section.resource_group_name
                                        or conf.resource_plugins.resource_group_name)
        admin_only[plugin.resource_type] = (tuple(plugin.admin_only_fields)
                                            + tuple(section.admin_only_fields))
    return groups, admin_only


def build_indexer(es, groups, admin_only, plugins: PluginSet, backoff: Backoff) -> Indexer:
    item_lists = {p.resource_type: dict(p.item_lists) for p in plugins.plugins}
    return Indexer(es, groups, admin_only, backoff, item_lists)


def forwarding_setup(conf: cfg.ConfigOpts, plugins: PluginSet, admin_only
                     ) -> tuple[str, FilterContext, SinkContext]:
    """The pipelines file ([forwarding] config_file, relative to the first
    --config-file) and what its filters and sinks may know."""
    path = conf.forwarding.config_file
    if not os.path.isabs(path):
        base = os.path.dirname(os.path.abspath(conf.config_file[0])) if conf.config_file else "."
        path = os.path.join(base, path)
    filter_context = FilterContext(
        admin_only=admin_only,
        resource_types=tuple(p.resource_type for p in plugins.plugins),
        unsearchable={p.resource_type: p.unsearchable_fields for p in plugins.plugins})
    sink_context = SinkContext(transport_url=conf.transport_url or "",
                               es_hosts=conf.elasticsearch.hosts,
                               zaqar_url=conf.forwarding.zaqar_url)
    return path, filter_context, sink_context


def load_forwarding(conf: cfg.ConfigOpts, plugins: PluginSet, admin_only,
                    dead_letter=None) -> Forwarding:
    """The pipelines of [forwarding] config_file; none if the file does not exist."""
    path, filter_context, sink_context = forwarding_setup(conf, plugins, admin_only)
    if not os.path.exists(path):
        LOG.warning("no forwarding: %s does not exist", path)
        return Forwarding([], sink_context.transport_url)
    return Forwarding.from_file(path, filter_context, sink_context, dead_letter,
                                scope=conf.listener.notifications_pool)


def elasticsearch_client(conf: cfg.ConfigOpts) -> elasticsearch.Elasticsearch:
    # orjson encodes bulk bodies several times faster than json (profiled: JSON
    # encoding was a fifth of the indexer's CPU).
    return elasticsearch.Elasticsearch(conf.elasticsearch.hosts, serializer=OrjsonSerializer(),
                                       request_timeout=conf.elasticsearch.request_timeout)


def ensure_indices(conf, es, plugins: PluginSet, groups: dict[str, str]) -> None:
    for group in sorted(set(groups.values())):
        members = [p for p in plugins.plugins if groups[p.resource_type] == group]
        indices.ensure(es, group, members, conf.elasticsearch.number_of_shards,
                       conf.elasticsearch.number_of_replicas)


class Listener:
    """One listener process's worth of machinery, startable and stoppable."""

    def __init__(self, conf: cfg.ConfigOpts, stop_event: threading.Event | None = None,
                 worker_index: int = 0):
        self.conf = conf
        self.stop_event = stop_event or threading.Event()
        self._stopped = False
        names, self.plugins = load(conf)
        groups, admin_only = plugin_settings(conf, names, self.plugins)
        es = elasticsearch_client(conf)
        self.backoff = backoff = Backoff(conf.listener.retry_initial_backoff,
                                         conf.listener.retry_max_backoff, self.stop_event)
        backoff.until_done(lambda: ensure_indices(conf, es, self.plugins, groups),
                           "index setup",
                           "Is Elasticsearch up? `python3 scripts/servers.py status`")
        dead_letters = DeadLetterIndex(es, conf.elasticsearch.dead_letter_index)
        backoff.until_done(dead_letters.ensure, "dead-letter index setup", "")
        self.indexer = build_indexer(es, groups, admin_only, self.plugins, backoff)
        self.forwarding = load_forwarding(conf, self.plugins, admin_only,
                                          dead_letters.write_rejections)
        self.processor = BatchProcessor(self.plugins, self.indexer, dead_letters, backoff,
                                        forward=self.forwarding.forward)
        self.status = None
        if conf.listener.status_port:
            self.status = StatusServer(conf.listener.status_host,
                                       conf.listener.status_port + worker_index,
                                       self.snapshot)

        # Prefetch must be fixed before the transport exists.
        prefetch = conf.listener.prefetch or 2 * conf.listener.batch_size
        conf.set_override("rabbit_qos_prefetch_count", prefetch,
                          group="oslo_messaging_rabbit")
        conf.set_override("executor_thread_pool_size", conf.listener.executor_threads)
        self.transport = oslo_messaging.get_notification_transport(conf)
        self.targets = [oslo_messaging.Target(exchange=exchange, topic=topic)
                        for exchange, topic in exchanges_and_topics(self.plugins.plugins)]
        self.server = oslo_messaging.get_batch_notification_listener(
            self.transport, self.targets, [BatchEndpoint(self.processor, self.stop_event)],
            executor="threading", allow_requeue=True,
            pool=conf.listener.notifications_pool, batch_size=conf.listener.batch_size,
            batch_timeout=conf.listener.batch_timeout)

    def start(self) -> None:
        self.forwarding.start()
        if self.status:
            self.status.start()
        self.server.start()
        LOG.info("listening on %s in pool %r (batch %d / %.2fs)",
                 ", ".join(f"{t.exchange}/{t.topic}" for t in self.targets),
                 self.conf.listener.notifications_pool, self.conf.listener.batch_size,
                 self.conf.listener.batch_timeout)

    def stop(self) -> None:
        """Finish in-flight batches; a batch still waiting for Elasticsearch goes back."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        self.server.stop()
        self.server.wait()
        self.transport.cleanup()
        self.forwarding.stop()
        if self.status:
            self.status.stop()
        LOG.info("stopped: %s", self.stats())

    def snapshot(self) -> dict:
        counts = dict(self.processor.counters)
        counts.update(self.indexer.counters)
        counts["transient_retries"] = self.backoff.retries
        return {"listener": counts, "pipelines": self.forwarding.stats()}

    def stats(self) -> str:
        counts = dict(self.processor.counters)
        counts.update(self.indexer.counters)
        counts["transient_retries"] = self.backoff.retries
        return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def run_worker(conf: cfg.ConfigOpts, worker_index: int = 0) -> None:
    """One listener process until SIGTERM or SIGINT."""
    stop_event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_event.set())
    listener = Listener(conf, stop_event, worker_index)
    listener.start()
    last = time.monotonic()
    while not stop_event.wait(1.0):
        if time.monotonic() - last >= STATS_EVERY:
            last = time.monotonic()
            LOG.info("stats: %s", listener.stats())
    LOG.info("stopping; in-flight batches finish or go back to the broker")
    listener.stop()


def run(conf: cfg.ConfigOpts) -> None:
    """Run ``[listener] workers`` processes, restarting any that dies."""
    workers = conf.listener.workers
    if workers == 1:
        run_worker(conf)
        return
    ctx = multiprocessing.get_context("fork")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    procs = []

    def spawn(index):
        proc = ctx.Process(target=run_worker, args=(conf, index), daemon=False)
        proc.start()
        return proc

    procs = [spawn(i) for i in range(workers)]
    while not stopping.wait(1.0):
        for i, proc in enumerate(procs):
            if not proc.is_alive():
                LOG.error("worker %d exited with %s; starting another", proc.pid,
                          proc.exitcode)
                procs[i] = spawn(i)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=60)
