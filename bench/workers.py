"""What the benchmark runs in its own processes (multiprocessing, spawn).

Each function here is the whole life of one child process: the publishers of the load
generator, the bare oslo.messaging listener (broker ceiling), the Searchlight-style
listener (baseline), the bulk indexer (index ceiling) and the WebSocket clients.
Children share nothing with the parent but what they are passed; clocks are
``time.monotonic()``, which on Linux is one clock for every process of the machine,
so times taken here and in the parent can be subtracted.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import functools
import json
import os
import sys
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from searchlight_forward.model.priority import PRIORITIES  # noqa: E402


# -- the stream ---------------------------------------------------------------------

def stream_spec(seed: int, count: int, project_ids: dict[str, str],
                start: str = "2026-03-02T12:00:00") -> dict:
    """A small, picklable description of a stream; every process rebuilds it alike."""
    return {"seed": seed, "count": count, "project_ids": dict(project_ids), "start": start}


@functools.lru_cache(maxsize=4)
def _stream(seed: int, count: int, project_ids: tuple, start: str):
    from devtools.simulator import CloudSimulator
    per_type = max(1, count // 55 + 1)
    while True:
        sim = CloudSimulator(seed=seed, project_ids=dict(project_ids),
                             start=datetime.datetime.fromisoformat(start))
        notes = sim.stream(per_type)
        if len(notes) >= count:
            return notes[:count]
        per_type = per_type * 2


def make_stream(spec: dict):
    """The simulator's stream: every plugin, three projects, ~1 KB payloads, in
    emission order (mostly updates of resources created earlier in the stream)."""
    return _stream(spec["seed"], spec["count"], tuple(sorted(spec["project_ids"].items())),
                   spec["start"])


def changes_of(notes):
    """(resource_type, id, version, delete?, project_id) per notification, from the
    plugins (pure; what the listener will compute). ``id`` is None for a change that
    names another field than its resource's id (a rule delete that knows only the
    rule)."""
    from searchlight_forward.plugins import load_plugins
    from searchlight_forward.model.change import Operation
    plugins = load_plugins()
    out = []
    for note in notes:
        plugin = plugins.route(note.event_type)
        found = []
        if plugin is not None:
            try:
                for change in plugin.changes(note.to_notification()):
                    found.append((change.resource_type,
                                  None if change.locate_by else change.id,
                                  change.version, change.operation is Operation.DELETE,
                                  change.project_id))
            except Exception:  # noqa: BLE001 - a payload the plugin refuses: no change
                pass
        out.append(found)
    return out


def quiet_logging() -> None:
    import logging
    logging.basicConfig(level=logging.WARNING)
    for name in ("oslo_messaging", "kombu", "amqp", "elastic_transport", "elasticsearch"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- load generator -----------------------------------------------------------------

def partition(notes, processes: int) -> list[list[int]]:
    """Indices of the notifications each publisher process sends: all of one resource
    from the same process, in emission order, as one service host emits them."""
    parts: list[list[int]] = [[] for _ in range(processes)]
    for j, note in enumerate(notes):
        parts[zlib.crc32(note.resource_id.encode()) % processes].append(j)
    return parts


def spec_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


# A paced notification may go this early (s): a process then wakes about once per
# 10 ms, not once per notification. On these VMs a wake costs more CPU than the send
# (about 0.12 ms against 0.03: docs/benchmarks.md, "Busy, not waiting").
PACING_SLACK = 0.01


def publisher_main(index: int, transport_url: str, jobs, results, progress) -> None:
    """One publishing process: takes jobs until it gets None.

    A ``prepare`` job makes and encodes the process's share of a stream and answers
    when ready (the pool does it before the clock starts and before a scenario's CPU
    is watched: a stream is made once, not while it is being timed).

    A job publishes this process's share of a stream (``partition``), flat out or
    paced: with a ``rate``, notification j of the stream is due at ``t0 + j / rate``
    (sent up to ``PACING_SLACK`` early), so the processes together keep that rate.
    Every notification is encoded before the clock starts, exactly as a Notifier's
    rabbit driver encodes it, made into an AMQP message, and sent without a confirm
    (devtools.publisher.PreEncodedPublisher): the generator's own CPU stays small
    beside what it measures. It returns the publish
    time (taken just before the send) of each of its notifications when asked.
    """
    from devtools.publisher import PreEncodedPublisher
    quiet_logging()
    publisher = PreEncodedPublisher(transport_url)
    prepared: dict = {}           # the last stream made and encoded: spec key -> parts

    def prepare(job) -> tuple[list[int], dict]:
        key = spec_key(job["spec"])
        if key not in prepared:
            prepared.clear()
            notes = make_stream(job["spec"])
            mine = partition(notes, job["processes"])[index]
            prepared[key] = (mine, {j: publisher.ready(
                PreEncodedPublisher.encode_simulated(notes[j])) for j in mine})
        return prepared[key]

    while True:
        job = jobs.get()
        if job is None:
            break
        if job.get("prepare"):
            prepare(job)
            results.put({"job": job["job"], "index": index, "ready": True})
            continue
        mine, ready = prepare(job)
        rate, t0 = job["rate"], job["t0"]
        if not rate:
            time.sleep(max(0.0, t0 - time.monotonic()))   # start together
        started = time.monotonic()
        times = []
        errors = 0
        sent = 0
        for j in mine:
            if rate:
                delay = t0 + j / rate - time.monotonic()
                if delay > PACING_SLACK:        # the ones due meanwhile go with it
                    time.sleep(delay)
            at = time.monotonic()
            try:
                publisher.send_ready(ready[j])
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1
                at = float("nan")
            times.append(at)
            sent += 1
            if sent % 50 == 0:
                progress[index] += 50
        progress[index] += sent % 50
        results.put({"job": job["job"], "index": index,
                     "indices": mine if job["record"] else None,
                     "times": times if job["record"] else None,
                     "sent": sent, "errors": errors, "started": started,
                     "finished": time.monotonic()})
    publisher.close()


# -- broker ceiling: a bare batch listener -------------------------------------------

def bare_listener_main(transport_url: str, pool: str, batch_size: int, batch_timeout: float,
                       threads: int, prefetch: int, shared, stop) -> None:
    """oslo.messaging's batch notification listener with a no-op endpoint.

    Same targets (every plugin's exchange/topic, every priority), pool, batch size,
    batch timeout, prefetch and executor threads as the project's listener; the
    endpoint only counts. ``shared``: [count, t_start, t_first, t_last].
    """
    from searchlight_forward.commands import common  # noqa: F401
    import oslo_messaging
    from oslo_config import cfg
    from searchlight_forward.listener.opts import register_messaging
    from searchlight_forward.plugins import load_plugins
    from searchlight_forward.plugins.base import exchanges_and_topics
    quiet_logging()
    conf = cfg.ConfigOpts()
    register_messaging(conf)
    conf([], project="searchlight-forward-bench")
    conf.set_override("transport_url", transport_url)
    conf.set_override("rabbit_qos_prefetch_count", prefetch, group="oslo_messaging_rabbit")
    conf.set_override("executor_thread_pool_size", threads)
    transport = oslo_messaging.get_notification_transport(conf)
    targets = [oslo_messaging.Target(exchange=e, topic=t)
               for e, t in exchanges_and_topics(load_plugins().plugins)]
    lock = threading.Lock()

    class Endpoint:
        def __init__(self):
            for priority in PRIORITIES:
                setattr(self, priority, self._count)

        def _count(self, messages):
            now = time.monotonic()
            with lock:
                if shared[0] == 0:
                    shared[2] = now
                shared[0] += len(messages)
                shared[3] = now

    server = oslo_messaging.get_batch_notification_listener(
        transport, targets, [Endpoint()], executor="threading", pool=pool,
        batch_size=batch_size, batch_timeout=batch_timeout)
    shared[1] = time.monotonic()
    server.start()
    stop.wait()
    server.stop()
    server.wait()
    transport.cleanup()


# -- the Searchlight-style baseline ---------------------------------------------------

def searchlight_style_main(conf_path: str, threads: int, shared, stop, result,
                           operator_pipeline: str = "") -> None:
    """The project's plugins and sinks, driven the way Searchlight drove them.

    * ``oslo_messaging.get_notification_listener`` (one notification per call), the
      threading executor with ``threads`` threads, oslo.messaging's default prefetch;
    * one Indexer call per notification (one mget and two bulk requests), as the
      project writes;
    * then, in the same listener thread, every delivery pipeline's filters and its
      sink, one envelope per call: one Zaqar POST per message and per Zaqar
      pipeline, one log line per change; and a refresh-and-ring per notification so
      that WebSocket clients see it;
    * the notification is acknowledged after that.

    ``shared``: [done, t_first, t_last, envelopes posted to the operator queue].
    """
    from searchlight_forward.commands import common
    import logging

    import oslo_messaging
    from oslo_config import cfg
    from oslo_log import log as oslo_log

    from forwarders import opts as forwarders_opts
    from forwarders.pipeline import loader
    from searchlight_forward import search
    from searchlight_forward.changelog.announcer import Announcer
    from searchlight_forward.changelog.doorbell import Doorbell
    from searchlight_forward.changelog.reader import ChangeLog
    from searchlight_forward.deployment import Deployment
    from searchlight_forward.indexer.indexer import Indexer
    from searchlight_forward.indexer.merge import Outcome
    from searchlight_forward.listener.messages import to_notification
    from searchlight_forward.listener.service import ensure_indices
    from searchlight_forward.model import documents
    from searchlight_forward.model.envelope import from_source
    from searchlight_forward.plugins.base import exchanges_and_topics

    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    common.register(conf)
    forwarders_opts.register(conf)          # [forwarding]: the pipelines it drives
    conf(["--config-file", conf_path, "--log-file",
          os.path.join(os.path.dirname(conf_path), "searchlight-style.log")],
         project="searchlight-forward")
    oslo_log.setup(conf, "searchlight-forward")
    for name in ("elastic_transport", "elasticsearch", "kombu", "amqp", "oslo_messaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    deployment = Deployment.from_conf(conf)
    es = search.client(conf)
    ensure_indices(es, deployment, 1, 0)
    indexer = Indexer(es, deployment.groups, deployment.admin_only,
                      item_lists=deployment.item_lists)
    announcer = Announcer({g: ChangeLog(es, g) for g in deployment.group_names()},
                          Doorbell(conf.transport_url))
    pipelines = loader.load_from_conf(conf, deployment).pipelines
    for pipeline in pipelines:
        pipeline.sink.start()
    lock = threading.Lock()
    counts = collections.Counter()

    def handle(priority, ctxt, publisher_id, event_type, payload, metadata):
        message = {"ctxt": ctxt, "publisher_id": publisher_id, "event_type": event_type,
                   "payload": payload, "metadata": metadata}
        try:
            notification = to_notification(priority, message)
            plugin = deployment.plugins.route(notification.event_type)
            changes = plugin.changes(notification) if plugin is not None else []
            result = indexer.apply([(0, change) for change in changes])
            for change in changes:
                announcer.announce(deployment.groups[change.resource_type])
            for _, r in result.results:
                if r.outcome is not Outcome.APPLIED or r.state is None:
                    continue
                envelope = from_source(documents.es_sources(r.state, ())[documents.ADMIN],
                                       r.state.version)
                for pipeline in pipelines:
                    try:
                        prepared = pipeline.prepare(envelope)
                        if prepared is not None:
                            pipeline.sink.deliver([prepared])
                            with lock:
                                counts[pipeline.name] += 1
                    except Exception:  # noqa: BLE001 - Searchlight logged and went on
                        with lock:
                            counts[pipeline.name + ".failed"] += 1
        except Exception:  # noqa: BLE001
            with lock:
                counts["errors"] += 1
        now = time.monotonic()
        with lock:
            if shared[0] == 0:
                shared[1] = now
            shared[0] += 1
            shared[2] = now
            shared[3] = counts.get(operator_pipeline, 0)
        return oslo_messaging.NotificationResult.HANDLED

    class Endpoint:
        def __init__(self):
            for priority in PRIORITIES:
                setattr(self, priority, functools.partial(handle, priority))

    conf.set_override("executor_thread_pool_size", threads)
    transport = oslo_messaging.get_notification_transport(conf)
    targets = [oslo_messaging.Target(exchange=e, topic=t)
               for e, t in exchanges_and_topics(deployment.plugins.plugins)]
    server = oslo_messaging.get_notification_listener(
        transport, targets, [Endpoint()], executor="threading",
        pool=conf.listener.notifications_pool)
    server.start()
    stop.wait()
    server.stop()
    server.wait()
    transport.cleanup()
    for pipeline in pipelines:
        pipeline.sink.close()
    result.put(dict(counts, indexer=dict(indexer.counters)))


# -- index ceiling ------------------------------------------------------------------------

def index_ceiling_main(spec: dict, es_url: str, backend: str, group: str, threads: int,
                       chunk: int, result) -> None:
    """The stream's documents, bulk-indexed straight into a fresh index.

    Outside the timing: the plugins turn every notification into its change, the
    project's pure fold turns each change into the resource's new state (in stream
    order), and each state into the two role copies the indexer writes. Timed:
    ``helpers.parallel_bulk`` of those documents (external versions) into a fresh
    index with the project's mappings, then a refresh: the cost of writing what
    the listener writes, without reading anything back.
    """
    from searchlight_forward.commands import common  # noqa: F401
    from searchlight_forward import search
    from searchlight_forward.search import helpers

    from searchlight_forward.indexer import indices, layout, merge
    from searchlight_forward.model import documents
    from searchlight_forward.plugins import load_plugins
    quiet_logging()
    plugins = load_plugins()
    admin_only = {p.resource_type: tuple(p.admin_only_fields) for p in plugins.plugins}
    item_lists = {p.resource_type: dict(p.item_lists) for p in plugins.plugins}
    notes = make_stream(spec)
    states: dict = {}
    actions = []
    unlocated = 0
    alias = layout.listener_alias(group)
    for note in notes:
        plugin = plugins.route(note.event_type)
        if plugin is None:
            continue
        try:
            changes = plugin.changes(note.to_notification())
        except Exception:  # noqa: BLE001
            continue
        for change in changes:
            if change.locate_by is not None:
                owner = _owner(states, change, item_lists)
                if owner is None:
                    unlocated += 1
                    continue
                change = dataclasses.replace(change, id=owner, locate_by=None)
            key = (change.resource_type, change.id)
            state, _, dirty = merge.fold(states.get(key), [change])
            if not dirty or state is None:
                continue
            states[key] = state
            for role, source in documents.es_sources(
                    state, admin_only.get(state.resource_type, ())).items():
                actions.append({"_op_type": "index", "_index": alias,
                                "_id": documents.doc_id(state.id, role),
                                "version": state.version, "version_type": "external_gte",
                                "_source": source})
    es = search.connect(es_url, backend, request_timeout=60)
    indices.ensure(es, group, plugins.plugins)
    ok = failed = 0
    started = time.monotonic()
    for success, item in helpers.parallel_bulk(es, actions, thread_count=threads,
                                               chunk_size=chunk, raise_on_error=False):
        if success:
            ok += 1
        elif item.get("index", {}).get("status") == 409:
            ok += 1      # an equal or newer version is already there
        else:
            failed += 1
    indexed = time.monotonic()
    es.indices.refresh(index=alias)
    refreshed = time.monotonic()
    result.put({"notifications": len(notes), "documents": len(actions), "ok": ok,
                "failed": failed, "unlocated": unlocated, "started": started,
                "indexed": indexed, "refreshed": refreshed})


def _owner(states, change, item_lists):
    field, value = change.locate_by
    list_field, key = field.split(".", 1)
    for (resource_type, rid), state in states.items():
        if resource_type != change.resource_type or state.deleted:
            continue
        if any(isinstance(i, dict) and i.get(key) == value
               for i in state.document.get(list_field) or []):
            return rid
    return None


# -- WebSocket clients -------------------------------------------------------------------

@dataclasses.dataclass
class _ClientState:
    token: str
    all_projects: bool
    connected: bool = False
    subscribed: bool = False
    connects: int = 0
    changes: int = 0
    closes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    # (resource_type, id) -> [(version, first receive time)] in arrival order
    receipts: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    records: list = dataclasses.field(default_factory=list)   # (type, id, version, t)
    regressions: int = 0
    error: str | None = None


def ws_clients_main(url: str, clients: list[tuple[str, bool]], conn) -> None:
    """K real ``websockets`` clients in one asyncio loop, driven through ``conn``.

    Each authenticates with its token (header), subscribes to every type served
    (admins with all projects), records the receive time of every change frame,
    and reconnects with its cursor if the server closes it (e.g. 4008 too slow),
    like a browser would. Commands: status, expect, converged, records, stop.
    """
    import websockets
    from websockets.asyncio.client import connect

    states = [_ClientState(token, all_projects) for token, all_projects in clients]
    expected: dict[int, dict] = {}

    async def run_client(state: _ClientState) -> None:
        cursor = None
        while True:
            try:
                async with connect(url, additional_headers={"X-Auth-Token": state.token},
                                   max_size=None, open_timeout=10, close_timeout=2,
                                   ping_interval=None) as ws:
                    state.connected = True
                    state.connects += 1
                    hello = json.loads(await ws.recv())
                    if hello.get("type") != "authenticated":
                        state.error = f"not authenticated: {hello}"
                        return
                    await ws.send(json.dumps({
                        "action": "subscribe", "resource_types": hello["resource_types"],
                        "all_projects": state.all_projects, "cursor": cursor}))
                    async for text in ws:
                        now = time.monotonic()
                        frame = json.loads(text)
                        kind = frame.get("type")
                        if kind == "change":
                            env = frame["envelope"]
                            key = (env["resource_type"], env["id"])
                            version = env["version"]
                            seen = state.receipts[key]
                            if seen and version <= seen[-1][0]:
                                state.regressions += version < seen[-1][0]
                            else:
                                seen.append((version, now))
                            state.records.append((key[0], key[1], version, now))
                            state.changes += 1
                            cursor = frame.get("cursor") or cursor
                        elif kind == "resumed":
                            cursor = frame.get("cursor") or cursor
                            state.subscribed = True
                        elif kind == "error":
                            state.error = f"{frame.get('code')}: {frame.get('message')}"
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                state.closes[exc.rcvd.code if exc.rcvd else 0] += 1
            except OSError as exc:
                state.error = f"{type(exc).__name__}: {exc}"
            state.connected = False
            await asyncio.sleep(0.2)

    def converged() -> list[dict]:
        out = []
        for i, state in enumerate(states):
            want = expected.get(i, {})
            missing = 0
            latest = 0.0
            for key, version in want.items():
                at = next((t for v, t in state.receipts.get(key, ()) if v >= version), None)
                if at is None:
                    missing += 1
                else:
                    latest = max(latest, at)
            out.append({"expected": len(want), "missing": missing, "done_at": latest})
        return out

    async def command(cmd):
        name = cmd[0]
        if name == "status":
            return [{"connected": s.connected, "subscribed": s.subscribed,
                     "connects": s.connects, "changes": s.changes, "closes": dict(s.closes),
                     "regressions": s.regressions, "error": s.error} for s in states]
        if name == "expect":
            expected.clear()
            expected.update(cmd[1])
            return True
        if name == "converged":
            return converged()
        if name == "records":
            out = [s.records for s in states]
            for s in states:
                s.records = []
            return out
        return None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(run_client(s)) for s in states]
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "stop":
                break
            conn.send(await command(cmd))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send(True)

    asyncio.run(main())


def live_clients_main(url: str, specs: list[dict], conn) -> None:
    """Live search clients (bench/livesearch.py): K real ``websockets`` clients in one
    asyncio loop. Each authenticates with its token, subscribes to ``types`` with its
    ``query`` (None: a plain subscription), and records the receive time of every
    frame about a resource (change, entered, updated, left). Commands: status,
    records, stop."""
    import websockets
    from websockets.asyncio.client import connect

    frames_of = ("change", "entered", "updated", "left")
    states = [{"subscribed": False, "frames": 0, "records": [], "error": None,
               "closes": collections.Counter(), "total": None} for _ in specs]

    async def run_client(spec: dict, state: dict) -> None:
        while True:
            try:
                async with connect(url, additional_headers={"X-Auth-Token": spec["token"]},
                                   max_size=None, open_timeout=30, close_timeout=2,
                                   ping_interval=None, compression=None) as ws:
                    hello = json.loads(await ws.recv())
                    if hello.get("type") != "authenticated":
                        state["error"] = f"not authenticated: {hello}"
                        return
                    message = {"action": "subscribe", "resource_types": spec["types"],
                               "all_projects": spec["all_projects"]}
                    if spec.get("query") is not None:
                        message.update(query=spec["query"], page_size=20)
                    await ws.send(json.dumps(message))
                    async for text in ws:
                        now = time.monotonic()
                        frame = json.loads(text)
                        kind = frame.get("type")
                        if kind in frames_of:
                            env = frame.get("envelope") or frame
                            state["records"].append((env["resource_type"], env["id"],
                                                     env["version"], kind, now))
                            state["frames"] += 1
                        elif kind in ("resumed", "results"):
                            state["subscribed"] = True
                            state["total"] = frame.get("total", state["total"])
                        elif kind == "error":
                            state["error"] = f"{frame.get('code')}: {frame.get('message')}"
                    return
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                state["closes"][exc.rcvd.code if exc.rcvd else 0] += 1
            except OSError as exc:
                state["error"] = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = []
        for spec, state in zip(specs, states):
            tasks.append(asyncio.create_task(run_client(spec, state)))
            await asyncio.sleep(0.002)        # connect at ~500/s, not all at once
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "stop":
                break
            if cmd[0] == "status":
                conn.send([{"subscribed": s["subscribed"], "frames": s["frames"],
                            "error": s["error"], "closes": dict(s["closes"]),
                            "total": s["total"]} for s in states])
            elif cmd[0] == "records":
                conn.send([r for s in states for r in s["records"]])
                for s in states:
                    s["records"] = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send(True)

    asyncio.run(main())


# -- the operator's Zaqar queue, read as a telco consumer would -----------------------

def zaqar_reader_main(url: str, project: str, queue: str, client_id: str, conn) -> None:
    """Pops the queue (20 at a time) as fast as messages come, and records when each
    (resource_type, id, version) arrived. Commands on ``conn``: ``records`` (the
    receipts since the last call), ``count`` (messages so far), ``stop``."""
    import requests
    session = requests.Session()
    headers = {"Client-ID": client_id, "X-Project-ID": project}
    endpoint = f"{url}/v2/queues/{queue}/messages"
    receipts: list = []
    total = 0
    while True:
        if conn.poll():
            cmd = conn.recv()
            if cmd[0] == "stop":
                conn.send(total)
                return
            if cmd[0] == "records":
                conn.send(receipts)
                receipts = []
            elif cmd[0] == "count":
                conn.send(total)
            continue
        try:
            resp = session.delete(endpoint, params={"pop": 20}, headers=headers, timeout=5)
            messages = resp.json().get("messages", []) if resp.status_code == 200 else []
        except (requests.RequestException, ValueError):
            messages = []
        now = time.monotonic()
        for message in messages:
            body = message.get("body") or {}
            if body.get("id"):
                receipts.append((body.get("resource_type"), body["id"], body.get("version"),
                                 now))
        total += len(messages)
        if not messages:
            time.sleep(0.02)
