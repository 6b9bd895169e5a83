"""searchlight-forward scale benchmark (issue 28): ten thousand WebSocket connections
to one server process.

    .venv/bin/python bench/scale.py                      # 10,000 connections (~4 min)
    .venv/bin/python bench/scale.py --connections 1000   # smaller
    .venv/bin/python bench/scale.py --quick              # 1,000 connections, 10 s

Runs on the local servers (`python3 scripts/servers.py up`; Elasticsearch and RabbitMQ)
with a real `searchlight-forward-listener` and `searchlight-forward-websocket` spawned
as children (token-file validator), with bench/run.py's isolation (`sfb-<run>` vhost,
indices, ports; removed at the end). The clients are real `websockets` clients in
--client-processes processes (one asyncio loop each), process i binding source
address 127.0.0.(2+i) so the ephemeral ports of one address do not run out; every
process raises its open-files soft limit to the hard limit (children inherit it).

Phases, each on a fresh group and server:
  projects   N connections over --projects projects (a member token per project,
             every resource type, its own project): each notification reaches about
             N / projects clients. The simulator's notifications over those projects
             at --rate for --duration.
  broadcast  N connections with the admin token and all projects: every client gets
             every change; --broadcast-rate for --broadcast-duration.
Measured per phase: the server's RSS before any client and with N connected and idle
(KB per connection), its CPU while idle, then while publishing: publish -> frame
delay (frames matched to publish times by resource type, id and version; same host
clock), server CPU per frame delivered, frames, and whether every client ends with
the newest version of every resource it may see (Elasticsearch's view of its role
and project, as bench/run.py checks).

The clients do not offer permessage-deflate unless --client-compression deflate (as
browsers do): without it the server's --compression changes nothing. A breakdown
of the idle connections' memory: bench/ws_memory.py.

Writes bench/results/scale.json and scale.md.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tqdm  # noqa: E402

import harness  # noqa: E402
import workers  # noqa: E402
from harness import BenchError, Scenario  # noqa: E402

PHASES = ("projects", "broadcast")
log = harness.log


def raise_nofile() -> tuple[int, int]:
    """The open-files soft limit raised to the hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- the clients' processes -------------------------------------------------------------

def scale_clients_main(url: str, specs: list[dict], source: str, pace: float, conn) -> None:
    """``len(specs)`` real ``websockets`` clients in one asyncio loop, each from
    ``source`` (an address of 127.0.0.0/8), offering permessage-deflate if its
    spec's ``compression`` is "deflate". Each authenticates with its token,
    subscribes to every type served (its project, or all with ``all_projects``),
    and records (type, id, version, receive time) of every change frame and the
    newest version seen per resource. Commands: status, records, check, stop."""
    import websockets
    from websockets.asyncio.client import connect
    raise_nofile()
    states = [{"subscribed": False, "frames": 0, "error": None, "closes": 0,
               "latest": {}} for _ in specs]
    records: list = []

    async def run_client(spec: dict, state: dict) -> None:
        for _attempt in range(3):
            try:
                async with connect(url, additional_headers={"X-Auth-Token": spec["token"]},
                                   max_size=None, open_timeout=60, close_timeout=2,
                                   ping_interval=None,
                                   compression=spec.get("compression"),
                                   local_addr=(source, 0)) as ws:
                    hello = json.loads(await ws.recv())
                    if hello.get("type") != "authenticated":
                        state["error"] = f"not authenticated: {hello}"
                        return
                    await ws.send(json.dumps({
                        "action": "subscribe", "resource_types": hello["resource_types"],
                        "all_projects": spec["all_projects"]}))
                    latest = state["latest"]
                    async for text in ws:
                        now = time.monotonic()
                        frame = json.loads(text)
                        kind = frame.get("type")
                        if kind == "change":
                            env = frame["envelope"]
                            key = (env["resource_type"], env["id"])
                            version = env["version"]
                            records.append((key[0], key[1], version, now))
                            if version > latest.get(key, -1):
                                latest[key] = version
                            state["frames"] += 1
                        elif kind == "resumed":
                            state["subscribed"] = True
                        elif kind == "error":
                            state["error"] = f"{frame.get('code')}: {frame.get('message')}"
                    return
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed:
                state["closes"] += 1
            except (OSError, asyncio.TimeoutError) as exc:
                state["error"] = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(1.0)

    def check(expected: dict) -> dict:
        """Clients missing the newest version of a resource they may see, and the
        number of such (client, resource) pairs; ``expected``: token -> {key: version}."""
        clients_missing = pairs = wanted = 0
        for spec, state in zip(specs, states):
            want = expected.get(spec["token"], {})
            wanted += len(want)
            miss = sum(1 for key, v in want.items() if state["latest"].get(key, -1) < v)
            pairs += miss
            clients_missing += bool(miss)
        return {"clients_missing": clients_missing, "missing_pairs": pairs,
                "expected_pairs": wanted}

    async def main() -> None:
        nonlocal records
        loop = asyncio.get_running_loop()
        tasks = []
        for spec, state in zip(specs, states):
            tasks.append(asyncio.create_task(run_client(spec, state)))
            await asyncio.sleep(pace)
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "stop":
                break
            if cmd[0] == "status":
                errors = [s["error"] for s in states if s["error"]]
                conn.send({"subscribed": sum(s["subscribed"] for s in states),
                           "frames": sum(s["frames"] for s in states),
                           "closes": sum(s["closes"] for s in states),
                           "errors": len(errors), "error": errors[0] if errors else None})
            elif cmd[0] == "records":
                conn.send(records)
                records = []
            elif cmd[0] == "check":
                conn.send(check(cmd[1]))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send(True)

    asyncio.run(main())


