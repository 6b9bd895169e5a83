"""The delivery service as a process: built from the configuration, run under
cotyledon (``[delivery] workers`` per host, each replaced if it dies)."""
from __future__ import annotations

import logging
import threading

from oslo_config import cfg

from forwarders.delivery.consumer import Settings
from forwarders.delivery.cursors import CursorStore, new_owner_id
from forwarders.delivery.service import DeliveryService
from forwarders.pipeline import loader
from forwarders.sinks.email import sink as email
from forwarders.sinks.webhook import sink as webhook
from forwarders.subscriptions.catalog import Catalog
from forwarders.subscriptions.catalog import Settings as CatalogSettings
from forwarders.subscriptions.store import SubscriptionStore
from searchlight_forward import search
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment
from searchlight_forward.worker import Worker, run_workers

LOG = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration cannot run: the message says what to change."""


def build(conf: cfg.ConfigOpts, stop_event: threading.Event | None = None,
          owner: str | None = None, status: tuple[str, int] | None = None
          ) -> DeliveryService:
    deployment = Deployment.from_conf(conf)
    try:
        loaded = loader.load_from_conf(conf, deployment, required=True)
    except loader.ForwardingConfigError as exc:
        raise ConfigError(str(exc)) from None
    pipelines = [p for p in loaded if p.delivered]
    templates = [p for p in loaded if p.sink.serves_subscriptions]
    if len(templates) > 1:
        raise ConfigError(f"pipelines {', '.join(p.name for p in templates)} all end in "
                          "the subscriptions sink; keep one")
    d = conf.delivery
    for pipeline in pipelines:
        if d.lease_seconds < 2 * pipeline.sink.call_timeout:
            raise ConfigError(
                f"[delivery] lease_seconds = {d.lease_seconds:g} is less than twice "
                f"the longest call of pipeline {pipeline.name}'s sink "
                f"({pipeline.sink.call_timeout:g}s): raise lease_seconds or lower the "
                f"sink's timeout")
    if templates:
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
    catalog = Catalog(SubscriptionStore(es, conf.subscriptions.index), templates[0],
                      CatalogSettings.from_conf(conf),
                      {g: deployment.types_of(g) for g in deployment.group_names()}
                      ) if templates else None
    store = CursorStore(es, conf.changelog.state_index, owner or new_owner_id(),
                        d.lease_seconds)
    c = conf.changelog
    return DeliveryService(
        es, by_group, store, DeadLetterIndex(es, conf.elasticsearch.dead_letter_index),
        Settings(batch_size=d.batch_size, queue_pages=d.queue_pages,
                 commit_interval=d.commit_interval, lease_seconds=d.lease_seconds,
                 stall_seconds=d.stall_seconds),
        transport_url=conf.transport_url or None, poll_interval=c.poll_interval,
        page_size=c.page_size, stop_event=stop_event, status=status, catalog=catalog,
        purge={"interval": c.purge_interval, "min_age": c.tombstone_min_age,
               "retention": c.tombstone_retention})


class DeliveryWorker(Worker):
    name = "searchlight-forward-delivery"

    def start_work(self) -> DeliveryService:
        d = self.conf.delivery
        status = (d.status_host, d.status_port + self.worker_id) if d.status_port else None
        return build(self.conf, self.stop_event, status=status).start()


def run(conf: cfg.ConfigOpts) -> None:
    build(conf)              # fail fast, in the parent, on a configuration error
    run_workers(DeliveryWorker, conf.delivery.workers, conf)
