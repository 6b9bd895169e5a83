"""searchlight-forward subscriptions benchmark: webhook deliveries per second per core
of the delivery service, publish-to-receiver delay with 100 filtered subscriptions,
what 1,000 (or 10,000) idle subscriptions cost, and 10,000 subscriptions spread over
1,000 projects under load.

    .venv/bin/python bench/subscriptions.py            # the default run
    .venv/bin/python bench/subscriptions.py --quick    # a smoke run
    .venv/bin/python bench/subscriptions.py --only throughput,idle --profile
    .venv/bin/python bench/subscriptions.py --only idle,spread --subscriptions-idle 10000
                                                        # make bench-scale's part

Runs on the local servers (`python3 scripts/servers.py up`; Elasticsearch and RabbitMQ
are needed, Keystone and Zaqar are not), with a real `searchlight-forward-delivery`
process (and, for the delay, a real `searchlight-forward-listener`) spawned as
children, and real HTTP receivers on 127.0.0.1 in a process of their own
(bench/webhooks.py), so that their CPU is counted apart from the delivery service's.
Private names as in bench/run.py: a RabbitMQ virtual host `sfb-<run>`, indices
`sfb-<run>-*` (the subscriptions index, the cursors' state index and the dead
letters included), ports and a temporary directory; all removed at the end, also on
Ctrl-C or SIGTERM. Every wait has a time limit.

Subscriptions are written straight into the subscriptions index, the document
`SubscriptionStore.create()` writes, in Elasticsearch bulk requests of 1,000 and one
refresh (10,000 in seconds), already `active` (confirmed, `start_from` now, a
`whsec_` secret), as the API leaves them once their endpoint confirmed: no Keystone,
no API and no confirmation round trip are involved. Every wait for them to go live
(the delivery process's `delivery_subscriptions_owned{mode="live"}` gauge) is bounded
by --live-timeout (default --timeout plus 50 ms per subscription) and fails sooner
if none more goes live for 3 minutes.

Scenarios (names for --only / --skip):
  throughput  N resources (--documents) written straight into the group's index with
              the project's Indexer while the delivery service is stopped, then the
              delivery service started with --subscriptions-throughput (10) active
              webhook subscriptions confirmed before those writes (their cursors start
              before them: each catches up through all N), rate_limit at the maximum
              (not binding); clock from the first to the last arrival at the
              receivers. Then the same backlog for as many new subscriptions with
              [delivery] workers = --scaling-workers (2) processes, and a bare POST
              ceiling: one Python process POSTing bodies of the same size to the same
              receivers with the same concurrency (ratios in the same run).
  delay       --subscriptions-delay (100) subscriptions, each one of the three
              simulated projects and two resource types, the tenant default
              rate_limit; the simulator's notifications published at --rate (100/s)
              for --duration (30 s) through RabbitMQ -> searchlight-forward-listener ->
              Elasticsearch -> searchlight-forward-delivery -> receivers; delay from
              publish to arrival at the receiver (same host clock), and to searchable
  idle        one delivery process measured --idle-base seconds with no subscription,
              then with --subscriptions-idle (1000) active subscriptions whose project
              never publishes (nothing is published at all), measured --idle seconds:
              CPU per second and per [changelog] poll_interval, RSS, threads, wake-ups,
              and what it costs Elasticsearch; ratios of the two in the same run; then
              how long a SIGTERM takes to stop it with the subscriptions.
              Elasticsearch writes per second counted as documents (indexed or
              deleted) and as write requests (shard bulk operations; a single index
              request is a bulk of one), from the index stats of the cursors' state
              index and of all the scenario's indices (the node's counters, which
              include anyone else's work, are reported apart)
  spread      --subscriptions-spread (10000) webhook subscriptions over
              --spread-projects (1000) projects, as many for each, every resource
              type (half naming none, half the simulator's types), the tenant default
              rate_limit; the simulator's notifications, resource i of project
              i % projects (spread_notes), published from the bench's own process at
              --spread-rate (100/s) for --spread-duration (60 s) through the same path
              as delay (start_path, warm_up and measure_path, shared with it); measured
              against targets: publish -> receiver p99 <= 500 ms, no (subscription,
              change) delivery missing, every subscription ending with the newest
              version published of every resource of its project (the oracle, from
              what was published), and no version going down per (subscription,
              resource) in order of arrival

Writes bench/results/subscriptions.json and subscriptions.md (--results-name: other
names; make bench-scale writes subscriptions-scale.*) (with --profile, py-spy's
raw stacks too: profile-subscriptions-*-delivery.txt). Needs psutil, tqdm (the
`bench` extra) and, for --profile, py-spy.
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import configparser
import contextlib
import json
import math
import os
import re
import sys
import threading
import time
import types
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import psutil  # noqa: E402
import tqdm  # noqa: E402

import harness  # noqa: E402
import run as bench_run  # noqa: E402
import webhooks  # noqa: E402
import workers  # noqa: E402
from harness import BenchError, Scenario  # noqa: E402

ROOT = workers.ROOT
SCENARIOS = ("throughput", "delay", "idle", "spread")
SERVER = "OS::Nova::Server"
LEASE_SECONDS = 30.0
WEBHOOK_TIMEOUT = 5.0
SMTP_TIMEOUT = 2.0
MAX_RATE_LIMIT = 10000.0      # [subscriptions] max_rate_limit of the bench's configuration
CONCURRENCY = 4               # [subscriptions] webhook_concurrency (the default)
log = harness.log


# -- configuration ------------------------------------------------------------------------

def subscriptions_scenario(run: harness.Run, name: str, extra: dict | None = None
                           ) -> Scenario:
    """A harness scenario (the shipped configuration, private names) whose pipelines
    file holds one pipeline ending in the ``subscriptions`` sink (the shipped
    ``unsearchable`` and ``secrets`` filters), and [subscriptions] options for
    receivers on 127.0.0.1."""
    group = f"{run.prefix}-{name}"
    overrides = {
        ("forwarding", "config_file"): "forwarders.ini",
        ("subscriptions", "index"): f"{group}-subscriptions",
        ("subscriptions", "allowed_networks"): "127.0.0.1/32",
        ("subscriptions", "allow_http"): "true",
        ("subscriptions", "refresh_interval"): "1",
        ("subscriptions", "webhook_timeout"): f"{WEBHOOK_TIMEOUT:g}",
        ("subscriptions", "webhook_concurrency"): str(CONCURRENCY),
        ("subscriptions", "max_rate_limit"): f"{MAX_RATE_LIMIT:g}",
        ("smtp", "timeout"): f"{SMTP_TIMEOUT:g}",
        ("delivery", "lease_seconds"): f"{LEASE_SECONDS:g}",
        ("delivery", "workers"): "1",
        **(extra or {}),
    }
    # worker.build refuses a lease shorter than twice the longest endpoint call.
    from forwarders.sinks.email import sink as email_sink
    from forwarders.sinks.webhook import sink as webhook_sink
    longest = max(webhook_sink.call_timeout(WEBHOOK_TIMEOUT),
                  email_sink.call_timeout(SMTP_TIMEOUT))
    assert LEASE_SECONDS >= 2 * longest, (LEASE_SECONDS, longest)
    scn = Scenario(run, name, pipelines=False, overrides=overrides)
    shipped = configparser.RawConfigParser()
    shipped.optionxform = str
    shipped.read(os.path.join(ROOT, "etc", "forwarders.ini"))
    fw = configparser.RawConfigParser()
    fw.optionxform = str
    fw.read_dict({"forwarding": {"pipelines": ""},
                  "view:subscriptions": {"filters": "unsearchable secrets"}})
    for section in ("filter:unsearchable", "filter:secrets"):
        fw.add_section(section)
        for option in shipped.options(section):
            if option not in shipped.defaults():
                fw.set(section, option, shipped.get(section, option, raw=True))
    with open(os.path.join(scn.dir, "forwarders.ini"), "w") as f:
        fw.write(f)
    scn.sub_index = overrides[("subscriptions", "index")]
    return scn


def poll_interval_of(scn: Scenario) -> float:
    parser = configparser.RawConfigParser()
    parser.read(scn.conf)
    raw = parser.get("changelog", "poll_interval", fallback="").strip()
    if raw:
        return float(raw)
    from searchlight_forward.changelog import opts
    return next(o.default for o in opts.opts if o.dest == "poll_interval")


def default_rate_limit() -> float:
    from forwarders.subscriptions import opts
    return next(o.default for o in opts.opts if o.dest == "default_rate_limit")


# -- subscriptions --------------------------------------------------------------------------

def new_subscription(endpoint: str, project_id: str, name: str, rate_limit: float,
                     resource_types=None, start_positions=None):
    """An active webhook subscription as the API leaves it once confirmed."""
    from forwarders.subscriptions import model
    from searchlight_forward.model.documents import USER
    now = time.time()
    return model.Subscription(
        id=str(uuid.uuid4()), project_id=project_id, protocol=model.WEBHOOK,
        endpoint=endpoint, role=USER, created_by="sfb-bench", created_at=now,
        updated_at=now, state=model.ACTIVE, name=name,
        resource_types=tuple(resource_types) if resource_types else None,
        rate_limit=float(rate_limit), start_from=model.NOW,
        secrets=(model.Secret(model.new_secret()),),
        confirmation_token=model.new_token(), confirmation_sent_at=now,
        confirmation_attempts=1, confirmed_at=now, start_positions=start_positions)


def subscription_store(scn: Scenario):
    from forwarders.subscriptions.store import SubscriptionStore
    from searchlight_forward import search
    es = search.connect(harness.ES_URL, harness.SEARCH_BACKEND, request_timeout=60,
                        connections_per_node=64)
    return SubscriptionStore(es, scn.sub_index)


def create_subscriptions(scn: Scenario, subs: list, desc: str,
                         chunk: int = 1000) -> tuple[float, list]:
    """The subscriptions written as ``SubscriptionStore.create()`` writes them (the
    document ``Subscription.to_source()``, ``op_type=create``), but through
    Elasticsearch bulk requests of ``chunk`` (the client library's ``streaming_bulk``),
    then one refresh, where ``create()`` waits for a refresh per subscription: 10,000
    take seconds, not minutes. (The seconds it took, the stored subscriptions, with
    the ``_seq_no``/``_primary_term`` a conditional delete needs.)"""
    from forwarders.subscriptions.store import Stored
    from searchlight_forward.search import helpers
    store = subscription_store(scn)
    store.ensure()
    by_id = {s.id: s for s in subs}
    actions = ({"_op_type": "create", "_index": store.index, "_id": s.id,
                "_source": s.to_source()} for s in subs)
    t0 = time.monotonic()
    stored, failed = [], []
    try:
        with tqdm.tqdm(total=len(subs), desc=desc, unit="sub", leave=False) as bar:
            for ok, item in helpers.streaming_bulk(store.es, actions, chunk_size=chunk,
                                                   raise_on_error=False,
                                                   raise_on_exception=True):
                result = item.get("create") or next(iter(item.values()))
                if ok:
                    stored.append(Stored(by_id[result["_id"]], result["_seq_no"],
                                         result["_primary_term"]))
                else:
                    failed.append(result)
                bar.update(1)
        store.es.indices.refresh(index=store.index)
    finally:
        store.es.close()
    if failed:
        raise BenchError(f"{desc}: {len(failed)} of {len(subs)} subscriptions not written, "
                         f"e.g. {failed[0].get('error')}")
    return time.monotonic() - t0, stored


def delete_subscriptions(scn: Scenario, stored: list) -> None:
    """``SubscriptionStore.delete()`` each (their cursors are then forgotten by the
    delivery service)."""
    store = subscription_store(scn)
    with concurrent.futures.ThreadPoolExecutor(48) as pool:
        list(pool.map(store.delete, stored))
    store.es.close()


def subscription_pipelines(scn: Scenario) -> dict[str, dict]:
    """The delivery service's subscription pipelines (cursor id -> status), or {}."""
    status = harness.delivery_status(scn) or {}
    return {k: v for k, v in (status.get("pipelines") or {}).items()
            if ":subscription-" in k}


LIVE_METRIC = re.compile(
    r'^searchlight_forward_delivery_subscriptions_owned\{mode="live"\}\s+(\S+)$', re.M)


COUNTER_METRIC = re.compile(
    r'^searchlight_forward_delivery_subscriptions_(\w+)_total\s+(\S+)$', re.M)


def delivery_metrics(scn: Scenario, timeout: float = 10.0) -> str | None:
    """The delivery process's /metrics (its subscription figures are sums and one
    gauge: cheap at any number of subscriptions, where /status lists every
    pipeline); None if it does not answer."""
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{scn.delivery_port}/metrics", timeout=timeout) as resp:
            return resp.read().decode()
    except (OSError, ValueError):
        return None


def subscription_counters(scn: Scenario) -> dict:
    """The subscription pipelines' counters summed (delivered, failures, ...), from
    /metrics; {} if it does not answer (two tries of 15 s: a busy process with
    thousands of threads answers slowly; its status server may have stopped,
    ``cursor_totals`` is there for that)."""
    text = ""
    for _ in range(2):
        text = delivery_metrics(scn, timeout=15.0)
        if text is not None:
            break
    return {name: int(float(value)) for name, value in COUNTER_METRIC.findall(text or "")}


def cursor_totals(scn: Scenario) -> dict:
    """What the subscriptions' cursor documents in the state index say, summed
    (delivered and skipped as of each one's last commit; how many record an error):
    there even when the delivery process is too busy to answer /metrics."""
    from searchlight_forward.search import helpers
    totals = collections.Counter()
    try:
        scn.run.es.indices.refresh(index=scn.state_index)
        for hit in helpers.scan(scn.run.es, index=scn.state_index, size=1000, query={
                "query": {"bool": {"filter": [{"term": {"kind": "cursor"}}]}}},
                _source=["consumer", "delivered", "skipped", "last_error"]):
            src = hit["_source"]
            if not str(src.get("consumer", "")).startswith("subscription-"):
                continue
            totals["cursors"] += 1
            totals["delivered"] += int(src.get("delivered") or 0)
            totals["skipped"] += int(src.get("skipped") or 0)
            totals["with_last_error"] += bool(src.get("last_error"))
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    return dict(totals)


def live_subscriptions(scn: Scenario) -> int | None:
    """Subscription cursors the delivery process owns and reads live, from its
    /metrics; from /status if the gauge is not there; None if it does not answer."""
    text = delivery_metrics(scn)
    if text is None:
        return None
    found = LIVE_METRIC.search(text)
    if found:
        return int(float(found.group(1)))
    pipelines = subscription_pipelines(scn)
    return sum(1 for p in pipelines.values() if p["mode"] == "live")


def live_timeout(args, count: int) -> float:
    """How long ``count`` subscriptions may take to go live: --live-timeout, or
    --timeout plus 50 ms per subscription (10,000: 740 s)."""
    return args.live_timeout or args.timeout + 0.05 * count


def wait_live(scn: Scenario, delivery: harness.Child, count: int, timeout: float,
              desc: str, stall: float = 180.0) -> float:
    """Until ``count`` subscription pipelines are live (at the shared position); the
    seconds it took. BenchError after ``timeout`` s, or ``stall`` s without one more
    going live, or if the delivery service exits."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    best, moved, unanswered = 0, t0, 0
    with tqdm.tqdm(total=count, desc=desc, unit="sub", leave=False) as bar:
        while True:
            if not delivery.alive():
                raise BenchError(f"the delivery service exited:\n{delivery.tail()}")
            live = live_subscriptions(scn)
            now = time.monotonic()
            if live is None:              # no answer within 10 s: a busy process
                unanswered += 1
            elif live > best:
                best, moved = live, now
                bar.update(max(0, min(live, count) - bar.n))
            if best >= count:
                return now - t0
            why = (f"after {timeout:.0f}s" if now > deadline else
                   f"and none more for {stall:.0f}s" if now - moved > stall else None)
            if why:
                raise BenchError(
                    f"{desc}: at most {best} of {count} subscriptions live {why} "
                    f"({now - t0:.0f}s since the wait began; /metrics unanswered within "
                    f"10 s {unanswered} times):\n{delivery.tail(5)[-2000:]}")
            time.sleep(1.0 if count > 1000 else 0.5)


def delivery_worker(child: harness.Child) -> psutil.Process:
    """The process that delivers (cotyledon's worker under the master)."""
    found = child.ps.children(recursive=True)
    if len(found) != 1:
        raise BenchError(f"expected one delivery worker process, found {len(found)}")
    return found[0]


def wait_status(scn: Scenario, child: harness.Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while harness.delivery_status(scn) is None:
        if not child.alive():
            raise BenchError(f"the delivery service exited:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"the delivery service did not come up:\n{child.tail()}")
        time.sleep(0.2)


def stop_all(spy, timeline, delivery, scn: Scenario | None = None) -> None:
    """What a scenario started, stopped whatever happened (a profiler, the sampling
    timeline, the delivery service), then ``scn`` removed."""
    if spy:
        with contextlib.suppress(Exception):
            spy[0].kill()
    harness.stop_all(timeline, delivery, scn=scn)


# -- the receivers' process ------------------------------------------------------------------

class Receivers(harness.ChildProcess):
    """bench/webhooks.py's receivers (devtools/receivers.py) in their own process.
    Endpoint n is ``http://127.0.0.1:<port>/s/<n>``."""

    what = "the receivers"

    def __init__(self):
        super().__init__(webhooks.receiver_main)
        self.port = self.ask("port")

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/s/{n}"

    def quiet(self, seconds: float = 1.0, timeout: float = 30.0) -> int:
        """Wait until no request arrived for ``seconds``; the count."""
        last, since = -1, time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            count = self.ask("count")
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= seconds:
                break
            time.sleep(0.1)
        return last



# -- CPU and memory over time ---------------------------------------------------------------

class Timeline:
    """CPU seconds (process trees, harness._tree_cpu), RSS and threads of chosen
    processes, sampled every ``interval`` in a thread, so
    that any window between two instants can be read afterwards (linear
    interpolation between samples)."""

    def __init__(self, procs: dict[str, psutil.Process], interval: float = 0.1):
        self.procs = procs
        self.interval = interval
        self.samples: list[tuple[float, dict, dict, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Timeline":
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        cpu, rss, threads = {}, {}, {}
        for name, proc in self.procs.items():
            cpu[name] = harness._tree_cpu(proc)
            total, sizes = harness._tree_rss(proc)
            rss[name] = (total, max(sizes) if sizes else 0)
            n = 0
            with contextlib.suppress(psutil.Error):
                for p in [proc] + proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        n += p.num_threads()
            threads[name] = n
        self.samples.append((time.monotonic(), cpu, rss, threads))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _at(self, index: int, name: str, t: float) -> float:
        times = [s[0] for s in self.samples]
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return self.samples[0][index][name]
        if i >= len(times):
            return self.samples[-1][index][name]
        (t0, v0), (t1, v1) = ((times[i - 1], self.samples[i - 1][index][name]),
                              (times[i], self.samples[i][index][name]))
        return v0 + (v1 - v0) * (t - t0) / max(t1 - t0, 1e-9)

    def cpu(self, name: str, t0: float, t1: float) -> float:
        """CPU seconds ``name`` used between two instants."""
        return max(0.0, self._at(1, name, t1) - self._at(1, name, t0))

    def memory(self, name: str, t0: float, t1: float) -> dict:
        inside = [s for s in self.samples if t0 <= s[0] <= t1] or self.samples[-1:]
        tree = [s[2][name][0] for s in inside]
        largest = [s[2][name][1] for s in inside]
        threads = [s[3][name] for s in inside]
        mb = lambda v: round(v / 2**20, 1)  # noqa: E731
        return {"rss_mb_mean": mb(sum(tree) / len(tree)), "rss_mb_peak": mb(max(tree)),
                "largest_process_rss_mb_mean": mb(sum(largest) / len(largest)),
                "largest_process_rss_mb_peak": mb(max(largest)),
                "threads_mean": round(sum(threads) / len(threads)),
                "threads_peak": max(threads)}


def thread_switches(proc: psutil.Process) -> int:
    """Voluntary context switches of every thread of a process tree so far (each a
    thread that went to sleep: a wake-up), from /proc/<pid>/task/*/status (psutil
    counts the main thread's only)."""
    total = 0
    with contextlib.suppress(psutil.Error):
        for p in [proc] + proc.children(recursive=True):
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{p.pid}/task"):
                    with contextlib.suppress(OSError):
                        with open(f"/proc/{p.pid}/task/{task}/status") as f:
                            for line in f:
                                if line.startswith("voluntary_ctxt_switches"):
                                    total += int(line.split()[1])
    return total


def tree_cpu_split(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds of a process tree so far."""
    user = system = 0.0
    with contextlib.suppress(psutil.Error):
        for p in [proc] + proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                user, system = user + t.user, system + t.system
    return user, system


def profiler(run: harness.Run, output: str):
    """(start, stop) of bench/run.py's py-spy profile (--gil: Python's own CPU)."""
    ctx = types.SimpleNamespace(run=run, args=types.SimpleNamespace(output=output))
    return (lambda name, ps: bench_run.start_profile(ctx, name, ps)), bench_run.stop_profile


def top(profile: dict, n: int = 12) -> dict:
    """The busiest functions of a profile (inclusive and self shares, %)."""
    if not profile or "error" in profile:
        return profile
    return {"samples": profile["samples"], "raw": os.path.relpath(profile["raw"], ROOT),
            "inclusive_pct": profile["inclusive_pct"][:n],
            "self_pct": profile["self_pct"][:n]}


# -- throughput ---------------------------------------------------------------------------------

def server_document(rid: str, project: str, n: int) -> dict:
    """A Nova server as the plugin indexes it, about 1 KB."""
    return {"id": rid, "resource_type": SERVER, "project_id": project, "tenant_id": project,
            "user_id": "5f1c3a526f0e4b599d0c2d3f1a6b7e42", "name": f"bench-server-{n}",
            "status": "ACTIVE", "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:task_state": None,
            "OS-EXT-SRV-ATTR:host": f"compute-{n % 16}",
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{n:08x}",
            "flavor": {"id": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20},
            "image": {"id": "8ee1b6ba-6f58-4bb8-a8c3-2a6b1c1d6f04"},
            "addresses": {"private": [{"addr": f"10.0.{n // 250 % 250}.{n % 250 + 2}",
                                       "version": 4, "OS-EXT-IPS:type": "fixed",
                                       "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]},
            "metadata": {"role": "web", "tier": "frontend", "owner": "team-a"},
            "security_groups": ["default"], "key_name": "bench-key",
            "OS-EXT-AZ:availability_zone": "nova", "host_status": "UP", "locked": False,
            "description": "benchmark server " + "x" * 300,
            "created_at": "2026-03-02T12:00:00Z", "updated_at": "2026-03-02T12:00:01Z"}


def write_documents(run: harness.Run, scn: Scenario, project: str, count: int,
                    chunk: int = 500) -> dict:
    """``count`` servers of ``project`` through the project's Indexer, as
    tests/functional/conftest.py's ``writer`` does (both role copies, external
    versions), then a refresh."""
    from searchlight_forward.indexer.indexer import Indexer
    from searchlight_forward.indexer.layout import listener_alias
    from searchlight_forward.indexer.merge import Outcome
    from searchlight_forward.model.change import DocumentChange, Operation
    from searchlight_forward.plugins import load_plugins
    plugins = load_plugins()
    admin_only = {p.resource_type: tuple(p.admin_only_fields) for p in plugins.plugins}
    indexer = Indexer(run.es, {t: scn.group for t in admin_only}, admin_only)
    applied = 0
    t0 = time.monotonic()
    with tqdm.tqdm(total=count, desc="throughput: writing the documents", unit="doc",
                   leave=False) as bar:
        for start in range(0, count, chunk):
            batch = []
            for n in range(start, min(count, start + chunk)):
                rid = str(uuid.UUID(int=(hash(scn.group) & (2**64 - 1)) << 64 | n))
                batch.append((n, DocumentChange(
                    SERVER, rid, project, Operation.INDEX, 1, "compute.instance.update",
                    "2026-03-02 12:00:00.000000", document=server_document(rid, project, n))))
            result = indexer.apply(batch)
            if result.rejected:
                raise BenchError(f"the Indexer refused {len(result.rejected)} documents: "
                                 f"{result.rejected[0].reason}")
            applied += result.count(Outcome.APPLIED)
            bar.update(len(batch))
    run.es.indices.refresh(index=listener_alias(scn.group))
    return {"documents": count, "applied": applied,
            "seconds": round(time.monotonic() - t0, 2)}


def set_delivery_workers(scn: Scenario, workers_: int) -> None:
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    parser.read(scn.conf)
    parser.set("delivery", "workers", str(workers_))
    with open(scn.conf, "w") as f:
        parser.write(f)


def pipeline_counters(scn: Scenario, workers_: int = 1) -> dict:
    """The subscription pipelines' counters summed over the delivery workers (worker
    N's status port is the scenario's + N)."""
    total: collections.Counter = collections.Counter()
    for i in range(workers_):
        with contextlib.suppress(OSError, ValueError):
            status = harness.http_json(
                f"http://127.0.0.1:{scn.delivery_port + i}/status", timeout=5) or {}
            for key, p in (status.get("pipelines") or {}).items():
                if ":subscription-" in key:
                    total.update(p.get("counters") or {})
    return dict(total)


def deliver_backlog(ctx, scn: Scenario, receivers: Receivers, head, project: str,
                    first: int, workers_: int) -> dict:
    """Subscriptions ``first`` .. ``first + k - 1``, confirmed before the documents
    were written, delivered by a delivery service of ``workers_`` processes: from
    the first to the last arrival at the receivers."""
    args = ctx.args
    n, k = args.documents, args.subscriptions_throughput
    total = n * k
    label = f"{workers_} worker{'s' if workers_ > 1 else ''}"
    receivers.ask("reset")
    # Confirmed before the writes: each cursor starts there (the API records the
    # log's end per group at confirmation) and catches up through all N.
    subs = [new_subscription(receivers.url(first + i), project, f"throughput-{first + i}",
                             MAX_RATE_LIMIT, start_positions={scn.group: head.to_dict()})
            for i in range(k)]
    _, stored = create_subscriptions(scn, subs, f"throughput ({label}): subscriptions")
    set_delivery_workers(scn, workers_)
    delivery = timeline = spy = None
    try:
        started = time.monotonic()
        delivery = harness.start_delivery(scn)
        timeline = Timeline({"delivery": delivery.ps, "receivers": receivers.ps,
                             **{s: ctx.servers[s] for s in ("elasticsearch",)
                                if s in ctx.servers}}).start()
        deadline = time.monotonic() + args.timeout
        with tqdm.tqdm(total=total, desc=f"throughput ({label}): {k} subscriptions x "
                       f"{n} changes", unit="delivery", leave=False) as bar:
            count = 0
            while count < total:
                count = receivers.ask("count")
                bar.update(count - bar.n)
                if spy is None and count and args.profile and workers_ == 1:
                    spy = ctx.profile_start("subscriptions-throughput-delivery",
                                            delivery.ps) or False
                if not delivery.alive():
                    raise BenchError(f"throughput: the delivery service exited:\n"
                                     f"{delivery.tail()}")
                if time.monotonic() > deadline:
                    raise BenchError(f"throughput ({label}): {count} of {total} deliveries "
                                     f"after {args.timeout:.0f}s:\n{delivery.tail()}")
                time.sleep(0.1)
        profile = ctx.profile_stop(*spy) if spy else None
        spy = None
        receivers.quiet(1.0)            # anything sent twice arrives now
        timeline.stop()
        counters = pipeline_counters(scn, workers_)
    finally:
        stop_all(spy, timeline, delivery)
    summary = receivers.ask("summary")
    t0, t1 = summary["first"], summary["last"]
    wall = t1 - t0
    cpu = {name: timeline.cpu(name, t0, t1) for name in timeline.procs}
    mine = [e for p, e in summary["endpoints"].items()
            if first <= int(p.rsplit("/", 1)[1]) < first + k]
    per_core = total / cpu["delivery"] if cpu["delivery"] else None
    out = {"workers": workers_, "documents": n, "subscriptions": k,
           "deliveries": summary["requests"], "expected_deliveries": total,
           "duplicates": summary["duplicates"],
           "subscriptions_complete": sum(1 for e in mine if e["distinct_ids"] >= n),
           "mean_body_bytes": summary["mean_body_bytes"],
           "startup_s": round(t0 - started, 2), "seconds": round(wall, 2),
           "deliveries_per_s": round(total / wall),
           "delivery_cores_used": round(cpu["delivery"] / wall, 2),
           "deliveries_per_cpu_second": round(per_core) if per_core else None,
           "cpu_s_per_1000": {name: round(1000 * v / total, 3) for name, v in cpu.items()},
           "cores_used": {name: round(v / wall, 2) for name, v in cpu.items()},
           "memory": {"delivery": timeline.memory("delivery", t0, t1)},
           "pipeline_counters": counters, "stored": stored}
    if profile is not None:
        out["profile"] = top(profile)
    log(f"  throughput ({label}): {total} deliveries in {wall:.1f} s = {total / wall:.0f}/s, "
        f"delivery {cpu['delivery'] / wall:.2f} cores, "
        f"{out['deliveries_per_cpu_second']}/s per core, "
        f"{out['cpu_s_per_1000']['delivery']} CPU-s per 1000 (receivers "
        f"{out['cpu_s_per_1000']['receivers']})")
    return out


def scenario_throughput(ctx) -> dict:
    args = ctx.args
    n, k = args.documents, args.subscriptions_throughput
    scn = subscriptions_scenario(ctx.run, "throughput")
    receivers = None
    try:
        scn.ensure_index()
        receivers = Receivers()
        from searchlight_forward.changelog.reader import ChangeLog
        head = ChangeLog(ctx.run.es, scn.group).head().position
        project = ctx.run.project_ids["demo"]
        written = write_documents(ctx.run, scn, project, n)
        if written["applied"] != n:
            raise BenchError(f"throughput: {written['applied']} of {n} documents written")
        out = deliver_backlog(ctx, scn, receivers, head, project, 0, 1)
        out["write"] = written
        out["method"] = ("catch-up: the documents were written before the delivery "
                         "service started; each subscription's cursor starts before them")
        if args.scaling_workers > 1:
            # The same backlog for new subscriptions (the first ones deleted: their
            # cursors are forgotten), delivered by [delivery] workers processes.
            delete_subscriptions(scn, out.pop("stored"))
            more = deliver_backlog(ctx, scn, receivers, head, project, k,
                                   args.scaling_workers)
            more.pop("stored")
            out[f"workers_{args.scaling_workers}"] = more
            out["scaling"] = bench_run.ratio(more["deliveries_per_s"],
                                             out["deliveries_per_s"])
        out.pop("stored", None)
        out["ceiling"] = post_ceiling(ctx, receivers, k, out["mean_body_bytes"] or 1400,
                                      n * k)
        c = out["ceiling"]
        out["vs_ceiling"] = bench_run.ratio(out["deliveries_per_s"], c["posts_per_s"])
        out["cpu_vs_ceiling"] = bench_run.ratio(out["cpu_s_per_1000"]["delivery"],
                                                c["cpu_s_per_1000"]["client"])
        return out
    finally:
        if receivers is not None:
            receivers.stop()
        scn.cleanup()


def post_ceiling(ctx, receivers: Receivers, endpoints: int, body_bytes: int,
                 count: int) -> dict:
    """What one Python process POSTs to the same receivers with the same concurrency
    (bench/webhooks.py ``post_ceiling_main``)."""
    receivers.ask("reset")
    result = harness.SPAWN.Queue()
    proc = harness.SPAWN.Process(target=webhooks.post_ceiling_main, args=(
        receivers.port, [f"/c/{i}" for i in range(endpoints)], count, CONCURRENCY,
        body_bytes, result), daemon=True)
    proc.start()
    timeline = Timeline({"client": psutil.Process(proc.pid), "receivers": receivers.ps}).start()
    try:
        with tqdm.tqdm(total=count, desc="throughput: bare POST ceiling", unit="post",
                       leave=False) as bar:
            deadline = time.monotonic() + ctx.args.timeout
            while True:
                got = receivers.ask("count")
                bar.update(got - bar.n)
                if got >= count or not proc.is_alive():
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"ceiling: {got} of {count} after {ctx.args.timeout}s")
                time.sleep(0.1)
        out = result.get(timeout=60)
    finally:
        timeline.stop()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    summary = receivers.ask("summary")
    t0, t1 = summary["first"], summary["last"]
    wall = t1 - t0
    cpu = {name: timeline.cpu(name, t0, t1) for name in timeline.procs}
    res = {"posts": summary["requests"], "failures": out["failures"],
           "body_bytes": out["body_bytes"], "threads": endpoints * CONCURRENCY,
           "seconds": round(wall, 2), "posts_per_s": round(summary["requests"] / wall),
           "client_cores_used": round(cpu["client"] / wall, 2),
           "cpu_s_per_1000": {k: round(1000 * v / summary["requests"], 3)
                              for k, v in cpu.items()}}
    log(f"  ceiling: {res['posts_per_s']}/s bare POSTs, client {res['client_cores_used']} "
        f"cores, {res['cpu_s_per_1000']['client']} CPU-s per 1000")
    return res


# -- delay ----------------------------------------------------------------------------------

def delay_subscriptions(receivers: Receivers, run: harness.Run, count: int,
                        rate_limit: float) -> tuple[list, dict]:
    """``count`` subscriptions, each one of the simulated projects and two resource
    types, spread evenly; (subscriptions, endpoint path -> (project, types))."""
    from searchlight_forward.plugins import load_plugins
    all_types = sorted(p.resource_type for p in load_plugins().plugins)
    projects = sorted(run.project_ids.values())
    subs, filters = [], {}
    for i in range(count):
        project = projects[i % len(projects)]
        j = i // len(projects)
        chosen = (all_types[j % len(all_types)],
                  all_types[(j + len(all_types) // 2) % len(all_types)])
        subs.append(new_subscription(receivers.url(i), project, f"delay-{i}", rate_limit,
                                     resource_types=chosen))
        filters[f"/s/{i}"] = (project, frozenset(chosen))
    return subs, filters


def spread_subscriptions(receivers: Receivers, project_ids: list[str], count: int,
                         rate_limit: float) -> tuple[list, dict]:
    """``count`` subscriptions over ``project_ids``, as many for each (subscription i
    is project ``i % len(project_ids)``'s), every resource type: half with none
    named (all types), half naming the simulator's types; (subscriptions, endpoint
    path -> (project, types))."""
    from devtools.simulator import CloudSimulator
    from searchlight_forward.plugins import load_plugins
    every = frozenset(p.resource_type for p in load_plugins().plugins)
    simulated = tuple(sorted(CloudSimulator.SUPPORTED_TYPES))
    subs, filters = [], {}
    for i in range(count):
        project = project_ids[i % len(project_ids)]
        named = simulated if (i // len(project_ids)) % 2 else None
        subs.append(new_subscription(receivers.url(i), project, f"spread-{i}", rate_limit,
                                     resource_types=named))
        filters[f"/s/{i}"] = (project, frozenset(named) if named else every)
    return subs, filters


def spread_projects(run: harness.Run, n: int) -> dict[str, str]:
    """``n`` project names (p0000 ...) -> ids private to the run (as bench/scale.py
    names its projects)."""
    return {f"p{i:04d}": uuid.uuid5(uuid.NAMESPACE_DNS, f"{run.prefix}.p{i:04d}").hex
            for i in range(n)}


def spread_notes(seed: int, count: int, projects: dict[str, str], start: str) -> list:
    """At least ``count`` simulator notifications whose resources go round every
    project of ``projects`` (name -> id): resource i is project ``i % n``'s, of
    type ``(i + i // n) % 14`` (each round of the projects shifted by one type, so
    every project gets every type in turn), whole lifecycles, in emission order.
    (``CloudSimulator.stream`` starts its round of the projects again for each type,
    so that with fewer lifecycles per type than projects the later projects get
    nothing.)"""
    import datetime
    from devtools.simulator import CloudSimulator
    names = list(projects)
    sim = CloudSimulator(seed=seed, projects=tuple(names), project_ids=dict(projects),
                         start=datetime.datetime.fromisoformat(start))
    types = CloudSimulator.SUPPORTED_TYPES
    notes, i = [], 0
    while len(notes) < count:
        n = len(names)
        notes.extend(sim.lifecycle(types[(i + i // n) % len(types)], names[i % n]))
        i += 1
    notes.sort(key=lambda note: note.timestamp)   # stable: each resource's own order
    return notes


class NotesPublisher:
    """``harness.PublisherPool``'s ``publish`` for notifications made here (any
    projects; the pool's processes rebuild the simulator's three-project stream from
    a spec): from the bench's own process, one connection, every notification
    encoded before the clock starts and sent with no broker confirm
    (``devtools.publisher.PreEncodedPublisher``), notification j at ``t0 + j / rate``.
    A spec is ``{"count": n, "notes": [...]}``."""

    def __init__(self, transport_url: str):
        from devtools.publisher import PreEncodedPublisher
        self.publisher = PreEncodedPublisher(transport_url)
        self.ps = [psutil.Process()]

    def publish(self, spec: dict, rate: float = 0.0, record: bool = False, bar=None,
                start_in: float = 0.5) -> dict:
        from devtools.publisher import PreEncodedPublisher
        encoded = [PreEncodedPublisher.encode_simulated(n) for n in spec["notes"]]
        times, errors = [], 0
        t0 = time.monotonic() + start_in
        for j, body in enumerate(encoded):
            delay = t0 + j / rate - time.monotonic() if rate else 0.0
            if delay > 0:
                time.sleep(delay)
            at = time.monotonic()
            try:
                self.publisher.send(body)
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1
                at = float("nan")
            times.append(at)
            if bar is not None and j % 50 == 49:
                bar.update(50)
        if bar is not None:
            bar.update(len(encoded) - bar.n)
        finished = time.monotonic()
        return {"sent": len(encoded), "errors": errors, "t0": t0, "finished": finished,
                "rate": round(len(encoded) / max(finished - t0, 1e-3)),
                "times": times if record else None}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.publisher.close()


class Arrivals:
    """The receivers' arrivals taken as they come (``records`` forgets what it gives):
    all of them since ``reset``, and the newest version each endpoint has of each
    resource."""

    def __init__(self, receivers: Receivers):
        self.receivers = receivers
        self.records: list = []
        self.newest: dict = {}            # (path, type, id) -> newest version

    def reset(self) -> None:
        self.receivers.ask("records", timeout=120)
        self.receivers.ask("reset")
        self.records, self.newest = [], {}

    def take(self) -> int:
        got = self.receivers.ask("records", timeout=120)
        self.records.extend(got)
        for path, _, rtype, rid, version, _, _ in got:
            if rid is not None and version is not None:
                key = (path, rtype, rid)
                if version > self.newest.get(key, -math.inf):
                    self.newest[key] = version
        return len(got)


def subscribers(filters: dict) -> dict:
    """(project, type) -> the endpoint paths of the subscriptions that get it."""
    subs_of = collections.defaultdict(list)
    for path, (project, sub_types) in filters.items():
        for rtype in sub_types:
            subs_of[(project, rtype)].append(path)
    return subs_of


def expected_finals(changes, times, filters) -> dict:
    """The oracle, from what was published: (path, type, id) -> the version every
    subscription must end with: the newest published of each resource (a delete's
    included), at every subscription of its project (the first project any of its
    changes names) taking its type. Changes that name no resource id are left out."""
    project_of, final = {}, {}
    for found, t in zip(changes, times):
        if t != t:                        # not published (nan)
            continue
        for rtype, rid, version, _delete, project in found:
            if rid is None:
                continue
            if project:
                project_of.setdefault((rtype, rid), project)
            key = (rtype, rid)
            if version > final.get(key, -math.inf):
                final[key] = version
    subs_of = subscribers(filters)
    return {(path, rtype, rid): version for (rtype, rid), version in final.items()
            for path in subs_of.get((project_of.get((rtype, rid)), rtype), ())}


def finals_and_order(expected: dict, arrivals: Arrivals) -> dict:
    """Every (subscription, resource) pair of the oracle ended with its final version
    (or a newer one); and, per (subscription, resource), versions in order of
    arrival never went down (duplicates of one version are allowed)."""
    missing = [key for key, v in expected.items()
               if arrivals.newest.get(key, -math.inf) < v]
    last, violations, sample = {}, 0, []
    for path, _, rtype, rid, version, _, at in sorted(arrivals.records, key=lambda r: r[6]):
        if rid is None or version is None:
            continue
        key = (path, rtype, rid)
        before = last.get(key)
        if before is not None and version < before:
            violations += 1
            if len(sample) < 5:
                sample.append([path, rtype, rid, before, version])
        else:
            last[key] = version
    return {"finals_expected": len(expected), "finals_received": len(expected) - len(missing),
            "finals_missing": len(missing),
            "finals_missing_sample": [list(k) for k in sorted(missing)[:5]],
            "order_pairs_checked": len(last), "order_violations": violations,
            "order_violation_sample": sample}


def start_path(ctx, scn: Scenario, subs: list, children: list, what: str) -> dict:
    """The subscriptions created, the delivery service started (into ``children``)
    and waited for until every one is live, then the listener (into ``children``)."""
    created_s, _ = create_subscriptions(scn, subs, f"{what}: {len(subs)} subscriptions")
    delivery = harness.start_delivery(scn)
    children.append(delivery)
    live_s = wait_live(scn, delivery, len(subs), live_timeout(ctx.args, len(subs)),
                       f"{what}: subscriptions going live")
    log(f"  {what}: {len(subs)} subscriptions created in {created_s:.1f} s, all live "
        f"{live_s:.1f} s after the delivery service started")
    children.append(harness.start_listener(scn, wait=True))
    return {"create_s": round(created_s, 1), "all_live_after_s": round(live_s, 1)}


def warm_up(ctx, scn: Scenario, publisher, spec: dict, rate: float, arrivals: Arrivals,
            settle, what: str) -> int:
    """Publish ``spec`` at ``rate``, ``settle(what the publisher said)``, then forget
    what arrived; the notifications published."""
    with tqdm.tqdm(total=spec["count"], desc=f"{what}: warm-up", unit="msg",
                   leave=False) as bar:
        pub = publisher.publish(spec, rate=rate, record=True, bar=bar)
    settle(pub)
    arrivals.receivers.quiet(1.0)
    arrivals.reset()
    return spec["count"]


def measure_path(ctx, scn: Scenario, what: str, children: list, arrivals: Arrivals,
                 publisher, spec: dict, changes: list, filters: dict, rate: float,
                 published: int, oracle: bool, single=()) -> dict:
    """Publish ``spec`` at ``rate`` through the whole path (``children``: the delivery
    service, then the listener) while CPU, memory, Elasticsearch and the search index
    are watched; wait up to --drain for the listener to take it all (``published``
    before) and then, with ``oracle``, for every subscription to have the final
    version of every resource of its project (``expected_finals``), without, for
    every cursor to reach the end of the change log; then the delays
    (``receiver_delays``), the final versions and the order (``finals_and_order``)."""
    args, es = ctx.args, ctx.run.es
    delivery, listener = children
    receivers = arrivals.receivers
    search = harness.SearchWatcher(es, scn.group, ctx.run.transport_url).start()
    timeline = None
    try:
        procs = {"delivery": delivery.ps, "listener": listener.ps, "receivers": receivers.ps,
                 "publishers": publisher.ps, **ctx.servers}
        watch = harness.Watch(procs, rss_of=["delivery", "listener"], single=single).start()
        timeline = Timeline({"delivery": delivery.ps}, interval=0.5).start()   # threads
        es0, ix0 = harness.es_stats(es), index_stats(es, f"{scn.group}-*")
        spy = ctx.profile_start(f"subscriptions-{what}-delivery", delivery.ps) \
            if args.profile and what == "spread" else None
        with tqdm.tqdm(total=spec["count"], desc=f"{what}: {rate:g}/s", unit="msg",
                       leave=False) as bar:
            pub = publisher.publish(spec, rate=rate, record=True, bar=bar)
        deadline = time.monotonic() + args.drain
        expected = expected_finals(changes, pub["times"], filters)
        pending = set(expected)

        def all_arrived() -> bool:
            arrivals.take()
            pending.difference_update([key for key in pending if arrivals.newest.get(
                key, -math.inf) >= expected[key]])
            return not pending

        drained = True
        try:
            harness.wait_until(lambda: harness.processed(scn) >= published + spec["count"],
                               args.drain, 0.2, f"the listener to take {what}'s notifications")
            left = max(1.0, deadline - time.monotonic())
            if oracle:
                harness.wait_until(all_arrived, left, 0.5, f"every final version ({what})")
            else:
                harness.wait_until(lambda: all(harness.cursors_at_head(es, scn).values()),
                                   left, 0.2, f"every cursor to catch up ({what})")
        except BenchError:
            drained = False
        profile = ctx.profile_stop(*spy) if spy else None
        spy = None
        receivers.quiet(1.0)
        watch.stop()
        timeline.stop()
        counters = subscription_counters(scn)
        cursors = cursor_totals(scn)
        wall = watch.t1 - watch.t0
        es_used = harness.es_delta(es0, harness.es_stats(es), wall)
        ix_used = index_delta(ix0, index_stats(es, f"{scn.group}-*"), wall, scn)
        arrivals.take()
        summary = receivers.ask("summary")
    finally:
        search.stop()
        if timeline is not None:
            timeline.stop()
    records = arrivals.records
    res = receiver_delays(changes, pub["times"], records, filters, dict(search.seen))
    res.update(finals_and_order(expected, arrivals))
    if profile:
        res["profile"] = top(profile)
    if args.keep:                      # the raw samples, for a closer look
        with open(os.path.join(scn.dir, f"{scn.name}-raw.json"), "w") as f:
            json.dump({"changes": changes, "times": pub["times"], "records": records,
                       "seen": [[rid, v, t] for (rid, v), t in search.seen.items()],
                       "filters": {p: [pr, sorted(ts)] for p, (pr, ts) in filters.items()}},
                      f, default=str)
    resources = watch.report()
    deliveries = max(len(records), 1)        # requests the receivers answered
    cpu_s = {name: cores * wall for name, cores in resources["cores_used"].items()}
    return {"rate": rate, "published": pub["sent"], "publish_errors": pub["errors"],
            "achieved_rate": pub["rate"], "drained": drained,
            "drain_waited_for": "every final version at every subscription" if oracle
            else "every cursor at the end of the change log",
            "duplicates": summary["duplicates"], **res,
            "cpu_ms_per_delivery": {name: round(1000 * v / deliveries, 3)
                                    for name, v in cpu_s.items()},
            "cpu_ms_per_notification": {name: round(1000 * v / max(spec["count"], 1), 3)
                                        for name, v in cpu_s.items()},
            "resources": resources, "elasticsearch": es_used, "indices": ix_used,
            "pipeline_counters": counters, "cursor_totals": cursors,
            "search_method": harness.SEARCH_METHOD,
            "delivery_memory": timeline.memory("delivery", watch.t0, watch.t1)}


def scenario_delay(ctx) -> dict:
    args = ctx.args
    k, rate, duration = args.subscriptions_delay, args.rate, args.duration
    scn = subscriptions_scenario(ctx.run, "delay")
    receivers = None
    children: list[harness.Child] = []
    try:
        scn.ensure_index()
        harness.declare_pool(ctx.run.transport_url, scn.pool, scn.conf)
        receivers = Receivers()
        rate_limit = args.delay_rate_limit or default_rate_limit()
        subs, filters = delay_subscriptions(receivers, ctx.run, k, rate_limit)
        started = start_path(ctx, scn, subs, children, "delay")
        arrivals = Arrivals(receivers)
        warm = ctx.spec(999, int(args.warmup * rate), start="2026-01-01T00:00:00")
        published = warm_up(ctx, scn, ctx.pool, warm, rate, arrivals, lambda _: harness.catch_up(
            ctx.run.es, scn, warm["count"], 60, "after the warm-up"), "delay")
        count = int(rate * duration)
        spec = ctx.spec(5000, count, start="2026-05-01T00:00:00")
        changes = workers.changes_of(workers.make_stream(spec))
        out = measure_path(ctx, scn, "delay", children, arrivals, ctx.pool, spec, changes,
                           filters, rate, published, oracle=False)
        out.update(duration_s=duration, subscriptions=k, rate_limit=rate_limit, **started)
        d = out["receiver_ms"]
        log(f"  delay at {rate:g}/s with {k} subscriptions: receiver p50/p95/p99 "
            f"{d['p50']}/{d['p95']}/{d['p99']} ms (searchable p50/p99 "
            f"{out['searchable_ms']['p50']}/{out['searchable_ms']['p99']} ms); "
            f"{out['received']} of {out['expected']} deliveries, "
            f"{out['matches_per_notification']} subscriptions per notification")
        return out
    finally:
        harness.stop_all(receivers, *reversed(children), scn=scn)


TARGET_SPREAD_P99_MS = 500.0     # issue 28: publish -> receiver p99, 10,000 subscriptions


def scenario_spread(ctx) -> dict:
    """--subscriptions-spread subscriptions over --spread-projects projects (as many
    each, all types), the simulator's notifications over those projects at
    --spread-rate for --spread-duration through the whole path."""
    args = ctx.args
    k, n, rate = args.subscriptions_spread, args.spread_projects, args.spread_rate
    duration = args.spread_duration
    if k < n:
        raise BenchError(f"spread: {k} subscriptions for {n} projects: fewer than one each")
    scn = subscriptions_scenario(ctx.run, "spread")
    receivers = publisher = None
    children: list[harness.Child] = []
    try:
        scn.ensure_index()
        harness.declare_pool(ctx.run.transport_url, scn.pool, scn.conf)
        projects = spread_projects(ctx.run, n)
        count = int(rate * duration)
        with tqdm.tqdm(total=2, desc="spread: making the notifications", leave=False) as bar:
            warm = spread_notes(998, max(1, int(args.warmup * rate)), projects,
                                "2026-01-01T00:00:00")
            bar.update(1)
            notes = spread_notes(6000, count, projects, "2026-06-01T00:00:00")
            changes = workers.changes_of(notes)
            bar.update(1)
        receivers = Receivers()
        rate_limit = default_rate_limit()
        subs, filters = spread_subscriptions(receivers, list(projects.values()), k,
                                             rate_limit)
        started = start_path(ctx, scn, subs, children, "spread")
        publisher = NotesPublisher(ctx.run.transport_url)
        arrivals = Arrivals(receivers)

        def settle(pub: dict) -> None:
            """Until every subscription has the warm-up's final versions (a quiet
            spell is not enough: a swamped delivery process pauses for seconds)."""
            harness.wait_until(lambda: harness.processed(scn) >= len(warm), 60, 0.2,
                               "the listener to take the warm-up")
            expected = expected_finals(workers.changes_of(warm), pub["times"], filters)
            harness.wait_until(lambda: arrivals.take() >= 0 and all(
                arrivals.newest.get(key, -math.inf) >= v for key, v in expected.items()),
                args.drain, 0.5, "every delivery of the warm-up")
        published = warm_up(ctx, scn, publisher, {"count": len(warm), "notes": warm}, rate,
                            arrivals, settle, "spread")
        out = measure_path(ctx, scn, "spread", children, arrivals, publisher,
                           {"count": len(notes), "notes": notes}, changes, filters, rate,
                           published, oracle=True, single=("publishers",))
        touched = {p for found in changes for *_, p in found if p}
        out.update(duration_s=round(len(notes) / rate, 1), subscriptions=k, projects=n,
                   projects_published=len(touched & set(projects.values())),
                   subscriptions_per_project=round(k / n, 1), rate_limit=rate_limit,
                   notes_made_with="spread_notes: resource i of project i % projects, "
                                   "whole simulator lifecycles, one publishing connection "
                                   "in the bench's process",
                   targets={"receiver_p99_ms": TARGET_SPREAD_P99_MS, "missing": 0,
                            "finals_missing": 0, "order_violations": 0}, **started)
        d = out["receiver_ms"]
        ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
        log(f"  spread: {k} subscriptions over {n} projects, {rate:g}/s: receiver p50/p95/p99 "
            f"{d['p50']}/{d['p95']}/{d['p99']} ms (target p99 <= {TARGET_SPREAD_P99_MS:g}: "
            f"{ok(d['p99'] is not None and d['p99'] <= TARGET_SPREAD_P99_MS)}); "
            f"{out['received']} of {out['expected']} deliveries, {out['missing']} missing "
            f"(target 0: {ok(not out['missing'])}); final versions {out['finals_received']} "
            f"of {out['finals_expected']} (target all: {ok(not out['finals_missing'])}); "
            f"order violations {out['order_violations']} "
            f"(target 0: {ok(not out['order_violations'])})")
        return out
    finally:
        if publisher is not None:
            publisher.close()
        harness.stop_all(receivers, *reversed(children), scn=scn)


def receiver_delays(changes, times, records, filters, seen) -> dict:
    """Publish -> receiver delay of every (subscription, change), and -> searchable of
    every change, as bench/run.py measures the WebSocket clients' and Zaqar's.

    A change (type, id, version) is expected at every subscription whose project is
    the resource's (the first project any of its changes names) and whose types
    include its type. Its delay is until the first arrival at that subscription's
    receiver of that version or a newer one of the resource (the listener writes
    the last state of a resource changed twice in one batch: the older version is
    superseded, never shown on its own), minus the publish time of the
    notification that made it (both ``time.monotonic()`` on this host). A change
    with no such arrival is missing. ``searchable -> receiver``: each arrival minus
    the first time its version was found in ``<group>-search``
    (harness.SearchWatcher: after each doorbell ring): the delivery service's share."""
    project_of: dict = {}
    published: dict = {}                  # (type, id, version) -> (publish time, delete)
    for found, t in zip(changes, times):
        if t != t:                        # not published (nan)
            continue
        for rtype, rid, version, delete, project in found:
            if rid is None:
                continue
            if project:
                project_of.setdefault((rtype, rid), project)
            published.setdefault((rtype, rid, version), (t, delete))
    got: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    after_search, unknown = [], 0
    for path, _, rtype, rid, version, _, at in records:
        got[path][(rtype, rid)].append((version, at))
        if (rtype, rid, version) not in published:
            unknown += 1
        shown = seen.get((rid, version))
        if shown is not None:
            after_search.append(1000 * (at - shown))
    for receipts in got.values():
        for pairs in receipts.values():
            pairs.sort()
    subs_of = subscribers(filters)
    ms, expected, missing, superseded, exact = [], 0, [], 0, 0
    for (rtype, rid, version), (t, _) in published.items():
        for path in subs_of.get((project_of.get((rtype, rid)), rtype), ()):
            expected += 1
            pairs = got[path].get((rtype, rid), [])
            at = bench_run._first_at_least(pairs, version)
            if at is None:
                missing.append([path, rtype, rid, version])
            elif at < t:
                superseded += 1
            else:
                ms.append(1000 * (at - t))
                exact += any(v == version for v, _ in pairs)
    by_id = collections.defaultdict(list)
    for (rid, version), at in seen.items():
        by_id[rid].append((version, at))
    for pairs in by_id.values():
        pairs.sort()
    searchable = []
    for (rtype, rid, version), (t, delete) in published.items():
        at = None if delete else bench_run._first_at_least(by_id.get(rid, []), version)
        if at is not None and at >= t:
            searchable.append(1000 * (at - t))
    return {"changes_published": len(published), "expected": expected,
            "received": len(ms), "received_exact_version": exact,
            "superseded_at_publish": superseded, "missing": len(missing),
            "missing_sample": sorted(missing)[:5],
            "arrivals": len(records), "arrivals_not_published": unknown,
            "matches_per_notification": round(expected / max(len(published), 1), 2),
            "receiver_ms": bench_run.percentiles(ms),
            "searchable_ms": bench_run.percentiles(searchable),
            "after_searchable_ms": bench_run.percentiles(after_search)}


# -- Elasticsearch: what the scenario's own indices cost ------------------------------------

def index_stats(es, pattern: str) -> dict[str, dict]:
    """Counters of each index matching ``pattern`` (the scenario's: ``<group>-*``,
    the cursors' state index included) from the index stats (primaries; a single
    node holds no replica), unlike ``harness.es_stats`` (the node's, anyone's
    indices included). ``writes``: documents indexed or deleted; ``write_requests``:
    the shard-level bulk operations (Elasticsearch 8 counts a single index or delete
    request as a bulk of one; OpenSearch keeps no such count: 0)."""
    metric = "indexing,get,search,refresh" + (
        ",bulk" if harness.SEARCH_BACKEND == "elasticsearch" else "")
    try:
        resp = es.indices.stats(index=pattern, metric=metric)
    except Exception:  # noqa: BLE001 - no index yet: nothing counted
        return {}
    out = {}
    for name, ix in (resp.get("indices") or {}).items():
        p = ix.get("primaries") or {}
        indexing, bulk = p.get("indexing") or {}, p.get("bulk") or {}
        out[name] = {"writes": indexing.get("index_total", 0) + indexing.get("delete_total", 0),
                     "write_requests": bulk.get("total_operations", 0),
                     "write_bytes": bulk.get("total_size_in_bytes", 0),
                     "gets": (p.get("get") or {}).get("total", 0),
                     "searches": (p.get("search") or {}).get("query_total", 0),
                     "refreshes": (p.get("refresh") or {}).get("external_total", 0)}
    return out


def index_delta(before: dict, after: dict, wall: float, scn: Scenario) -> dict:
    """Per second over ``wall``: what every index of the scenario took
    (``all``), the cursors' state index (``state``) and the other indices one by one
    (``by_index``, names without the group's prefix)."""
    def rates(names) -> dict:
        total = collections.Counter()
        for name in names:
            b = before.get(name, {})
            for key, value in after[name].items():
                total[key] += value - b.get(key, 0)
        return {"writes_per_s": round(total["writes"] / wall, 1),
                "write_requests_per_s": round(total["write_requests"] / wall, 1),
                "write_kb_per_s": round(total["write_bytes"] / 1024 / wall, 1),
                "gets_per_s": round(total["gets"] / wall, 1),
                "searches_per_s": round(total["searches"] / wall, 1),
                "refreshes_per_s": round(total["refreshes"] / wall, 2)}
    wall = max(wall, 1e-9)
    state = [n for n in after if n == scn.state_index]
    return {"all": rates(list(after)), "state": rates(state),
            "by_index": {name[len(scn.group) + 1:] or name: rates([name])["writes_per_s"]
                         for name in sorted(after) if name.startswith(scn.group)}}


# -- idle -----------------------------------------------------------------------------------

def idle_window(timeline: Timeline, es_before: dict, es_after: dict, t0: float, t1: float,
                poll: float, subscriptions: int, switches: int,
                split: tuple[float, float], indices: dict) -> dict:
    wall = t1 - t0
    cpu = {name: timeline.cpu(name, t0, t1) for name in timeline.procs}
    es = harness.es_delta(es_before, es_after, wall)
    state, every = indices["state"], indices["all"]
    per_s = cpu["delivery"] / wall
    return {"subscriptions": subscriptions, "seconds": round(wall, 1),
            "delivery_cpu_ms_per_s": round(1000 * per_s, 1),
            "delivery_cpu_ms_per_poll": round(1000 * per_s * poll, 1),
            "delivery_wakeups_per_s": round(switches / wall),
            "delivery_system_cpu_pct": round(100 * split[1] / max(sum(split), 1e-9)),
            "elasticsearch_cpu_ms_per_s": round(1000 * cpu.get("elasticsearch", 0) / wall, 1),
            # the node's counters: anyone's indices (others share this Elasticsearch)
            "elasticsearch_writes_per_s": round(es["docs_indexed"] / wall, 1),
            "elasticsearch_searches_per_s": round(es["searches"] / wall, 1),
            "elasticsearch_gets_per_s": round(es["gets"] / wall, 1),
            # the scenario's own indices (index stats): the cursors' state index, all
            "state_writes_per_s": state["writes_per_s"],
            "state_write_requests_per_s": state["write_requests_per_s"],
            "state_write_kb_per_s": state["write_kb_per_s"],
            "indices_writes_per_s": every["writes_per_s"],
            "indices_write_requests_per_s": every["write_requests_per_s"],
            "indices_write_kb_per_s": every["write_kb_per_s"],
            "indices_searches_per_s": every["searches_per_s"],
            "indices_gets_per_s": every["gets_per_s"],
            "indices_refreshes_per_s": every["refreshes_per_s"],
            "indices": indices,
            **timeline.memory("delivery", t0, t1),
            "worker": timeline.memory("delivery worker", t0, t1)}


def idle_writes(w: dict) -> str:
    return (f"Elasticsearch writes/s: state index {w['state_writes_per_s']} documents in "
            f"{w['state_write_requests_per_s']} requests ({w['state_write_kb_per_s']} KB/s), "
            f"all the scenario's indices {w['indices_writes_per_s']} documents in "
            f"{w['indices_write_requests_per_s']} requests")


def scenario_idle(ctx) -> dict:
    args = ctx.args
    k = args.subscriptions_idle
    scn = subscriptions_scenario(ctx.run, "idle")
    delivery = timeline = spy = None
    try:
        scn.ensure_index()
        poll = poll_interval_of(scn)
        delivery = harness.start_delivery(scn)
        wait_status(scn, delivery)
        worker = delivery_worker(delivery)
        timeline = Timeline({"delivery": delivery.ps, "delivery worker": worker,
                             **{s: ctx.servers[s] for s in ("elasticsearch",)
                                if s in ctx.servers}}, interval=0.25).start()

        def measure(seconds: float, subscriptions: int, desc: str) -> dict:
            if not delivery.alive():
                raise BenchError(f"the delivery service exited:\n{delivery.tail()}")
            es0 = harness.es_stats(ctx.run.es)
            ix0 = index_stats(ctx.run.es, f"{scn.group}-*")
            switches0 = thread_switches(delivery.ps)
            split0 = tree_cpu_split(delivery.ps)
            t0 = time.monotonic()
            with tqdm.tqdm(total=int(seconds), desc=desc, unit="s", leave=False) as bar:
                while time.monotonic() - t0 < seconds:
                    time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - t0))))
                    bar.update(min(int(time.monotonic() - t0), int(seconds)) - bar.n)
            t1 = time.monotonic()
            ix1 = index_stats(ctx.run.es, f"{scn.group}-*")
            switches = thread_switches(delivery.ps) - switches0
            split = tuple(b - a for a, b in zip(split0, tree_cpu_split(delivery.ps)))
            time.sleep(timeline.interval * 2)      # a sample after t1
            return idle_window(timeline, es0, harness.es_stats(ctx.run.es), t0, t1, poll,
                               subscriptions, switches, split,
                               index_delta(ix0, ix1, t1 - t0, scn))

        time.sleep(args.settle)
        base = measure(args.idle_base, 0, "idle: no subscription")
        log(f"  idle, 0 subscriptions: {base['delivery_cpu_ms_per_s']} ms CPU/s, "
            f"RSS {base['rss_mb_mean']} MB, {base['threads_mean']} threads, "
            f"{idle_writes(base)}")
        subs = [new_subscription(f"http://127.0.0.1:9/idle/{i}", f"{ctx.run.prefix}-nobody",
                                 f"idle-{i}", default_rate_limit()) for i in range(k)]
        created_s, _ = create_subscriptions(scn, subs, f"idle: {k} subscriptions")
        live_s = wait_live(scn, delivery, k, live_timeout(args, k),
                           f"idle: {k} subscriptions live")
        log(f"  idle: {k} subscriptions created in {created_s:.1f} s (bulk), all live "
            f"{live_s:.1f} s later")
        time.sleep(args.settle)
        if args.profile:
            spy = ctx.profile_start("subscriptions-idle-delivery", delivery.ps)
        loaded = measure(args.idle, k, f"idle: {k} subscriptions")
        profile = ctx.profile_stop(*spy) if spy else None
        spy = None
        log(f"  idle, {k} subscriptions: {loaded['delivery_cpu_ms_per_s']} ms CPU/s, "
            f"RSS {loaded['rss_mb_mean']} MB, {loaded['threads_mean']} threads, "
            f"{loaded['delivery_wakeups_per_s']} wake-ups/s, {idle_writes(loaded)}")
        ratio = lambda key: bench_run.ratio(loaded[key], base[key])  # noqa: E731
        out = {"poll_interval_s": poll,
               "refresh_interval_s": 1.0, "lease_seconds": LEASE_SECONDS,
               "create_s": round(created_s, 1), "all_live_after_s": round(live_s, 1),
               "without": base, "with": loaded,
               "cpu_ratio": ratio("delivery_cpu_ms_per_s"),
               "rss_ratio": ratio("rss_mb_mean"),
               "elasticsearch_cpu_ratio": ratio("elasticsearch_cpu_ms_per_s"),
               "rss_kb_per_subscription": round(1024 * (
                   loaded["worker"]["rss_mb_mean"] - base["worker"]["rss_mb_mean"]) / k, 1),
               "worker_rss_ratio": bench_run.ratio(loaded["worker"]["rss_mb_mean"],
                                                   base["worker"]["rss_mb_mean"]),
               "cpu_ms_per_s_per_100_subscriptions": round(
                   100 * (loaded["delivery_cpu_ms_per_s"] - base["delivery_cpu_ms_per_s"])
                   / k, 2)}
        if profile is not None:
            out["profile"] = top(profile)
        # A graceful stop (SIGTERM) with the subscriptions: cotyledon gives the worker
        # searchlight_forward.worker.Worker.graceful_shutdown_timeout (60 s), then kills it.
        timeline.stop()
        t = time.monotonic()
        with tqdm.tqdm(total=1, desc=f"idle: SIGTERM with {k} subscriptions", leave=False):
            delivery.stop(timeout=90)
        stopped = bool(re.search(r"delivery service \S+ stopped", delivery.tail(50)))
        out["sigterm_to_exit_s"] = round(time.monotonic() - t, 1)
        out["stopped_gracefully"] = stopped
        delivery = None
        log(f"  idle: SIGTERM to exit with {k} subscriptions: {out['sigterm_to_exit_s']} s "
            f"({'graceful' if stopped else 'NOT graceful: the worker was killed'})")
        return out
    finally:
        stop_all(spy, timeline, delivery, scn)