class Clients:
    """K client processes, connection i in process i % K."""

    def __init__(self, url: str, specs: list[dict], processes: int, rate: float):
        shares = [specs[i::processes] for i in range(processes)]
        pace = processes / rate           # seconds between connects in one process
        self.procs = [harness.ChildProcess(scale_clients_main, url, share,
                                           f"127.0.0.{2 + i}", pace)
                      for i, share in enumerate(shares) if share]

    def ask(self, *cmd, timeout: float = 60.0) -> list:
        for p in self.procs:
            with p._lock:
                p.conn.send(cmd)
        out = []
        for p in self.procs:
            with p._lock:
                if not p.conn.poll(timeout):
                    raise BenchError(f"a client process did not answer {cmd[0]!r}")
                out.append(p.conn.recv())
        return out

    def status(self) -> dict:
        parts = self.ask("status")
        return {"subscribed": sum(s["subscribed"] for s in parts),
                "frames": sum(s["frames"] for s in parts),
                "closes": sum(s["closes"] for s in parts),
                "errors": sum(s["errors"] for s in parts),
                "error": next((s["error"] for s in parts if s["error"]), None)}

    def wait_subscribed(self, k: int, timeout: float) -> float:
        t0 = time.monotonic()
        deadline = t0 + timeout
        with tqdm.tqdm(total=k, desc="  connecting", unit="conn", leave=False) as bar:
            while time.monotonic() < deadline:
                status = self.status()
                bar.update(status["subscribed"] - bar.n)
                if status["subscribed"] == k:
                    return time.monotonic() - t0
                if status["errors"] > k // 100:
                    raise BenchError(f"{status['errors']} clients failed, e.g. "
                                     f"{status['error']}")
                time.sleep(0.5)
        raise BenchError(f"the clients did not all subscribe in time: {self.status()}")

    @property
    def ps(self) -> list:
        return [p.ps for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            p.stop(timeout=20)


# -- the notifications ------------------------------------------------------------------

def project_names(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(n)]


def add_tokens(run: harness.Run, names: list[str]) -> dict:
    """A member token per project in the run's token file (before the server starts);
    the whole file."""
    tokens = json.load(open(run.tokens_path))
    for name in names:
        pid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{run.prefix}.{name}").hex
        tokens[f"tok-{name}"] = {"user_id": f"{name}-member", "project_id": pid,
                                 "roles": ["member", "reader"]}
    with open(run.tokens_path, "w") as f:
        json.dump(tokens, f)
    return tokens


def make_notes(seed: int, count: int, names: list[str], tokens: dict, start: str):
    """``count`` simulator notifications spread over the projects ``names``."""
    import datetime
    from devtools.simulator import CloudSimulator
    ids = {n: tokens[f"tok-{n}"]["project_id"] for n in names}
    per_type = max(1, count // 14 + 1)
    while True:
        sim = CloudSimulator(seed=seed, projects=tuple(names), project_ids=ids,
                             start=datetime.datetime.fromisoformat(start))
        notes = sim.stream(per_type)
        if len(notes) >= count:
            return notes[:count]
        per_type *= 2


def publish(transport_url: str, notes, rate: float, bar=None) -> list[float]:
    """Each notification at t0 + j / rate from this process; the publish times."""
    from devtools.publisher import PreEncodedPublisher
    publisher = PreEncodedPublisher(transport_url)
    encoded = [PreEncodedPublisher.encode_simulated(n) for n in notes]
    times = []
    t0 = time.monotonic() + 0.2
    try:
        for j, body in enumerate(encoded):
            delay = t0 + j / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            times.append(time.monotonic())
            publisher.send(body)
            if bar is not None:
                bar.update(1)
    finally:
        publisher.close()
    return times


def expected_by_token(es, group: str, tokens: dict, used: set[str]) -> dict:
    """token -> {(type, id): newest version} for the tokens ``used``: the user copy of
    the token's project, or every admin copy for tok-admin (all projects)."""
    from searchlight_forward.indexer import layout
    from searchlight_forward.model import documents
    from searchlight_forward.search import helpers
    es.indices.refresh(index=layout.listener_alias(group))
    by_project: dict[str, dict] = {}
    admin: dict = {}
    for hit in helpers.scan(es, index=layout.listener_alias(group), query={"query": {
            "match_all": {}}}, _source=["resource_type", "id", "project_id",
                                         documents.VERSION_FIELD, documents.ROLE_FIELD]):
        src = hit["_source"]
        key = (src["resource_type"], src["id"])
        if src.get(documents.ROLE_FIELD) == documents.ADMIN:
            admin[key] = src[documents.VERSION_FIELD]
        else:
            by_project.setdefault(src.get("project_id"), {})[key] = \
                src[documents.VERSION_FIELD]
    out = {}
    for token in used:
        if token == "tok-admin":
            out[token] = admin
        else:
            out[token] = by_project.get(tokens[token]["project_id"], {})
    return out


def cpu_s(ps) -> float:
    t = ps.cpu_times()
    return t.user + t.system


# -- a phase ------------------------------------------------------------------------------

def phase(ctx, name: str) -> dict:
    args, run = ctx.args, ctx.run
    k = args.connections
    broadcast = name == "broadcast"
    rate = args.broadcast_rate if broadcast else args.rate
    duration = args.broadcast_duration if broadcast else args.duration
    names = project_names(args.projects)
    tokens = add_tokens(run, names)
    offer = None if args.client_compression == "none" else args.client_compression
    if broadcast:
        specs = [{"token": "tok-admin", "all_projects": True, "compression": offer}
                 for _ in range(k)]
    else:
        specs = [{"token": f"tok-{names[i % len(names)]}", "all_projects": False,
                  "compression": offer} for i in range(k)]
    scn = Scenario(run, name, overrides={
        ("websocket", "max_connections_per_user"): str(k),
        ("websocket", "max_unauthenticated"): str(k),
        ("websocket", "queue_size"): str(max(1000, int(4 * rate * duration))),
        ("websocket", "compression"): COMPRESSION[0]})
    children, clients = [], None
    try:
        scn.ensure_index()
        harness.declare_pool(run.transport_url, scn.pool, scn.conf)
        ws = harness.start_ws_server(scn)
        children.append(ws)
        listener = harness.start_listener(scn, wait=True)
        children.append(listener)
        processed = functools.partial(harness.processed, scn)
        nofile = open(f"/proc/{ws.ps.pid}/limits").read()
        server_nofile = next((line.split()[3:5] for line in nofile.splitlines()
                              if line.startswith("Max open files")), None)
        time.sleep(3)
        rss0 = ws.ps.memory_info().rss
        fds0 = ws.ps.num_fds()

        clients = Clients(scn.ws_url, specs, args.client_processes, args.connect_rate)
        connect_s = clients.wait_subscribed(k, args.timeout)
        time.sleep(5)                                  # settle
        cpu_idle0, t_idle0 = cpu_s(ws.ps), time.monotonic()
        time.sleep(args.idle)
        idle_cores = (cpu_s(ws.ps) - cpu_idle0) / (time.monotonic() - t_idle0)
        rss1 = ws.ps.memory_info().rss
        fds1 = ws.ps.num_fds()
        log(f"  {name}: {k} connections in {connect_s:.1f} s; server RSS "
            f"{rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB "
            f"({(rss1 - rss0) / 1024 / k:.1f} KB per connection), idle "
            f"{1000 * idle_cores:.1f} ms CPU/s")

        count = int(rate * duration)
        notes = make_notes(7000 + len(name), count, names, tokens, "2026-06-01T00:00:00")
        changes = workers.changes_of(notes)
        clients.ask("records")
        frames0 = clients.status()["frames"]
        procs = {"websocket server": ws.ps, "listener": listener.ps, **ctx.servers}
        procs.update({f"clients {i}": p for i, p in enumerate(clients.ps)})
        watch = harness.Watch(procs, rss_of=["websocket server"], single=()).start()
        with tqdm.tqdm(total=count, desc=f"  {name}: {rate:g}/s, {k} connections",
                       unit="msg", leave=False) as bar:
            times = publish(run.transport_url, notes, rate, bar)
        achieved = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
        drained = True
        try:
            harness.wait_until(lambda: processed() >= count, args.drain, 0.2,
                               "the listener to catch up")
        except BenchError:
            drained = False
        last = [0, time.monotonic()]

        def quiet():          # no new frame for 3 s: the server has sent everything
            frames = clients.status()["frames"]
            if frames != last[0]:
                last[:] = [frames, time.monotonic()]
            return time.monotonic() - last[1] > 3.0
        harness.wait_until(quiet, args.drain, 0.5, "the frames to stop")
        watch.stop()
        quiet_for = time.monotonic() - last[1]
        status = clients.status()
        records = [r for part in clients.ask("records", timeout=120) for r in part]
        published = {}
        for found, at in zip(changes, times):
            for rtype, rid, version, _delete, _project in found:
                if rid is not None:
                    published.setdefault((rtype, rid, version), at)
        delays = [1000 * (t - published[(rt, rid, v)]) for rt, rid, v, t in records
                  if (rt, rid, v) in published]
        expected = expected_by_token(run.es, scn.group, tokens,
                                     {s["token"] for s in specs})
        checks = clients.ask("check", expected, timeout=120)
        check = {key: sum(c[key] for c in checks) for key in checks[0]}
        resources = watch.report()
        # CPU over the publishing window up to the last frame (not the 3 s of quiet)
        wall = max(watch.t1 - watch.t0 - quiet_for, 1e-9)
        server_s = watch.cpu1["websocket server"] - watch.cpu0["websocket server"]
        frames = status["frames"] - frames0
        ws_status = harness.http_json(f"http://127.0.0.1:{scn.ws_port}/status", timeout=10)
        out = {"connections": k, "client_processes": len(clients.procs),
               "projects": 1 if broadcast else min(args.projects, k),
               "connections_per_project": k if broadcast else round(k / args.projects, 1),
               "nofile_bench": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
               "nofile_server": server_nofile, "server_fds": [fds0, fds1],
               "connect_s": round(connect_s, 1),
               "rss_before_mb": round(rss0 / 2**20, 1), "rss_idle_mb": round(rss1 / 2**20, 1),
               "rss_kb_per_connection": round((rss1 - rss0) / 1024 / k, 2),
               "idle_server_cpu_ms_per_s": round(1000 * idle_cores, 1),
               "rate": rate, "duration_s": duration, "published": len(times),
               "achieved_rate": round(achieved, 1), "drained": drained,
               "changes": sum(len(f) for f in changes),
               "frames": frames, "frames_timed": len(delays),
               "frames_per_notification": round(frames / max(count, 1), 2),
               "frames_per_s": round(frames / wall, 1),
               "delay_ms": harness.percentiles(delays),
               "server_cpu_s": round(server_s, 2), "server_cores": round(server_s / wall, 3),
               "server_cpu_ms_per_frame": round(1000 * server_s / max(frames, 1), 4),
               "server_cpu_ms_per_notification": round(1000 * server_s / max(count, 1), 3),
               "server_peak_rss_mb": resources["peak_rss_mb"].get("websocket server"),
               "closes": status["closes"], "client_errors": status["errors"],
               "missed": check,
               "server_status_counters": (ws_status or {}).get("counters"),
               "resources": resources}
        d = out["delay_ms"]
        log(f"  {name}: {frames} frames at {out['frames_per_s']:g}/s; delay p50/p99 "
            f"{d['p50']}/{d['p99']} ms; server {out['server_cpu_ms_per_frame']} ms CPU "
            f"per frame, {out['server_cores']} cores; missed {check}")
        return out
    finally:
        harness.stop_all(clients, *reversed(children), scn=scn)


def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Scale benchmark ({meta['started']})", "",
             f"`{meta['command']}` on {meta['machine']}; git {meta['git']}.", "",
             "| phase | connections | per project | RSS before / idle (MB) | KB per "
             "connection | idle CPU (ms/s) | notifications/s | frames | frames/s | "
             "publish to frame p50 / p95 / p99 (ms) | server CPU per frame (ms) | server "
             "cores | clients missing a change |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in PHASES:
        r = results.get(name) or {}
        if "error" in r or not r:
            if name in meta.get("scenarios", ()):
                lines.append(f"| {name} | failed: {r.get('error', 'not run')} |"
                             + " |" * 11)
            continue
        d = r["delay_ms"]
        lines.append(
            f"| {name} | {r['connections']} | {r['connections_per_project']} | "
            f"{r['rss_before_mb']} / {r['rss_idle_mb']} | {r['rss_kb_per_connection']} | "
            f"{r['idle_server_cpu_ms_per_s']} | {r['achieved_rate']} | {r['frames']} | "
            f"{r['frames_per_s']} | {d['p50']} / {d['p95']} / {d['p99']} | "
            f"{r['server_cpu_ms_per_frame']} | {r['server_cores']} | "
            f"{r['missed']['clients_missing']} |")
    lines += ["", "Targets (issue 28): p99 at most 300 ms, at most 20 KB of server RSS per "
              "connection."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = harness.arguments(__doc__, PHASES, "scale.json and scale.md")
    p.add_argument("--connections", type=int, default=None,
                   help="WebSocket connections (default 10000; quick 1000)")
    p.add_argument("--client-processes", type=int, default=8,
                   help="client processes, each from its own 127.0.0.x")
    p.add_argument("--projects", type=int, default=1000,
                   help="projects the connections are spread over (projects phase)")
    p.add_argument("--rate", type=float, default=100.0, help="notifications per second")
    p.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                   help="[websocket] compression of the server")
    p.add_argument("--client-compression", choices=("deflate", "none"), default="none",
                   help="what the clients offer (browsers offer deflate; permessage-"
                        "deflate is used only when both sides have it)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of publishing (default 30; quick 10)")
    p.add_argument("--broadcast-rate", type=float, default=1.0,
                   help="notifications per second in the broadcast phase")
    p.add_argument("--broadcast-duration", type=float, default=10.0)
    p.add_argument("--connect-rate", type=float, default=1000.0,
                   help="connections opened per second, all processes together")
    p.add_argument("--idle", type=float, default=10.0,
                   help="seconds the idle server's CPU is measured")
    harness.load_options(
        p, "1,000 connections, 10 s", publishers=0,
        timeout=(300.0, "seconds to subscribe all"),
        drain=(180.0, "longest wait for every frame after publishing (s)"),
        warmup=(0.0, "unused"))
    args = harness.parse(p, argv, PHASES)
    if args.connections is None:
        args.connections = 1000 if args.quick else 10000
    if args.duration is None:
        args.duration = 10.0 if args.quick else 30.0
    return args


COMPRESSION = ["deflate"]      # --compression, for every phase's server


def main(argv=None) -> int:
    args = parse_args(argv)
    COMPRESSION[0] = args.compression
    soft, hard = raise_nofile()
    need = args.connections + 200
    if soft < need:
        fit = soft - 200
        log(f"open files limit {soft} (hard {hard}) does not fit {args.connections} "
            f"connections in one server process; measuring {fit}")
        args.connections = fit
    return harness.main(
        args, argv, "bench/scale.py",
        {"projects": lambda c: phase(c, "projects"),
         "broadcast": lambda c: phase(c, "broadcast")},
        lambda results, meta: harness.write_results(args.output, "scale", results,
                                                    markdown(results, meta)),
        desc="scale benchmark", publishers=0,
        settings={"search": harness.SEARCH_BACKEND, "nofile": [soft, hard],
                  "compression": args.compression,
                  "client_compression": args.client_compression})


if __name__ == "__main__":
    sys.exit(main())
