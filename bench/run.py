"""searchlight-forward benchmark: throughput against two ceilings and a Searchlight-style
baseline, CPU per notification, delay at steady rates, memory, and scaling to two
listener processes.

    .venv/bin/python bench/run.py                 # the full default run (~4.5 min on 2 cores)
    .venv/bin/python bench/run.py --quick         # a smoke run (about 1 min)
    .venv/bin/python bench/run.py --skip baseline,delay --count 30000

Runs on the local servers (`python3 scripts/servers.py up`), each scenario with
private names (a RabbitMQ virtual host for the run, its own indices, pool queues,
Zaqar queues, ports), cleaned up afterwards. Writes bench/results/latest.json and
latest.md and the delay plot (docs/images/bench-delay.png). Method and figures:
docs/benchmarks.md.

Scenarios (names for --skip):
  broker    bare oslo.messaging batch listener, no-op endpoint (the broker ceiling)
  index     the same documents bulk-indexed with elasticsearch.helpers (index ceiling)
  project   this project as deployed: a listener process, the delivery service with
            the shipped pipelines (Zaqar, logger), the WebSocket server and clients;
            done when every change is indexed, every cursor is at the end of the
            change log and every client has every change; also peak RSS
  scaling   the same with [listener] workers = 2
  nopipe    the listener alone (what the ways out cost)
  baseline  the same plugins and sinks driven the way Searchlight drove them
  delay     publish-to-searchable, -WebSocket and -Zaqar delays at steady rates
  outage    one pipeline's Zaqar cut for --outage seconds (default 120) at 200/s: the
            other ways out's delays during the cut against before it, the cut
            pipeline's catch-up time and whether the latest state of everything arrived
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import functools
import json
import math
import os
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import psutil  # noqa: E402
import tqdm  # noqa: E402

import harness  # noqa: E402
import workers  # noqa: E402
from harness import BenchError, Scenario  # noqa: E402

ROOT = workers.ROOT
log = harness.log
SCENARIOS = ("broker", "index", "project", "scaling", "nopipe", "baseline", "delay",
             "outage")
PLOT = os.path.join(ROOT, "docs", "images", "bench-delay.png")
# Issue 27 ("busy, not waiting"): cpu_vs_ceilings 1.5 (was 2.0), and the saturation,
# delay, two-process cost and generator targets below.
TARGETS = {"vs_broker": 0.50, "vs_baseline": 5.0, "cpu_vs_ceilings": 1.5,
           "es_cpu_vs_index": 2.0, "peak_rss_mb": 300.0, "scaling": 1.6,
           "project_cores": 1.9, "cpu_2_vs_1": 1.1, "generator_cores_at_1000": 0.1,
           "searchable_p50_at_200": 50.0, "websocket_p99": {200: 150.0, 500: 250.0},
           "websocket_p99_kept_up_at_1000": 1000.0}
# The listener's own histograms (per batch), read from its /metrics around each rate of
# the delay scenario: processing a batch (plugins, reads, the bulk), then the wait from
# its write to the doorbell ring that made it visible (the announcer's pause, refresh).
LISTENER_STAGES = (("batch", "batch_seconds"), ("write to visible", "visible_seconds"))
# Everything of the deployment whose CPU counts (not the load generator, not the
# clients): what a notification costs from the broker to every way out.
DEPLOYMENT = ("listener", "delivery", "websocket server", "elasticsearch", "rabbitmq",
              "zaqar", "redis")


# -- helpers -------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    values = sorted(values)

    def pick(q):
        return round(values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))], 1)
    return {"n": len(values), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(values[-1], 1)}


def publish_prequeue(ctx, scn: Scenario, spec: dict, desc: str) -> dict:
    harness.declare_pool(ctx.run.transport_url, scn.pool)
    with tqdm.tqdm(total=spec["count"], desc=f"{desc}: queueing", unit="msg",
                   leave=False) as bar:
        pub = ctx.pool.publish(spec, bar=bar)
    ctx.run.drop_default_queues()
    # Sent without confirms: RabbitMQ may still be reading the last ones off the sockets.
    deadline = time.monotonic() + 30
    depth = ctx.run.queue_depth(scn.pool)
    while not pub["errors"] and depth and depth[0] < spec["count"] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        depth = ctx.run.queue_depth(scn.pool)
    if pub["errors"] or not depth or depth[0] < spec["count"]:
        raise BenchError(f"{desc}: queued {depth} of {spec['count']} "
                         f"({pub['errors']} publish errors)")
    return {"queued": spec["count"], "publish_rate": pub["rate"]}


class Context(harness.Context):
    def __init__(self, args):
        super().__init__(args)
        self.main_ps = psutil.Process()

    def watch(self, extra: dict, rss_of=()) -> harness.Watch:
        procs = dict(self.servers)
        procs["bench"] = self.main_ps
        procs.update(extra)
        return harness.Watch(procs, rss_of=rss_of)


# -- scenarios ---------------------------------------------------------------------------

def scenario_broker(ctx: Context) -> dict:
    """Broker ceiling: a bare batch listener (same batch size, timeout, prefetch,
    threads, pool) with a no-op endpoint, on the pre-queued stream."""
    n = ctx.args.count
    scn = Scenario(ctx.run, "broker", pipelines=False)
    try:
        out = publish_prequeue(ctx, scn, ctx.spec(1, n), "broker")
        shared = harness.SPAWN.Array("d", 4, lock=False)
        stop = harness.SPAWN.Event()
        proc = harness.SPAWN.Process(target=workers.bare_listener_main, args=(
            ctx.run.transport_url, scn.pool, ctx.args.batch_size, ctx.args.batch_timeout,
            ctx.args.executor_threads, 2 * ctx.args.batch_size, shared, stop), daemon=True)
        started = harness.QueueStart(ctx.run, scn.pool, n)
        proc.start()
        watch = ctx.watch({"listener": psutil.Process(proc.pid)}, rss_of=["listener"])
        with tqdm.tqdm(total=n, desc="broker: consuming", unit="msg", leave=False) as bar:
            harness.wait_until(lambda: started.at, 120, 0.01, "the bare listener to start")
            watch.start()
            deadline = time.monotonic() + 60 + n / 500
            while shared[0] < n:
                bar.update(int(shared[0]) - bar.n)
                if time.monotonic() > deadline or not proc.is_alive():
                    raise BenchError(f"broker: consumed {shared[0]:.0f} of {n}")
                time.sleep(0.05)
            bar.update(n - bar.n)
        watch.stop()
        stop.set()
        proc.join(30)
        elapsed = shared[3] - shared[1]
        resources = watch.report()
        out.update(notifications=n, seconds=round(elapsed, 2), rate=round(n / elapsed),
                   from_first_message_s=round(shared[3] - min(started.at, shared[2]), 2),
                   resources=resources,
                   cpu_ms_per_notification=cpu_ms_per_notification(
                       resources, n, ("listener", "rabbitmq")))
        return out
    finally:
        scn.cleanup()


def scenario_index(ctx: Context) -> dict:
    """Index ceiling: the stream's documents via helpers.parallel_bulk, no listener."""
    n = ctx.args.count
    scn = Scenario(ctx.run, "index", pipelines=False)
    try:
        result = harness.SPAWN.Queue()
        proc = harness.SPAWN.Process(target=workers.index_ceiling_main, args=(
            ctx.spec(1, n), harness.ES_URL, harness.SEARCH_BACKEND, scn.group,
            ctx.args.bulk_threads,
            ctx.args.bulk_chunk, result), daemon=True)
        proc.start()
        watch = ctx.watch({"bulk client": psutil.Process(proc.pid)})
        es0 = harness.es_stats(ctx.run.es)
        watch.start()
        with tqdm.tqdm(total=1, desc="index: bulk indexing", leave=False):
            out = result.get(timeout=120 + n / 200)
        watch.stop()
        es1 = harness.es_stats(ctx.run.es)
        proc.join(30)
        elapsed = out["indexed"] - out["started"]
        resources = watch.report()
        return {"notifications": out["notifications"], "documents": out["documents"],
                "cpu_ms_per_notification": cpu_ms_per_notification(
                    resources, n, ("bulk client", "elasticsearch")),
                "failed": out["failed"], "unlocated": out["unlocated"],
                "seconds": round(elapsed, 2), "rate": round(n / elapsed),
                "docs_per_s": round(out["documents"] / elapsed),
                "refresh_s": round(out["refreshed"] - out["indexed"], 2),
                "method": f"helpers.parallel_bulk(thread_count={ctx.args.bulk_threads}, "
                          f"chunk_size={ctx.args.bulk_chunk}), external_gte versions",
                "elasticsearch": harness.es_delta(es0, es1, elapsed),
                "resources": resources}
    finally:
        scn.cleanup()


