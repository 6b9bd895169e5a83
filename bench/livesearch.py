"""searchlight-forward live search benchmark: K WebSocket connections, each following
its own query, while notifications arrive at a steady rate.

    .venv/bin/python bench/livesearch.py            # 1,000 connections, 200/s, 30 s (~4 min)
    .venv/bin/python bench/livesearch.py --quick    # 100 connections, 10 s (a smoke run)

Runs on the local servers (`python3 scripts/servers.py up`; Elasticsearch and RabbitMQ)
with a real `searchlight-forward-listener` and `searchlight-forward-websocket` spawned
as children, and the clients (real `websockets` clients, one asyncio loop) in a
process of their own, so their CPU is counted apart from the server's. Private names
as in bench/run.py (`sfb-<run>` vhost, indices, ports); removed at the end.

Two phases in one run, each on a fresh group, so their ratio is measured on the same
machine at the same moment:
  plain  K connections subscribed to OS::Nova::Server without a query (today's table);
  query  K connections, each with a distinct query (terms on status, a name prefix,
         a range on flavor.vcpus, a bool of should clauses; each with its own must_not
         so no two are alike), page size 20.
The clients connect at about 500/s and subscribe; then the simulator's notifications
are published at --rate for --duration. Delay: publish of a notification -> receipt
of the frame carrying its version at a client (every frame about a resource: change,
entered, updated, left), same host clock. CPU: the WebSocket server's process, per
notification published and per frame sent.

Writes bench/results/livesearch.json and livesearch.md.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tqdm  # noqa: E402

import harness  # noqa: E402
import workers  # noqa: E402
from harness import BenchError, Scenario  # noqa: E402

SERVER = "OS::Nova::Server"
PHASES = ("plain", "query")
log = harness.log


def query_of(i: int) -> dict:
    """Connection i's query: four shapes, each made distinct by its own must_not."""
    distinct = {"term": {"name": f"nobody-{i}"}}
    shape = i % 4
    if shape == 0:
        leaf = {"terms": {"status": ["ACTIVE", "SHUTOFF"][: 1 + i % 2]}}
    elif shape == 1:
        leaf = {"prefix": {"name": ("web", "db", "cache", "api", "batch")[i % 5]}}
    elif shape == 2:
        leaf = {"range": {"flavor.vcpus": {"gte": 1 + i % 4}}}
    else:
        return {"bool": {"should": [{"term": {"status": "ERROR"}},
                                    {"term": {"locked": True}},
                                    {"prefix": {"name": "edge"}}],
                         "must_not": [distinct]}}
    return {"bool": {"filter": [leaf], "must_not": [distinct]}}


def client_specs(run: harness.Run, k: int, queries: bool) -> list[dict]:
    """K clients over the simulator's projects' member tokens (user copies)."""
    tokens = [t for t in json.load(open(run.tokens_path)) if t != "tok-admin"]
    return [{"token": tokens[i % len(tokens)], "all_projects": False, "types": [SERVER],
             "query": query_of(i) if queries else None} for i in range(k)]


