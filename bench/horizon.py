"""searchlight-forward inside Horizon: how long a published notification takes to show
in a live table in Chromium, and whether a 2,000-row table taking 200 changes/s stays
responsive (issue 25).

    .venv/bin/python bench/horizon.py           # 100 rows at 50/s and 200/s, 2,000 rows at 200/s; 30 s each (~2 min)
    .venv/bin/python bench/horizon.py --quick   # 10 s each, 500 rows in the large table (a smoke run)

Runs on the local servers (`python3 scripts/servers.py up`: Elasticsearch, RabbitMQ,
Keystone and Horizon's venv with the plugin) with the whole path real: the bench
publishes Nova `instance.update` notifications (devtools/publisher.py, as Nova's
Notifier would) -> RabbitMQ -> a spawned `searchlight-forward-listener` ->
Elasticsearch -> doorbell -> a spawned `searchlight-forward-websocket` validating
Keystone tokens -> a Horizon 27 of the bench's own (devtools/horizon.py, waitress)
logged in as `demo` through its login form -> /project/live_instances/ in headless
Chromium (Debian's, driven by Playwright). Private names as in bench/run.py
(`sfb-<run>` vhost and indices, own ports, 127.0.0.1 only); removed at the end.

Each notification renames one server to `bench-NNNN #SEQ` (SEQ: the notification's
number; its updated_at is SEQ seconds after a fixed base, so versions only grow) and
the bench notes the wall clock just before publishing it. In the page, an init script
notes (performance.timeOrigin + performance.now(), the same clock):
  frame    when the WebSocket message carrying SEQ reached the page's main thread;
  row      when the row's name cell showed SEQ (a MutationObserver on the table's
           tbody: it runs right after the table's script changed the DOM);
  next frame  the next requestAnimationFrame after that (the frame that paints it);
  long tasks  Chromium's Long Tasks API (PerformanceObserver 'longtask': every task
           of the page's main thread over 50 ms), checked at start with a deliberate
           80 ms task.
The table shows a page of 100 rows (as Horizon pages its tables) and keeps every row
up to date: renames go to all rows, and are timed on the first page's (PAGE_ROWS).
The page's clock is compared with the bench's (the evaluate round trip with the
smallest delay, of 20) and the offset removed. Phases, each on one open page:
  small-50    --rows-small rows (100), --duration s at 50 changes/s, round robin;
  small-200   the same page at 200 changes/s;
  large-200   --rows-large rows (2,000) in a freshly loaded page, 200 changes/s.
The large table's rows are indexed through the same pipeline before its page opens
(its load, and the long tasks during it, are reported apart). CPU: the WebSocket
server's process per frame sent (its /status counters), and every process's share.

Writes bench/results/horizon.json and horizon.md.
"""
from __future__ import annotations

import copy
import datetime
import os
import pathlib
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import psutil  # noqa: E402

import harness  # noqa: E402
from harness import BenchError, Scenario  # noqa: E402

from devtools.horizon import HorizonProcess, log_in  # noqa: E402
from devtools.keystone import LocalKeystone  # noqa: E402
from devtools.publisher import NotificationPublisher  # noqa: E402
from devtools.simulator import CloudSimulator  # noqa: E402

PHASES = ("small-50", "small-200", "large-200")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TABLE = "/project/live_instances/"
BASE = datetime.datetime(2026, 1, 1, 0, 0, 0)
LONG_TASK_MS = 50.0
log = harness.log

