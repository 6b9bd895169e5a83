"""The fault suite (`make faults`): each peer fails while the cloud keeps working, and a
table says what was lost.

Every scenario runs the real console scripts (listener, delivery service, WebSocket
server) on the local servers, in a private vhost, index prefix and Zaqar project;
publishes a simulated cloud's life (devtools.simulator, whose own record of each
resource's final state is the oracle); injects one fault, bounded in time; then waits
(bounded) for everything to settle and compares:

- indexed correctly: resources whose index state is the simulator's final state;
- delivered: resources whose newest indexed version reached the operator's Zaqar queue
  (the shipped `telco` pipeline, on_failure = hold) and the WebSocket admin client;
- duplicates: receipts of a (resource, version) already received (at-least-once);
- older after newer: receipts whose version is below one received before;
- lost: resources wrong in the index or missing their latest state on a hold sink;
- restarted: processes replaced (by cotyledon, or by us as systemd would);
- recovery: seconds from the fault's end to the next delivery on the hold sink.

Faults (loopback only; each ends by itself):
  es_down      Elasticsearch unreachable for --es-outage s (60) behind a TCP proxy
  zaqar_down   Zaqar unreachable for --zaqar-outage s (300) behind a TCP proxy
  rabbitmq     a private RabbitMQ node restarted under a backlog: durable, quorum and
               oslo's default non-durable queues (that row is expected to lose)
  kill9        kill -9 of a listener worker, a delivery worker and the WebSocket
               server at random instants, --kills times
  malformed    --malformed bad messages of many kinds (Notifier and raw AMQP) among
               good ones: every bad one must be a dead letter or counted as ignored
  malformed_live  --malformed/10 notifications of valid JSON and the wrong shape (a list
               or number where an id or project goes) among good ones, while an admin
               and a member of every project follow live tables: no live client may
               miss another resource's change
  hostile      215 hostile WebSocket clients (silent, bad tokens, floods, garbage,
               oversized frames, junk TCP, slow readers) while the cloud works
  hostile_api  985 bounded hostile HTTP requests to a real searchlight-forward-api on the
               local Keystone (no or garbage tokens, malformed, deep and 50 MB bodies,
               wrong content types, huge query strings and headers, slowloris, a
               create flood, searches over the caps, forbidden endpoints) while a
               member's good client and the cloud keep working

    .venv/bin/python bench/faults.py [--only es_down,kill9] [--short]

Figures are printed and written to bench/results/faults.{json,md}, and the table into
docs/reliability.md; its rows are kept in docs/reliability-faults.json, so a run of
some scenarios keeps the others' rows.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import random
import socket
import sys
import threading
import time
import urllib.parse
import uuid

import kombu
import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import harness  # noqa: E402
from bench.harness import BenchError, Run, Scenario  # noqa: E402
from devtools.receivers import Receiver, gone_unless_mine  # noqa: E402

ROOT = harness.ROOT
RESULTS = harness.RESULTS
DOC = os.path.join(ROOT, "docs", "reliability.md")
# The rows behind the published table, kept in the repository: a run of some
# scenarios replaces their rows and keeps the others' (bench/results/ is not kept).
RECORD = os.path.join(ROOT, "docs", "reliability-faults.json")
COLUMNS = ("scenario", "published", "indexed correctly", "Zaqar (hold)", "WebSocket",
           "duplicates", "older after newer", "lost", "restarted", "recovery s")


log = harness.log


# -- the cloud's life and its oracle -------------------------------------------------

class Cloud:
    """A simulated stream for the run's projects; ``expected`` is the oracle."""

    def __init__(self, run: Run, seed: int, per_type: int):
        from devtools.simulator import CloudSimulator
        self.sim = CloudSimulator(seed=seed, project_ids=run.project_ids)
        self.notes = self.sim.stream(per_type, delete_ratio=0.2)

    def more(self, per_type: int) -> list:
        """Another stream of new resources (the oracle covers both)."""
        return self.sim.stream(per_type, delete_ratio=0.2)

    @property
    def expected(self):
        return self.sim.expected


class Pacer(threading.Thread):
    """Publishes ``notes`` at ``rate``/s from its own thread (flat out if 0)."""

    def __init__(self, publisher, notes, rate: float, bar=None):
        super().__init__(daemon=True)
        self.publisher, self.notes, self.rate, self.bar = publisher, notes, rate, bar
        self.sent = 0
        self.error: str | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            for i, note in enumerate(self.notes):
                if self.rate:
                    delay = t0 + i / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.publisher.publish_simulated(note)
                self.sent += 1
                if self.bar is not None:
                    self.bar.update(1)
        except Exception as exc:  # noqa: BLE001 - reported in the row
            self.error = f"{type(exc).__name__}: {exc}"


# -- one deployment under test --------------------------------------------------------

class FaultServices(harness.Services):
    """The services of one scenario, with one admin WebSocket client, and what the
    fault suite does with them."""

    restarted = 0              # processes we replaced (as systemd would)

    def start(self, listener: bool = True) -> "FaultServices":
        super().start(listener)
        self.operator_records: list = []
        self.ws_records: list = []
        return self

    def collect(self) -> None:
        self.operator_records += self.operator.records()
        self.ws_records += self.clients.ask("records")[0]

    def restart_ws(self) -> None:
        self.children["websocket"].proc.kill()
        self.children["websocket"].proc.wait(10)
        self.children["websocket"] = harness.start_ws_server(self.scn)
        self.restarted += 1

    def settle(self, cloud: Cloud, timeout: float) -> float:
        """Wait until the index holds the oracle's final state and every cursor is at
        the head; returns when (monotonic). Bounded by ``timeout``."""
        from devtools.oracle import differences, stored
        deadline = time.monotonic() + timeout
        while True:
            self.collect()
            index_ok = not differences(cloud.expected, stored(self.run.es, self.scn.group))
            heads = harness.cursors_at_head(self.run.es, self.scn) if index_ok else {}
            if index_ok and heads and all(heads.values()):
                return time.monotonic()
            if time.monotonic() > deadline:
                return float("nan")
            time.sleep(1.0)


