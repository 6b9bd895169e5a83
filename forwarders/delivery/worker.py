"""The delivery service as a process: built from the configuration, run under
cotyledon (``[delivery] workers`` per host, each replaced if it dies)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from oslo_config import cfg

from forwarders.delivery.consumer import ConsumerSettings
from forwarders.delivery.cursors import CursorStore, new_owner_id
from forwarders.delivery.service import DeliveryService
from forwarders.pipeline import loader
from forwarders.pipeline.view import SUBSCRIPTIONS
from forwarders.sinks.email import sink as email
from forwarders.sinks.webhook import sink as webhook
from forwarders.pipeline.source import FixedPipelines
from forwarders.subscriptions.catalog import Catalog
from forwarders.subscriptions.catalog import CatalogSettings
from forwarders.subscriptions.source import SubscriptionPipelines
from forwarders.subscriptions.store import SubscriptionStore
from forwarders.options import ConfigError
from searchlight_forward import search
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment
from searchlight_forward.worker import StatusPorts, StatusPortInUse, Worker, run_workers

LOG = logging.getLogger(__name__)


def build(conf: cfg.ConfigOpts, stop_event: threading.Event | None = None,
          owner: str | None = None, status: tuple[str, int] | socket.socket | None = None
          ) -> DeliveryService:
    deployment = Deployment.from_conf(conf)
    try:
        loaded = loader.load_from_conf(conf, deployment, required=True)
        # what every subscription passes through; none: they are not delivered
        view = loaded.view_for(SUBSCRIPTIONS, conf.subscriptions.view)
    except ValueError as exc:        # the file, or the choice of view
        raise ConfigError(str(exc)) from None
    pipelines = loaded.pipelines
    d = conf.delivery
    for pipeline in pipelines:
        if d.lease_seconds < 2 * pipeline.sink.call_timeout:
            raise ConfigError(
                f"[delivery] lease_seconds = {d.lease_seconds:g} is less than twice "
                f"the longest call of pipeline {pipeline.name}'s sink "
                f"({pipeline.sink.call_timeout:g}s): raise lease_seconds or lower the "
                f"sink's timeout")
    if view is not None:
        longest = max(webhook.call_timeout(conf.subscriptions.webhook_timeout),
                      email.call_timeout(conf.smtp.timeout))
        if d.lease_seconds < 2 * longest:
            raise ConfigError(
                f"[delivery] lease_seconds = {d.lease_seconds:g} is less than twice the "
                f"longest call to a subscription's endpoint ({longest:g}s): raise "
                "lease_seconds or lower [subscriptions] webhook_timeout / [smtp] timeout")
    by_group = {}
    for group in deployment.group_names():
        types = deployment.types_of(group)
        by_group[group] = [p for p in pipelines
                           if p.resource_types is None or p.resource_types & types]
    es = search.client(conf)
    search.log_server(es, "delivery")
    # The two sources of pipelines: forwarders.ini's, and tenants' subscriptions
    # (through the view every subscription passes; none: they are not delivered).
    sources = [FixedPipelines(by_group)]
    if view is not None:
        sources.append(SubscriptionPipelines(Catalog(
            SubscriptionStore(es, conf.subscriptions.index), view,
            CatalogSettings.from_conf(conf),
            {g: deployment.types_of(g) for g in deployment.group_names()})))
    store = CursorStore(es, conf.changelog.state_index, owner or new_owner_id(),
                        d.lease_seconds)
    c = conf.changelog
    return DeliveryService(
        es, deployment.group_names(), sources, store,
        DeadLetterIndex(es, conf.elasticsearch.dead_letter_index),
        ConsumerSettings(batch_size=d.batch_size, queue_pages=d.queue_pages,
                 commit_interval=d.commit_interval, lease_seconds=d.lease_seconds,
                 stall_seconds=d.stall_seconds),
        transport_url=conf.transport_url or None, poll_interval=c.poll_interval,
        page_size=c.page_size, stop_event=stop_event, status=status,
        threads=d.threads, partitions=d.partitions,
        purge={"interval": c.purge_interval, "min_age": c.tombstone_min_age,
               "retention": c.tombstone_retention})


#: This host's delivery process (the cotyledon master), set before its workers fork:
#: its pid and a token of its own, so that owner ids of two runs never meet.
_MASTER: tuple[int, str] | None = None


def slot_owner_id(worker_id: int) -> str:
    """The owner id of worker slot ``worker_id`` of this master process.

    A worker that cotyledon starts in place of a dead one has its predecessor's
    owner id, so it takes the cursors its slot held at once (``CursorStore.claim``
    lets an owner claim its own cursors whatever their lease says): a worker kill
    costs the time to fork, not a lease. This is safe because cotyledon starts the
    replacement only once the dead worker is reaped (its threads are gone with it).
    Another process's cursors (a dead host's, a killed master's) still wait for
    their lease to run out."""
    pid, token = _MASTER or (os.getpid(), uuid.uuid4().hex[:8])
    return f"{socket.gethostname()}:{pid}:{token}:worker-{worker_id}"


class DeliveryWorker(Worker):
    name = "searchlight-forward-delivery"

    def start_work(self) -> DeliveryService:
        return build(self.conf, self.stop_event, owner=slot_owner_id(self.worker_id),
                     status=self.status_socket).start()


def run(conf: cfg.ConfigOpts) -> None:
    global _MASTER
    build(conf)              # fail fast, in the parent, on a configuration error
    _MASTER = (os.getpid(), uuid.uuid4().hex[:8])
    d = conf.delivery
    try:
        run_workers(DeliveryWorker, d.workers, conf,
                    status=StatusPorts(d.status_host, d.status_port, "delivery"))
    except StatusPortInUse as exc:
        raise ConfigError(str(exc)) from None
