"""The delivery service: one process's share of the pipelines, fed from the index.

For each resource group it runs one ``ChangeFeed`` (woken by the listeners'
doorbell; one read per page for all its pipelines) and ``LiveConsumers`` through which the
feed's pages reach the live consumers. Its consumers run as steps on one bounded pool
of threads (``runner``, ``[delivery] threads``): an idle one holds no thread. Cursors
are owned by partition (``cursors``): each operator's pipeline is one, tenants'
subscriptions are hashed into ``[delivery] partitions``. Every ``lease_seconds / 3`` it

* writes its heartbeat and counts the live delivery processes;
* renews the leases of its partitions, all in one bulk request (and at once when a
  consumer finds its lease short);
* claims the partitions nobody owns (or whose lease ran out), up to its fair share
  (the partitions divided by the live processes, rounded up), takes their cursors
  (one bulk) and starts a ``Consumer`` for each;
* releases partitions beyond its fair share, so a process that joins gets work;
* restarts any consumer that died (counting it) or whose cursor an operator moved.

Its pipelines come from sources (``forwarders.pipeline.source``): the pipelines of
forwarders.ini, read once, and tenants' subscriptions, read again every
``refresh_interval``; it adds, replaces or removes what they offer, and claims
them like any other. The live process with the smallest id does each source's
leader duties (a subscription's confirmation request, forgetting the cursors of
deleted subscriptions).

The live process with the smallest id also purges tombstones every
``[changelog] purge_interval`` (``changelog.tombstones``): those older than
``tombstone_min_age`` that every cursor has passed, and those older than
``tombstone_retention`` whoever has not.
"""
from __future__ import annotations

import collections
import logging
import math
import socket
import threading
import time
import zlib
from typing import Iterable

from forwarders.delivery.consumer import Consumer, ConsumerSettings, LiveConsumers
from forwarders.delivery.cursors import Cursor, CursorStore, Lease, LeaseLost, cursor_id
from forwarders.delivery.runner import Runner
from forwarders.pipeline.pipeline import Pipeline
from forwarders.pipeline.source import PipelineSource
from searchlight_forward import metrics, search
from searchlight_forward.changelog.doorbell import DoorbellListener, Ring
from searchlight_forward.changelog.feed import ChangeFeed
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, NoIndex, Selection
from searchlight_forward.changelog.tombstones import Tombstones
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.logs import Throttled, describe
from searchlight_forward.model.documents import ADMIN, ROLES
from searchlight_forward.retry import Policy, Retry, Stopping
from searchlight_forward.status import StatusServer

LOG = logging.getLogger(__name__)


class Group:
    """One resource group's reading machinery in this process."""

    def __init__(self, es, name: str, pipelines: list[Pipeline], state_index: str,
                 poll_interval: float, page_size: int, stop_event: threading.Event,
                 roles: tuple[str, ...] = (ADMIN,)):
        self.name = name
        self.pipelines = {p.name: p for p in pipelines}
        self.changelog = ChangeLog(es, name, page_size)
        self.tombstones = Tombstones(es, name, state_index)
        self.hub = LiveConsumers(name, poll_interval)
        self.feed = ChangeFeed(self.changelog, self.hub.dispatch,
                               Selection(roles=roles), poll_interval, stop_event)


# Exported at 0 before they are first counted (metrics.py): alerts see 0, not "no data".
SERVICE_COUNTERS = ("claimed", "released", "consumer_restarts", "rebalance_failures",
                    "tombstones_purged")
PIPELINE_COUNTERS = ("delivered", "failures", "skipped", "held", "rejected", "withheld",
                     "fell_behind", "resyncs", "commits", "commit_retries")