def row(name: str, dep: FaultServices, cloud: Cloud, published: int, fault_end: float | None,
        restarted: int = 0, note: str = "") -> dict:
    """The table's row, from the oracle, the index and the receipts."""
    from devtools.oracle import differences, stored
    time.sleep(2.0)                          # the last pops and frames
    dep.collect()
    index = stored(dep.run.es, dep.scn.group)
    wrong = {str(key) for key, want in cloud.expected.items()
             if differences({key: want}, {key: index[key]} if key in index else {})}
    newest = {k: v["version"] for k, v in index.items()}

    def receipts(records):
        latest: dict = {}
        seen: set = set()
        duplicates = regressions = 0
        for rtype, rid, version, _ in records:
            key = (rtype, rid)
            duplicates += (key, version) in seen
            seen.add((key, version))
            if version < latest.get(key, 0):
                regressions += 1
            latest[key] = max(version, latest.get(key, 0))
        missing = {str(k) for k, v in newest.items() if latest.get(k, 0) < v}
        return len(newest) - len(missing), missing, duplicates, regressions

    z_ok, z_missing, z_dup, z_reg = receipts(dep.operator_records)
    w_ok, w_missing, w_dup, w_reg = receipts(dep.ws_records)
    after = sorted(at for *_, at in dep.operator_records
                   if fault_end is not None and at >= fault_end)
    total = len(cloud.expected)
    return {"scenario": name, "published": published,
            "indexed correctly": f"{total - len(wrong)}/{total}",
            "Zaqar (hold)": f"{z_ok}/{len(newest)}", "WebSocket": f"{w_ok}/{len(newest)}",
            "duplicates": z_dup + w_dup, "older after newer": z_reg + w_reg,
            "lost": len(wrong | z_missing), "restarted": restarted + dep.restarted,
            "recovery s": round(after[0] - fault_end, 1) if after else None,
            "note": note, "sample_wrong": sorted(wrong | z_missing)[:5]}


def _publisher(transport_url: str, conf=None):
    from devtools.publisher import NotificationPublisher
    return NotificationPublisher(transport_url, conf=conf)


def _proxy_for(url: str):
    from devtools.faultproxy import FaultProxy
    parts = urllib.parse.urlsplit(url)
    return FaultProxy(parts.hostname, parts.port).start()


# -- scenarios -------------------------------------------------------------------------

def outage(run: Run, args, name: str, peer: str, seconds: float, rate: float) -> dict:
    """``peer`` (elasticsearch or zaqar) unreachable for ``seconds`` mid-stream."""
    proxy = _proxy_for(harness.ES_URL if peer == "elasticsearch" else harness.ZAQAR_URL)
    if peer == "elasticsearch":
        dep = FaultServices(run, name, overrides={("elasticsearch", "hosts"): proxy.url})
    else:
        dep = FaultServices(run, name, zaqar_url=proxy.url)
    lead = 10.0
    # About four notifications per lifecycle, fourteen resource types.
    cloud = Cloud(run, seed=len(name), per_type=max(2, int(
        rate * (2 * lead + seconds) / 56)))
    publisher = _publisher(run.transport_url)
    try:
        dep.start()
        with tqdm.tqdm(total=len(cloud.notes), desc=f"{name}: {peer} away {seconds:g}s",
                       unit="msg", leave=False) as bar:
            pacer = Pacer(publisher, cloud.notes, len(cloud.notes) / (2 * lead + seconds),
                          bar)
            pacer.start()
            time.sleep(lead)
            proxy.block()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                dep.collect()
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            proxy.unblock()
            fault_end = time.monotonic()
            pacer.join()
        settled = dep.settle(cloud, args.drain)
        return row(name, dep, cloud, pacer.sent, fault_end,
                   note=pacer.error or f"{proxy.refused} connections refused; " + (
                       f"every pipeline at the head {settled - fault_end:.1f} s after the "
                       f"fault" if settled == settled else
                       f"NOT every pipeline at the head after {args.drain:g} s"))
    finally:
        publisher.close()
        dep.stop()
        proxy.stop()


def es_down(run, args):
    return [outage(run, args, "es_down", "elasticsearch", args.es_outage, 50)]


def zaqar_down(run, args):
    return [outage(run, args, "zaqar_down", "zaqar", args.zaqar_outage, 20)]


def rabbitmq(run, args) -> list[dict]:
    return [rabbitmq_restart(run, args, kind) for kind in ("durable", "quorum", "plain")]


QUEUE_KINDS = {"durable": {("oslo_messaging_rabbit", "amqp_durable_queues"): "true"},
               "quorum": {("oslo_messaging_rabbit", "rabbit_quorum_queue"): "true"},
               "plain": {}}


def rabbitmq_restart(run: Run, args, kind: str) -> dict:
    """A private node restarted while a backlog waits in the pool queue."""
    from devtools.private_rabbitmq import PrivateRabbitMQ
    from oslo_config import cfg
    from searchlight_forward.listener.opts import register_messaging
    import tempfile
    node = PrivateRabbitMQ(tempfile.mkdtemp(prefix=f"{run.prefix}-rmq-"),
                           _free_base_port(), node=f"{run.prefix}-{kind}@localhost")
    name = f"rabbitmq_{kind}"
    node.start()
    dep = FaultServices(run, name, overrides=QUEUE_KINDS[kind], transport_url=node.url)
    # The producers agree with the listener on the queues: the scenario's own file.
    conf = cfg.ConfigOpts()
    register_messaging(conf)
    conf(["--config-file", dep.scn.conf], project="searchlight-forward-faults")
    publisher = _publisher(node.url, conf)
    cloud = Cloud(run, seed=7, per_type=40)        # the backlog's resources
    later = cloud.more(per_type=8)                 # others, after the restart
    try:
        # The backlog waits in the pool queue, then the listener starts on it and the
        # broker restarts while it works through it.
        dep.start(listener=False)
        for note in tqdm.tqdm(cloud.notes, desc=f"{name}: backlog", unit="msg",
                              leave=False):
            publisher.publish_simulated(note)
        dep.start_listener()
        harness.wait_until(lambda: harness.processed(dep.scn) > 100, 60, 0.05, "indexing under way")
        backlog = _ready(node.amqp_url, dep.scn.pool)
        node.restart()
        fault_end = time.monotonic()
        for note in later:
            publisher.publish_simulated(note)
        # Non-durable queues lose the backlog: that row settles never; do not wait long.
        dep.settle(cloud, args.drain if kind != "plain" else 60.0)
        return row(name, dep, cloud, len(cloud.notes) + len(later), fault_end,
                   note=f"{backlog} notifications ready in the pool queue at the restart, "
                        f"besides those the listener had prefetched")
    finally:
        with contextlib.suppress(Exception):
            publisher.close()
        dep.stop()
        node.close()


def _ready(amqp_url: str, queue: str) -> int:
    """Messages waiting in ``queue`` (not yet delivered to a consumer)."""
    with kombu.Connection(amqp_url, connect_timeout=10) as conn:
        return conn.channel().queue_declare(queue, passive=True)[1]


