"""Stage timestamps for the delay breakdown (``bench/run.py --trace``).

Runs the listener or the WebSocket server (the project's own console entry points)
with a few of the project's functions wrapped to append timestamps
(``time.monotonic()``, one clock for every process on Linux) to a JSON-lines file.
Nothing in the project is changed; without ``--trace`` the bench runs the console
scripts as they are.

    python bench/stagetrace.py listener TRACE.jsonl --config-file ... [--log-file ...]
    python bench/stagetrace.py websocket TRACE.jsonl --config-file ... [--log-file ...]

Records (``k`` = kind):

listener  ``poll``   t: the oslo.messaging poll handed a batch to the executor;
                     ids: message ids
          ``batch``  ids, t0 (handler entered), ta/tb (Indexer.apply start/end),
                     tf/tg (forward start/end), t1 (handler returns: the ack follows),
                     keys: [[resource id, version], ...] of the indexed changes
          ``ring``   t0/t1: WebSocketSink.deliver (the doorbell publish), n envelopes
websocket ``wake``   t: Tailer.ring (a doorbell ring reached the server's loop)
          ``poll``   t0 (poll starts), tc (checkpoint read), ts (first search starts:
                     the refresh is before it), te (last search done), t1 (poll done:
                     every page dispatched to the connections' queues), keys
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.dirname(HERE))


class Recorder:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1 << 16)
        self.lock = threading.Lock()

    def __call__(self, **record) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.f.write(line + "\n")

    def flush(self) -> None:
        with self.lock:
            self.f.flush()


def _flusher(rec: Recorder) -> None:
    def run():
        while True:
            time.sleep(0.5)
            rec.flush()
    threading.Thread(target=run, daemon=True, name="trace-flush").start()


def patch_listener(rec: Recorder) -> None:
    from oslo_messaging import server as om_server

    from forwarders import forwarding
    from forwarders.websocket import sink
    from searchlight_forward.indexer import indexer
    from searchlight_forward.listener import batch

    on_incoming = om_server.MessageHandlingServer._on_incoming

    def _on_incoming(self, incoming):
        rec(k="poll", t=time.monotonic(),
            ids=[(m.message or {}).get("message_id") for m in incoming][:1])
        return on_incoming(self, incoming)
    om_server.MessageHandlingServer._on_incoming = _on_incoming

    local = threading.local()
    handle = batch.BatchProcessor.handle

    def traced_handle(self, priority, messages):
        local.r = r = {"k": "batch", "n": len(messages), "t0": time.monotonic(),
                       "ids": [(m.get("metadata") or {}).get("message_id")
                               for m in messages][:1]}
        try:
            return handle(self, priority, messages)
        finally:
            r["t1"] = time.monotonic()
            rec(**r)
            local.r = None
    batch.BatchProcessor.handle = traced_handle

    def stamp(cls, name: str, start: str, end: str, note=None) -> None:
        """Wrap ``cls.name`` to stamp this thread's batch record on entry and exit."""
        original = getattr(cls, name)

        def traced(self, *args):
            r = getattr(local, "r", None)
            if r is not None:
                r[start] = time.monotonic()
                if note is not None:
                    note(r, *args)
            try:
                return original(self, *args)
            finally:
                if r is not None:
                    r[end] = time.monotonic()
        setattr(cls, name, traced)

    def changed_keys(r, pairs):
        r["keys"] = [[c.id, c.version] for _, c in pairs]

    stamp(indexer.Indexer, "apply", "ta", "tb", changed_keys)
    stamp(forwarding.Forwarding, "forward", "tf", "tg")

    deliver = sink.WebSocketSink.deliver

    def traced_deliver(self, envelopes):
        t0 = time.monotonic()
        try:
            return deliver(self, envelopes)
        finally:
            rec(k="ring", t0=t0, t1=time.monotonic(), n=len(envelopes))
    sink.WebSocketSink.deliver = traced_deliver