# Runs in the page before Horizon's scripts: the WebSocket frames', the rows' and the
# next frames' times per SEQ, and the long tasks, in window.__sfb.
INIT_JS = r"""
(() => {
  if (window.__sfb) return;
  const now = () => performance.timeOrigin + performance.now();
  const SEQ = /bench-\d+ #(\d+)/;
  const S = window.__sfb = {frames: new Map(), rows: new Map(), painted: new Map(),
                            longtasks: [], longtaskError: null, rafPending: []};
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        S.longtasks.push([performance.timeOrigin + e.startTime, e.duration, e.name]);
      }
    }).observe({type: "longtask", buffered: true});
  } catch (e) { S.longtaskError = String(e); }
  // Long animation frames (over 50 ms): where the time went, script or rendering.
  S.loafs = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const end = e.startTime + e.duration;
        S.loafs.push({at: performance.timeOrigin + e.startTime, duration: e.duration,
          blocking: e.blockingDuration,
          render: e.renderStart ? end - e.renderStart : 0,
          styleLayout: e.styleAndLayoutStart ? end - e.styleAndLayoutStart : 0,
          scripts: (e.scripts || []).map((x) => [
            `${x.invoker || x.invokerType}${x.sourceFunctionName ? " " + x.sourceFunctionName : ""}`
              + ` (${(x.sourceURL || "").split("/").pop()})`,
            x.duration, x.forcedStyleAndLayoutDuration || 0])});
      }
    }).observe({type: "long-animation-frame", buffered: true});
  } catch (e) { S.loafError = String(e); }
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (ev) => {
        const t = now();
        if (typeof ev.data !== "string") return;
        const m = SEQ.exec(ev.data);
        if (m && !S.frames.has(Number(m[1]))) S.frames.set(Number(m[1]), t);
      });
    }
  };
  const seqOf = (tr) => {
    const td = tr.querySelector('td[data-field="name"]');
    const m = td && SEQ.exec(td.textContent);
    return m ? Number(m[1]) : null;
  };
  const watch = () => {
    const tbody = document.querySelector(".sf-rows");
    if (!tbody) return;
    new MutationObserver((records) => {
      const t = now();
      const trs = new Set();
      for (const r of records) {
        if (r.target === tbody) {
          for (const n of r.addedNodes) if (n.nodeName === "TR") trs.add(n);
          continue;
        }
        const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
        const tr = el && el.closest("tr");
        if (tr) trs.add(tr);
      }
      for (const tr of trs) {
        const s = seqOf(tr);
        if (s !== null && !S.rows.has(s)) { S.rows.set(s, t); S.rafPending.push(s); }
      }
      if (S.rafPending.length && !S.rafAsked) {
        S.rafAsked = true;
        requestAnimationFrame(() => {
          const p = now();
          for (const s of S.rafPending) S.painted.set(s, p);
          S.rafPending = [];
          S.rafAsked = false;
        });
      }
    }).observe(tbody, {childList: true, subtree: true, characterData: true});
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch);
  else watch();
})();
"""

COLLECT_JS = """([lo, from, to]) => {
  const S = window.__sfb, out = [];
  for (const [s, t] of S.rows) {
    if (s >= lo) out.push([s, t, S.frames.get(s) ?? null, S.painted.get(s) ?? null]);
  }
  return {rows: out, longtasks: S.longtasks.filter(([at, d]) => at + d >= from && at <= to),
          loafs: S.loafs.filter((f) => f.at + f.duration >= from && f.at <= to)};
}"""


# -- the notifications ---------------------------------------------------------------------

class Servers:
    """Nova servers of one project and the notifications that rename them: the payload
    is the simulator's versioned ``instance.update`` (a running server), with the id,
    project, name and updated_at of each."""

    def __init__(self, project_id: str):
        sim = CloudSimulator(seed=25, nova_format="versioned",
                             project_ids={"demo": project_id})
        notes = sim.lifecycle("OS::Nova::Server", "demo", delete=False)
        update = next(n for n in notes if n.event_type == "instance.update")
        self.template = update
        self.project_id = project_id
        self.ids: list[str] = []
        self.seq = 0

    def grow(self, n: int) -> None:
        while len(self.ids) < n:
            self.ids.append(str(uuid.UUID(int=len(self.ids) + 1, version=4)))

    def next(self, index: int):
        """(seq, exchange, topic, publisher_id, event_type, payload, emitted_at) renaming
        server ``index``."""
        self.seq += 1
        seq = self.seq
        t = self.template
        payload = copy.deepcopy(t.payload)
        data = payload["nova_object.data"]
        at = BASE + datetime.timedelta(seconds=seq)
        name = f"bench-{index:04d} #{seq}"
        data.update(uuid=self.ids[index], tenant_id=self.project_id, display_name=name,
                    host_name=name, updated_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    state="active", task_state=None, power_state="running")
        data["state_update"]["nova_object.data"].update(state="active", old_state="active",
                                                        new_task_state=None,
                                                        old_task_state=None)
        return seq, (t.exchange, t.topic, t.publisher_id, t.event_type, payload,
                     at.strftime("%Y-%m-%d %H:%M:%S.000000"))