def _free_base_port() -> int:
    for base in range(25800, 25900, 10):
        if all(_free(p) for p in range(base, base + 6)):
            return base
    raise BenchError("no free ports for a private RabbitMQ node in 25800-25899")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def kill9(run: Run, args) -> list[dict]:
    """kill -9 of a listener worker, a delivery worker or the WebSocket server at
    random instants while the cloud works; cotyledon replaces workers, we restart
    the WebSocket server as systemd would."""
    rng = random.Random(9)
    dep = FaultServices(run, "kill9", listener_workers=2, delivery_workers=2)
    cloud = Cloud(run, seed=9, per_type=40)
    publisher = _publisher(run.transport_url)
    killed = collections.Counter()
    replaced = 0
    try:
        dep.start()
        seconds = max(30.0, args.kills * 6.0)
        with tqdm.tqdm(total=len(cloud.notes), desc=f"kill9: {args.kills} kills",
                       unit="msg", leave=False) as bar:
            pacer = Pacer(publisher, cloud.notes, len(cloud.notes) / seconds, bar)
            pacer.start()
            # Each process is killed in turn (in a random order), at random instants.
            targets = [("listener", "delivery", "websocket")[k % 3] for k in range(args.kills)]
            rng.shuffle(targets)
            for target in targets:
                time.sleep(rng.uniform(0.5, 1.5) * seconds / (args.kills + 1))
                last_kill = time.monotonic()
                if target == "websocket":
                    dep.collect()
                    dep.restart_ws()
                    killed[target] += 1
                    continue
                master = dep.children[target].ps
                workers_ = master.children()       # cotyledon forks workers only
                if not workers_:
                    continue
                victim = rng.choice(workers_)
                victim.kill()
                killed[target] += 1

                def replaced_one(before={w.pid for w in workers_}):
                    now = {c.pid for c in master.children() if c.is_running()}
                    return len(now - before) >= 1 and len(now) >= len(before)
                with contextlib.suppress(BenchError):
                    harness.wait_until(replaced_one, 30, 0.2, f"a new {target} worker")
                    replaced += 1
            pacer.join()
        dep.settle(cloud, args.drain)
        return [row("kill9", dep, cloud, pacer.sent, last_kill, restarted=replaced,
                    note="killed " + ", ".join(f"{k} x{v}" for k, v in sorted(killed.items())))]
    finally:
        publisher.close()
        dep.stop()


# -- malformed input ---------------------------------------------------------------------

def _raw_body(rng: random.Random) -> tuple[str, bytes, str]:
    """A raw AMQP body oslo.messaging cannot read (kind, body, content type); each one
    different, as real garbage is (identical bodies are recorded once)."""
    nonce = uuid.uuid4().hex
    kind = rng.choice(("not json", "pickle", "envelope: bad inner JSON", "truncated"))
    if kind == "not json":
        return kind, b"\x00\xffnot json " + nonce.encode(), "application/json"
    if kind == "pickle":
        return kind, pickle.dumps({"event_type": "image.update", "n": nonce}), \
            "application/x-python-serialize"
    if kind == "envelope: bad inner JSON":
        return kind, json.dumps({"oslo.version": "2.0",
                                 "oslo.message": "{not json " + nonce}).encode(), \
            "application/json"
    inner = json.dumps({"event_type": "image.update", "payload": {"n": nonce}})
    return kind, json.dumps({"oslo.version": "2.0", "oslo.message": inner})[:-7].encode(), \
        "application/json"


def _bad_messages(rng: random.Random, image_id: str):
    """(kind, message dict, routing priority) the Notifier path can carry."""
    base = {"message_id": str(uuid.uuid4()), "publisher_id": "image.faults",
            "timestamp": "2026-11-28 12:00:00.000000", "priority": "INFO"}
    good_payload = {"id": image_id, "name": "x", "status": "active", "owner": "p",
                    "visibility": "private", "created_at": "2026-11-28T12:00:00Z",
                    "updated_at": "2026-11-28T12:00:01Z"}
    deep: dict = {}
    node = deep
    for _ in range(rng.randrange(260, 600)):   # the client's encoder stops at 255
        node["d"] = {}
        node = node["d"]
    kinds = {
        "no event type": dict(base, payload=good_payload),
        "payload not an object": dict(base, event_type="image.update", payload="text"),
        "payload a list": dict(base, event_type="image.update", payload=[1, 2]),
        "no id": dict(base, event_type="image.update",
                      payload={k: v for k, v in good_payload.items() if k != "id"}),
        "bad timestamp": dict(base, event_type="image.update",
                              payload=dict(good_payload, updated_at="yesterday")),
        "lone surrogate": dict(base, event_type="image.update",
                               payload=dict(good_payload, name="bad \ud800")),
        "deep nesting": dict(base, event_type="image.update",
                             payload=dict(good_payload, properties={"deep": deep})),
        "integer too big": dict(base, event_type="image.update",
                                payload=dict(good_payload, size=2 ** 70)),
        "unknown event type": dict(base, event_type="image.frobnicate", payload=good_payload),
    }
    kind = rng.choice(sorted(kinds))
    message = dict(kinds[kind], message_id=str(uuid.uuid4()))
    return kind, message, "info"