class DeliveryService:
    def __init__(self, es: search.Client, groups: list[str],
                 sources: list[PipelineSource], store: CursorStore,
                 dead_letters: DeadLetterIndex, settings: ConsumerSettings,
                 transport_url: str | None = None, poll_interval: float = 1.0,
                 page_size: int = 500, purge: dict | None = None,
                 stop_event: threading.Event | None = None,
                 status: tuple[str, int] | socket.socket | None = None,
                 threads: int = 16, partitions: int = 16):
        self.es = es
        self.store = store
        self.dead_letters = dead_letters
        self.settings = settings
        self.transport_url = transport_url
        self.stop_event = stop_event or threading.Event()
        self.purge_settings = purge or {}
        self.sources = list(sources)
        # Sources read once (forwarders.ini) are in place from the start; the others
        # are read by the delivery thread (``_refresh``).
        self.changing = [s for s in self.sources if s.refresh_interval is not None]
        fixed = {name: (source, offer) for source in self.sources
                 if source.refresh_interval is None
                 for name, offer in source.offers().items()}
        wanted = set(groups) if self.changing else \
            {g for _, offer in fixed.values() for g in offer.groups}
        # The feeds read every role copy some source's pipelines read.
        roles = tuple(r for r in ROLES if any(r in s.roles for s in self.sources))
        self.groups = {name: Group(es, name, [], store.index, poll_interval, page_size,
                                   self.stop_event, roles or (ADMIN,))
                       for name in groups if name in wanted}
        #: pipeline name -> (its source, the revision running)
        self.offered: dict[str, tuple[PipelineSource, object]] = {}
        self._info: dict[str, dict] = {}     # pipeline name -> what /status shows
        for name, (source, offer) in fixed.items():
            self._add(name, source, offer, offer.build())
        self._last_refresh: dict[int, float] = {id(s): -math.inf for s in self.changing}
        self._seen_offers: dict[int, object] = {}
        # What the pipelines and partitions are, worked out again only when something
        # changed (ten thousand subscriptions are not looked at every turn).
        self._plan: tuple[list, list] | None = None     # (pipelines, partitions)
        self._started: int | None = None     # consumers after the last start-up pass
        self._partition_of: dict[tuple[str, str], str] = {}
        self.consumers: dict[str, Consumer] = {}      # cursor id -> running consumer
        self.leases: dict[str, Lease] = {}            # partition -> this process's lease
        self.partitions = partitions
        self.runner = Runner(threads, "delivery")
        # Set to run a turn now: stopping, or a consumer's lease is short.
        self._wakeup = threading.Event()
        self._last_heartbeat = -math.inf
        self.counters: Counters = Counters()
        self.members: list[str] = [store.owner]
        self.doorbell: DoorbellListener | None = None
        self._log = Throttled(LOG)
        self._thread = threading.Thread(target=self._run, daemon=True, name="delivery")
        self._last_purge = 0.0
        self._sinks_started = False
        self.status = None
        if isinstance(status, socket.socket):       # bound by the worker's master
            self.status = StatusServer("", 0, self.stats, metrics.registry(self.metrics),
                                       live=self.liveness, ready=self.readiness,
                                       sock=status)
        elif status:
            self.status = StatusServer(*status, self.stats, metrics.registry(self.metrics),
                                       live=self.liveness, ready=self.readiness)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "DeliveryService":
        setup = Retry(Policy(initial=0.5, maximum=10.0), "delivery service set-up",
                      "is Elasticsearch up? `curl $ES/_cluster/health`",
                      stop_event=self.stop_event, probe=lambda: search.reachable(self.es))
        setup.call(self.store.ensure)
        setup.call(self.dead_letters.ensure)
        for source in self.sources:
            setup.call(source.ensure)
        for group in self.groups.values():
            setup.call(group.feed.locate)
            group.hub.located(group.feed.position)
        if self.transport_url:
            self.doorbell = DoorbellListener(self.transport_url, self.groups, self._ring)
            self.doorbell.start(wait=10.0)
        for group in self.groups.values():
            group.feed.start()
        self.runner.start()
        self._thread.start()
        if self.status is not None:
            self.status.start()
        LOG.info("delivery service %s: %s", self.store.owner, ", ".join(
            f"{g.name}: {', '.join(g.pipelines)}" for g in self.groups.values()) or "no pipelines")
        return self

    def _ring(self, ring: Ring | None) -> None:
        for group in self.groups.values():
            if ring is None or ring.group == group.name:
                group.feed.ring(ring)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self._wakeup.set()
        if self.status is not None:
            self.status.stop()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        # All at once: a thousand subscriptions stop in the time of the slowest one.
        self._stop_consumers(list(self.consumers.values()), timeout)
        self.runner.stop()
        for lease in list(self.leases.values()):
            try:
                lease.release()
            except Exception:  # noqa: BLE001 - the lease runs out by itself
                pass
        for group in self.groups.values():
            group.feed.stop()
        if self.doorbell is not None:
            self.doorbell.stop()
        for pipeline in self._pipelines():
            pipeline.sink.close()
        for source in self.sources:
            source.close()
        try:
            self.store.leave()
        except Exception:  # noqa: BLE001 - the heartbeat runs out by itself
            pass
        LOG.info("delivery service %s stopped", self.store.owner)

    @staticmethod
    def _stop_consumers(consumers: list[Consumer], timeout: float = 30.0) -> None:
        """Stop these consumers (each writes its cursor a last time), together."""
        for consumer in consumers:
            consumer.signal_stop()
        deadline = time.monotonic() + timeout
        for consumer in consumers:
            consumer.stop(max(0.1, deadline - time.monotonic()))

    def _pipelines(self) -> Iterable[Pipeline]:
        seen = set()
        for group in self.groups.values():
            for pipeline in group.pipelines.values():
                if id(pipeline) not in seen:
                    seen.add(id(pipeline))
                    yield pipeline

    # -- ownership ---------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.store.lease_seconds / 3
        for source in self.changing:      # what they offer anew is claimed this often
            interval = min(interval, source.refresh_interval)
        next_turn = 0.0
        while not self.stop_event.is_set():
            try:
                if time.monotonic() >= next_turn:
                    next_turn = time.monotonic() + interval
                    self.rebalance()
                    self._maybe_purge()
                else:
                    self._renew()             # a consumer asked: its lease is short
            except Stopping:
                return
            except Exception as exc:  # noqa: BLE001 - leases run on; try next turn
                self.counters.add("rebalance_failures")
                self._log.failure("delivery rebalance", exc,
                                  f"trying again in {interval:.0f}s")
            self._wakeup.wait(max(0.0, next_turn - time.monotonic()))
            self._wakeup.clear()

    def lease_short(self) -> None:
        """A consumer's lease has too little time left for a sink call: renew now."""
        self._wakeup.set()

    def wanted(self) -> list[tuple[str, str]]:
        """(group, pipeline) pairs this deployment delivers, in a stable order."""
        return sorted((g.name, p) for g in self.groups.values() for p in g.pipelines)

    def _changed(self) -> None:
        """The pipelines, the partitions held or the consumers changed."""
        self._plan = None
        self._started = None

    def partition_of(self, group: str, name: str) -> str:
        """An operator's pipeline is a partition of its own; a tenant's subscription
        is in one of ``partitions`` (all its groups in the same one)."""
        found = self._partition_of.get((group, name))
        if found is None:
            found = f"subscriptions-{zlib.crc32(name.encode()) % self.partitions}" \
                if self._tenants(name) else f"pipeline:{group}:{name}"
            self._partition_of[(group, name)] = found
        return found

    def wanted_partitions(self, wanted: list[tuple[str, str]]) -> list[str]:
        found = {self.partition_of(g, p) for g, p in wanted}
        if any(source.tenants for source in self.sources):
            found |= {f"subscriptions-{i}" for i in range(self.partitions)}
        return sorted(found)

    def rebalance(self) -> None:
        if not self._sinks_started:
            for pipeline in self._pipelines():
                pipeline.sink.start()
            self._sinks_started = True
        self._reap()
        now = time.monotonic()
        if now - self._last_heartbeat >= self.store.lease_seconds / 3:
            self.store.heartbeat(sorted(self.leases))
            self.members = self.store.members()
            self._last_heartbeat = now
        settle = self._last_heartbeat == now            # as often as the heartbeat
        for source in self.changing:
            self._refresh(source)
        if self._plan is None:
            wanted = self.wanted()
            self._plan = (wanted, self.wanted_partitions(wanted))
        wanted, partitions = self._plan
        fair = math.ceil(len(partitions) / max(1, len(self.members)))
        self._renew()
        for partition in [p for p in self.leases if p not in partitions]:
            self._give_back(partition, "not delivered any more")
        # Give back what is beyond our share, so that newcomers get work.
        for partition in sorted(self.leases)[fair:] if len(self.leases) > fair else []:
            self._give_back(partition, f"share {fair} of {len(partitions)} partitions "
                                       f"among {len(self.members)} processes")
        # Claim what nobody holds, up to our share (read only while below it).
        if len(self.leases) < fair:
            free = [p for p in partitions if p not in self.leases]
            docs = self.store.leases(free)
            for partition in free:
                if len(self.leases) >= fair:
                    break
                lease = self.store.claim(partition, docs.get(partition))
                if lease is not None:
                    self.leases[partition] = lease
                    self._changed()
                    self.counters.add("claimed")
                    LOG.info("owning partition %s", partition)
        # A cursor an operator moved: its consumer starts again from there.
        for key, seq_no in self.store.moved(list(self.groups)).items():
            consumer = self.consumers.get(key)
            if consumer is not None and not consumer.cursor.written_after(seq_no):
                LOG.info("%s was moved by an operator; delivering from there", key)
                del self.consumers[key]
                consumer.stop()
                self._changed()
        if self._started != len(self.consumers):      # something changed, or one went
            complete = self._start_consumers(wanted)
            self._started = len(self.consumers) if complete else None
        if settle:
            self._settle_idle()

    def _renew(self) -> None:
        """Renew, in one request, the leases with less than two thirds left; stop
        the consumers of those another process owns now."""
        due = [lease for lease in self.leases.values()
               if lease.remaining() < self.store.lease_seconds * 2 / 3]
        for lease in self.store.renew(due):
            LOG.warning("lost partition %s to another delivery process", lease.partition)
            self._drop(lease.partition)

    def _drop(self, partition: str) -> Lease:
        """Stop delivering ``partition``: its consumers stop (each writes its cursor a
        last time, if it still may) and are forgotten."""
        lease = self.leases.pop(partition)
        self._changed()
        mine = {k: c for k, c in self.consumers.items() if c.lease is lease}
        self._stop_consumers(list(mine.values()))
        for key in mine:
            del self.consumers[key]
        return lease

    def _give_back(self, partition: str, why: str) -> None:
        lease = self._drop(partition)          # their last cursor writes first
        try:
            lease.release()
        except LeaseLost:
            pass
        self.counters.add("released")
        LOG.info("released partition %s (%s)", partition, why)

    def _start_consumers(self, wanted: list[tuple[str, str]]) -> bool:
        """A consumer for every wanted pipeline whose partition this process holds;
        False if a cursor could not be taken yet (the next turn tries again)."""
        missing: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        for group, name in wanted:
            partition = self.partition_of(group, name)
            if partition in self.leases and cursor_id(group, name) not in self.consumers:
                missing[partition].append((group, name))
        complete = True
        for partition, keys in missing.items():
            lease = self.leases[partition]
            taken = self.store.take(lease, keys)
            complete = complete and len(taken) == len(keys)
            for (group, name), cursor in taken.items():
                self._start_consumer(group, name, cursor)
        return complete

    def _start_consumer(self, group: str, name: str, cursor: Cursor) -> None:
        g = self.groups[group]
        pipeline = g.pipelines[name]
        consumer = Consumer(group, pipeline, cursor, g.hub, g.changelog,
                            g.tombstones, self.dead_letters, self.settings,
                            threading.Event(), probe=pipeline.sink.probe,
                            lease_short=self.lease_short)
        self.consumers[cursor_id(group, name)] = consumer.start(self.runner)
        LOG.info("delivering %s (%s) from %s", name, group,
                 cursor.state.position or "a new cursor")

    def _settle_idle(self) -> None:
        """Wake the idle live consumers the feed's pages passed by (nothing in them
        for them) once a lease's length since they last wrote their cursor, so that
        their cursors follow (tombstone purges wait for the slowest cursor)."""
        now = time.monotonic()
        for group in self.groups.values():
            head = group.hub.snapshot()
            for consumer in group.hub.live():
                if consumer.position != head and \
                        now - consumer.last_commit >= self.store.lease_seconds:
                    consumer.wake()

    def _reap(self) -> None:
        """Forget consumers that stopped by themselves: a gone destination's pipeline
        is not delivered again; the others start again (``_start_consumers``)."""
        for job in self.runner.take_finished():
            consumer = job.task
            key = cursor_id(consumer.group, consumer.name)
            if self.consumers.get(key) is not consumer:
                continue                       # stopped by this service: handled
            del self.consumers[key]
            if consumer.gone is not None:
                self._release(consumer)        # no owner shown for a stopped pipeline
                self._forget(consumer.name)    # its owner was told (a subscription:
                continue                       # disabled); not claimed again
            if consumer.crashed is not None or not consumer.cursor.lost:
                self.counters.add("consumer_restarts")
                LOG.warning("pipeline %s (%s) stopped (%s); restarting it", consumer.name,
                            consumer.group, consumer.crashed or "lease")

    @staticmethod
    def _release(consumer: Consumer) -> None:
        if not (consumer.lease.lost or consumer.cursor.lost):
            try:
                consumer.cursor.write(release=True)
            except Exception:  # noqa: BLE001 - the next owner takes it anyway
                pass

    # -- sources -----------------------------------------------------------------------

    def _refresh(self, source: PipelineSource) -> None:
        """Read what ``source`` offers now (when due): start the new, replace the
        revised, stop what it no longer offers."""
        if time.monotonic() - self._last_refresh[id(source)] < source.refresh_interval:
            return
        offers = source.offers()
        self._last_refresh[id(source)] = time.monotonic()
        if self.members[0] == self.store.owner:
            source.lead(self._forget_cursors)
        if offers is self._seen_offers.get(id(source)):
            return                                      # nothing new since last time
        self._seen_offers[id(source)] = offers
        self._changed()
        for name, (owner, revision) in list(self.offered.items()):
            if owner is source and (name not in offers or offers[name].revision != revision):
                self._forget(name)
        for name, offer in offers.items():
            if name in self.offered:
                continue
            try:
                pipeline = offer.build()
                pipeline.sink.start()
            except Exception as exc:  # noqa: BLE001 - one bad offer, not all
                reason = str(exc) or type(exc).__name__
                LOG.error("pipeline %s cannot be delivered: %s", name, reason)
                source.refused(name, reason)
                continue
            self._add(name, source, offer, pipeline)

    def _add(self, name: str, source: PipelineSource, offer, pipeline: Pipeline) -> None:
        for group in offer.groups:
            if group in self.groups:
                self.groups[group].pipelines[name] = pipeline
        self.offered[name] = (source, offer.revision)
        if offer.info is not None:
            self._info[name] = dict(offer.info)

    def _tenants(self, name: str) -> bool:
        offered = self.offered.get(name)
        return offered is not None and offered[0].tenants

    def _forget(self, name: str) -> None:
        """Stop delivering pipeline ``name`` (a subscription deleted, disabled or
        changed): its consumers stop and give their cursors back."""
        self._changed()
        for group in self.groups:
            self._partition_of.pop((group, name), None)
        self.offered.pop(name, None)
        self._info.pop(name, None)
        sinks = []
        for group in self.groups.values():
            pipeline = group.pipelines.pop(name, None)
            if pipeline is not None:
                sinks.append(pipeline.sink)
            consumer = self.consumers.pop(cursor_id(group.name, name), None)
            if consumer is not None:
                consumer.stop()
                self._release(consumer)
        for sink in {id(s): s for s in sinks}.values():
            sink.close()

    def _forget_cursors(self, prefix: str, existing: set[str]) -> None:
        """Delete the cursors named ``prefix...`` whose pipeline no longer exists
        (a deleted subscription's)."""
        for group in self.groups:
            for doc in self.store.cursors(group):
                name = doc.get("consumer") or ""
                if name.startswith(prefix) and name not in existing:
                    self.store.delete(group, name)
                    LOG.info("forgot the cursor of deleted %s (%s)", name, group)

    # -- tombstones ------------------------------------------------------------------

    def _maybe_purge(self) -> None:
        settings = self.purge_settings
        if not settings or self.members[0] != self.store.owner:
            return
        if time.monotonic() - self._last_purge < settings["interval"]:
            return
        self._last_purge = time.monotonic()
        for group in self.groups.values():
            try:
                head = group.changelog.head()
            except NoIndex:
                continue
            passed: Position | None = head.position
            for doc in self.store.cursors(group.name):
                found = Position.from_dict(doc.get("position"))
                if found is None or not found.same_log(head.position):
                    passed = None       # a cursor elsewhere: only retention applies
                    break
                passed = passed.lowest(found)
            purged = group.tombstones.purge(head.position, passed, settings["min_age"],
                                            settings["retention"])
            self.counters.add("tombstones_purged", purged)

    # -- status --------------------------------------------------------------------------

    def stats_line(self) -> str:
        return " ".join(f"{key.split(':', 2)[-1]}({c.group}):{c.mode}:" + ",".join(
            f"{k}={v}" for k, v in sorted(c.counters.items()))
            for key, c in sorted(self.consumers.items())) or "no pipelines owned"

    def liveness(self) -> list[str]:
        return [] if self._thread.is_alive() else ["the delivery thread has stopped"]

    def readiness(self) -> list[str]:
        """Elasticsearch answers, and no owned pipeline is stuck with changes pending
        (``[delivery] stall_seconds``) or crashed."""
        problems = []
        try:
            search.reachable(self.es)
        except Exception as exc:  # noqa: BLE001 - any failure: not ready
            problems.append(f"Elasticsearch: {describe(exc)}")
        for key, consumer in sorted(self.consumers.items()):
            group = self.groups.get(consumer.group)
            if self._tenants(consumer.name) and consumer.crashed is None:
                continue    # a tenant's failing endpoint is not the service's health
            why = consumer.stalled(group.hub.snapshot() if group else None)
            if why:
                problems.append(f"pipeline {consumer.name} ({consumer.group}): {why}")
        return problems

    def metrics(self) -> list:
        """Prometheus families: the service's counters, each owned pipeline's counters
        and whether it reads live (labels: group and pipeline, from the configuration),
        and the doorbell's connection."""
        every = sorted(self.consumers.values(), key=lambda c: (c.group, c.name))
        consumers = [c for c in every if not self._tenants(c.name)]
        # Subscriptions are summed (their number is the tenants' choice: unbounded).
        subscribed = [c for c in every if self._tenants(c.name)]
        out = metrics.counters("delivery", dict(self.counters), "delivery service counter",
                               known=SERVICE_COUNTERS)      # at 0 before they count
        out += metrics.counters("delivery_subscriptions",
                                dict(sum((c.counters for c in subscribed),
                                         collections.Counter())),
                                "sum over the subscriptions this process delivers",
                                known=PIPELINE_COUNTERS)
        owned = metrics.GaugeMetricFamily(
            metrics.metric_name("delivery_subscriptions", "owned"),
            "subscription cursors this process owns, by mode", labels=["mode"])
        for mode in ("live", "catching_up"):
            owned.add_metric([mode], sum(1 for c in subscribed if c.mode == mode))
        out.append(owned)
        out += metrics.labelled_counters(
            "delivery_pipeline",
            [({"group": c.group, "pipeline": c.name}, dict(c.counters)) for c in consumers],
            "pipeline counter", known=PIPELINE_COUNTERS)
        live = metrics.GaugeMetricFamily(
            metrics.metric_name("delivery_pipeline", "live"),
            "1 while the pipeline reads the shared feed, 0 while it catches up",
            labels=["group", "pipeline"])
        lag = metrics.GaugeMetricFamily(
            metrics.metric_name("delivery_pipeline", "lag_positions"),
            "writes in the change log the pipeline has not read yet (all shards)",
            labels=["group", "pipeline"])
        idle = metrics.GaugeMetricFamily(
            metrics.metric_name("delivery_pipeline", "seconds_since_progress"),
            "seconds since the pipeline last moved or had nothing pending",
            labels=["group", "pipeline"])
        for c in consumers:
            live.add_metric([c.group, c.name], int(c.mode == "live"))
            group = self.groups.get(c.group)
            head = group.hub.snapshot() if group else None
            caught_up = False
            position = head if c.idle_live() else c.position
            if head is not None and position is not None and position.same_log(head):
                behind = sum(max(0, h - p) for h, p in zip(head.seq_nos, position.seq_nos))
                lag.add_metric([c.group, c.name], behind)
                caught_up = behind == 0
            idle.add_metric([c.group, c.name], 0.0 if caught_up else
                            round(time.monotonic() - c.last_progress, 1))
        out += [live, lag, idle]
        if self.doorbell is not None:
            out.append(metrics.gauge("delivery_doorbell", "connected",
                                     "1 while the doorbell listener is connected",
                                     int(bool(self.doorbell.connected))))
        return out

    def _pipeline_stats(self, consumer: Consumer) -> dict:
        stats = consumer.stats()
        info = self._info.get(consumer.name)
        if info is not None:      # a tenant's: which one, not only its id
            stats["subscription"] = dict(info)
        return stats

    def stats(self) -> dict:
        return {"owner": self.store.owner, "members": self.members,
                "counters": dict(self.counters),
                "feeds": {g.name: dict(g.feed.stats(), live=g.hub.live_count())
                          for g in self.groups.values()},
                "pipelines": {key: self._pipeline_stats(c)
                              for key, c in sorted(self.consumers.items())},
                "partitions": {p: round(lease.remaining(), 1)
                               for p, lease in sorted(self.leases.items())},
                "runner": self.runner.stats(),
                "doorbell": None if self.doorbell is None else self.doorbell.stats()}