def publish_paced(publisher: NotificationPublisher, servers: Servers, indices: list[int],
                  rate: float) -> dict:
    """Publish one rename per index at ``rate``/s (0: flat out); {seq: wall clock just
    before its publish}, and the rate achieved."""
    sent: dict[int, float] = {}
    start = time.monotonic() + 0.2
    for i, index in enumerate(indices):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        seq, (exchange, topic, publisher_id, event_type, payload, emitted) = servers.next(index)
        sent[seq] = time.time()
        publisher.publish(exchange, topic, publisher_id, event_type, payload,
                          emitted_at=emitted)
    took = time.monotonic() - start
    return {"sent": sent, "achieved_rate": round(len(indices) / max(took, 1e-3), 1)}


# -- statistics --------------------------------------------------------------------------

def long_task_summary(tasks: list) -> dict:
    durations = [d for _at, d, _name in tasks]
    return {"count": len(durations), "over_50ms": sum(d > LONG_TASK_MS for d in durations),
            "max_ms": round(max(durations), 1) if durations else 0.0,
            "total_ms": round(sum(durations), 1),
            "durations_ms": sorted((round(d, 1) for d in durations), reverse=True)[:20]}


# The table shows its rows a page at a time (livetable.js PAGE_ROWS, as Horizon pages
# its tables); it keeps every row up to date, and a change is timed where it shows: on
# the first page, the rows bench-0000 to bench-0099 (names sort as their numbers).
PAGE_ROWS = 100


def shown_times(rows: list, sent: dict, indices: list[int], first_seq: int) -> dict:
    """seq -> (row, frame, next frame, shown itself?) for each published seq: the first
    time its row showed it or a newer rename of the same row (the newer one's times
    when this one was coalesced away)."""
    at = {seq: (row_t, frame_t, paint_t) for seq, row_t, frame_t, paint_t in rows}
    by_row: dict[int, list[int]] = {}
    for i, index in enumerate(indices):
        if index < PAGE_ROWS:
            by_row.setdefault(index, []).append(first_seq + i)
    out = {}
    inf = float("inf")
    for seqs in by_row.values():
        best = (inf, inf, inf)
        for seq in reversed(seqs):          # newest first: a running minimum
            if seq in at:
                row_t, frame_t, paint_t = at[seq]
                best = (min(best[0], row_t),
                        min(best[1], frame_t if frame_t is not None else inf),
                        min(best[2], paint_t if paint_t is not None else inf))
            if best[0] < inf and seq in sent:
                out[seq] = (best[0], best[1] if best[1] < inf else None,
                            best[2] if best[2] < inf else None, seq in at)
    return out


def loaf_summary(loafs: list) -> dict:
    """Chromium's long animation frames: how many, and their time split between
    scripts (by invoker) and rendering (style, layout, paint)."""
    long = [f for f in loafs if f["duration"] > LONG_TASK_MS]
    invokers: dict[str, float] = {}
    script = forced = 0.0
    for f in long:
        for name, duration, forced_layout in f["scripts"]:
            invokers[name] = invokers.get(name, 0.0) + duration
            script += duration
            forced += forced_layout
    top = sorted(invokers.items(), key=lambda kv: -kv[1])[:5]
    return {"count": len(long),
            "max_ms": round(max((f["duration"] for f in long), default=0.0), 1),
            "total_ms": round(sum(f["duration"] for f in long), 1),
            "blocking_ms": round(sum(f["blocking"] for f in long), 1),
            "script_ms": round(script, 1), "forced_style_layout_ms": round(forced, 1),
            "render_ms": round(sum(f["render"] for f in long), 1),
            "style_layout_ms": round(sum(f["styleLayout"] for f in long), 1),
            "top_scripts_ms": [[name, round(ms, 1)] for name, ms in top]}