class Clients(harness.ChildProcess):
    what = "live search clients"

    def __init__(self, url: str, specs: list[dict]):
        super().__init__(workers.live_clients_main, url, specs)

    def wait_subscribed(self, k: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with tqdm.tqdm(total=k, desc="  connecting", unit="conn", leave=False) as bar:
            while time.monotonic() < deadline:
                status = self.ask("status")
                done = sum(s["subscribed"] for s in status)
                bar.update(done - bar.n)
                errors = [s["error"] for s in status if s["error"]]
                if errors:
                    raise BenchError(f"{len(errors)} clients failed, e.g. {errors[0]}")
                if done == k:
                    return {"results_total_mean": round(
                        sum(s["total"] or 0 for s in status) / k, 1)}
                time.sleep(0.5)
        raise BenchError("the clients did not all subscribe in time")

    def stop(self) -> None:
        super().stop(timeout=15)


def phase(ctx, name: str) -> dict:
    args, run = ctx.args, ctx.run
    k = args.connections
    scn = Scenario(run, name, overrides={
        ("websocket", "max_connections_per_user"): str(k),
        ("websocket", "max_unauthenticated"): str(k)})
    children, clients = [], None
    try:
        scn.ensure_index()
        harness.declare_pool(run.transport_url, scn.pool, scn.conf)
        ws = harness.start_ws_server(scn)
        children.append(ws)
        listener = harness.start_listener(scn, wait=True)
        children.append(listener)
        processed = functools.partial(harness.processed, scn)

        # A warm-up fills the index, so the queries have results to follow.
        warm = ctx.spec(4000 + len(name), int(args.warmup * args.rate),
                        "2026-01-01T00:00:00")
        ctx.pool.publish(warm, rate=args.rate * 4)
        harness.wait_until(lambda: processed() >= warm["count"], 120, 0.2, "the warm-up")
        clients = Clients(scn.ws_url, client_specs(run, k, name == "query"))
        subscribed = clients.wait_subscribed(k, args.timeout)
        clients.ask("records")

        count = int(args.rate * args.duration)
        spec = ctx.spec(5000, count, "2026-05-01T00:00:00")
        changes = workers.changes_of(workers.make_stream(spec))
        ctx.pool.prepare(spec)
        watch = harness.Watch({"websocket server": ws.ps, "listener": listener.ps,
                               "clients": clients.ps, **ctx.servers},
                              rss_of=["websocket server"], single=()).start()
        with tqdm.tqdm(total=count, desc=f"  {name}: {args.rate:g}/s, {k} connections",
                       unit="msg", leave=False) as bar:
            pub = ctx.pool.publish(spec, rate=args.rate, record=True, bar=bar)
        drained = True
        try:
            harness.wait_until(lambda: processed() >= warm["count"] + count, args.drain,
                               0.2, "the listener to catch up")
        except BenchError:
            drained = False
        last = [0, time.monotonic()]

        def quiet():          # no new frame for 2 s: the server has sent everything
            status = clients.ask("status")
            frames = sum(s["frames"] for s in status)
            if frames != last[0]:
                last[:] = [frames, time.monotonic()]
            return time.monotonic() - last[1] > 2.0
        harness.wait_until(quiet, args.drain, 0.3, "the frames to stop")
        watch.stop()
        records = clients.ask("records", timeout=120)
        published = {}
        for found, at in zip(changes, pub["times"]):
            for rtype, rid, version, _delete, _project in found:
                if rid is not None:
                    published[(rtype, rid, version)] = at
        delays = [1000 * (t - published[(rt, rid, v)]) for rt, rid, v, _kind, t in records
                  if (rt, rid, v) in published]
        kinds: dict[str, int] = {}
        for *_, kind, _t in records:
            kinds[kind] = kinds.get(kind, 0) + 1
        resources = watch.report()
        wall = max(watch.t1 - watch.t0, 1e-9)
        server_s = watch.cpu1["websocket server"] - watch.cpu0["websocket server"]
        status = harness.http_json(f"http://127.0.0.1:{scn.ws_port}/status", timeout=5)
        server_changes = sum(1 for found in changes for c in found if c[0] == SERVER)
        out = {"connections": k, "rate": args.rate, "duration_s": args.duration,
               "server_changes": server_changes,
               "server_cpu_ms_per_server_change": round(1000 * server_s
                                                         / max(server_changes, 1), 3),
               "published": pub["sent"], "achieved_rate": pub["rate"], "drained": drained,
               "frames": len(records), "frames_by_kind": kinds,
               "frames_per_notification": round(len(records) / max(count, 1), 2),
               "delay_ms": harness.percentiles(delays),
               "server_cpu_ms_per_notification": round(1000 * server_s / max(count, 1), 3),
               "server_cpu_ms_per_frame": round(1000 * server_s / max(len(records), 1), 4),
               "server_cpu_s": round(server_s, 2),
               "server_cores": round(server_s / wall, 3),
               "server_peak_rss_mb": resources["peak_rss_mb"].get("websocket server"),
               "subscribe": subscribed, "server_status_counters": status.get("counters"),
               "resources": resources}
        d = out["delay_ms"]
        log(f"  {name}: {k} connections at {args.rate:g}/s: delay p50/p95/p99 "
            f"{d['p50']}/{d['p95']}/{d['p99']} ms over {d['count']} frames; server "
            f"{out['server_cpu_ms_per_notification']} ms CPU per notification, "
            f"{out['server_cores']} cores")
        return out
    finally:
        harness.stop_all(clients, *reversed(children), scn=scn)


def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Live search benchmark ({meta['started']})", "",
             f"`{meta['command']}` on {meta['machine']}; git {meta['git']}.", "",
             "| phase | connections | frames | frames/notification | delay p50 / p95 / p99 "
             "(ms) | server CPU per notification (ms) | server cores |",
             "|---|---|---|---|---|---|---|"]
    for name in PHASES:
        r = results.get(name) or {}
        if "error" in r or not r:
            lines.append(f"| {name} | failed: {r.get('error', 'not run')} | | | | | |")
            continue
        d = r["delay_ms"]
        lines.append(f"| {name} | {r['connections']} | {r['frames']} | "
                     f"{r['frames_per_notification']} | {d['p50']} / {d['p95']} / {d['p99']} | "
                     f"{r['server_cpu_ms_per_notification']} | {r['server_cores']} |")
    plain, query = results.get("plain") or {}, results.get("query") or {}
    if "delay_ms" in plain and "delay_ms" in query and plain["server_cpu_ms_per_notification"]:
        lines += ["", f"Ratios, query / plain in this run: server CPU per notification "
                  f"{query['server_cpu_ms_per_notification'] / plain['server_cpu_ms_per_notification']:.2f}, "
                  f"p99 delay {query['delay_ms']['p99'] / max(plain['delay_ms']['p99'], 0.1):.2f}."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = harness.arguments(__doc__, PHASES, "livesearch.json and livesearch.md")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200.0, help="notifications per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    harness.load_options(
        p, "100 connections, 10 s", publishers=2,
        timeout=(180.0, "seconds to subscribe all"),
        drain=(120.0, "longest wait for every frame after publishing (s)"),
        warmup=(5.0, "seconds' worth of notifications indexed before the clients connect"))
    args = harness.parse(p, argv, PHASES)
    if args.quick:
        args.connections, args.duration = 100, 10.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return harness.main(
        args, argv, "bench/livesearch.py",
        {"plain": lambda c: phase(c, "plain"), "query": lambda c: phase(c, "query")},
        lambda results, meta: harness.write_results(args.output, "livesearch", results,
                                                    markdown(results, meta)),
        desc="live search benchmark", publishers=args.publishers,
        settings={"search": harness.SEARCH_BACKEND})


if __name__ == "__main__":
    sys.exit(main())