# -- report ---------------------------------------------------------------------------------

def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Subscriptions benchmark ({meta['started']}, run {meta['run']}, "
             f"{meta['wall_s']:.0f} s)", "",
             f"Machine: {meta['machine'].get('nproc')} CPUs ({meta['machine'].get('cpu')}), "
             f"Python {meta['machine'].get('python')}, Elasticsearch "
             f"{meta['machine'].get('elasticsearch')}; git {meta['git'].get('commit')} "
             f"({meta['git'].get('uncommitted_files')} uncommitted files). "
             "Subscriptions written straight into the subscriptions index, already active "
             "(no Keystone, no API, no confirmation round trip).", ""]
    t = results.get("throughput")
    if t and "error" not in t:
        c = t.get("ceiling") or {}
        lines += ["## Webhook deliveries per core", "",
                  f"{t['documents']} changes x {t['subscriptions']} active subscriptions "
                  f"(rate_limit {MAX_RATE_LIMIT:g}/s: not binding; webhook_concurrency "
                  f"{CONCURRENCY}); {t['method']}. Bodies {t['mean_body_bytes']} bytes.", "",
                  "| | deliveries | seconds | deliveries/s | cores used | deliveries/s "
                  "per core | CPU-s per 1,000: sender | receivers | Elasticsearch |",
                  "|---|---|---|---|---|---|---|---|---|",
                  ]
        for r in [t] + [v for key, v in t.items() if key.startswith("workers_")]:
            lines.append(
                f"| delivery service, {r['workers']} worker process"
                f"{'es' if r['workers'] > 1 else ''} | {r['deliveries']} | {r['seconds']} | "
                f"{r['deliveries_per_s']} | {r['delivery_cores_used']} | "
                f"{r['deliveries_per_cpu_second']} | {r['cpu_s_per_1000']['delivery']} | "
                f"{r['cpu_s_per_1000']['receivers']} | "
                f"{r['cpu_s_per_1000'].get('elasticsearch', '')} |")
        if c:
            lines.append(
                f"| bare POST ceiling ({c['threads']} threads, one process) | {c['posts']} | "
                f"{c['seconds']} | {c['posts_per_s']} | {c['client_cores_used']} | "
                f"{round(c['posts_per_s'] / c['client_cores_used']) if c['client_cores_used'] else ''}"
                f" | {c['cpu_s_per_1000']['client']} | {c['cpu_s_per_1000']['receivers']} | |")
        lines += ["", f"Delivery service (one worker) vs the ceiling: {t.get('vs_ceiling')} x "
                  f"the rate, {t.get('cpu_vs_ceiling')} x the CPU per delivery; "
                  f"{t.get('scaling') or '-'} x the rate with more worker processes. Duplicates "
                  f"{t['duplicates']}; subscriptions that got every change "
                  f"{t['subscriptions_complete']}/{t['subscriptions']}; delivery service "
                  f"start to first arrival {t['startup_s']} s; peak RSS "
                  f"{t['memory']['delivery']['rss_mb_peak']} MB.", ""]
        lines += profile_md(t.get("profile"))
    elif t:
        lines += ["## Webhook deliveries per core", "", f"FAILED: {t['error']}", ""]
    d = results.get("delay")
    if d and "error" not in d:
        r, s, a = d["receiver_ms"], d["searchable_ms"], d["after_searchable_ms"]
        lines += ["## Publish-to-receiver delay", "",
                  f"{d['rate']:g} notifications/s for {d['duration_s']:g} s (achieved "
                  f"{d['achieved_rate']}/s), {d['subscriptions']} subscriptions (one project "
                  f"and two resource types each, rate_limit {d['rate_limit']:g}/s): "
                  f"{d['matches_per_notification']} subscriptions per change; RabbitMQ -> "
                  "listener -> Elasticsearch -> delivery service -> receiver.", "",
                  "| delay (ms) | n | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|",
                  f"| publish -> receiver | {r['n']} | {r['p50']} | {r['p95']} | {r['p99']} | "
                  f"{r['max']} |",
                  f"| publish -> searchable | {s['n']} | {s['p50']} | {s['p95']} | {s['p99']} | "
                  f"{s['max']} |",
                  f"| searchable -> receiver | {a['n']} | {a['p50']} | {a['p95']} | {a['p99']} "
                  f"| {a['max']} |", "",
                  f"Deliveries: {d['received']} of {d['expected']} expected (subscription, "
                  f"change) pairs arrived ({d['received_exact_version']} with that version, "
                  f"the others superseded by a newer one written in the same listener "
                  f"batch), {d['missing']} missing, {d['duplicates']} duplicates; "
                  f"drained: {d['drained']}. CPU ms per "
                  f"delivery: delivery service {d['cpu_ms_per_delivery'].get('delivery')}, "
                  f"receivers {d['cpu_ms_per_delivery'].get('receivers')}; per "
                  f"notification: listener {d['cpu_ms_per_notification'].get('listener')}, "
                  f"Elasticsearch {d['cpu_ms_per_notification'].get('elasticsearch')}. "
                  f"Cores used: " + ", ".join(f"{k} {v}" for k, v in
                                              d["resources"]["cores_used"].items()) + ".", ""]
        lines += path_checks_md(d)
    elif d:
        lines += ["## Publish-to-receiver delay", "", f"FAILED: {d['error']}", ""]
    lines += spread_md(results.get("spread"))
    i = results.get("idle")
    if i and "error" not in i:
        w0, w1 = i["without"], i["with"]
        rows = [("delivery CPU ms per s", "delivery_cpu_ms_per_s"),
                (f"delivery CPU ms per poll ({i['poll_interval_s']:g} s)",
                 "delivery_cpu_ms_per_poll"),
                ("delivery voluntary context switches per s", "delivery_wakeups_per_s"),
                ("delivery CPU in the kernel (%)", "delivery_system_cpu_pct"),
                ("delivery RSS MB (mean; master and worker)", "rss_mb_mean"),
                ("delivery worker RSS MB (mean)", "worker_rss_mb_mean"),
                ("delivery threads", "threads_mean"),
                ("Elasticsearch CPU ms per s (the node: anyone's work)",
                 "elasticsearch_cpu_ms_per_s"),
                ("state index: documents written per s", "state_writes_per_s"),
                ("state index: write requests per s", "state_write_requests_per_s"),
                ("state index: KB written per s", "state_write_kb_per_s"),
                ("the scenario's indices: documents written per s", "indices_writes_per_s"),
                ("the scenario's indices: write requests per s",
                 "indices_write_requests_per_s"),
                ("the scenario's indices: searches per s", "indices_searches_per_s"),
                ("the scenario's indices: gets per s", "indices_gets_per_s"),
                ("the scenario's indices: refreshes per s", "indices_refreshes_per_s"),
                ("the node: documents written per s (anyone's)", "elasticsearch_writes_per_s"),
                ("the node: searches per s (anyone's)", "elasticsearch_searches_per_s"),
                ("the node: gets per s (anyone's)", "elasticsearch_gets_per_s")]
        for w in (w0, w1):
            w["worker_rss_mb_mean"] = w["worker"]["rss_mb_mean"]
        lines += ["## Idle subscriptions", "",
                  f"One delivery process, {w0['seconds']:g} s with no subscription, then "
                  f"{w1['seconds']:g} s with {w1['subscriptions']} active subscriptions whose "
                  f"project publishes nothing (nothing is published at all). [changelog] "
                  f"poll_interval {i['poll_interval_s']:g} s, [subscriptions] "
                  f"refresh_interval {i['refresh_interval_s']:g} s, [delivery] lease_seconds "
                  f"{i['lease_seconds']:g}. Created in {i['create_s']} s (bulk), all live "
                  f"{i['all_live_after_s']} s later. Writes: documents indexed or deleted, "
                  "and write requests (shard bulk operations, a single index request "
                  "counting as one), from the index stats of the scenario's own "
                  "indices; the node's figures include whatever else runs on this "
                  "Elasticsearch.", "",
                  f"| | 0 subscriptions | {w1['subscriptions']} subscriptions | ratio |",
                  "|---|---|---|---|"]
        for label, key in rows:
            if key in w0 and key in w1:            # older results lack some
                lines.append(f"| {label} | {w0[key]} | {w1[key]} | "
                             f"{bench_run.ratio(w1[key], w0[key]) or ''} |")
        lines += ["", f"Per subscription: {i['rss_kb_per_subscription']} KB of the worker's RSS; "
                  f"{i['cpu_ms_per_s_per_100_subscriptions']} ms CPU per s per 100 "
                  f"subscriptions. SIGTERM to exit with {w1['subscriptions']} subscriptions: "
                  f"{i.get('sigterm_to_exit_s')} s ("
                  + ("graceful" if i.get("stopped_gracefully") else
                     "not graceful: cotyledon killed the worker after its 60 s") + ").", ""]
        lines += profile_md(i.get("profile"))
    elif i:
        lines += ["## Idle subscriptions", "", f"FAILED: {i['error']}", ""]
    return "\n".join(lines) + "\n"