# -- the bench ---------------------------------------------------------------------------

class Bench:
    """One private run: listener, WebSocket server, Horizon and Chromium, shared by
    the phases."""

    def __init__(self, args):
        self.args = args
        self.run = harness.Run(keep=args.keep)
        self.ks = LocalKeystone()
        demo = self.ks.users["demo"]
        self.user, self.password = demo["name"], demo["password"]
        self.servers = Servers(demo["project_id"])
        self.children: list = []
        self.horizon: HorizonProcess | None = None
        self.publisher: NotificationPublisher | None = None
        self.playwright = self.browser = None
        self.context = self.page = None
        self.loads: dict = {}

    # -- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        self.run.open()
        overrides = {("websocket", "auth"): "keystone",
                     ("websocket", "token_recheck_interval"): "30"}
        for line in self.ks.service_conf().splitlines()[1:]:
            key, _, value = line.partition(" = ")
            overrides[("websocket_keystone", key)] = value
        self.scn = scn = Scenario(self.run, "horizon", pipelines=False, overrides=overrides)
        scn.ensure_index()
        harness.declare_pool(self.run.transport_url, scn.pool, scn.conf)
        self.ws = harness.start_ws_server(scn)
        self.children.append(self.ws)
        self.listener = harness.start_listener(scn, wait=True)
        self.children.append(self.listener)
        self.publisher = NotificationPublisher(self.run.transport_url)
        self.horizon = HorizonProcess(scn.ws_url + "/", pathlib.Path(scn.dir) / "horizon.log")
        try:
            self.horizon.start()
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        from playwright.sync_api import sync_playwright
        if not os.path.exists(CHROMIUM):
            raise BenchError(f"{CHROMIUM} is missing (apt-get install chromium; "
                             "`make test-servers` installs it)")
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000)

    def stop(self) -> None:
        for close in (lambda: self.context and self.context.close(),
                      lambda: self.browser and self.browser.close(),
                      lambda: self.playwright and self.playwright.stop(),
                      lambda: self.horizon and self.horizon.stop(),
                      lambda: self.publisher and self.publisher.close()):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - go on cleaning up
                log(f"clean-up: {exc}")
        harness.stop_all(*reversed(self.children), scn=getattr(self, "scn", None))
        self.run.close()

    # -- rows -------------------------------------------------------------------------

    def processed(self) -> int:
        return harness.processed(self.scn)

    def index_rows(self, n: int) -> None:
        """Servers up to ``n`` exist (one rename each, through the pipeline, flat out)."""
        have = len(self.servers.ids)
        self.servers.grow(n)
        if n <= have:
            return
        before = self.processed()
        publish_paced(self.publisher, self.servers, list(range(have, n)), 0)
        harness.wait_until(lambda: self.processed() >= before + n - have, 120, 0.2,
                           f"the listener to index {n - have} servers")
        es = self.run.es
        from searchlight_forward.indexer import layout
        alias = layout.listener_alias(self.scn.group)

        def all_there():
            es.indices.refresh(index=alias)
            return es.count(index=alias, query={"bool": {"filter": [
                {"term": {"resource_type": "OS::Nova::Server"}},
                {"term": {"project_id": self.servers.project_id}}]}})["count"] >= n
        harness.wait_until(all_there, 60, 0.3, f"{n} servers in Elasticsearch")

    # -- the page ---------------------------------------------------------------------

    def open_page(self, rows: int) -> dict:
        """A fresh context, Horizon's login form, the live table with ``rows`` rows:
        how long that took and the long tasks meanwhile; the observer checked."""
        if self.context is not None:
            self.context.close()
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 720})
        self.context.add_init_script(INIT_JS)
        page = self.page = self.context.new_page()
        page.set_default_timeout(60_000)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        log_in(page, self.horizon.url, self.user, self.password, TABLE)
        t0 = time.time()
        page.wait_for_selector('.sf-conn[data-state="live"]', timeout=120_000)
        page.wait_for_function(
            """([n, pageRows]) => document.querySelectorAll('.sf-rows tr').length
                 >= Math.min(n, pageRows) && (n <= pageRows || (document.querySelector(
                 '.sf-count') || {}).textContent.includes(`of ${n} items`))""",
            arg=[rows, PAGE_ROWS], timeout=120_000, polling=100)
        loaded = time.time()
        if page.evaluate("window.__sfb.longtaskError"):
            raise BenchError("Chromium's long-task observer failed: "
                             + page.evaluate("window.__sfb.longtaskError"))
        page.wait_for_timeout(500)
        load = page.evaluate(COLLECT_JS, [10**12, 0, 1e15])
        load_tasks = long_task_summary(load["longtasks"])
        load_tasks["animation_frames"] = loaf_summary(load["loafs"])
        # The observer is alive: a deliberate 80 ms task must show.
        mark = time.time() * 1000
        page.evaluate("""() => new Promise((done) => setTimeout(() => {
            const end = performance.now() + 80; while (performance.now() < end) {} done();
        }, 0))""")
        page.wait_for_timeout(300)
        probe = page.evaluate(COLLECT_JS, [10**12, mark - 1000, 1e15])["longtasks"]
        if not any(d >= 75 for at, d, _ in probe if at >= mark - 1000):
            raise BenchError(f"the long-task observer missed a deliberate 80 ms task "
                             f"({probe})")
        return {"rows": rows, "login_to_live_s": round(loaded - t0, 2),
                "long_tasks_before_live": load_tasks}

    def clock_offset(self) -> dict:
        """The page's clock minus ours (ms), from the evaluate with the smallest round
        trip of 20."""
        best = None
        for _ in range(20):
            t0 = time.time()
            page_now = self.page.evaluate("performance.timeOrigin + performance.now()")
            t1 = time.time()
            rtt = (t1 - t0) * 1000
            if best is None or rtt < best[0]:
                best = (rtt, page_now - (t0 + t1) * 500)
        return {"offset_ms": round(best[1], 2), "uncertainty_ms": round(best[0] / 2, 2)}

    def status_counters(self) -> dict:
        try:
            status = harness.http_json(f"http://127.0.0.1:{self.scn.ws_port}/status",
                                       timeout=5) or {}
        except (OSError, ValueError):
            return {}
        return status.get("counters") or {}

    def browser_processes(self) -> list[psutil.Process]:
        """Chromium's browser processes (the Watch adds their renderers, GPU and
        utility processes: their children)."""
        found = []
        for p in psutil.Process().children(recursive=True):
            try:
                if "chrom" in p.name() and "chrom" not in p.parent().name():
                    found.append(p)
            except (psutil.Error, AttributeError):
                pass
        return found

    # -- one phase --------------------------------------------------------------------

    def phase(self, name: str, rows: int, rate: float) -> dict:
        args = self.args
        self.index_rows(rows)
        if self.page is None or name == "large-200":
            self.loads[name] = self.open_page(rows)
        clock = self.clock_offset()
        count = int(rate * args.duration)
        indices = [i % rows for i in range(count)]
        first_seq = self.servers.seq + 1
        chromium = self.browser_processes()
        watch = harness.Watch({"websocket server": self.ws.ps, "listener": self.listener.ps,
                               "chromium": chromium,
                               "horizon": psutil.Process(self.horizon.proc.pid),
                               "bench": psutil.Process(), **harness.server_processes()},
                              rss_of=(), single=("bench",)).start()
        counters0 = self.status_counters()
        before = self.processed()
        window_from = time.time() * 1000
        pub = publish_paced(self.publisher, self.servers, indices, rate)
        last_seq = self.servers.seq
        deadline = time.monotonic() + args.drain
        # Done when every row shows its last rename (earlier ones of a row may be
        # coalesced: Elasticsearch keeps the newest version, the change reader sends it).
        finals = sorted({index: first_seq + i for i, index in enumerate(indices)
                         if index < PAGE_ROWS}.values())
        seen = 0
        while time.monotonic() < deadline:
            seen = self.page.evaluate(
                "finals => finals.filter((s) => window.__sfb.rows.has(s)).length", finals)
            if seen >= len(finals):
                break
            time.sleep(0.25)
        drained = seen >= len(finals)
        window_to = time.time() * 1000
        watch.stop()
        self.page.wait_for_timeout(200)
        counters1 = self.status_counters()
        got = self.page.evaluate(COLLECT_JS, [first_seq, window_from, window_to])
        off = clock["offset_ms"]
        shown = shown_times(got["rows"], pub["sent"], indices, first_seq)
        row_ms, frame_ms, paint_ms, table_ms = [], [], [], []
        for seq, (row_t, frame_t, paint_t, own) in shown.items():
            sent = pub["sent"][seq] * 1000
            row_ms.append(row_t - off - sent)
            if frame_t is not None:
                frame_ms.append(frame_t - off - sent)
            if paint_t is not None:
                paint_ms.append(paint_t - off - sent)
        for seq, row_t, frame_t, _paint_t in got["rows"]:
            if seq in pub["sent"] and frame_t is not None:
                table_ms.append(row_t - frame_t)
        coalesced = sum(1 for v in shown.values() if not v[3])
        tasks = long_task_summary(got["longtasks"])
        tasks["animation_frames"] = loaf_summary(got["loafs"])
        resources = watch.report()
        wall = max(watch.t1 - watch.t0, 1e-9)
        ws_cpu = watch.cpu1["websocket server"] - watch.cpu0["websocket server"]
        frames = (counters1.get("frames_sent", 0) - counters0.get("frames_sent", 0)) or len(
            got["rows"])
        out = {
            "rows": rows, "rate": rate, "duration_s": args.duration, "published": count,
            "achieved_rate": pub["achieved_rate"], "first_seq": first_seq,
            "last_seq": last_seq, "changes_shown": len(row_ms),
            "changes_coalesced": coalesced, "drained": drained,
            "listener_processed": self.processed() - before,
            "publish_to_row_ms": harness.percentiles(row_ms),
            "publish_to_frame_ms": harness.percentiles(frame_ms),
            "frame_to_row_ms": harness.percentiles(table_ms),
            "publish_to_next_frame_ms": harness.percentiles(paint_ms),
            "long_tasks": tasks, "clock": clock,
            "websocket_frames_sent": frames,
            "websocket_cpu_s": round(ws_cpu, 3),
            "websocket_cpu_ms_per_frame": round(1000 * ws_cpu / max(frames, 1), 3),
            "websocket_cores": round(ws_cpu / wall, 3),
            "page_errors": list(self.page.errors), "resources": resources,
        }
        if name in self.loads:
            out["load"] = self.loads[name]
        r, t = out["publish_to_row_ms"], out["long_tasks"]
        log(f"  {name}: {rows} rows at {rate:g}/s: publish->row p50/p95/p99 "
            f"{r['p50']}/{r['p95']}/{r['p99']} ms over {r['count']} of {count}; long tasks "
            f"{t['count']} (max {t['max_ms']} ms); WebSocket server "
            f"{out['websocket_cpu_ms_per_frame']} ms CPU per frame; machine "
            f"{resources['machine_busy_pct']} % busy")
        return out