def run_pipeline_scenario(ctx: Context, name: str, n: int, workers_: int = 1,
                          pipelines: bool = True, baseline: bool = False) -> dict:
    """Pre-queue ``n`` notifications, start the delivery service, the WebSocket server
    and K clients, then the listener (ours, or the Searchlight-style one); time from
    its first message until every change is indexed and delivered everywhere."""
    args = ctx.args
    scn = Scenario(ctx.run, name, workers_=workers_, pipelines=pipelines,
                   overrides=ctx.args.overrides)
    children: list = []
    clients = proc = stop = None
    spies: dict = {}
    try:
        scn.ensure_index()
        out = publish_prequeue(ctx, scn, ctx.spec(1 if not baseline else 2, n), name)
        extra = {}
        if pipelines:
            if not baseline:
                delivery = harness.start_delivery(scn)
                children.append(delivery)
                extra["delivery"] = delivery.ps
            ws = harness.start_ws_server(scn)
            children.append(ws)
            extra["websocket server"] = ws.ps
            clients = harness.WsClients(scn.ws_url, ctx.run.clients(args.clients))
            clients.wait_subscribed()
            extra["ws clients"] = clients.ps
        started = harness.QueueStart(ctx.run, scn.pool, n)
        if baseline:
            shared = harness.SPAWN.Array("d", 4, lock=False)
            stop = harness.SPAWN.Event()
            result_q = harness.SPAWN.Queue()
            operator = scn.zaqar_operator_queue()
            proc = harness.SPAWN.Process(target=workers.searchlight_style_main, args=(
                scn.conf, args.baseline_threads, shared, stop, result_q,
                operator["pipeline"] if operator else ""), daemon=True)
            proc.start()
            listener_ps = psutil.Process(proc.pid)
        else:
            listener = harness.start_listener(scn)
            children.append(listener)
            listener_ps = listener.ps
        extra["listener"] = listener_ps
        watch = ctx.watch(extra, rss_of=["listener"] + (["delivery"] if "delivery" in extra
                                                        else []))
        es0 = harness.es_stats(ctx.run.es)
        def listening():
            if baseline and not proc.is_alive():     # a start-up error: say so now
                raise BenchError(f"{name}: the Searchlight-style listener exited at "
                                 f"start ({proc.exitcode}); see searchlight-style.log")
            return started.at
        harness.wait_until(listening, 120, 0.01, f"{name}: the listener to start")
        t0 = started.at
        watch.start()
        if not baseline:
            spies = start_profiles(ctx, name, extra)
        timeout = args.timeout if not baseline else max(args.timeout, n / 40)
        deadline = time.monotonic() + timeout
        times: dict[str, float] = {}
        status: dict = {}
        zaqar = scn.zaqar_operator_queue() if pipelines else None
        desc = f"{name}: processing"
        with tqdm.tqdm(total=n, desc=desc, unit="msg", leave=False) as bar:
            while True:
                now = time.monotonic()
                if baseline:
                    done = int(shared[0])
                    if not proc.is_alive():
                        raise BenchError(f"{name}: the Searchlight-style listener died")
                else:
                    snap = harness.listener_status(scn)
                    if snap is not None:
                        status = snap
                    done = int(status.get("listener", {}).get("notifications", 0))
                    if not listener.alive():
                        raise BenchError(f"{name}: the listener exited:\n{listener.tail()}")
                bar.update(min(done, n) - bar.n)
                if "indexed" not in times and done >= n:
                    times["indexed"] = shared[2] if baseline else now
                    if clients is not None:
                        clients.ask("expect", harness.expected_views(
                            ctx.run.es, scn.group, ctx.run.clients(args.clients),
                            json.load(open(ctx.run.tokens_path))))
                if "indexed" in times:
                    if pipelines and not baseline and "pipelines" not in times:
                        at_head = harness.cursors_at_head(ctx.run.es, scn)
                        if zaqar is not None and at_head.get(zaqar["pipeline"]) and \
                                "zaqar" not in times:
                            times["zaqar"] = now
                        if at_head and all(at_head.values()):
                            times["pipelines"] = now
                    if baseline and zaqar is not None and "zaqar" not in times:
                        if harness.zaqar_total(zaqar["project"], zaqar["queue"]) >= \
                                int(shared[3]):
                            times["zaqar"] = now
                    if clients is not None and "websocket" not in times:
                        conv = clients.ask("converged")
                        if all(c["missing"] == 0 for c in conv):
                            times["websocket"] = max(c["done_at"] for c in conv)
                    wanted = {"indexed"}
                    if pipelines:
                        wanted |= {"websocket"} | ({"zaqar"} if zaqar else set())
                        if not baseline:
                            wanted.add("pipelines")
                    if wanted <= set(times):
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"{name}: not done after {timeout:.0f}s: {done}/{n} "
                                     f"processed, reached {sorted(times)}; cursors at the "
                                     f"end: {harness.cursors_at_head(ctx.run.es, scn)}; "
                                     f"clients {clients.ask('converged') if clients else None}")
                time.sleep(0.1 if "indexed" not in times else 0.2)
        watch.stop()
        if spies:
            out["profile"] = stop_profiles(spies)
        es1 = harness.es_stats(ctx.run.es)
        t_done = max(times.values())
        elapsed = t_done - t0
        resources = watch.report()
        out.update(notifications=n, seconds=round(elapsed, 2), rate=round(n / elapsed),
                   indexed_after_s=round(times["indexed"] - t0, 2),
                   done_after_s={k: round(v - t0, 2) for k, v in times.items()},
                   elasticsearch=harness.es_delta(es0, es1, elapsed),
                   resources=resources, workers=workers_,
                   cpu_ms_per_notification=cpu_ms_per_notification(resources, n,
                                                                    DEPLOYMENT))
        if clients is not None:
            st = clients.ask("status")
            out["ws_clients"] = {"count": len(st),
                                 "reconnects": sum(s["connects"] - 1 for s in st),
                                 "closes": dict(sum((collections.Counter(s["closes"])
                                                     for s in st), collections.Counter())),
                                 "regressions": sum(s["regressions"] for s in st),
                                 "frames": sum(s["changes"] for s in st)}
        if baseline:
            stop.set()
            with contextlib.suppress(Exception):
                out["baseline_counts"] = result_q.get(timeout=60)
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        else:
            out["listener"] = status.get("listener")
            if pipelines:
                delivered = harness.delivery_status(scn) or {}
                out["pipelines"] = {k.rsplit(":", 1)[-1]: v.get("counters", {})
                                    for k, v in delivered.get("pipelines", {}).items()}
        if zaqar is not None:
            out["zaqar_operator_queue_messages"] = harness.zaqar_total(zaqar["project"],
                                                                       zaqar["queue"])
        return out
    finally:
        for spy in spies.values():
            spy[0].kill()
        if proc is not None and proc.is_alive():      # the Searchlight-style listener
            stop.set()
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        harness.stop_all(clients, *reversed(children), scn=scn)