def patch_websocket(rec: Recorder) -> None:
    from forwarders.websocket import tail

    ring = tail.Tailer.ring

    def traced_ring(self):
        rec(k="wake", t=time.monotonic())
        return ring(self)
    tail.Tailer.ring = traced_ring

    checkpoint = tail.Tailer._checkpoint
    search = tail.Tailer._search
    poll = tail.Tailer.poll
    current: dict = {}

    def traced_checkpoint(self):
        try:
            return checkpoint(self)
        finally:
            if current.get("tc") is None and current.get("t0") is not None:
                current["tc"] = time.monotonic()
    tail.Tailer._checkpoint = traced_checkpoint

    def traced_search(self, index, query, after):
        start = time.monotonic()
        hits = search(self, index, query, after)
        if current.get("t0") is not None:
            current.setdefault("ts", start)
            current["te"] = time.monotonic()
            current.setdefault("keys", []).extend(
                [h["_id"].rsplit("_", 1)[0], h["_version"]] for h in hits
                if (h.get("_source") or {}).get("sf_role") == "admin")
        return hits
    tail.Tailer._search = traced_search

    async def traced_poll(self):
        current.clear()
        current["t0"] = time.monotonic()
        try:
            return await poll(self)
        finally:
            r = dict(current, k="poll", t1=time.monotonic())
            current.clear()
            if r.get("keys"):
                rec(**r)
    tail.Tailer.poll = traced_poll


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    rec = Recorder(path)
    _flusher(rec)
    sys.argv = [f"searchlight-forward-{kind}"] + sys.argv[3:]
    if kind == "listener":
        patch_listener(rec)
        from searchlight_forward.commands.listener import main as entry
    elif kind == "websocket":
        patch_websocket(rec)
        from searchlight_forward.commands.websocket import main as entry
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    try:
        return entry()
    finally:
        rec.flush()


if __name__ == "__main__":
    sys.exit(main())


# -- analysis (in the bench process) ----------------------------------------------------

STAGES = (
    ("publish -> batch polled", "broker, prefetch, waiting for the batch to fill"),
    ("polled -> handler", "waiting for an executor thread"),
    ("plugins", "handler start -> Indexer.apply"),
    ("index (mget + bulk)", "Indexer.apply"),
    ("after index -> forward", "dead letters, counters"),
    ("forward -> ring sent", "filters, outbox, the websocket pipeline thread, publish"),
    ("ring -> server woken", "RabbitMQ fanout, doorbell thread, event loop"),
    ("woken -> poll starts", "a poll already running, coalescing"),
    ("poll: checkpoint", "indices.stats"),
    ("poll: refresh", "indices.refresh"),
    ("poll: search", "every page"),
    ("poll: dispatch", "pages to the connections' queues (and the rest of the poll)"),
    ("poll done -> client", "send queue, socket, client"),
)