# -- report ------------------------------------------------------------------------------

def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Horizon live table benchmark ({meta['started']})", "",
             f"`{meta['command']}` on {meta['machine']['nproc']} cores "
             f"({meta['machine']['cpu']}); git {meta['git']}.", "",
             "| phase | rows | rate (achieved) | publish -> row p50 / p95 / p99 / max (ms) | "
             "publish -> frame p50 / p99 | frame -> row p50 / p99 | long tasks (max ms) | "
             "WebSocket server CPU per frame | Chromium cores | machine busy (cores of "
             "processes not in the bench) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in PHASES:
        r = results.get(name)
        if not r:
            continue
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | | | | |")
            continue
        p, f, t, lt = (r["publish_to_row_ms"], r["publish_to_frame_ms"],
                       r["frame_to_row_ms"], r["long_tasks"])
        lines.append(
            f"| {name} | {r['rows']} | {r['rate']:g}/s ({r['achieved_rate']:g}) | "
            f"{p['p50']} / {p['p95']} / {p['p99']} / {p['max']} ({p['count']} of "
            f"{r['published']}, {r['changes_coalesced']} coalesced) | {f['p50']} / {f['p99']} | "
            f"{t['p50']} / {t['p99']} | "
            f"{lt['count']} ({lt['max_ms']}) | {r['websocket_cpu_ms_per_frame']} ms | "
            f"{r['resources']['cores_used'].get('chromium')} | "
            f"{r['resources']['machine_busy_pct']} % ({r['resources']['other_cores']}) |")
    lines += ["", "Long animation frames over 50 ms (Chromium's LoAF API): where their "
              "time went.", "",
              "| phase | frames | max (ms) | total (ms) | scripts (ms) | rendering (ms) | "
              "of which style and layout (ms) | busiest scripts (ms) |",
              "|---|---|---|---|---|---|---|---|"]
    for name in PHASES:
        r = results.get(name)
        if not r or "error" in r:
            continue
        a = r["long_tasks"]["animation_frames"]
        top = "; ".join(f"{n}: {ms}" for n, ms in a["top_scripts_ms"][:3])
        lines.append(f"| {name} | {a['count']} | {a['max_ms']} | {a['total_ms']} | "
                     f"{a['script_ms']} | {a['render_ms']} | {a['style_layout_ms']} | "
                     f"{top} |")
    loads = [(n, results[n]["load"]) for n in PHASES
             if isinstance(results.get(n), dict) and "load" in results[n]]
    if loads:
        lines += ["", "Page loads (login form submitted -> every row shown):", ""]
        for n, load in loads:
            lt = load["long_tasks_before_live"]
            lines.append(f"- {n}: {load['rows']} rows in {load['login_to_live_s']} s; "
                         f"long tasks meanwhile {lt['count']} (max {lt['max_ms']} ms)")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = harness.arguments(__doc__, PHASES, "horizon.json and horizon.md")
    p.add_argument("--quick", action="store_true", help="10 s per phase, 500 large rows")
    harness.sized(p, "--duration", float, 30, 10, "seconds of publishing per phase")
    harness.sized(p, "--rows-large", int, 2000, 500, "rows of the large table")
    p.add_argument("--rows-small", type=int, default=100, help="rows of the small table")
    p.add_argument("--drain", type=float, default=60.0,
                   help="longest wait for every row update after publishing (s)")
    return harness.parse(p, argv, PHASES)