def malformed(run: Run, args) -> list[dict]:
    """--malformed bad messages among a cloud's good ones. The oracle: the good ones'
    final states; every bad one is a dead letter (by stage) or counted as ignored."""
    rng = random.Random(11)
    dep = FaultServices(run, "malformed")
    rejected = f"{dep.scn.pool}.rejected"
    _set_conf(dep.scn, "listener", "rejected_queue", rejected)
    harness.servers_py("rabbitmqctl", "set_policy", "-p", run.vhost, "--apply-to", "queues",
                       f"{dep.scn.pool}-dlx", f"^{dep.scn.pool}$",
                       json.dumps({"dead-letter-exchange": rejected}))
    cloud = Cloud(run, seed=11, per_type=20)
    publisher = _publisher(run.transport_url)
    kinds = collections.Counter()
    priorities = collections.Counter()
    try:
        dep.start()
        bad_total = args.malformed
        slots = sorted(rng.sample(range(bad_total + len(cloud.notes)), bad_total))
        slot = set(slots)
        good = iter(cloud.notes)
        amqp = kombu.Connection(run.amqp_url)
        producer = amqp.Producer(exchange=kombu.Exchange("glance", type="topic",
                                                         durable=False))
        with tqdm.tqdm(total=bad_total + len(cloud.notes), desc="malformed: publishing",
                       unit="msg", leave=False) as bar:
            for i in range(bad_total + len(cloud.notes)):
                bar.update(1)
                if i not in slot:
                    publisher.publish_simulated(next(good))
                    continue
                lane = rng.random()
                if lane < 0.25:
                    kind, body, ctype = _raw_body(rng)
                    producer.publish(body, routing_key="notifications.info",
                                     content_type=ctype, content_encoding="binary"
                                     if isinstance(body, bytes) else "utf-8")
                    kinds[f"raw: {kind}"] += 1
                elif lane < 0.35:
                    priority = rng.choice(("", "bogus"))
                    message = {"message_id": str(uuid.uuid4()), "event_type": "image.update",
                               "publisher_id": "image.faults", "payload": {},
                               "timestamp": "2026-11-28 12:00:00", "priority": priority}
                    # The body's priority is wrong, the routing key is a bound one (a
                                    # key nobody binds is dropped by RabbitMQ: not catchable).
                    publisher.publish_message("glance", "notifications", message)
                    kinds[f"priority {priority!r}"] += 1
                    priorities[priority] += 1
                else:
                    kind, message, prio = _bad_messages(rng, str(uuid.uuid4()))
                    publisher.publish_message("glance", "notifications", message, prio)
                    kinds[kind] += 1
        amqp.release()
        dep.settle(cloud, args.drain)
        status = harness.listener_status(dep.scn) or {}
        counters = status.get("listener", {})
        letters = _dead_letter_stages(run.es, dep.scn)
        accounted = sum(letters.values()) + int(counters.get("ignored", 0))
        out = row("malformed", dep, cloud, len(cloud.notes) + bad_total, None,
                  note=f"{bad_total} bad: {sum(letters.values())} dead letters "
                       f"({', '.join(f'{k} {v}' for k, v in sorted(letters.items()))}), "
                       f"{counters.get('ignored', 0)} ignored")
        out["bad"] = dict(kinds)
        out["dead_letters"] = letters
        out["ignored"] = counters.get("ignored", 0)
        out["bad_unaccounted"] = bad_total - accounted
        out["lost"] += max(0, bad_total - accounted)
        return [out]
    finally:
        publisher.close()
        dep.stop()


def malformed_live(run: Run, args) -> list[dict]:
    """Notifications of valid JSON and the wrong shape (a list or number where an id
    or project goes, an object where a string goes: devtools/hostile.py) among a
    cloud's good ones, while an admin and a member of every project follow live
    tables. The oracle: the good cloud's final states, and for every live client what
    Elasticsearch finally holds for its role and project (the wrong-shaped ones that
    were valid included); each must have the newest version of every such resource."""
    from devtools import hostile as hostile_notes
    from devtools.simulator import CloudSimulator
    rng = random.Random(23)
    clients = run.clients(4)
    dep = FaultServices(run, "malformed_live", clients=clients)
    cloud = Cloud(run, seed=23, per_type=20)
    victims = CloudSimulator(seed=123, project_ids=run.project_ids).stream(10)
    bad_total = max(1, args.malformed // 10)
    bad = hostile_notes.wrong_shapes(rng, victims, bad_total)
    stream = hostile_notes.interleave(rng, cloud.notes, [note for _, note in bad])
    publisher = _publisher(run.transport_url)
    try:
        dep.start()
        with tqdm.tqdm(total=len(stream), desc="malformed_live: publishing", unit="msg",
                       leave=False) as bar:
            Pacer(publisher, stream, 0, bar).run()
        dep.settle(cloud, args.drain)
        tokens = json.load(open(run.tokens_path))
        dep.clients.ask("expect", harness.expected_views(run.es, dep.scn.group, clients,
                                                         tokens))
        deadline = time.monotonic() + args.drain
        converged = dep.clients.ask("converged")
        while any(c["missing"] for c in converged) and time.monotonic() < deadline:
            time.sleep(1.0)
            converged = dep.clients.ask("converged")
        missed = sum(c["missing"] for c in converged)
        letters = _dead_letter_stages(run.es, dep.scn)
        status = harness.listener_status(dep.scn) or {}
        out = row("malformed_live", dep, cloud, len(stream), None,
                  note=f"{bad_total} of the wrong shape: {sum(letters.values())} dead "
                       f"letters ({', '.join(f'{k} {v}' for k, v in sorted(letters.items()))}"
                       f"), the rest valid; {len(clients)} live clients (an admin on all "
                       f"projects, a member of each) missed {missed} of "
                       f"{sum(c['expected'] for c in converged)} resources' newest versions")
        out["live clients missed"] = missed
        out["live clients"] = converged
        out["bad"] = dict(collections.Counter(kind for kind, _ in bad))
        out["dead_letters"] = letters
        out["listener"] = status.get("listener", {})
        out["lost"] += missed
        return [out]
    finally:
        publisher.close()
        dep.stop()


def _set_conf(scn: Scenario, section: str, option: str, value: str) -> None:
    with harness._ini(scn.conf, scn.conf) as conf:
        if not conf.has_section(section):
            conf.add_section(section)
        conf.set(section, option, value)


def _dead_letter_stages(es, scn: Scenario) -> dict[str, int]:
    index = f"{scn.group}-dead"
    with contextlib.suppress(Exception):
        es.indices.refresh(index=index)
        resp = es.search(index=index, size=0, aggs={"s": {"terms": {"field": "stage"}}})
        return {b["key"]: b["doc_count"] for b in resp["aggregations"]["s"]["buckets"]}
    return {}


# -- hostile clients ---------------------------------------------------------------------

HOSTILE = {"silent": 100, "bad token": 50, "flood": 20, "garbage": 20, "oversized": 10,
           "junk tcp": 10, "slow reader": 5}


def _attack(kind: str, url: str, port: int, outcomes: list) -> None:
    """One hostile client; records how it ended (a close code, or what it saw)."""
    import websockets
    from websockets.sync.client import connect
    try:
        if kind == "junk tcp":
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 8)
                with contextlib.suppress(OSError):
                    raw.recv(4096)
            outcomes.append((kind, "answered"))
            return
        with connect(url, open_timeout=10, close_timeout=2, compression=None,
                     max_size=2 ** 22, ping_interval=None) as ws:
            if kind == "bad token":
                ws.send(json.dumps({"action": "authenticate", "token": "no-such-token"}))
            elif kind == "flood":
                for _ in range(2000):
                    ws.send(json.dumps({"action": "authenticate", "token": "tok-admin"}))
            elif kind == "garbage":
                ws.send(json.dumps({"action": "authenticate", "token": "tok-demo"}))
                ws.recv(timeout=10)
                for i in range(50):
                    ws.send("{" * (i + 1))
            elif kind == "oversized":
                ws.send("x" * (1024 * 1024))
            elif kind == "slow reader":
                ws.send(json.dumps({"action": "authenticate", "token": "tok-admin"}))
                ws.recv(timeout=10)
                ws.send(json.dumps({"action": "subscribe", "resource_types":
                                    ["OS::Nova::Server", "OS::Neutron::Port"],
                                    "all_projects": True, "cursor": None}))
                time.sleep(45)                     # and never reads
            while True:                            # until the server closes
                ws.recv(timeout=60)
    except websockets.ConnectionClosed as exc:
        outcomes.append((kind, exc.rcvd.code if exc.rcvd else None))
    except Exception as exc:  # noqa: BLE001 - recorded in the row
        outcomes.append((kind, type(exc).__name__))