def path_checks_md(d: dict) -> list[str]:
    if "finals_expected" not in d:
        return []
    return [f"Final versions: {d['finals_received']} of {d['finals_expected']} (subscription, "
            f"resource) pairs ended with the newest version published, "
            f"{d['finals_missing']} did not; order per (subscription, resource): "
            f"{d['order_violations']} arrivals older than one before them "
            f"({d['order_pairs_checked']} pairs). Creating the subscriptions took "
            f"{d.get('create_s')} s, all live {d.get('all_live_after_s')} s after the "
            f"delivery service started.", ""]


def spread_md(d: dict | None) -> list[str]:
    title = "## Subscriptions spread over projects"
    if not d:
        return []
    if "error" in d:
        return [title, "", f"FAILED: {d['error']}", ""]
    r, t = d["receiver_ms"], d["targets"]
    mark = lambda good: "yes" if good else "**no**"  # noqa: E731
    ix = d.get("indices", {}).get("all", {})
    return [title, "",
            f"{d['subscriptions']} webhook subscriptions over {d['projects']} projects "
            f"({d['subscriptions_per_project']} each, every resource type: half naming "
            f"none, half the simulator's types; rate_limit {d['rate_limit']:g}/s) in one "
            f"delivery process; the simulator's notifications over those projects "
            f"({d['projects_published']} of them had a change) at {d['rate']:g}/s for "
            f"{d['duration_s']:g} s (achieved {d['achieved_rate']}/s), RabbitMQ -> "
            f"listener -> Elasticsearch -> delivery service -> receivers. Subscriptions "
            f"created in {d['create_s']} s, all live {d['all_live_after_s']} s after the "
            f"delivery service started.", "",
            "| | measured | target | met |", "|---|---|---|---|",
            f"| publish -> receiver p50 / p95 / p99 (ms) | {r['p50']} / {r['p95']} / "
            f"{r['p99']} (max {r['max']}, n {r['n']}) | p99 <= {t['receiver_p99_ms']:g} | "
            f"{mark(r['p99'] is not None and r['p99'] <= t['receiver_p99_ms'])} |",
            f"| (subscription, change) deliveries: received / expected | {d['received']} / "
            f"{d['expected']} ({d['missing']} missing) | 0 missing | "
            f"{mark(d['missing'] == 0)} |",
            f"| (subscription, resource): final version received / expected | "
            f"{d['finals_received']} / {d['finals_expected']} | all | "
            f"{mark(d['finals_missing'] == 0)} |",
            f"| order per (subscription, resource): versions that went down | "
            f"{d['order_violations']} ({d['order_pairs_checked']} pairs) | 0 | "
            f"{mark(d['order_violations'] == 0)} |",
            f"| duplicates | {d['duplicates']} | (harmless) | |",
            f"| drained within --drain | {d['drained']} | | |", "",
            f"Publish -> searchable p50/p99 {d['searchable_ms']['p50']} / "
            f"{d['searchable_ms']['p99']} ms; searchable -> receiver p50/p99 "
            f"{d['after_searchable_ms']['p50']} / {d['after_searchable_ms']['p99']} ms. "
            f"{d['matches_per_notification']} subscriptions per change. CPU ms per "
            f"delivery: delivery service {d['cpu_ms_per_delivery'].get('delivery')}, "
            f"receivers {d['cpu_ms_per_delivery'].get('receivers')}. Cores used: "
            + ", ".join(f"{k} {v}" for k, v in d["resources"]["cores_used"].items())
            + " (publishers: the bench's own process). Delivery service peak RSS "
            f"{d['resources']['peak_rss_mb'].get('delivery')} MB, threads "
            f"{d.get('delivery_memory', {}).get('threads_mean')} (peak "
            f"{d.get('delivery_memory', {}).get('threads_peak')}); its subscription "
            f"counters (/metrics): " + (", ".join(f"{k} {v}" for k, v in sorted(
                d.get("pipeline_counters", {}).items()) if v) or
                "no answer within 2 x 15 s") + "; the cursors say: " +
            (", ".join(f"{k} {v}" for k, v in sorted(d.get("cursor_totals", {}).items()))
             or "-") +
            ". The scenario's indices: "
            f"{ix.get('writes_per_s')} documents written per s in "
            f"{ix.get('write_requests_per_s')} write requests, "
            f"{ix.get('searches_per_s')} searches per s.", ""] + profile_md(d.get("profile"))