def main(argv=None) -> int:
    args = parse_args(argv)
    import signal
    signal.signal(signal.SIGTERM, harness.interrupt)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    harness.wait_for_servers(("elasticsearch", "rabbitmq", "keystone"))
    from searchlight_forward.commands import common  # noqa: F401 - quiets eventlet
    import workers
    workers.quiet_logging()
    plan = {"small-50": (args.rows_small, 50.0), "small-200": (args.rows_small, 200.0),
            "large-200": (args.rows_large, 200.0)}
    results: dict = {}
    bench = Bench(args)
    try:
        bench.start()
        for name in args.scenarios:
            rows, rate = plan[name]
            t = time.monotonic()
            try:
                results[name] = bench.phase(name, rows, rate)
            except BenchError as exc:
                results[name] = {"error": str(exc)}
                log(f"{name}: FAILED: {exc}")
            results[name]["phase_wall_s"] = round(time.monotonic() - t, 1)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        bench.stop()
    meta = {"started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "wall_s": round(time.monotonic() - t0, 1), "run": bench.run.prefix,
            "command": " ".join(["bench/horizon.py", *(sys.argv[1:] if argv is None
                                                       else argv)]),
            "scenarios": args.scenarios, "machine": harness.machine(),
            "git": harness.git_state(), "search": harness.SEARCH_BACKEND,
            "chromium": bench_chromium_version()}
    results["meta"] = meta
    harness.write_results(args.output, "horizon", results, markdown(results, meta))
    return 0 if all("error" not in results[s] for s in args.scenarios) else 1


def bench_chromium_version() -> str | None:
    import subprocess
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                              timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
