"""Where an idle WebSocket connection's memory goes (issue 28): one
`searchlight-forward-websocket` process, N idle connections, RSS and, with
--tracemalloc, Python's allocations broken down.

    .venv/bin/python bench/ws_memory.py                         # 2,000 connections, RSS
    .venv/bin/python bench/ws_memory.py --tracemalloc           # + allocations, objects
    .venv/bin/python bench/ws_memory.py --compression none --connections 1000

The connections are bench/scale.py's (its client processes, its "projects" phase: a
member token per project over --projects projects, every resource type, each
subscribed and resumed without a cursor on an empty index, then idle). No listener
runs: nothing is published.

The server is the real console script's `main`, started through this file
(`ws_memory.py --serve ...`) so that the measuring stays out of the service package:
SIGUSR1 starts tracemalloc (--frames frames), SIGUSR2 writes what it holds to
$WS_MEMORY_DUMP.<n> (the tracemalloc snapshot, and a count of the garbage
collector's objects by type and of the asyncio tasks by coroutine). Without
--tracemalloc no signal is sent and the process is the plain server.

Measured: RSS before any client and with N connected, subscribed and idle (KB per
connection); with --tracemalloc, the allocations made while connecting that are
still alive, grouped by file and line and by traceback (--top), in bytes per
connection, and the objects per connection by type. RSS of a --tracemalloc run
includes tracemalloc's own bookkeeping: take RSS from a run without it.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


ENTRY_POINTS = (os.path.abspath(__file__),
                os.path.join(os.path.dirname(HERE), "forwarders", "cmd") + os.sep)


# -- the server, in its own process -------------------------------------------------------

def serve(argv: list[str]) -> None:
    """The WebSocket server's console script, with the two signal handlers."""
    import gc
    import tracemalloc
    dump_to = os.environ["WS_MEMORY_DUMP"]
    frames = int(os.environ.get("WS_MEMORY_FRAMES", "25"))
    dumps = [0]

    def start(_signum, _frame):
        tracemalloc.start(frames)

    def dump(_signum, _frame):
        gc.collect()
        objects = gc.get_objects()
        types = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}"
                                    for o in objects)
        tasks = collections.Counter()
        for o in objects:
            if type(o).__name__ == "Task" and hasattr(o, "get_coro"):
                coro = o.get_coro()
                tasks[getattr(coro, "__qualname__", repr(coro))] += 1
        del objects
        snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        dumps[0] += 1
        path = f"{dump_to}.{dumps[0]}"
        with open(path + ".tmp", "wb") as f:
            pickle.dump({"types": dict(types), "tasks": dict(tasks),
                         "traced": tracemalloc.get_traced_memory()
                         if tracemalloc.is_tracing() else None,
                         "snapshot": snapshot}, f)
        os.rename(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    from forwarders.cmd import websocket
    websocket.main(argv)


# -- the bench ------------------------------------------------------------------------------

def take_dump(ws, dump_to: str, n: int, timeout: float = 120.0) -> dict:
    ws.proc.send_signal(signal.SIGUSR2)
    path = f"{dump_to}.{n}"
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline or not ws.alive():
            raise RuntimeError(f"no dump from the server: {ws.tail()}")
        time.sleep(0.2)
    with open(path, "rb") as f:
        return pickle.load(f)


def breakdown(before: dict, after: dict, k: int, top: int, out: list[str]) -> None:
    """Allocations alive after connecting (made since tracing started), per connection."""
    import tracemalloc
    snap1 = after["snapshot"].filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>")])
    snap0 = before["snapshot"]
    total = sum(s.size for s in snap1.statistics("filename"))
    count = sum(s.count for s in snap1.statistics("filename"))
    out.append(f"traced since connecting began, alive: {total / 1024 / k:.2f} KB and "
               f"{count / k:.1f} blocks per connection ({total / 2**20:.1f} MB)")
    for key, depth in (("filename", 1), ("lineno", 1), ("traceback", 8)):
        out.append("")
        out.append(f"## top {top} by {key} (bytes per connection, blocks per connection)")
        stats = snap1.compare_to(snap0, key) if snap0 is not None else snap1.statistics(key)
        for stat in sorted(stats, key=lambda s: -abs(getattr(s, "size_diff", s.size)))[:top]:
            size = getattr(stat, "size_diff", stat.size)
            blocks = getattr(stat, "count_diff", stat.count)
            where = stat.traceback.format(limit=depth, most_recent_first=True) \
                if key == "traceback" else [str(stat.traceback)]
            out.append(f"{size / k:9.1f} B {blocks / k:6.2f}  {where[0].strip()}")
            for line in where[1:]:
                line = line.strip()
                if line.startswith("File"):
                    out.append(f"{'':20}<- {line}")


def by_caller(after: dict, k: int, top: int, out: list[str]) -> None:
    """The allocations grouped by their most recent frame outside the standard
    library: a task, future or deque is charged to the line that asked for it."""
    import sysconfig
    stdlib = sysconfig.get_paths()["stdlib"]
    sizes: collections.Counter = collections.Counter()
    blocks: collections.Counter = collections.Counter()
    for trace in after["snapshot"].traces:
        frames = list(trace.traceback)[::-1]     # most recent first
        # (The program's entry points, down to asyncio.run's caller, do not count:
        # what the event loop allocates by itself is charged to its own line.)
        frame = next((f for f in frames if not f.filename.startswith(stdlib)
                      and not f.filename.startswith(ENTRY_POINTS)), frames[0])
        if frame.filename.startswith(stdlib) and "tracemalloc" in frame.filename:
            continue
        key = f"{frame.filename}:{frame.lineno}"
        sizes[key] += trace.size
        blocks[key] += 1
    out.append("")
    out.append(f"## top {top} by the first line outside the standard library "
               "(bytes per connection, blocks per connection)")
    for key, size in sizes.most_common(top):
        out.append(f"{size / k:9.1f} B {blocks[key] / k:6.2f}  {key}")


def objects(before: dict, after: dict, k: int, top: int, out: list[str]) -> None:
    out.append("")
    out.append(f"## objects per connection (garbage collector's, top {top})")
    diff = collections.Counter(after["types"])
    diff.subtract(before["types"])
    for name, n in diff.most_common(top):
        out.append(f"{n / k:7.2f}  {name}")
    out.append("")
    out.append("## asyncio tasks per connection, by coroutine")
    diff = collections.Counter(after["tasks"])
    diff.subtract(before["tasks"])
    for name, n in diff.most_common():
        if n:
            out.append(f"{n / k:7.2f}  {name}")


def measure(args) -> dict:
    import harness
    import scale
    from harness import Scenario
    k = args.connections
    run = harness.Run(keep=args.keep)
    run.open()
    children, clients = [], None
    out: list[str] = []
    try:
        names = scale.project_names(args.projects)
        scale.add_tokens(run, names)        # (in the token file, before the server starts)
        offer = None if args.client_compression == "none" else args.client_compression
        specs = [{"token": f"tok-{names[i % len(names)]}", "all_projects": False,
                  "compression": offer} for i in range(k)]
        overrides = {("websocket", "max_connections_per_user"): str(k),
                     ("websocket", "max_unauthenticated"): str(k),
                     ("websocket", "compression"): args.compression}
        for item in args.set:
            key, _, value = item.partition("=")
            section, _, option = key.partition(".")
            overrides[(section, option)] = value
        scn = Scenario(run, "memory", overrides=overrides)
        scn.ensure_index()
        dump_to = os.path.join(scn.dir, "dump")
        os.environ["WS_MEMORY_DUMP"] = dump_to
        os.environ["WS_MEMORY_FRAMES"] = str(args.frames)
        if args.server_path:         # another tree's packages first (A/B runs)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [os.path.abspath(args.server_path), os.environ.get("PYTHONPATH", "")])
        ws = harness.wait_up(
            harness.Child([sys.executable, os.path.abspath(__file__), "--serve",
                           "--config-file", scn.conf],
                          os.path.join(scn.dir, "websocket.log")),
            f"http://127.0.0.1:{scn.ws_port}/status",
            lambda s: bool((s.get("feed") or {}).get("position")), "the WebSocket server")
        children.append(ws)
        time.sleep(3)
        rss0 = ws.ps.memory_info().rss
        if args.tracemalloc:
            ws.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            before = take_dump(ws, dump_to, 1)
        clients = scale.Clients(scn.ws_url, specs, args.client_processes, args.connect_rate)
        connect_s = clients.wait_subscribed(k, args.timeout)
        time.sleep(args.settle)
        rss1 = ws.ps.memory_info().rss
        status = harness.http_json(f"http://127.0.0.1:{scn.ws_port}/status", timeout=10)
        result = {"connections": k, "compression": args.compression,
                  "client_compression": args.client_compression,
                  "server_path": args.server_path,
                  "tracemalloc": args.tracemalloc, "connect_s": round(connect_s, 1),
                  "rss_before_mb": round(rss0 / 2**20, 1),
                  "rss_idle_mb": round(rss1 / 2**20, 1),
                  "rss_kb_per_connection": round((rss1 - rss0) / 1024 / k, 2),
                  "connections_open": (status or {}).get("connections")}
        out.append(f"# {k} idle connections, compression {args.compression} "
                   f"(clients offer {args.client_compression})"
                   f"{', tracemalloc' if args.tracemalloc else ''}")
        out.append(f"RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MB: "
                   f"{(rss1 - rss0) / 1024 / k:.2f} KB per connection")
        if args.tracemalloc:
            after = take_dump(ws, dump_to, 2)
            breakdown(before, after, k, args.top, out)
            by_caller(after, k, args.top, out)
            objects(before, after, k, args.top, out)
        result["report"] = out
        return result
    finally:
        harness.stop_all(clients, *reversed(children))
        run.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0],
                                epilog=__doc__.partition("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--projects", type=int, default=1000)
    p.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    p.add_argument("--client-compression", choices=("deflate", "none"), default="none",
                   help="what the clients offer (browsers offer deflate)")
    p.add_argument("--tracemalloc", action="store_true",
                   help="break the allocations down (RSS then includes tracemalloc's own)")
    p.add_argument("--frames", type=int, default=25, help="tracemalloc frames kept")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--client-processes", type=int, default=4)
    p.add_argument("--connect-rate", type=float, default=500.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds idle before measuring")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                   help="a setting of the server's configuration (repeatable)")
    p.add_argument("--server-path", metavar="DIR",
                   help="put DIR first on the server's PYTHONPATH (e.g. a copy of the "
                        "packages at another commit, for a back-to-back comparison)")
    p.add_argument("--json", help="append the result as a JSON line to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    import harness
    harness.wait_for_servers(("elasticsearch", "rabbitmq"))
    scale_nofile = __import__("scale").raise_nofile()
    if scale_nofile[0] < args.connections + 200:
        p.error(f"open files limit {scale_nofile[0]} too low for {args.connections}")
    result = measure(args)
    print("\n".join(result["report"]))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({key: v for key, v in result.items() if key != "report"})
                    + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