def profile_md(profile: dict | None) -> list[str]:
    if not profile or "error" in profile:
        return []
    return ["Profile of the delivery service (py-spy --gil, share of GIL-holding "
            f"samples, {profile['samples']} samples, raw stacks in {profile['raw']}):", "",
            "| inclusive | % | self | % |", "|---|---|---|---|"] + [
        f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |"
        for a, b in zip(profile["inclusive_pct"][:10], profile["self_pct"][:10])] + [""]


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = harness.arguments(__doc__, SCENARIOS, "subscriptions.json/.md")
    harness.sized(p, "--documents", int, 10000, 1000, "throughput: changes written")
    p.add_argument("--subscriptions-throughput", type=int, default=10)
    p.add_argument("--scaling-workers", type=int, default=2,
                   help="throughput: the same backlog again with [delivery] workers = W "
                        "(0 or 1: not)")
    p.add_argument("--subscriptions-delay", type=int, default=100)
    harness.sized(p, "--subscriptions-idle", int, 1000, 200, "idle: subscriptions")
    p.add_argument("--rate", type=float, default=100.0,
                   help="delay: notifications per second")
    harness.sized(p, "--duration", float, 30, 10, "delay: seconds at --rate")
    p.add_argument("--delay-rate-limit", type=float, default=None,
                   help="delay: each subscription's rate_limit (default: [subscriptions] "
                        "default_rate_limit, what a tenant gets)")
    harness.sized(p, "--idle", float, 60, 15, "idle: seconds measured with the subscriptions")
    harness.sized(p, "--idle-base", float, 20, 10, "idle: seconds measured without")
    harness.sized(p, "--subscriptions-spread", int, 10000, 1000,
                  "spread: subscriptions, as many for each project")
    harness.sized(p, "--spread-projects", int, 1000, 100, "spread: projects")
    p.add_argument("--spread-rate", type=float, default=100.0,
                   help="spread: notifications per second over the projects")
    harness.sized(p, "--spread-duration", float, 60, 20, "spread: seconds at --spread-rate")
    p.add_argument("--results-name", default="subscriptions",
                   help="results file names, <name>.json and .md (make bench-scale: "
                        "subscriptions-scale, not to overwrite bench-subscriptions')")
    p.add_argument("--live-timeout", type=float, default=None,
                   help="longest wait for the subscriptions to go live (default: "
                        "--timeout plus 50 ms per subscription)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="idle: seconds left out after start-up and after going live")
    harness.load_options(
        p, "small counts for a smoke run", publishers=2,
        timeout=(240.0, "longest wait for deliveries or subscriptions (s)"),
        drain=(60.0, "delay: longest wait for everything to arrive after publishing"),
        warmup=(3.0, "delay: seconds of warm-up"))
    p.add_argument("--profile", action="store_true",
                   help="py-spy the delivery service during the throughput, idle and spread "
                        "windows (raw stacks: profile-subscriptions-*.txt)")
    return harness.parse(p, argv, SCENARIOS)


class Context(harness.Context):
    def __init__(self, args):
        super().__init__(args)
        self.profile_start, self.profile_stop = profiler(self.run, args.output)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = {"settings": {"documents": args.documents,
                             "subscriptions": {"throughput": args.subscriptions_throughput,
                                               "delay": args.subscriptions_delay,
                                               "idle": args.subscriptions_idle,
                                               "spread": args.subscriptions_spread},
                             "spread": {"projects": args.spread_projects,
                                        "rate": args.spread_rate,
                                        "duration_s": args.spread_duration},
                             "rate": args.rate, "duration_s": args.duration,
                             "idle_s": args.idle, "idle_base_s": args.idle_base,
                             "lease_seconds": LEASE_SECONDS,
                             "webhook_timeout": WEBHOOK_TIMEOUT,
                             "webhook_concurrency": CONCURRENCY,
                             "max_rate_limit": MAX_RATE_LIMIT, "refresh_interval": 1.0},
                "subscriptions_made_with": "Subscription.to_source() as "
                                           "SubscriptionStore.create() writes it, in "
                                           "Elasticsearch bulk requests of 1,000 then one "
                                           "refresh; state active, confirmed; no Keystone, "
                                           "no API"}
    return harness.main(
        args, argv, "bench/subscriptions.py",
        {"throughput": scenario_throughput, "delay": scenario_delay, "idle": scenario_idle,
         "spread": scenario_spread},
        lambda results, meta: harness.write_results(args.output, args.results_name, results,
                                                    markdown(results, meta)),
        desc="subscriptions benchmark", context=Context,
        publishers=args.publishers if "delay" in args.scenarios else 0, settings=settings)


if __name__ == "__main__":
    sys.exit(main())