def cpu_ms_per_notification(resources: dict, n: int, names) -> dict:
    """CPU milliseconds per notification, per process and for ``names`` together."""
    wall = resources["wall_s"]
    per = {k: round(1000 * v * wall / n, 3) for k, v in resources["cores_used"].items()}
    return {"total": round(sum(per.get(k, 0.0) for k in names), 3), "by_process": per}


def start_profiles(ctx, name, procs: dict) -> dict:
    """With --profile: py-spy on the project's Python processes among ``procs`` (the
    listener, the delivery service, the WebSocket server) and on Zaqar's server."""
    if not ctx.args.profile:
        return {}
    targets = {who: ps for who, ps in procs.items()
               if who in ("listener", "delivery", "websocket server")}
    zaqar = harness.server_processes().get("zaqar")
    if zaqar is not None:
        targets["zaqar"] = zaqar
    spies = {}
    for who, ps in targets.items():
        spy = start_profile(ctx, f"{name}-{who.split()[0]}", ps)
        if spy is not None:
            spies[who] = spy
    return spies


def stop_profiles(spies: dict) -> dict:
    """Stop every py-spy of ``start_profiles`` (emptying ``spies``); who -> profile."""
    profiles = {who: stop_profile(*spy) for who, spy in spies.items()}
    spies.clear()
    return profiles