def hostile(run: Run, args) -> list[dict]:
    """Hostile WebSocket clients while the cloud works: the server closes each with
    its code, the good clients and the sinks receive everything, nothing restarts."""
    dep = FaultServices(run, "hostile")
    cloud = Cloud(run, seed=13, per_type=15)
    publisher = _publisher(run.transport_url)
    outcomes: list = []
    try:
        dep.start()
        ws_pid = dep.children["websocket"].proc.pid
        threads = [threading.Thread(target=_attack, daemon=True,
                                    args=(kind, dep.scn.ws_url, dep.scn.ws_port, outcomes))
                   for kind, count in HOSTILE.items() for _ in range(count)]
        rng = random.Random(13)
        rng.shuffle(threads)
        with tqdm.tqdm(total=len(cloud.notes), desc=f"hostile: {len(threads)} clients",
                       unit="msg", leave=False) as bar:
            pacer = Pacer(publisher, cloud.notes, len(cloud.notes) / 30.0, bar)
            pacer.start()
            for t in threads:
                t.start()
            pacer.join()
            for t in threads:
                t.join(90)
        dep.settle(cloud, args.drain)
        closes = harness.http_json(f"http://127.0.0.1:{dep.scn.ws_port}/status")["closes"]
        alive = dep.children["websocket"].alive() and \
            dep.children["websocket"].proc.pid == ws_pid
        ended = collections.defaultdict(collections.Counter)
        for kind, outcome in outcomes:
            ended[kind][outcome] += 1
        out = row("hostile", dep, cloud, pacer.sent, None, restarted=0 if alive else 1,
                  note="; ".join(f"{k} x{HOSTILE[k]}: " + ", ".join(
                      f"{o} x{n}" for o, n in sorted(v.items(), key=str))
                      for k, v in sorted(ended.items()))
                  + f"; {sum(t.is_alive() for t in threads)} still open at the end; the "
                    f"server's close codes: {dict(sorted(closes.items()))}")
        out["hostile"] = {k: dict(v) for k, v in ended.items()}
        return [out]
    finally:
        publisher.close()
        dep.stop()


# -- hostile API clients -----------------------------------------------------------------

API_FLOOD = 300            # subscription creates from one project (cap: max_per_project)
API_GARBAGE = 300          # distinct garbage tokens, then each of 20 of them 10 times more
API_SLOWLORIS = 20         # connections sending their headers a byte a second
API_OVERSIZED_MB = 50


def _raw_http(port: int, head: bytes, body_size: int = 0, trickle: float = 0.0,
              limit_s: float = 60.0) -> tuple[str, float]:
    """One raw HTTP exchange (tests/functional/raw_http.py): the answer's status, or
    what happened instead, and the seconds it took."""
    from tests.functional.raw_http import exchange, status_of
    answer, seconds = exchange(port, head, body_size, trickle, limit_s)
    status = status_of(answer)
    if status is not None:
        return str(status), seconds
    if answer:
        return "garbled", seconds
    if seconds >= limit_s:
        return (f"still open after {limit_s:g} s" if trickle else "no answer"), seconds
    return "closed", seconds