def read(path: str) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def breakdown(listener_path: str, ws_path: str, published: dict, records: list,
              since: float) -> dict:
    """Per-stage delays (ms: p50, p90, p99 over changes) for every change published
    after ``since``: ``published`` maps (resource id, version) -> publish time,
    ``records`` are the WebSocket clients' (type, id, version, receive time)."""
    import bisect
    import math
    lrec = [r for r in read(listener_path) if r.get("t", r.get("t0", 0)) >= since - 5]
    wrec = [r for r in read(ws_path) if r.get("t", r.get("t0", 0)) >= since - 5]
    polled = {r["ids"][0]: r["t"] for r in lrec if r["k"] == "poll" and r.get("ids")}
    batch_of: dict = {}
    for r in lrec:
        if r["k"] == "batch" and "keys" in r:
            for rid, v in r["keys"]:
                batch_of.setdefault((rid, v), r)
    rings = sorted((r["t0"], r["t1"]) for r in lrec if r["k"] == "ring")
    ring_t0 = [t for t, _ in rings]
    wakes = sorted(r["t"] for r in wrec if r["k"] == "wake")
    polls = sorted((r for r in wrec if r["k"] == "poll"), key=lambda r: r["t0"])
    poll_of: dict = {}
    for p in polls:
        for rid, v in p.get("keys", ()):
            poll_of.setdefault((rid, v), p)
    first_rx: dict = {}
    for client in records:
        for _, rid, v, t in client:
            key = (rid, v)
            if t < first_rx.get(key, math.inf):
                first_rx[key] = t
    stages = {name: [] for name, _ in STAGES}
    total, found = [], 0
    for (rid, v), t_pub in published.items():
        if t_pub < since:
            continue
        b, p, rx = batch_of.get((rid, v)), poll_of.get((rid, v)), first_rx.get((rid, v))
        if b is None or p is None or rx is None or "tb" not in b or "tf" not in b:
            continue
        t_poll = polled.get((b.get("ids") or [None])[0], b["t0"])
        i = bisect.bisect_left(ring_t0, b["tf"])
        if i >= len(rings):
            continue
        r0, r1 = rings[i]
        j = bisect.bisect_left(wakes, r0)
        wake = wakes[j] if j < len(wakes) else p["t0"]
        found += 1
        points = [t_pub, t_poll, b["t0"], b["ta"], b["tb"], b["tf"], r1, wake,
                  max(wake, p["t0"]), p.get("tc", p["t0"]), p.get("ts", p["t0"]),
                  p.get("te", p["t1"]), p["t1"], rx]
        for (name, _), a, z in zip(STAGES, points, points[1:]):
            stages[name].append(1000 * (z - a))
        total.append(1000 * (rx - t_pub))

    def q(values, f):
        if not values:
            return None
        values = sorted(values)
        return round(values[min(len(values) - 1, max(0, math.ceil(f * len(values)) - 1))], 1)
    out = {"changes": found, "stages": [], "batches": None}
    for name, what in STAGES:
        vals = stages[name]
        out["stages"].append({"stage": name, "what": what, "p50": q(vals, .5),
                              "p90": q(vals, .9), "p99": q(vals, .99),
                              "mean": round(sum(vals) / len(vals), 1) if vals else None})
    out["end_to_end"] = {"p50": q(total, .5), "p90": q(total, .9), "p99": q(total, .99),
                         "mean": round(sum(total) / len(total), 1) if total else None}
    bs = [r for r in lrec if r["k"] == "batch" and r["t0"] >= since]
    ps = [r for r in polls if r["t0"] >= since]
    if bs:
        sizes = [r["n"] for r in bs]
        out["batches"] = {"count": len(bs), "mean_size": round(sum(sizes) / len(sizes), 1),
                          "max_size": max(sizes),
                          "handler_ms_p50": q([1000 * (r["t1"] - r["t0"]) for r in bs], .5),
                          "bulk_ms_p50": q([1000 * (r["tb"] - r["ta"]) for r in bs
                                            if "tb" in r], .5)}
    if ps:
        out["polls"] = {"count": len(ps),
                        "refresh_ms_p50": q([1000 * (r["ts"] - r["tc"]) for r in ps
                                             if "ts" in r and "tc" in r], .5),
                        "poll_ms_p50": q([1000 * (r["t1"] - r["t0"]) for r in ps], .5)}
    return out


def markdown(b: dict) -> list[str]:
    lines = ["| stage | what | p50 | p90 | p99 | mean |", "|---|---|---:|---:|---:|---:|"]
    for s in b["stages"]:
        lines.append(f"| {s['stage']} | {s['what']} | {s['p50']} | {s['p90']} | {s['p99']} "
                     f"| {s['mean']} |")
    e = b["end_to_end"]
    lines.append(f"| **publish -> first client** | {b['changes']} changes | {e['p50']} | "
                 f"{e['p90']} | {e['p99']} | {e['mean']} |")
    return lines