def start_profile(ctx, name, ps):
    """py-spy on a process (and its children) while the scenario runs."""
    import shutil
    import subprocess
    exe = shutil.which("py-spy") or os.path.join(ctx.run.bindir, "py-spy")
    if not os.path.exists(exe):
        log("--profile: py-spy not found (pip install py-spy)")
        return None
    raw = os.path.join(ctx.args.output, f"profile-{name}.txt")
    os.makedirs(ctx.args.output, exist_ok=True)
    proc = subprocess.Popen([exe, "record", "-p", str(ps.pid), "--subprocesses", "--gil",
                             "-r", "50",
                             "--nonblocking", "--format", "raw", "-o", raw, "-d", "600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, raw


def stop_profile(proc, raw) -> dict:
    """Stop py-spy; the share of the process's GIL-holding samples (its Python CPU)
    under each function."""
    import re
    import signal as sig
    proc.send_signal(sig.SIGINT)
    try:
        proc.wait(30)
    except Exception:  # noqa: BLE001
        proc.kill()
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    frame_re = re.compile(r"(.*?) \((.*?):\d+\)$")

    def name(frame):
        m = frame_re.match(frame)
        return f"{m.group(1)} ({os.path.basename(m.group(2))})" if m else frame
    try:
        lines = open(raw).read().splitlines()
    except OSError:
        return {"error": "py-spy wrote nothing"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [name(f) for f in stack.split(";") if not f.startswith("process ")
                  and not f.startswith("Thread._bootstrap") and not f.startswith("Thread.run")]
        if not frames:
            continue
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    pct = lambda c: [(k, round(100 * v / max(total, 1), 1)) for k, v in c.most_common(40)]
    return {"samples": total, "raw": raw, "inclusive_pct": pct(inclusive),
            "self_pct": pct(own)}


def scenario_project(ctx):
    return run_pipeline_scenario(ctx, "project", ctx.args.count)


def scenario_scaling(ctx):
    return run_pipeline_scenario(ctx, "scaling", ctx.args.count, workers_=2)


def scenario_nopipe(ctx):
    return run_pipeline_scenario(ctx, "nopipe", ctx.args.count, pipelines=False)


def scenario_baseline(ctx):
    return run_pipeline_scenario(ctx, "baseline", ctx.args.baseline_count, baseline=True)


# -- delay at steady rates -------------------------------------------------------------------

def scenario_delay(ctx: Context) -> dict:
    args = ctx.args
    dep = harness.Services(ctx.run, "delay", clients=ctx.run.clients(args.clients),
                             overrides=args.overrides)
    scn = dep.scn
    search = None
    spies: dict = {}
    try:
        dep.start()
        clients, zaqar = dep.clients, dep.operator
        listener, delivery, ws = (dep.children[k] for k in ("listener", "delivery",
                                                           "websocket"))
        search = harness.SearchWatcher(ctx.run.es, scn.group, dep.transport_url).start()
        extra = {"listener": listener.ps, "delivery": delivery.ps,
                 "websocket server": ws.ps, "ws clients": clients.ps,
                 "zaqar reader": zaqar.ps, "publishers": ctx.pool.ps}
        total = 0

        processed = functools.partial(harness.processed, scn)

        # Warm-up: connections, caches, the JIT of Elasticsearch; not measured.
        warm = ctx.spec(999, int(args.warmup * 100), start="2026-01-01T00:00:00")
        ctx.pool.publish(warm, rate=100)
        total += warm["count"]
        harness.wait_until(lambda: processed() >= total, 60, 0.2, "the warm-up")
        harness.wait_until(lambda: all(harness.cursors_at_head(ctx.run.es, scn).values()),
                           60, 0.2, "the pipelines after the warm-up")
        clients.ask("records")
        zaqar.records()
        out = {"duration_s": args.duration, "rates": []}
        spies = start_profiles(ctx, "delay", extra)     # every rate, after the warm-up
        for i, rate in enumerate(args.rates):
            count = int(rate * args.duration)
            spec = ctx.spec(3000 + i, count, start=f"2026-0{4 + i % 5}-01T00:00:00")
            changes = workers.changes_of(workers.make_stream(spec))
            depth = {"max": 0}
            stop_depth = threading.Event()

            def sample_depth():
                while not stop_depth.wait(0.25):
                    d = ctx.run.queue_depth(scn.pool)
                    if d:
                        depth["max"] = max(depth["max"], d[0])
            sampler = threading.Thread(target=sample_depth, daemon=True)
            sampler.start()
            ctx.pool.prepare(spec)          # made and encoded before the CPU is watched
            watch = ctx.watch(extra, rss_of=["listener"]).start()
            stages_before = harness.listener_histograms(scn)
            pub, drained, es_used = harness.steady(
                ctx, scn, spec, rate, watch, total, f"delay: {rate:g}/s for {args.duration:g}s")
            stages_after = harness.listener_histograms(scn)
            total += count
            # The last frames and pops: until the clients' counts stop moving.
            last = -1
            for _ in range(40):
                frames = sum(s["changes"] for s in clients.ask("status")) + zaqar.count()
                if frames == last:
                    break
                last = frames
                time.sleep(0.5)
            stop_depth.set()
            sampler.join(2)
            records = clients.ask("records")
            res = delays(changes, pub["times"], records, dict(search.seen),
                         zaqar.records())
            res.update(rate=rate, published=pub["sent"], publish_errors=pub["errors"],
                       achieved_rate=pub["rate"], drained=drained,
                       max_queue_backlog=depth["max"], resources=watch.report(),
                       elasticsearch=es_used, listener_stages={
                           stage: harness.histogram_delta(stages_before, stages_after,
                                                          f"searchlight_forward_listener_{name}")
                           for stage, name in LISTENER_STAGES})
            res["sustained"] = sustained(res)
            out["rates"].append(res)
            log("  listener stages at {:g}/s: ".format(rate) + ", ".join(
                f"{stage} mean {v['mean_ms']} ms, p50 <= {v['p50_ms']}, p99 <= {v['p99_ms']}"
                for stage, v in res["listener_stages"].items()))
            log(f"  delay at {rate:g}/s: searchable p50/p99 "
                f"{res['searchable_ms']['p50']}/{res['searchable_ms']['p99']} ms, websocket "
                f"{res['websocket_ms']['p50']}/{res['websocket_ms']['p99']} ms, zaqar "
                f"{res['zaqar_ms']['p50']}/{res['zaqar_ms']['p99']} ms (achieved "
                f"{pub['rate']}/s, backlog max {depth['max']})")
        if spies:
            out["profile"] = stop_profiles(spies)
        out["search_method"] = harness.SEARCH_METHOD
        out["search_polls"] = search.polls
        out["search_errors"] = search.errors
        st = clients.ask("status")
        out["ws_clients"] = {"count": len(st), "reconnects": sum(s["connects"] - 1 for s in st),
                             "regressions": sum(s["regressions"] for s in st)}
        return out
    finally:
        for spy in spies.values():
            spy[0].kill()
        if search is not None:
            search.stop()
        dep.stop()


def scenario_outage(ctx: Context) -> dict:
    """One pipeline's Zaqar cut for ``--outage`` seconds at a steady 200/s: the
    others' and the WebSocket clients' delays during the cut against before it (one
    run), then how long the cut pipeline takes to catch up and whether it received
    the latest state of every resource."""
    from devtools.faultproxy import FaultProxy
    args = ctx.args
    zaqar = urllib.parse.urlsplit(harness.ZAQAR_URL)
    proxy = FaultProxy(zaqar.hostname, zaqar.port).start()
    dep = harness.Services(ctx.run, "outage", clients=ctx.run.clients(args.clients),
                             overrides=args.overrides, stopped_sink_url=proxy.url)
    scn = dep.scn
    stopped = None
    rate, before, after = 200, 20.0, 20.0
    try:
        dep.start()
        clients, operator = dep.clients, dep.operator
        z = scn.zaqar_queue_of("stopped")
        stopped = harness.ZaqarReader(z["project"], z["queue"])
        warm = ctx.spec(998, int(args.warmup * 100), start="2026-01-01T00:00:00")
        ctx.pool.publish(warm, rate=100)
        harness.wait_until(lambda: all(harness.cursors_at_head(ctx.run.es, scn).values()),
                           60, 0.2, "the pipelines after the warm-up")
        clients.ask("records")
        operator.records()
        stopped.records()

        count = int(rate * (before + args.outage + after))
        spec = ctx.spec(4000, count, start="2026-09-01T00:00:00")
        changes = workers.changes_of(workers.make_stream(spec))
        cut = {}

        def cut_the_sink(t0):
            time.sleep(max(0.0, t0 + before - time.monotonic()))
            proxy.block()
            cut["from"] = time.monotonic()
            time.sleep(args.outage)
            proxy.unblock()
            cut["to"] = time.monotonic()
        ctx.pool.prepare(spec)
        t0 = time.monotonic() + 0.5        # when the publishers start (publish's start_in)
        cutter = threading.Thread(target=cut_the_sink, args=(t0,), daemon=True)
        cutter.start()
        with tqdm.tqdm(total=count, desc=f"outage: {rate}/s, the stopped pipeline's "
                       f"Zaqar cut for {args.outage:g}s", unit="msg", leave=False) as bar:
            pub = ctx.pool.publish(spec, rate=rate, record=True, bar=bar)
        cutter.join()
        harness.wait_until(lambda: all(harness.cursors_at_head(ctx.run.es, scn).values()),
                           args.drain + args.outage, 0.5, "every pipeline to catch up")
        last = -1
        for _ in range(40):                 # the last pops and frames
            got = stopped.count() + operator.count()
            if got == last:
                break
            last = got
            time.sleep(0.5)
        return outage_figures(changes, pub["times"], cut, clients.ask("records"),
                              operator.records(), stopped.records(), proxy.refused)
    finally:
        if stopped is not None:
            stopped.stop()
        dep.stop()
        proxy.stop()


def outage_figures(changes, times, cut, ws_records, operator_records, stopped_records,
                   refused) -> dict:
    def segment(lo, hi):
        keep = [c if lo <= t < hi else [] for c, t in zip(changes, times)]
        d = delays(keep, times, ws_records, {}, operator_records)
        return {"websocket_ms": d["websocket_ms"], "zaqar_operator_ms": d["zaqar_ms"],
                "changes": d["changes_published"]}
    t_first = min(t for t in times if t == t)
    during = segment(cut["from"], cut["to"])
    normal = segment(t_first, cut["from"])
    # The stopped pipeline: the latest published version of every resource must
    # have arrived; catch-up is until it held everything published before the cut ended.
    latest: dict = {}
    for found, t in zip(changes, times):
        for rtype, rid, version, _, _ in found:
            if rid is not None and t == t:
                latest[(rtype, rid)] = max(version, latest.get((rtype, rid), 0))
    got = collections.defaultdict(list)
    for rtype, rid, version, at in stopped_records:
        got[(rtype, rid)].append((version, at))
    for receipts in got.values():
        receipts.sort()
    missing = [k for k, v in latest.items() if not got.get(k) or got[k][-1][0] < v]
    caught_up = cut["to"]
    during_keys = 0
    for found, t in zip(changes, times):
        if not (t == t and t < cut["to"]):
            continue
        for rtype, rid, version, _, _ in found:
            if rid is None:
                continue
            during_keys += t >= cut["from"]
            at = _first_at_least(got.get((rtype, rid), []), version)
            if at is not None:
                caught_up = max(caught_up, at)
    # The backlog: what arrived between the cut's end and the catch-up.
    received_after = sum(1 for *_, at in stopped_records if cut["to"] <= at <= caught_up)
    return {"outage_s": round(cut["to"] - cut["from"], 1), "refused_connections": refused,
            "before_cut": normal, "during_cut": during,
            "websocket_p99_ratio": ratio(during["websocket_ms"]["p99"],
                                         normal["websocket_ms"]["p99"]),
            "zaqar_operator_p99_ratio": ratio(during["zaqar_operator_ms"]["p99"],
                                              normal["zaqar_operator_ms"]["p99"]),
            "stopped": {"resources": len(latest), "latest_state_missing": len(missing),
                        "missing_sample": [list(k) for k in missing[:5]],
                        "catch_up_s": round(caught_up - cut["to"], 1),
                        "changes_during_cut": during_keys,
                        "backlog_messages": received_after}}


def delays(changes, times, records, seen, zaqar_records=()) -> dict:
    """Publish -> searchable, -> WebSocket and -> Zaqar delays (ms) of one segment.

    For every change a published notification makes ((type, id, version)), the delay
    is until the first time a version at least as new was searchable / received by a
    client that receives that resource at all (a newer state supersedes an older one
    that was never shown on its own). Changes already superseded when published (an
    older notification published after a newer one by another publisher process)
    are left out.
    """
    published = collections.defaultdict(list)   # (type, id) -> [(version, t, delete)]
    for j, found in enumerate(changes):
        t = times[j]
        if t != t:     # nan: not published
            continue
        for rtype, rid, version, delete, _ in found:
            if rid is not None:
                published[(rtype, rid)].append((version, t, delete))
    # Searchable: documents in <group>-search (tombstones are hidden there).
    by_id = collections.defaultdict(list)
    for (rid, version), t in seen.items():
        by_id[rid].append((version, t))
    search_ms, not_searchable, superseded = [], 0, 0
    for (rtype, rid), items in published.items():
        shown = sorted(by_id.get(rid, ()))
        for version, t, delete in items:
            if delete:
                continue
            at = _first_at_least(shown, version)
            if at is None:
                not_searchable += 1
            elif at < t:
                superseded += 1
            else:
                search_ms.append(1000 * (at - t))
    ws_ms, ws_missing = _receipt_delays(published, records)
    zaqar_ms, zaqar_missing = _receipt_delays(published, [zaqar_records])
    return {"searchable_ms": percentiles(search_ms), "websocket_ms": percentiles(ws_ms),
            "zaqar_ms": percentiles(zaqar_ms),
            "changes_published": sum(len(v) for v in published.values()),
            "not_searchable": not_searchable, "superseded_at_publish": superseded,
            "ws_not_received": ws_missing, "zaqar_not_received": zaqar_missing}


def _receipt_delays(published, records) -> tuple[list[float], int]:
    """Delays until each published change (or a newer version of its resource) was
    received, for every receiver (records: [(type, id, version, t), ...] each) and
    every resource it received at all."""
    ws_ms, ws_missing = [], 0
    for client in records:
        got = collections.defaultdict(list)
        for rtype, rid, version, t in client:
            got[(rtype, rid)].append((version, t))
        for key, receipts in got.items():
            receipts.sort()
            for version, t, _ in published.get(key, ()):
                at = _first_at_least(receipts, version)
                if at is None:
                    ws_missing += 1
                elif at >= t:
                    ws_ms.append(1000 * (at - t))
    return ws_ms, ws_missing


def _first_at_least(pairs, version):
    """Earliest time among (version, time) pairs (sorted by version) with a version
    >= ``version``."""
    i = bisect.bisect_left(pairs, (version, -math.inf))
    rest = [t for _, t in pairs[i:]]
    return min(rest) if rest else None


# -- report ---------------------------------------------------------------------------------

def ratio(a, b):
    return round(a / b, 2) if a and b else None


def summarize(res: dict) -> dict:
    rate = {k: res[k]["rate"] for k in ("broker", "index", "project", "scaling", "nopipe",
                                        "baseline") if isinstance(res.get(k), dict)
            and "rate" in res[k]}
    s = {"rates": rate}
    cpu = {k: res[k]["cpu_ms_per_notification"]["total"] for k in rate
           if "cpu_ms_per_notification" in res[k]}
    s["cpu_ms_per_notification"] = cpu
    if "project" in rate:
        project = res["project"]
        s["project_vs_broker"] = ratio(rate["project"], rate.get("broker"))
        s["project_vs_index"] = ratio(rate["project"], rate.get("index"))
        s["project_vs_baseline"] = ratio(rate["project"], rate.get("baseline"))
        s["scaling_2_vs_1"] = ratio(rate.get("scaling"), rate["project"])
        s["ways_out_cost"] = ratio(rate["project"], rate.get("nopipe"))
        s["peak_rss_mb"] = project["resources"]["peak_rss_mb"].get("listener")
        s["peak_rss_mb_delivery"] = project["resources"]["peak_rss_mb"].get("delivery")
        if "broker" in cpu and "index" in cpu:
            s["ceilings_cpu_ms"] = round(cpu["broker"] + cpu["index"], 3)
            s["cpu_vs_ceilings"] = ratio(cpu.get("project"), s["ceilings_cpu_ms"])
        es_doc = {k: es_cpu_per_doc(res.get(k)) for k in ("project", "index")}
        s["es_cpu_ms_per_doc"] = es_doc
        s["es_cpu_vs_index"] = ratio(es_doc["project"], es_doc["index"])
        e = project["elasticsearch"]
        s["refreshes_per_s"] = round(e["refreshes"] / max(project["seconds"], 1e-9), 1)
        used = project["resources"]["cores_used"]
        s["project_cores_busy"] = round(sum(used.get(k) or 0 for k in DEPLOYMENT), 2)
        s["cpu_2_vs_1"] = ratio(cpu.get("scaling"), cpu.get("project"))
    if "scaling" in rate:
        s["peak_rss_mb_2_workers"] = res["scaling"]["resources"]["peak_rss_mb"].get("listener")
    delay = res.get("delay")
    if isinstance(delay, dict):
        for r in delay.get("rates", []):
            for key in ("websocket_ms", "zaqar_ms", "searchable_ms"):
                s[f"{key[:-3]}_p99_ms_at_{r['rate']:g}"] = r[key]["p99"]
            s[f"searchable_p50_ms_at_{r['rate']:g}"] = r["searchable_ms"]["p50"]
            s[f"kept_up_at_{r['rate']:g}"] = bool(r.get("sustained"))
            s[f"generator_cores_at_{r['rate']:g}"] = \
                r["resources"]["cores_used"].get("publishers")
    return s


def es_cpu_per_doc(r) -> float | None:
    """Elasticsearch CPU milliseconds per document it indexed in a scenario."""
    if not isinstance(r, dict) or "resources" not in r:
        return None
    res = r["resources"]
    cores = res["cores_used"].get("elasticsearch")
    docs = r["elasticsearch"]["docs_indexed"]
    return round(1000 * cores * res["wall_s"] / docs, 3) if cores and docs else None


def targets(s: dict) -> list[dict]:
    rows = []

    def add(name, target, value, ok):
        rows.append({"target": name, "goal": target, "measured": value,
                     "met": None if value is None or ok is None else bool(ok)})
    v = s.get("project_vs_broker")
    add("throughput with the shipped pipelines vs broker ceiling", ">= 0.5", v,
        v is not None and v >= TARGETS["vs_broker"])
    v = s.get("cpu_vs_ceilings")
    add("CPU ms per notification, all processes, vs the ceilings' sum", "<= 1.5x", v,
        v is not None and v <= TARGETS["cpu_vs_ceilings"])
    v = s.get("es_cpu_vs_index")
    add("Elasticsearch CPU per indexed document vs index ceiling", "<= 2x", v,
        v is not None and v <= TARGETS["es_cpu_vs_index"])
    v = s.get("refreshes_per_s")
    add("refreshes per second (announce_interval 0.1 s: at most 10 per listener "
        "process, whatever the readers)", "bounded", v, None)
    v = s.get("scaling_2_vs_1")
    add("two listener processes vs one", ">= 1.6x", v, v is not None and v >= TARGETS["scaling"])
    v = s.get("project_vs_baseline")
    add("throughput vs Searchlight-style", ">= 5x", v,
        v is not None and v >= TARGETS["vs_baseline"])
    v = s.get("peak_rss_mb")
    add("listener peak RSS", "< 300 MB", v, v is not None and v < TARGETS["peak_rss_mb"])
    # Issue 27's targets.
    v = s.get("project_cores_busy")
    add("cores busy with the project's processes and servers at full load", ">= 1.9", v,
        v is not None and v >= TARGETS["project_cores"])
    v = s.get("cpu_2_vs_1")
    add("two listener processes: CPU per notification vs one", "<= 1.1x", v,
        v is not None and v <= TARGETS["cpu_2_vs_1"])
    v = s.get("searchable_p50_ms_at_200")
    add("p50 publish-to-searchable at 200/s (ms)", "<= 50", v,
        v is not None and v <= TARGETS["searchable_p50_at_200"])
    for rate, goal in TARGETS["websocket_p99"].items():
        v = s.get(f"websocket_p99_ms_at_{rate}")
        add(f"p99 publish-to-WebSocket at {rate}/s (ms)", f"<= {goal:g}", v,
            v is not None and v <= goal)
    v = s.get("websocket_p99_ms_at_1000")
    kept = s.get("kept_up_at_1000")
    add("1,000/s kept up, p99 publish-to-WebSocket (ms)", "kept up, < 1000", v,
        None if v is None else bool(kept) and v < TARGETS["websocket_p99_kept_up_at_1000"])
    v = s.get("generator_cores_at_1000")
    add("load generator at 1,000/s (cores)", "<= 0.1", v,
        v is not None and v <= TARGETS["generator_cores_at_1000"])
    for key in sorted(k for k in s if k.startswith("zaqar_p99") or (
            k.startswith("websocket_p99") and not k.endswith(("_at_200", "_at_500",
                                                               "_at_1000")))):
        what, _, rate = key.partition("_p99_ms_at_")
        add(f"p99 publish-to-{'WebSocket' if what == 'websocket' else 'Zaqar'} at "
            f"{rate}/s (ms)", "report", s[key], None)
    return rows


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}{unit}"
    return f"{v}{unit}"


def markdown(res: dict, meta: dict) -> str:
    s = res["summary"]
    rates = s["rates"]
    lines = [f"# Benchmark results ({meta['started']}, {meta['wall_s']:.0f} s)", "",
             f"`{meta['command']}` on {meta['machine']['nproc']} CPUs, "
             f"{meta['machine']['memory_gb']} GB; N = {meta['count']} notifications "
             f"(baseline {meta['baseline_count']}), {meta['clients']} WebSocket clients, "
             f"{meta['publishers']} publisher processes"
             + (f"; listener options {meta['overrides']}" if meta.get("overrides") else "")
             + ".", "",
             "## Throughput", "",
             "| scenario | notifications | seconds | notifications/s | vs broker ceiling "
             "| vs index ceiling | vs Searchlight-style | CPU ms / notification |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    labels = {"broker": "broker ceiling (bare batch listener, no-op; + RabbitMQ)",
              "index": "index ceiling (parallel_bulk, no listener; + Elasticsearch)",
              "project": "this project, 1 listener process, delivery, WebSocket",
              "scaling": "the same, 2 listener processes",
              "nopipe": "the listener alone (no delivery, no WebSocket)",
              "baseline": "Searchlight-style baseline"}
    for key, label in labels.items():
        r = res.get(key)
        if not isinstance(r, dict) or "rate" not in r:
            if isinstance(r, dict) and "error" in r:
                lines.append(f"| {label} | failed: {r['error'][:80]} | | | | | | |")
            continue
        cpu = (r.get("cpu_ms_per_notification") or {}).get("total")
        lines.append(f"| {label} | {r['notifications']} | {r['seconds']} | {r['rate']} | "
                     f"{fmt(ratio(r['rate'], rates.get('broker')))} | "
                     f"{fmt(ratio(r['rate'], rates.get('index')))} | "
                     f"{fmt(ratio(r['rate'], rates.get('baseline')))} | {fmt(cpu)} |")
    lines += ["", "CPU ms / notification: CPU seconds of the deployment's processes over "
              "the timed window, per notification: listener, delivery service, WebSocket "
              "server, Elasticsearch, RabbitMQ, Zaqar and Redis for this project (not the "
              "load generator or the WebSocket clients); the bare listener and RabbitMQ "
              "for the broker ceiling; the bulk client and Elasticsearch for the index "
              "ceiling."]
    delay = res.get("delay")
    if isinstance(delay, dict) and "rates" in delay:
        lines += ["", "## Delay at steady rates", "",
                  "| rate (/s) | achieved | kept up (max backlog) | searchable p50 / p95 / p99 (ms) "
                  "| WebSocket p50 / p95 / p99 (ms) | Zaqar p50 / p95 / p99 (ms) "
                  "| samples (search / ws / zaqar) |",
                  "|---:|---:|---|---|---|---|---|"]
        for r in delay["rates"]:
            a, w, z = r["searchable_ms"], r["websocket_ms"], r["zaqar_ms"]
            kept = "yes" if sustained(r) else "**no**"
            lines.append(f"| {r['rate']:g} | {r['achieved_rate']} | {kept} "
                         f"({r['max_queue_backlog']}) | "
                         f"{fmt(a['p50'])} / {fmt(a['p95'])} / {fmt(a['p99'])} | "
                         f"{fmt(w['p50'])} / {fmt(w['p95'])} / {fmt(w['p99'])} | "
                         f"{fmt(z['p50'])} / {fmt(z['p95'])} / {fmt(z['p99'])} | "
                         f"{a['n']} / {w['n']} / {z['n']} |")
        staged = [r for r in delay["rates"] if r.get("listener_stages")]
        if staged:
            lines += ["", "Inside the listener, per batch (its /metrics histograms; p50 and "
                      "p99 are bucket upper bounds):", "",
                      "| rate (/s) | " + " | ".join(f"{stage}: batches, mean / p50 / p99 (ms)"
                                                   for stage, _ in LISTENER_STAGES) + " |",
                      "|---:|" + "---|" * len(LISTENER_STAGES)]
            for r in staged:
                cells = [f"{v['n']}, {fmt(v['mean_ms'])} / {fmt(v['p50_ms'])} / "
                         f"{fmt(v['p99_ms'])}"
                         for v in (r["listener_stages"][stage] for stage, _ in LISTENER_STAGES)]
                lines.append(f"| {r['rate']:g} | " + " | ".join(cells) + " |")
    outage = res.get("outage")
    if isinstance(outage, dict) and "stopped" in outage:
        lines += outage_lines(outage)
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in res["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {fmt(t['measured'])} | {met} |")
    lines += ["", "## CPU (cores busy, average over the timed window)", "",
              "| scenario | machine | listener | delivery | Elasticsearch | RabbitMQ | Zaqar "
              "| Redis | WebSocket server | WS clients | publishers | other |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in ("broker", "index", "project", "scaling", "nopipe", "baseline"):
        r = res.get(key)
        if isinstance(r, dict) and "resources" in r:
            lines.append(_cpu_row(key, r["resources"]))
    if isinstance(delay, dict) and "rates" in delay:
        for r in delay["rates"]:
            lines.append(_cpu_row(f"delay {r['rate']:g}/s", r["resources"]))
    lines += ["", "## Elasticsearch during the runs", "",
              "| scenario | bulk requests | avg bulk ms | avg bulk KB | docs/s | refreshes "
              "| searches | gets (mget docs) | ES CPU ms / doc |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in ("index", "project", "scaling", "nopipe", "baseline"):
        r = res.get(key)
        if isinstance(r, dict) and "elasticsearch" in r:
            e = r["elasticsearch"]
            lines.append(f"| {key} | {e['bulk_requests']} | {e['bulk_avg_ms']} | "
                         f"{e['bulk_avg_kb']} | {e['docs_per_s']} | {e['refreshes']} | "
                         f"{e['searches']} | {e['gets']} | {fmt(es_cpu_per_doc(r))} |")
    if isinstance(delay, dict) and "rates" in delay:
        for r in delay["rates"]:
            e = r.get("elasticsearch")
            if e:
                lines.append(f"| delay {r['rate']:g}/s | {e['bulk_requests']} | "
                             f"{e['bulk_avg_ms']} | {e['bulk_avg_kb']} | {e['docs_per_s']} | "
                             f"{e['refreshes']} | {e['searches']} | {e['gets']} | - |")
    mem = [(k, res[k]["resources"]) for k in ("project", "scaling", "nopipe", "baseline", "broker")
           if isinstance(res.get(k), dict) and "resources" in res[k]]
    if mem:
        lines += ["", "## Memory (peak RSS, MB; every process of the command)", "",
                  "| scenario | listener | its largest process | delivery service |",
                  "|---|---:|---:|---:|"]
        for k, r in mem:
            lines.append(f"| {k} | {fmt(r['peak_rss_mb'].get('listener'))} | "
                         f"{fmt(r['peak_rss_largest_process_mb'].get('listener'))} | "
                         f"{fmt(r['peak_rss_mb'].get('delivery'))} |")
    for key in ("project", "scaling", "nopipe", "delay"):
        profiles = (res.get(key) or {}).get("profile") if isinstance(res.get(key), dict) else None
        for who, prof in (profiles or {}).items():
            if not prof.get("inclusive_pct"):
                continue
            lines += ["", f"## Where the {who}'s Python time goes ({key}, py-spy --gil, "
                      f"{prof['samples']} samples)", "",
                      "| function (with what it calls) | share | | function (itself) | share |",
                      "|---|---:|---|---|---:|"]
            own = prof.get("self_pct") or []
            for i, (fn, share) in enumerate(prof["inclusive_pct"][:20]):
                mine = f"`{own[i][0]}` | {own[i][1]}%" if i < len(own) else " | "
                lines.append(f"| `{fn}` | {share}% | | {mine} |")
    return "\n".join(lines) + "\n"


def outage_lines(o: dict) -> list[str]:
    b, d, st = o["before_cut"], o["during_cut"], o["stopped"]

    def p(x):
        return f"{fmt(x['p50'])} / {fmt(x['p99'])}"
    return ["", f"## One sink cut for {o['outage_s']:g} s (200/s)", "",
            "| | before the cut | during the cut | p99 ratio |", "|---|---|---|---:|",
            f"| WebSocket p50 / p99 (ms) | {p(b['websocket_ms'])} | {p(d['websocket_ms'])} "
            f"| {fmt(o['websocket_p99_ratio'])} |",
            f"| operator's Zaqar p50 / p99 (ms) | {p(b['zaqar_operator_ms'])} | "
            f"{p(d['zaqar_operator_ms'])} | {fmt(o['zaqar_operator_p99_ratio'])} |",
            "", f"The cut pipeline (hold): caught up {st['catch_up_s']} s after its Zaqar "
            f"came back; the {st['changes_during_cut']} changes published during the cut "
            f"arrived as {st['backlog_messages']} messages; latest state missing for "
            f"{st['latest_state_missing']} of {st['resources']} resources "
            f"({o['refused_connections']} connections refused by the cut)."]


def _cpu_row(name, r):
    c = r["cores_used"]
    listener = c.get("listener", c.get("bulk client"))
    return (f"| {name} | {r['machine_cores_busy']} | {fmt(listener)} | "
            f"{fmt(c.get('delivery'))} | "
            f"{fmt(c.get('elasticsearch'))} | {fmt(c.get('rabbitmq'))} | {fmt(c.get('zaqar'))} | "
            f"{fmt(c.get('redis'))} | {fmt(c.get('websocket server'))} | "
            f"{fmt(c.get('ws clients'))} | {fmt(c.get('publishers'))} | {r['other_cores']} |")


def sustained(r: dict) -> bool:
    """The listener kept up with a steady rate: it caught up at the end and never had
    more than a second's worth of notifications waiting in its queue."""
    return bool(r.get("drained", True)) and r.get("max_queue_backlog", 0) <= r["rate"]


def plot(delay: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    rows = [r for r in delay["rates"] if r["websocket_ms"]["n"] or r["searchable_ms"]["n"]]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, key, title in ((axes[0], "searchable_ms", "publish -> searchable (<group>-search)"),
                           (axes[1], "websocket_ms", "publish -> WebSocket client"),
                           (axes[2], "zaqar_ms", "publish -> operator's Zaqar queue")):
        x = [r["rate"] for r in rows]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(x, [r[key][q] if r[key][q] is not None else float("nan") for r in rows],
                    style, label=q)
        notes = [f"{r['rate']:g}/s not sustained: {r['achieved_rate']}/s published, "
                 f"up to {r['max_queue_backlog']} waiting" for r in rows if not sustained(r)]
        if notes:
            ax.text(0.98, 0.08, "\n".join(notes), transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=8, color="gray")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("notifications/s (steady)")
        ax.set_xticks(x)
        ax.grid(True, alpha=0.3)
        ax.set_yscale("log")
    axes[0].set_ylabel("delay (ms, log scale)")
    axes[1].legend()
    fig.suptitle(f"searchlight-forward delay, {delay['duration_s']:g} s per rate "
                 f"({os.cpu_count()} CPUs)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main ---------------------------------------------------------------------------------------

def shipped_listener_settings() -> dict:
    """[listener] batch_size, batch_timeout, executor_threads of etc/searchlight-forward.conf
    (the option defaults where it sets none)."""
    import configparser
    from searchlight_forward import commands  # noqa: F401 - quiets eventlet's warning
    from searchlight_forward.listener import opts as listener_opts
    defaults = {o.dest: o.default for o in listener_opts.opts}
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(ROOT, "etc", "searchlight-forward.conf"))
    out = {}
    for name, kind in (("batch_size", int), ("batch_timeout", float),
                       ("executor_threads", int)):
        raw = parser.get("listener", name, fallback="").strip()
        out[name] = kind(raw) if raw else defaults[name]
    return out


def parse_args(argv=None):
    p = harness.arguments(__doc__, SCENARIOS, "latest.json / latest.md")
    harness.sized(p, "--count", int, 20000, 2000, "notifications per throughput scenario")
    p.add_argument("--baseline-count", type=int, default=None,
                   help="notifications for the (slow) Searchlight-style baseline "
                        "(default count/5)")
    p.add_argument("--rates", default=None,
                   help="steady rates for the delay scenario (default 200,500,1000)")
    harness.sized(p, "--duration", float, 20, 5, "seconds per steady rate")
    harness.sized(p, "--clients", int, 6, 3, "WebSocket clients: one admin watching all "
                  "projects, the others members of three projects")
    harness.sized(p, "--outage", float, 120, 10,
                  "seconds the outage scenario cuts one pipeline's Zaqar")
    harness.load_options(
        p, "small counts for a smoke run", publishers=4,
        timeout=(300.0, "longest wait for a throughput scenario to finish (s)"),
        drain=(60.0, "longest wait for the listener to catch up after a steady rate"),
        warmup=(3.0, "seconds of warm-up at 100/s"))
    shipped = shipped_listener_settings()
    p.add_argument("--batch-size", type=int, default=shipped["batch_size"],
                   help="(broker ceiling) default: the shipped listener's, like the next two")
    p.add_argument("--batch-timeout", type=float, default=shipped["batch_timeout"])
    p.add_argument("--executor-threads", type=int, default=shipped["executor_threads"])
    p.add_argument("--baseline-threads", type=int, default=64)
    p.add_argument("--bulk-threads", type=int, default=4, help="(index ceiling) parallel_bulk")
    p.add_argument("--bulk-chunk", type=int, default=500)
    p.add_argument("--plot", default=None,
                   help=f"delay plot path (default {os.path.relpath(PLOT, ROOT)}; with "
                        f"--quick, in the output directory)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                   help="override an option of the listener's configuration in the project "
                        "scenarios, e.g. --set listener.batch_timeout=0.05 (repeatable; "
                        "the ceilings keep --batch-size etc.)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the listener, the delivery service, the WebSocket server "
                        "and Zaqar during the throughput and delay scenarios; the busiest "
                        "functions go to the results (profile-<scenario>.txt: raw stacks)")
    args = harness.parse(p, argv, SCENARIOS)
    q = args.quick
    args.baseline_count = args.baseline_count or max(200, args.count // (10 if q else 5))
    args.rates = [float(r) for r in (args.rates or ("100,300" if q else "200,500,1000")).split(",")]
    args.rates = [int(r) if r.is_integer() else r for r in args.rates]
    if q:
        args.warmup = min(args.warmup, 1.0)
    args.overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, option = key.rpartition(".")
        if not sep or not dot or not option:
            p.error(f"--set {item!r}: expected SECTION.OPTION=VALUE")
        args.overrides[(section, option)] = value
    args.plot = args.plot or (os.path.join(args.output, "bench-delay.png") if q else PLOT)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    fns = {"broker": scenario_broker, "index": scenario_index, "project": scenario_project,
           "scaling": scenario_scaling, "nopipe": scenario_nopipe,
           "baseline": scenario_baseline, "delay": scenario_delay,
           "outage": scenario_outage}

    def servers_for(name):
        harness.wait_for_servers(
            ("elasticsearch", "rabbitmq") if name in ("broker", "index", "nopipe")
            else tuple(harness.SERVER_PORTS))

    def rate_line(name, r):
        if "rate" in r:
            log(f"{name}: {r['notifications']} notifications in {r['seconds']} s "
                f"= {r['rate']}/s")

    def report(results: dict, meta: dict) -> None:
        results["summary"] = summarize(results)
        results["targets"] = targets(results["summary"])
        if isinstance(results.get("delay"), dict) and "rates" in results["delay"]:
            meta["plot"] = plot(results["delay"], args.plot)
        harness.write_results(args.output, "latest", results, markdown(results, meta),
                              extra=(meta["plot"],) if meta.get("plot") else ())

    settings = {"count": args.count, "baseline_count": args.baseline_count,
                "clients": args.clients, "publishers": args.publishers,
                "rates": args.rates, "duration_s": args.duration,
                "overrides": {f"{s}.{o}": v for (s, o), v in args.overrides.items()},
                "listener_settings": {"batch_size": args.batch_size,
                                      "batch_timeout": args.batch_timeout,
                                      "executor_threads": args.executor_threads,
                                      "prefetch": 2 * args.batch_size}}
    return harness.main(args, argv, "bench/run.py", fns, report, desc="benchmark",
                        servers=("elasticsearch", "rabbitmq"), context=Context,
                        publishers=args.publishers, settings=settings,
                        before=servers_for, after=rate_line)


if __name__ == "__main__":
    sys.exit(main())