class ApiAttacks:
    """Bounded hostile HTTP clients of the subscriptions API; ``seen[kind]`` counts
    the statuses (or what happened) per attack kind."""

    def __init__(self, url: str, port: int, member: str, flooder: str, receiver_url: str):
        self.url, self.port = url, port
        self.member, self.flooder = member, flooder
        self.receiver_url = receiver_url
        self.seen: dict = collections.defaultdict(collections.Counter)
        self.seconds: dict = collections.defaultdict(float)
        self.lock = threading.Lock()
        self.garbage_tokens: set = set()

    def record(self, kind: str, outcome, seconds: float = 0.0) -> None:
        with self.lock:
            self.seen[kind][str(outcome)] += 1
            self.seconds[kind] = max(self.seconds[kind], seconds)

    def call(self, kind: str, method: str, path: str, token: str | None = None,
             data=None, headers: dict | None = None, timeout: float = 30.0, **kw):
        import requests
        h = dict(headers or {})
        if token is not None:
            h["X-Auth-Token"] = token
        if data is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        t0 = time.monotonic()
        try:
            resp = requests.request(method, self.url + path, data=data, headers=h,
                                    timeout=timeout, **kw)
            outcome = resp.status_code
        except requests.RequestException as exc:
            outcome = type(exc).__name__
            resp = None
        self.record(kind, outcome, time.monotonic() - t0)
        return resp

    # -- the attacks (each a list of callables, run by a bounded pool) -------------------

    def jobs(self) -> list:
        rng = random.Random(17)
        member, port = self.member, self.port
        jobs = []
        # No token, on every route that needs one.
        for i in range(30):
            method, path = [("GET", "/v1/subscriptions"), ("POST", "/v1/search"),
                            ("POST", "/v1/subscriptions"), ("GET", "/v1/feeds")][i % 4]
            jobs.append(lambda m=method, p=path: self.call(
                "no token", m, p, data="{}" if m == "POST" else None))
        # Distinct garbage tokens: random, fernet-looking, long, odd characters.
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
        tokens = []
        for i in range(API_GARBAGE):
            shape = i % 5
            if shape == 0:
                tok = uuid.uuid4().hex
            elif shape == 1:
                tok = "gAAAAA" + "".join(rng.choice(alphabet) for _ in range(180))
            elif shape == 2:
                tok = "".join(rng.choice(alphabet) for _ in range(8192))
            elif shape == 3:
                tok = "".join(chr(rng.randrange(0x21, 0x7f)) for _ in range(64))
            else:
                tok = f"{uuid.uuid4().hex} {uuid.uuid4().hex}"
            tokens.append(tok)
        self.garbage_tokens = set(tokens)
        for tok in tokens:
            jobs.append(lambda t=tok: self.call("garbage token", "GET", "/v1/subscriptions",
                                                t))
        for tok in tokens[:20]:
            for _ in range(10):
                jobs.append(lambda t=tok: self.call("garbage token (repeated)", "GET",
                                                    "/v1/subscriptions", t))
        # Malformed JSON and JSON that is not an object, on every route taking a body.
        bad = [b"{", b'{"protocol": "webhook",', b"\xff\xfe\x00", b"null", b"[]", b'"x"',
               b"1", b'{"a": NaN}', b"{'single': 'quotes'}", b'{"a": 1}}',
               b"\x00" * 100, '{"name": "\ud800"}'.encode("utf-8", "surrogatepass")]
        for body in bad:
            for method, path in (("POST", "/v1/subscriptions"), ("POST", "/v1/search")):
                jobs.append(lambda b=body, m=method, p=path: self.call(
                    "malformed JSON", m, p, member, b))
        # Deeply nested JSON.
        for body in (b"[" * 100_000, b'{"a":' * 50_000, b"[" * 100_000 + b"]" * 100_000):
            for path in ("/v1/subscriptions", "/v1/search"):
                jobs.append(lambda b=body, p=path: self.call("deep JSON", "POST", p,
                                                             member, b))
        # An oversized body with a valid token (raw: stop sending once answered).
        size = API_OVERSIZED_MB * 2 ** 20
        for _ in range(3):
            head = (f"POST /v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"X-Auth-Token: {member}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {size}\r\n\r\n").encode()
            jobs.append(lambda h=head: self.record(
                f"{API_OVERSIZED_MB} MB body", *_raw_http(port, h, size, limit_s=60)))
        # Wrong content types.
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml",
                      "multipart/form-data; boundary=x", "application/json-patch+json"):
            for path in ("/v1/subscriptions", "/v1/search"):
                jobs.append(lambda c=ctype, p=path: self.call(
                    "wrong content type", "POST", p, member, b'{"protocol": "webhook"}',
                    headers={"Content-Type": c}))
        # Huge query strings and headers (raw: requests would refuse some).
        for i in range(10):
            q = "a=" + "x" * 70_000
            head = (f"GET /v1/subscriptions?{q} HTTP/1.1\r\nHost: x\r\n"
                    f"X-Auth-Token: {member}\r\n\r\n").encode()
            jobs.append(lambda h=head: self.record("huge query string",
                                                   *_raw_http(port, h, limit_s=30)))
        for i in range(10):
            head = (f"GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\n"
                    f"X-Auth-Token: {member}\r\nX-Big: {'y' * 70_000}\r\n\r\n").encode()
            jobs.append(lambda h=head: self.record("huge header",
                                                   *_raw_http(port, h, limit_s=30)))
        for i in range(10):
            many = "".join(f"X-H{j}: {j}\r\n" for j in range(300))
            head = (f"GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\n"
                    f"X-Auth-Token: {member}\r\n{many}\r\n").encode()
            jobs.append(lambda h=head: self.record("300 headers",
                                                   *_raw_http(port, h, limit_s=30)))
        for i in range(10):
            params = {f"p{j}": "v" * 50 for j in range(600)}
            jobs.append(lambda p=params: self.call("many query params", "GET",
                                                   "/v1/subscriptions", member, params=p))
        # Search queries over the caps.
        t = "OS::Nova::Server"
        over = [
            {"resource_types": [t], "page_size": 100_000},
            {"resource_types": [t] * 1000},
            {"resource_types": [t], "query": {"terms": {"status": ["A"] * 5000}}},
            {"resource_types": [t], "query": {"bool": {"filter": [
                {"term": {"status": "ACTIVE"}}] * 500}}},
            {"resource_types": [t], "query": _deep_bool(20)},
            {"resource_types": [t], "query": {"term": {"name": "n" * 100_000}}},
            {"resource_types": [t], "sort": [{"name": "asc"}] * 50},
            {"resource_types": [t], "query": {"wildcard": {"name": "*a*b*c*"}}},
            {"resource_types": [t], "query": {"script": {"source": "1"}}},
            {"resource_types": [t], "all_projects": True},
            {"resource_types": ["OS::No::Such"]},
            {"resource_types": [t], "aggs": {"x": {}}},
        ]
        for body in over:
            for _ in range(3):
                jobs.append(lambda b=body: self.call("search over the caps", "POST",
                                                     "/v1/search", member, json.dumps(b)))
        # Endpoints at forbidden addresses (127.0.0.1/32 is allowed, for the receiver).
        forbidden = ["http://169.254.169.254/latest/meta-data/",
                     "https://169.254.169.254/", "http://[fd00:ec2::254]/",
                     "http://127.0.0.2:8080/", "http://[::1]:8080/", "http://0.0.0.0:80/",
                     "http://2130706434/", "http://0x7f000002/", "http://10.0.0.1/",
                     "http://192.168.1.1/", "http://100.64.0.1/", "http://224.0.0.1/",
                     "http://[::ffff:169.254.169.254]/", "http://user:pw@127.0.0.1:1/",
                     "file:///etc/passwd", "gopher://127.0.0.1:25/"]
        for endpoint in forbidden:
            jobs.append(lambda e=endpoint: self.call(
                "forbidden endpoint", "POST", "/v1/subscriptions", member,
                json.dumps({"protocol": "webhook", "endpoint": e})))
        # A flood of creates from one project (alt-demo), some asking for any rate.
        for i in range(API_FLOOD):
            body = {"protocol": "webhook", "endpoint": self.receiver_url,
                    "name": f"flood {i}"}
            if i % 10 == 9:
                body["rate_limit"] = 1e9
            jobs.append(lambda b=body: self.call("create flood", "POST",
                                                 "/v1/subscriptions", self.flooder,
                                                 json.dumps(b)))
        rng.shuffle(jobs)
        return jobs

    def slowloris(self) -> list:
        head = (f"GET /v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"X-Auth-Token: {self.member}\r\nX-Slow: {'s' * 200}\r\n\r\n").encode()
        return [lambda: self.record("slowloris", *_raw_http(self.port, head, trickle=1.0,
                                                            limit_s=75))
                for _ in range(API_SLOWLORIS)]


def _deep_bool(depth: int) -> dict:
    q: dict = {"term": {"status": "ACTIVE"}}
    for _ in range(depth):
        q = {"bool": {"filter": [q]}}
    return q


class GoodClient(threading.Thread):
    """A real member of Keystone's demo project: creates a webhook subscription to
    the receiver, then lists, searches and reads it (and now and then creates and
    deletes another) until stopped; every call's latency and success counted."""

    def __init__(self, url: str, token: str, receiver, mine: set):
        super().__init__(daemon=True)
        self.url, self.token, self.receiver, self.mine = url, token, receiver, mine
        self.latencies: list[float] = []
        self.read_latencies: list[float] = []      # list, search, show
        self.write_latencies: list[float] = []     # create, delete (wait for a refresh)
        self.ok = 0
        self.failed: collections.Counter = collections.Counter()
        self.stop_event = threading.Event()
        self.sub_id: str | None = None

    def _call(self, what: str, method: str, path: str, body=None, want=(200,)):
        import requests
        t0 = time.monotonic()
        try:
            resp = requests.request(method, self.url + path, json=body, timeout=30,
                                    headers={"X-Auth-Token": self.token})
            status = resp.status_code
        except requests.RequestException as exc:
            resp, status = None, type(exc).__name__
        self.latencies.append(time.monotonic() - t0)
        (self.write_latencies if method in ("POST", "DELETE") and what != "search"
         else self.read_latencies).append(time.monotonic() - t0)
        if status in want:
            self.ok += 1
            return resp
        self.failed[f"{what} {status}"] += 1
        return None

    def create(self) -> str | None:
        resp = self._call("create", "POST", "/v1/subscriptions", {
            "protocol": "webhook", "endpoint": self.receiver.url,
            "resource_types": ["OS::Nova::Server", "OS::Glance::Image"]}, want=(201,))
        if resp is None:
            return None
        sub_id = resp.json()["subscription"]["id"]
        self.mine.add(sub_id)
        return sub_id

    def run(self) -> None:
        self.sub_id = self.create()
        i = 0
        while not self.stop_event.wait(0.25):
            i += 1
            self._call("list", "GET", "/v1/subscriptions")
            self._call("search", "POST", "/v1/search", {
                "resource_types": ["OS::Nova::Server"], "page_size": 20})
            if self.sub_id:
                self._call("show", "GET", f"/v1/subscriptions/{self.sub_id}")
            if i % 8 == 0:
                extra = self.create()
                if extra:
                    self._call("delete", "DELETE", f"/v1/subscriptions/{extra}",
                               want=(204,))

    def p99(self, latencies: list | None = None) -> float:
        lat = sorted(self.latencies if latencies is None else latencies)
        return lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")


def hostile_api(run: Run, args) -> list[dict]:
    """Hostile HTTP clients of a real searchlight-forward-api (local Keystone, real
    auth_token) while the cloud works; good clients keep working, nothing restarts."""
    import types
    from concurrent.futures import ThreadPoolExecutor

    import psutil
    import requests
    from devtools.keystone import LocalKeystone
    ks = LocalKeystone()
    demo = ks.users["demo"]["project_id"]
    member, flooder = ks.token("demo"), ks.token("alt")
    counter = harness.KeystoneCounter()
    # The good client's webhook receiver: confirms its own subscriptions, answers 410
    # Gone (disable) to anyone else's (the create flood's), counts the changes.
    mine: set = set()
    receiver = Receiver(status=gone_unless_mine(mine), keep=None)
    api_port = harness.free_port()
    overrides = {("subscriptions", k): v for k, v in {
        "api_port": str(api_port), "public_url": f"http://127.0.0.1:{api_port}",
        "allowed_networks": "127.0.0.1/32", "allow_http": "true",
        "refresh_interval": "1", "confirmation_interval": "2",
        "webhook_timeout": "2"}.items()}
    for line in ks.authtoken_conf().splitlines()[1:]:
        if "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            overrides[("keystone_authtoken", k)] = v
    dep = FaultServices(run, "hostile_api", overrides=overrides)
    _set_conf(dep.scn, "subscriptions", "index", f"{dep.scn.group}-subscriptions")
    # The demo project of the simulated cloud is Keystone's: the member's search and
    # webhook see its resources.
    cloud = Cloud(types.SimpleNamespace(project_ids=dict(run.project_ids, demo=demo)),
                  seed=19, per_type=15)
    for z in dep.scn.zaqar:
        if "{project_id}" in z["project"]:
            run.zaqar_queues.update((demo, z["queue"].replace("{priority}", p))
                                    for p in ("error", "critical", "warn", "info"))
    publisher = _publisher(run.transport_url)
    api = None
    try:
        dep.start()
        api = harness.start_api(dep.scn, {"HTTP_PROXY": counter.url,
                                          "http_proxy": counter.url,
                                          "NO_PROXY": "", "no_proxy": ""})
        dep.children["api"] = api
        url = f"http://127.0.0.1:{api_port}"
        ps = psutil.Process(api.proc.pid)
        requests.get(url + "/v1/subscriptions", headers={"X-Auth-Token": member},
                     timeout=30)
        rss_before = ps.memory_info().rss
        peak = [rss_before]
        threads_peak = [ps.num_threads()]
        watching = threading.Event()

        def watch():
            while not watching.wait(0.2):
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], ps.memory_info().rss)
                    threads_peak[0] = max(threads_peak[0], ps.num_threads())
        threading.Thread(target=watch, daemon=True).start()
        keystone0 = counter.validations()
        good = GoodClient(url, member, receiver, mine)
        good.start()
        attacks = ApiAttacks(url, api_port, member, flooder, receiver.url)
        jobs = attacks.jobs()
        t0 = time.monotonic()
        with tqdm.tqdm(total=len(cloud.notes), desc=f"hostile_api: {len(jobs)} requests",
                       unit="msg", leave=False) as bar:
            pacer = Pacer(publisher, cloud.notes, len(cloud.notes) / 60.0, bar)
            pacer.start()
            slow_pool = ThreadPoolExecutor(API_SLOWLORIS)
            slow = [slow_pool.submit(j) for j in attacks.slowloris()]
            with ThreadPoolExecutor(12) as pool:
                done = [pool.submit(j) for j in jobs]
                for f in done:
                    with contextlib.suppress(Exception):
                        f.result(timeout=max(1.0, t0 + 150 - time.monotonic()))
            for f in slow:
                with contextlib.suppress(Exception):
                    f.result(timeout=max(1.0, t0 + 150 - time.monotonic()))
            slow_pool.shutdown(wait=False)
            attack_s = time.monotonic() - t0
            pacer.join()
        keystone_calls = counter.validations() - keystone0
        time.sleep(3.0)                    # the good client past the attacks
        good.stop_event.set()
        good.join(60)
        watching.set()
        flood_stored = len(requests.get(url + "/v1/subscriptions", timeout=30,
                                        headers={"X-Auth-Token": flooder}).json()[
                                            "subscriptions"])
        dep.settle(cloud, args.drain)
        rss_after = ps.memory_info().rss
        alive = api.alive() and api.proc.pid == ps.pid
        mb = 2 ** 20
        kinds = "; ".join(
            f"{k} x{sum(v.values())}: " + ", ".join(f"{o} x{n}" for o, n in sorted(
                v.items(), key=str)) + (f" (longest {attacks.seconds[k]:.0f} s)"
                                         if attacks.seconds[k] >= 5 else "")
            for k, v in sorted(attacks.seen.items()))
        distinct = len(attacks.garbage_tokens)
        note = (f"API: {'alive, not restarted' if alive else 'DIED'}, RSS "
                f"{rss_before / mb:.0f} MB before, {peak[0] / mb:.0f} MB peak, "
                f"{rss_after / mb:.0f} MB after, {threads_peak[0]} threads at most; "
                f"good client: {good.ok} ok, {sum(good.failed.values())} failed"
                f"{' ' + str(dict(good.failed)) if good.failed else ''}, p99 "
                f"{good.p99() * 1000:.0f} ms (reads {good.p99(good.read_latencies) * 1000:.0f}"
                f" ms, creates and deletes {good.p99(good.write_latencies) * 1000:.0f} ms), "
                f"webhook deliveries {receiver.counts['changes']}; "
                f"Keystone: {keystone_calls} token validations during the attacks "
                f"({distinct} distinct garbage tokens, each sent 1 or 11 times); flood: "
                f"{flood_stored} stored (max_per_project 100); attacks {attack_s:.0f} s: "
                + kinds)
        out = row("hostile_api", dep, cloud, pacer.sent, None,
                  restarted=0 if alive else 1, note=note)
        out["api"] = {"alive": alive, "rss_before_mb": round(rss_before / mb, 1),
                      "rss_peak_mb": round(peak[0] / mb, 1),
                      "rss_after_mb": round(rss_after / mb, 1),
                      "threads_peak": threads_peak[0],
                      "good_ok": good.ok, "good_failed": dict(good.failed),
                      "good_p99_ms": round(good.p99() * 1000),
                      "good_read_p99_ms": round(good.p99(good.read_latencies) * 1000),
                      "good_write_p99_ms": round(good.p99(good.write_latencies) * 1000),
                      "webhook_deliveries": receiver.counts["changes"],
                      "keystone_validations": keystone_calls,
                      "keystone_requests": {f"{m} {p}": n for (m, p), n in
                                            counter.snapshot().items()},
                      "distinct_garbage_tokens": distinct, "flood_stored": flood_stored,
                      "attacks": {k: dict(v) for k, v in attacks.seen.items()}}
        broken = ([] if alive else ["the API died"]) + (
            [f"{flood_stored} subscriptions in one project"] if flood_stored > 100 else []
        ) + ([f"{sum(good.failed.values())} good calls failed"] if good.failed else [])
        if broken:
            out["note"] = "BROKEN: " + ", ".join(broken) + "; " + out["note"]
        return [out]
    finally:
        publisher.close()
        dep.stop()
        receiver.stop()
        counter.stop()


SCENARIOS = {"es_down": es_down, "zaqar_down": zaqar_down, "rabbitmq": rabbitmq,
             "kill9": kill9, "malformed": malformed, "malformed_live": malformed_live,
             "hostile": hostile,
             "hostile_api": hostile_api}


# -- output ----------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['scenario']} | failed: {r['error'][:200]} |"
                         + " |" * (len(COLUMNS) - 2))
            continue
        lines.append("| " + " | ".join("-" if r.get(c) is None else str(r[c])
                                       for c in COLUMNS) + " |")
    notes = [f"- {r['scenario']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + [""] + notes)


def scenario_of(row: dict) -> str:
    if row["scenario"] in SCENARIOS:          # hostile_api is not a row of hostile
        return row["scenario"]
    return next(k for k in SCENARIOS if row["scenario"].startswith(k + "_"))


def merged(rows: list[dict], ran: list[str]) -> list[dict]:
    """This run's rows, and the recorded rows of the scenarios not run now (each row
    says when it was measured)."""
    previous = []
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(RECORD) as f:
            previous = [r for r in json.load(f)["rows"] if scenario_of(r) not in ran]
    order = list(SCENARIOS)
    return sorted(previous + rows, key=lambda r: order.index(scenario_of(r)))


def write(rows: list[dict], meta: dict, output: str = RESULTS) -> str:
    os.makedirs(output, exist_ok=True)
    for path in (os.path.join(output, "faults.json"), RECORD):
        with open(path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
    runs = sorted({r.get("measured", "") for r in rows})
    md = (f"{meta['machine']}; rows measured {', '.join(runs)} (UTC, commit), "
          f"latest `{meta['command']}`, {meta['wall_s']:.0f} s.\n\n" + table(rows) + "\n")
    with open(os.path.join(output, "faults.md"), "w") as f:
        f.write(md)
    with open(DOC) as f:
        doc = f.read()
    begin, end = "<!-- faults:begin -->", "<!-- faults:end -->"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(DOC, "w") as f:
            f.write(f"{head}{begin}\n{md}{end}{tail}")
    return md


def parse_args(argv=None):
    p = harness.arguments(__doc__, tuple(SCENARIOS), "faults.json and faults.md (the "
                          "table also into docs/reliability.md and its rows into "
                          "docs/reliability-faults.json)")
    p.add_argument("--short", action="store_true",
                   help="outages of 10 s and 20 s, 3 kills, 1,000 malformed (a smoke run)")
    p.add_argument("--es-outage", type=float, default=60.0)
    p.add_argument("--zaqar-outage", type=float, default=300.0)
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--malformed", type=int, default=10_000)
    p.add_argument("--drain", type=float, default=300.0,
                   help="longest wait, in seconds, for everything to settle after a fault")
    args = harness.parse(p, argv, tuple(SCENARIOS))
    if args.short:
        args.es_outage, args.zaqar_outage, args.kills, args.malformed = 10, 20, 3, 1000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    commit = harness.git_state().get("commit", "")

    def rows_of(fn):
        return lambda ctx: {"rows": fn(ctx.run, ctx.args)}

    def stamped(rows: list[dict]) -> list[dict]:
        for r in rows:
            r["measured"] = f"{started} {commit}"
            log(f"{r['scenario']}: " + ", ".join(f"{c} {r.get(c)}" for c in COLUMNS[1:]))
        return rows

    def report(results: dict, meta: dict) -> int:
        rows = [r for name in args.scenarios for r in results[name].get("rows") or stamped(
            [{"scenario": name, "error": results[name]["error"]}])]
        md = write(merged(rows, args.scenarios), meta, args.output)
        print()
        print(md)
        promised = [r for r in rows if r["scenario"] != "rabbitmq_plain"]
        return 0 if all("error" not in r and r["lost"] == 0 for r in promised) else 1

    import platform
    return harness.main(
        args, argv, "bench/faults.py", {n: rows_of(fn) for n, fn in SCENARIOS.items()},
        report, desc="faults", servers=tuple(harness.SERVER_PORTS),
        after=lambda name, result: stamped(result["rows"]),
        settings={"started": started, "commit": commit,
                  "machine": f"{os.cpu_count()} CPUs, {platform.python_version()}"})


if __name__ == "__main__":
    sys.exit(main())
