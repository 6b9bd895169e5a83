"""The benchmark's plumbing in the parent process: private names, configuration,
child processes, and what it watches while a scenario runs.

Isolation: every run gets its own RabbitMQ virtual host (so the Notifier's exchanges,
the pool queues and the doorbell exchange are private, and nobody else's listener
receives the benchmark's notifications), its own Elasticsearch indices
(``sfb-<run>-*``, the state index of the delivery cursors included), Zaqar queues and
projects (``sfb-<run>...``), ports and temporary directory. ``Run.close`` removes them
all.
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import kombu
import psutil
import tqdm

import workers

ROOT = workers.ROOT
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# The search server, chosen as the tests choose it (tests/conftest.py):
# SF_SEARCH_BACKEND=opensearch benches OpenSearch on 9201. Results keep the label
# "elasticsearch" for the search server's figures, whichever it is.
SEARCH_BACKEND = os.environ.get("SF_SEARCH_BACKEND", "elasticsearch")
ES_URL = os.environ.get("SF_SEARCH_URL") or (
    os.environ.get("SF_OPENSEARCH_URL", "http://127.0.0.1:9201")
    if SEARCH_BACKEND == "opensearch" else os.environ.get("SF_ES_URL", "http://127.0.0.1:9200"))
BROKER_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
ZAQAR_URL = os.environ.get("SF_ZAQAR_URL", "http://127.0.0.1:8888")
SPAWN = multiprocessing.get_context("spawn")
SERVER_PORTS = {"elasticsearch": int(ES_URL.rsplit(":", 1)[1].strip("/")), "rabbitmq": 5672, "zaqar": 8888, "redis": 6379}
SIM_PROJECTS = ("demo", "alt_demo", "admin")
ZAQAR_CLIENT_ID = "5f1c3a52-6f0e-4b59-9d0c-2d3f1a6b7e42"


def percentiles(values: list[float]) -> dict:
    """count, p50, p95, p99 and max (ms, 0.1) of latencies; None when there are none."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    values = sorted(values)

    def at(q):
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)
    return {"count": len(values), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "max": round(values[-1], 1)}


class BenchError(RuntimeError):
    pass


def free_port(consecutive: int = 1) -> int:
    """A free TCP port on 127.0.0.1 (and the ``consecutive - 1`` after it)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ok = True
        for extra in range(1, consecutive):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + extra))
                except OSError:
                    ok = False
        if ok:
            return port
    raise BenchError("no free port")


def http_json(url: str, method: str = "GET", headers: dict | None = None,
              timeout: float = 5.0):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
        return json.loads(body) if body else None


def servers_py(*args: str, check: bool = True) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "servers.py"), *args],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise BenchError(f"scripts/servers.py {' '.join(args)} failed: "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def search_client(timeout: float = 60.0):
    """A client of the benched search server (either backend)."""
    from searchlight_forward import search
    return search.connect(ES_URL, SEARCH_BACKEND, request_timeout=timeout)


def wait_for_servers(needed=tuple(SERVER_PORTS), timeout: float = 180.0) -> None:
    """The ``needed`` local servers are healthy, or BenchError. Others share them and
    a test may have one down for a while (the Zaqar outage tests): wait, do not
    restart it."""
    deadline = time.monotonic() + timeout
    down: list[str] = []
    while True:
        out = servers_py("status", check=False)
        healthy = {line.split()[0] for line in out.splitlines()[1:]
                   if line.split() and line.split()[-1] == "yes"}
        down = [name for name in needed if name not in healthy]
        if not down:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"local server(s) {', '.join(down)} not healthy after "
                             f"{timeout:.0f}s (`python3 scripts/servers.py status`; "
                             f"`up` starts them)")
        time.sleep(2.0)


# -- the run: private names and clean-up -----------------------------------------------

class Run:
    def __init__(self, keep: bool = False):
        self.id = uuid.uuid4().hex[:6]
        self.prefix = f"sfb-{self.id}"
        self.vhost = self.prefix
        base = BROKER_URL.rstrip("/")
        self.transport_url = f"{base}/{self.vhost}"
        self.amqp_url = self.transport_url.replace("rabbit://", "amqp://", 1)
        self.es = search_client()
        self.dir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.keep = keep
        self.zaqar_queues: set[tuple[str, str]] = set()   # (project, queue)
        self.bindir = os.path.dirname(sys.executable)
        # Demo-style token file pinned to the simulator's projects.
        self.project_ids = {name: uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.prefix}.{name}").hex
                            for name in SIM_PROJECTS}
        self.tokens_path = os.path.join(self.dir, "websocket-tokens.json")
        tokens = {f"tok-{name}": {"user_id": f"{name}-member", "project_id": pid,
                                  "roles": ["member", "reader"]}
                  for name, pid in self.project_ids.items()}
        tokens["tok-admin"] = {"user_id": "cloud-admin", "project_id": self.project_ids["admin"],
                               "roles": ["admin", "member", "reader"]}
        with open(self.tokens_path, "w") as f:
            json.dump(tokens, f, indent=1)

    def clients(self, k: int) -> list[tuple[str, bool]]:
        """K clients: an admin watching all projects, then members of each project."""
        out = [("tok-admin", True)]
        names = list(SIM_PROJECTS)
        for i in range(1, k):
            out.append((f"tok-{names[(i - 1) % len(names)]}", False))
        return out[:k]

    def open(self) -> None:
        servers_py("rabbitmqctl", "add_vhost", self.vhost)
        servers_py("rabbitmqctl", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.es.indices.delete(index=f"{self.prefix}-*", ignore_unavailable=True,
                                   allow_no_indices=True, expand_wildcards="all")
        left = sorted(self.zaqar_queues)
        for attempt in range(4):           # Zaqar may be down for someone's outage test
            failed = []
            for project, queue in left:
                try:
                    zaqar_delete_queue(project, queue)
                except Exception:  # noqa: BLE001
                    failed.append((project, queue))
            left = failed
            if not left:
                break
            time.sleep(5 * (attempt + 1))
        if left:
            print(f"could not delete Zaqar queues (Zaqar down?): {left}", file=sys.stderr)
        with contextlib.suppress(Exception):
            servers_py("rabbitmqctl", "delete_vhost", self.vhost)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- broker helpers --------------------------------------------------------------

    @contextlib.contextmanager
    def channel(self):
        with kombu.Connection(self.amqp_url, connect_timeout=10) as conn:
            yield conn.channel()

    def queue_depth(self, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) of a queue, or None if it does not exist."""
        try:
            with self.channel() as ch:
                _, messages, consumers = ch.queue_declare(name, passive=True)
                return messages, consumers
        except Exception:  # noqa: BLE001 - not declared
            return None

    def delete_queues(self, names) -> None:
        with kombu.Connection(self.amqp_url, connect_timeout=10) as conn:
            for name in names:
                try:
                    conn.channel().queue_delete(name)
                except Exception:  # noqa: BLE001
                    pass

    def drop_default_queues(self) -> None:
        """The Notifier declares ``<topic>.<priority>`` queues so that nothing is lost
        while no consumer listens; in the benchmark's vhost they only fill up."""
        from searchlight_forward.plugins import load_plugins
        from searchlight_forward.plugins.base import exchanges_and_topics
        topics = {t for _, t in exchanges_and_topics(load_plugins().plugins)}
        self.delete_queues(f"{t}.{p}" for t in topics for p in workers.PRIORITIES)


def declare_pool(transport_url: str, pool: str, config_file: str | None = None) -> None:
    """Declare a pool queue and its bindings exactly as the listeners do: start an
    oslo.messaging batch listener on every plugin target and priority, then stop it.
    ``config_file``: the scenario's, for its queue options (durable, quorum)."""
    import oslo_messaging
    from oslo_config import cfg
    from searchlight_forward.listener.opts import register_messaging
    from searchlight_forward.plugins import load_plugins
    from searchlight_forward.plugins.base import exchanges_and_topics
    conf = cfg.ConfigOpts()
    register_messaging(conf)
    conf(["--config-file", config_file] if config_file else [],
         project="searchlight-forward-bench")
    conf.set_override("transport_url", transport_url)
    transport = oslo_messaging.get_notification_transport(conf)

    class Endpoint:
        pass
    endpoint = Endpoint()
    for priority in workers.PRIORITIES:
        setattr(endpoint, priority, lambda messages: None)
    targets = [oslo_messaging.Target(exchange=e, topic=t)
               for e, t in exchanges_and_topics(load_plugins().plugins)]
    server = oslo_messaging.get_batch_notification_listener(
        transport, targets, [endpoint], executor="threading", pool=pool, batch_size=1)
    server.start()
    server.stop()
    server.wait()
    transport.cleanup()


# -- Zaqar ---------------------------------------------------------------------------

def _zaqar_headers(project: str) -> dict:
    return {"Client-ID": ZAQAR_CLIENT_ID, "X-Project-ID": project}


def zaqar_total(project: str, queue: str) -> int:
    """Messages in a Zaqar queue; -1 while Zaqar does not answer (other users of the
    local servers stop it for their outage tests)."""
    try:
        stats = http_json(f"{ZAQAR_URL}/v2/queues/{queue}/stats", headers=_zaqar_headers(project))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 0
        return -1
    except (OSError, ValueError):
        return -1
    return int(stats["messages"]["total"])


def zaqar_delete_queue(project: str, queue: str) -> None:
    req = urllib.request.Request(f"{ZAQAR_URL}/v2/queues/{queue}", method="DELETE",
                                 headers=_zaqar_headers(project))
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


# -- configuration ---------------------------------------------------------------------

@contextlib.contextmanager
def _ini(path_in: str, path_out: str):
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    parser.read(path_in)
    yield parser
    with open(path_out, "w") as f:
        parser.write(f)


class Scenario:
    """One scenario's private group, pool, ports, configuration and Zaqar queues."""

    def __init__(self, run: Run, name: str, workers_: int = 1, pipelines: bool = True,
                 overrides: dict | None = None, stopped_sink_url: str | None = None,
                 zaqar_url: str = ZAQAR_URL):
        self.run = run
        self.name = name
        self.group = f"{run.prefix}-{name}"
        self.pool = f"{run.prefix}-pool-{name}"
        self.dir = os.path.join(run.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.workers = workers_
        self.status_port = free_port(workers_)
        self.delivery_port = free_port()
        self.ws_port = free_port()
        self.state_index = f"{self.group}-state"
        self.zaqar: list[dict] = []          # sink name, pipeline, queue, project template
        self.pipeline_names: list[str] = []
        self.conf = os.path.join(self.dir, "searchlight-forward.conf")
        self.pipelines = pipelines
        self.overrides = overrides or {}      # (section, option) -> value, main config
        # A copy of the operator's pipeline whose Zaqar is reached through this URL
        # (a FaultProxy the outage scenario cuts): pipeline "stopped".
        self.stopped_sink_url = stopped_sink_url
        self.zaqar_url = zaqar_url            # every Zaqar sink's (a FaultProxy's)
        self._write(pipelines)

    def _write(self, pipelines: bool) -> None:
        with _ini(os.path.join(ROOT, "etc", "searchlight-forward.conf"), self.conf) as conf:
            for section in ("listener", "elasticsearch", "resource_plugins", "forwarding",
                            "websocket", "changelog", "delivery"):
                if not conf.has_section(section):
                    conf.add_section(section)
            conf.set("DEFAULT", "transport_url", self.run.transport_url)
            conf.set("DEFAULT", "debug", "false")
            conf.set("listener", "notifications_pool", self.pool)
            conf.set("listener", "workers", str(self.workers))
            conf.set("listener", "status_port", str(self.status_port))
            conf.set("elasticsearch", "backend", SEARCH_BACKEND)
            conf.set("elasticsearch", "hosts", ES_URL)
            conf.set("elasticsearch", "dead_letter_index", f"{self.group}-dead")
            conf.set("resource_plugins", "resource_group_name", self.group)
            conf.set("forwarding", "config_file",
                     "forwarders.ini" if pipelines else "no-forwarders.ini")
            conf.set("forwarding", "zaqar_url", self.zaqar_url)
            conf.set("changelog", "state_index", self.state_index)
            conf.set("delivery", "status_port", str(self.delivery_port))
            conf.set("websocket", "port", str(self.ws_port))
            conf.set("websocket", "auth", "token_file")
            conf.set("websocket", "token_file", self.run.tokens_path)
            for (section, option), value in self.overrides.items():
                if section != "DEFAULT" and not conf.has_section(section):
                    conf.add_section(section)
                conf.set(section, option, value)
        if not pipelines:
            return
        ini = os.path.join(self.dir, "forwarders.ini")
        with _ini(os.path.join(ROOT, "etc", "forwarders.ini"), ini) as fw:
            if self.stopped_sink_url:
                self._add_stopped_pipeline(fw)
            pipelines_of = {}
            for section in fw.sections():
                if section.startswith("pipeline:"):
                    sink = fw.get(section, "pipeline").split()[-1]
                    pipelines_of[sink] = section.split(":", 1)[1]
                    self.pipeline_names.append(section.split(":", 1)[1])
            for section in fw.sections():
                if not section.startswith("sink:"):
                    continue
                sink = section.split(":", 1)[1]
                use = fw.get(section, "use", fallback="")
                if use.endswith("zaqar"):
                    queue = f"{self.group}-{sink}".replace("_", "-")[:50]
                    if "{priority}" in fw.get(section, "queue", fallback=""):
                        queue += "-{priority}"
                    project = fw.get(section, "project", fallback="{project_id}")
                    if "{project_id}" not in project:
                        project = self.run.prefix        # the operator's own Zaqar project
                        fw.set(section, "project", project)
                    fw.set(section, "queue", queue)
                    fw.set(section, "url", self.stopped_sink_url if sink == "zaqar_stopped"
                           else self.zaqar_url)
                    self.zaqar.append({"sink": sink, "pipeline": pipelines_of.get(sink),
                                       "queue": queue, "project": project})
                    projects = ([project] if "{project_id}" not in project
                                else list(self.run.project_ids.values()))
                    queues = [queue.replace("{priority}", p)
                              for p in ("error", "critical", "warn", "info")]
                    self.run.zaqar_queues.update((p, q) for p in projects for q in queues)

    @staticmethod
    def _add_stopped_pipeline(fw) -> None:
        """pipeline:stopped, the telco pipeline again into a queue of its own."""
        fw.set("forwarding", "pipelines", fw.get("forwarding", "pipelines") + " stopped")
        fw.add_section("pipeline:stopped")
        fw.set("pipeline:stopped", "pipeline",
               fw.get("pipeline:telco", "pipeline").replace("zaqar_ops", "zaqar_stopped"))
        fw.add_section("sink:zaqar_stopped")
        for option in ("use", "project", "ttl", "on_failure"):
            fw.set("sink:zaqar_stopped", option, fw.get("sink:zaqar_ops", option))
        fw.set("sink:zaqar_stopped", "queue", "stopped")

    def zaqar_queue_of(self, pipeline: str) -> dict:
        return next(z for z in self.zaqar if z["pipeline"] == pipeline)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.run.es.indices.delete(index=f"{self.group}-*", ignore_unavailable=True,
                                       allow_no_indices=True, expand_wildcards="all")
        self.run.delete_queues([self.pool])
        for z in self.zaqar:
            projects = ([z["project"]] if "{project_id}" not in z["project"]
                        else list(self.run.project_ids.values()))
            queues = [z["queue"].replace("{priority}", p)
                      for p in ("error", "critical", "warn", "info")]
            for project in projects:
                for queue in set(queues):
                    with contextlib.suppress(Exception):
                        zaqar_delete_queue(project, queue)
                        self.run.zaqar_queues.discard((project, queue))

    def ensure_index(self) -> None:
        from searchlight_forward.indexer import indices
        from searchlight_forward.plugins import load_plugins
        indices.ensure(self.run.es, self.group, load_plugins().plugins)

    def zaqar_operator_queue(self) -> dict | None:
        """The operator's (hold) pipeline's queue: a fixed project and queue name."""
        for z in self.zaqar:
            if "{project_id}" not in z["project"] and "{" not in z["queue"]:
                return z
        return None


# -- child processes ----------------------------------------------------------------------

class Child:
    """A console script of the project as a subprocess (listener, WebSocket server)."""

    def __init__(self, argv: list[str], log: str):
        self.log_path = log
        self.proc = subprocess.Popen(argv + ["--log-file", log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(Exception):
                    for child in self.ps.children(recursive=True):
                        child.kill()
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def _command(scn: Scenario, kind: str) -> list[str]:
    return [os.path.join(scn.run.bindir, f"searchlight-forward-{kind}"),
            "--config-file", scn.conf]


def start_listener(scn: Scenario, wait: bool = False) -> Child:
    """The listener; with ``wait``, once every worker's status answers (stopped, and
    BenchError, if that takes more than 2 minutes)."""
    child = Child(_command(scn, "listener"), os.path.join(scn.dir, "listener.log"))
    if wait:
        try:
            wait_until(lambda: listener_status(scn), 120, 0.2, "the listener")
        except BenchError:
            child.stop()
            raise
    return child


def start_delivery(scn: Scenario) -> Child:
    return Child(_command(scn, "delivery"), os.path.join(scn.dir, "delivery.log"))


def wait_up(child: Child, url: str, ready, what: str, timeout: float = 60.0) -> Child:
    """``child`` once ``ready(answer)`` holds for the JSON at ``url``; stopped, and
    BenchError, if it exits or does not come up within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{what} exited:\n{child.tail()}")
        try:
            if ready(http_json(url, timeout=2) or {}):
                return child
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    child.stop()
    raise BenchError(f"{what} did not come up:\n{child.tail()}")


def start_ws_server(scn: Scenario, timeout: float = 60.0) -> Child:
    def ready(status: dict) -> bool:
        return bool((status.get("feed") or {}).get("position")
                    or (status.get("doorbell") or {}).get("connected"))
    return wait_up(Child(_command(scn, "websocket"), os.path.join(scn.dir, "websocket.log")),
                   f"http://127.0.0.1:{scn.ws_port}/status", ready, "the WebSocket server",
                   timeout)


class Services:
    """A scenario's three services (listener, delivery service, WebSocket server) and
    the readers of their outputs, started in the order an operator would: delivery
    service, WebSocket server and its clients, the operator's Zaqar queue reader,
    then the listener."""

    def __init__(self, run: Run, name: str, clients=(("tok-admin", True),),
                 overrides: dict | None = None, listener_workers: int = 1,
                 delivery_workers: int = 1, transport_url: str | None = None,
                 stopped_sink_url: str | None = None, zaqar_url: str = ZAQAR_URL):
        overrides = dict(overrides or {})
        if delivery_workers != 1:
            overrides[("delivery", "workers")] = str(delivery_workers)
        if transport_url:
            overrides[("DEFAULT", "transport_url")] = transport_url
        self.scn = Scenario(run, name, workers_=listener_workers, overrides=overrides,
                            stopped_sink_url=stopped_sink_url, zaqar_url=zaqar_url)
        self.run = run
        self.transport_url = transport_url or run.transport_url
        self.client_tokens = list(clients)
        self.children: dict[str, Child] = {}
        self.clients: WsClients | None = None
        self.operator: ZaqarReader | None = None

    def start(self, listener: bool = True) -> "Services":
        """Start everything; without ``listener``, notifications wait in the pool
        queue until ``start_listener``."""
        self.scn.ensure_index()
        declare_pool(self.transport_url, self.scn.pool, self.scn.conf)
        self.children["delivery"] = start_delivery(self.scn)
        self.children["websocket"] = start_ws_server(self.scn)
        self.clients = WsClients(self.scn.ws_url, self.client_tokens)
        self.clients.wait_subscribed()
        z = self.scn.zaqar_operator_queue()
        self.operator = ZaqarReader(z["project"], z["queue"])
        if listener:
            self.start_listener()
        return self

    def start_listener(self) -> None:
        self.children["listener"] = start_listener(self.scn, wait=True)

    def stop(self) -> None:
        stop_all(self.operator, self.clients, *reversed(list(self.children.values())),
                 scn=self.scn)


def stop_all(*started, scn: Scenario | None = None) -> None:
    """What a scenario started stopped, in the order given (None: never started),
    then ``scn``'s indices and queues removed."""
    for thing in started:
        if thing is not None:
            thing.stop()
    if scn is not None:
        scn.cleanup()


def listener_status(scn: Scenario) -> dict | None:
    """Counters summed over the listener's worker processes; None if one is not up."""
    total: dict = {"listener": {}}
    for i in range(scn.workers):
        try:
            snap = http_json(f"http://127.0.0.1:{scn.status_port + i}/status", timeout=5)
        except (OSError, ValueError):
            return None
        for k, v in snap["listener"].items():
            if isinstance(v, (int, float)):
                total["listener"][k] = total["listener"].get(k, 0) + v
    return total


def listener_histograms(scn: Scenario) -> dict:
    """The listener's histograms from /metrics, summed over its worker processes:
    name -> {"buckets": {le: cumulative count}, "sum": s, "count": n}."""
    from prometheus_client.parser import text_string_to_metric_families
    out: dict = {}
    for i in range(scn.workers):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{scn.status_port + i}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            if family.type != "histogram":
                continue
            h = out.setdefault(family.name, {"buckets": {}, "sum": 0.0, "count": 0})
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    h["buckets"][le] = h["buckets"].get(le, 0) + sample.value
                elif sample.name.endswith("_sum"):
                    h["sum"] += sample.value
                elif sample.name.endswith("_count"):
                    h["count"] += int(sample.value)
    return out


def histogram_delta(before: dict, after: dict, name: str) -> dict:
    """What histogram ``name`` observed between two ``listener_histograms``: count,
    mean, and p50 / p99 as the upper bound of the bucket holding them (ms)."""
    a, b = after.get(name), before.get(name, {"buckets": {}, "sum": 0.0, "count": 0})
    if not a or a["count"] <= b["count"]:
        return {"n": 0, "mean_ms": None, "p50_ms": None, "p99_ms": None}
    n = a["count"] - b["count"]

    def upper(q):
        for le in sorted(a["buckets"]):
            if a["buckets"][le] - b["buckets"].get(le, 0) >= q * n:
                return None if le == float("inf") else round(1000 * le, 1)
        return None
    return {"n": n, "mean_ms": round(1000 * (a["sum"] - b["sum"]) / n, 1),
            "p50_ms": upper(0.5), "p99_ms": upper(0.99)}


def processed(scn: Scenario) -> int:
    """Notifications the listener's workers have taken so far (0 while one is not up)."""
    status = listener_status(scn)
    return int(status["listener"].get("notifications", 0)) if status else 0


def catch_up(es, scn: Scenario, notifications: int, timeout: float, what: str) -> None:
    """Until the listener has taken ``notifications`` and every cursor of ``scn`` is at
    the end of the change log; BenchError after ``timeout`` s for either (``what``
    says when, in its message)."""
    wait_until(lambda: processed(scn) >= notifications, timeout, 0.2,
               f"the listener to catch up {what}")
    wait_until(lambda: all(cursors_at_head(es, scn).values()), timeout, 0.2,
               f"every cursor to catch up {what}")


def steady(ctx, scn: Scenario, spec: dict, rate: float, watch, published: int, desc: str,
           settle=None) -> tuple[dict, bool, dict]:
    """Publish ``spec`` at ``rate``/s (publish times recorded) while ``watch`` (a started
    ``Watch``) watches; wait up to --drain for the listener (``published`` before it)
    and every cursor to catch up; ``settle()``; stop ``watch``. (What the publishers
    say, whether it all caught up in time, what Elasticsearch did meanwhile.)"""
    es0 = es_stats(ctx.run.es)
    with tqdm.tqdm(total=spec["count"], desc=desc, unit="msg", leave=False) as bar:
        pub = ctx.pool.publish(spec, rate=rate, record=True, bar=bar)
    drained = True
    try:
        catch_up(ctx.run.es, scn, published + spec["count"], ctx.args.drain, f"at {rate}/s")
    except BenchError:
        drained = False
    if settle is not None:
        settle()
    watch.stop()
    return pub, drained, es_delta(es0, es_stats(ctx.run.es), watch.t1 - watch.t0)


def delivery_status(scn: Scenario) -> dict | None:
    try:
        return http_json(f"http://127.0.0.1:{scn.delivery_port}/status", timeout=5)
    except (OSError, ValueError):
        return None


def cursors_at_head(es, scn: Scenario) -> dict[str, bool]:
    """Pipeline -> whether its durable cursor has reached the end of the change log."""
    from searchlight_forward import search
    from searchlight_forward.changelog.position import Position
    from searchlight_forward.changelog.reader import ChangeLog, NoIndex
    from searchlight_forward.retry import TransientError
    try:
        head = ChangeLog(es, scn.group).head().position
        es.indices.refresh(index=scn.state_index)
        hits = es.search(index=scn.state_index, size=10000, query={"bool": {"filter": [
            {"term": {"kind": "cursor"}}, {"term": {"group": scn.group}}]}})["hits"]["hits"]
    except (NoIndex, TransientError, search.NotFoundError):
        return {}
    found = {}
    for hit in hits:
        position = Position.from_dict(hit["_source"].get("position"))
        found[hit["_source"]["consumer"]] = position is not None and position.includes(head)
    return found


class ChildProcess:
    """A helper process of the benchmark (``target(*args, conn)``) and the parent's
    end of its pipe: ``ask(command, ...)`` sends a command and returns the answer."""

    what = "the helper process"

    def __init__(self, target, *args):
        self.conn, child_conn = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=target, args=(*args, child_conn), daemon=True)
        self.proc.start()
        self.ps = psutil.Process(self.proc.pid)
        self._lock = threading.Lock()

    def ask(self, *cmd, timeout: float = 60.0):
        with self._lock:
            self.conn.send(cmd)
            if not self.conn.poll(timeout):
                raise BenchError(f"{self.what} did not answer {cmd[0]!r}")
            return self.conn.recv()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask it to stop; killed if it has not within ``timeout`` seconds more."""
        with contextlib.suppress(Exception):
            self.ask("stop", timeout=timeout)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


class WsClients(ChildProcess):
    """The WebSocket clients' process."""

    what = "WebSocket clients"

    def __init__(self, url: str, clients: list[tuple[str, bool]]):
        self.clients = clients
        super().__init__(workers.ws_clients_main, url, clients)

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.ask("status")
            if all(s["subscribed"] for s in status):
                return
            errors = [s["error"] for s in status if s["error"]]
            if errors and time.monotonic() > deadline - timeout + 10:
                raise BenchError(f"WebSocket clients failed: {errors}")
            time.sleep(0.2)
        raise BenchError(f"WebSocket clients did not subscribe: {self.ask('status')}")


def expected_views(es, group: str, clients: list[tuple[str, bool]], tokens: dict,
                   types=None) -> dict[int, dict]:
    """What each client must have once everything is delivered: for its role copy and
    project, every resource's newest version in Elasticsearch, tombstones included
    (the clients were connected before the first change)."""
    from searchlight_forward.search import helpers

    from searchlight_forward.indexer import layout
    from searchlight_forward.model import documents
    es.indices.refresh(index=layout.listener_alias(group))
    views: dict[tuple, dict] = {}
    out = {}
    for i, (token, all_projects) in enumerate(clients):
        info = tokens[token]
        admin = "admin" in info["roles"]
        role = documents.ADMIN if admin else documents.USER
        project = None if all_projects else info["project_id"]
        key = (role, project)
        if key not in views:
            filters = [{"term": {documents.ROLE_FIELD: role}}]
            if project is not None:
                filters.append({"term": {"project_id": project}})
            if types is not None:
                filters.append({"terms": {"resource_type": sorted(types)}})
            view = {}
            for hit in helpers.scan(es, index=layout.listener_alias(group),
                                    query={"query": {"bool": {"filter": filters}}},
                                    _source=["resource_type", "id", documents.VERSION_FIELD]):
                src = hit["_source"]
                view[(src["resource_type"], src["id"])] = src[documents.VERSION_FIELD]
            views[key] = view
        out[i] = views[key]
    return out


# -- watching ----------------------------------------------------------------------------

def server_processes() -> dict[str, psutil.Process]:
    """The local servers' processes, found by the port they listen on."""
    found: dict[str, psutil.Process] = {}
    wanted = {port: name for name, port in SERVER_PORTS.items()}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted \
                and conn.pid:
            found.setdefault(wanted[conn.laddr.port], psutil.Process(conn.pid))
    return found


def _tree_cpu(proc, tree: bool = True) -> float:
    """CPU seconds of a process and its children (or of a list of processes)."""
    if isinstance(proc, (list, tuple)):
        return sum(_tree_cpu(p, tree) for p in proc)
    total = 0.0
    try:
        procs = [proc] + (proc.children(recursive=True) if tree else [])
    except psutil.Error:
        return 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _tree_rss(proc: psutil.Process) -> tuple[int, list[int]]:
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, []
    sizes = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            sizes.append(p.memory_info().rss)
    return sum(sizes), sizes


class Watch:
    """CPU seconds per process (tree) over a window, machine CPU, and peak RSS of
    chosen processes sampled every ``interval`` in a thread."""

    def __init__(self, procs: dict[str, psutil.Process], rss_of=(), interval: float = 0.1,
                 single=("bench",)):
        self.procs = procs
        self.single = set(single)    # without their children (the bench's own process)
        self.rss_of = set(rss_of)
        self.interval = interval
        self.peak_rss: dict[str, int] = {n: 0 for n in self.rss_of}
        self.peak_rss_single: dict[str, int] = {n: 0 for n in self.rss_of}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.cpu0 = self.cpu1 = None
        self.machine0 = self.machine1 = None
        self.t0 = self.t1 = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for name in self.rss_of:
                total, sizes = _tree_rss(self.procs[name])
                self.peak_rss[name] = max(self.peak_rss[name], total)
                self.peak_rss_single[name] = max([self.peak_rss_single[name]] + sizes)

    def start(self) -> "Watch":
        self.t0 = time.monotonic()
        self.cpu0 = {n: _tree_cpu(p, n not in self.single) for n, p in self.procs.items()}
        self.machine0 = psutil.cpu_times()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.t1 is not None:
            return
        self.t1 = time.monotonic()
        self.cpu1 = {n: _tree_cpu(p, n not in self.single) for n, p in self.procs.items()}
        self.machine1 = psutil.cpu_times()
        self._stop.set()
        self._thread.join(2)

    def report(self) -> dict:
        wall = max(1e-9, self.t1 - self.t0)
        cores = {n: round((self.cpu1[n] - self.cpu0[n]) / wall, 2) for n in self.procs}
        m0, m1 = self.machine0, self.machine1
        busy = sum(getattr(m1, f) - getattr(m0, f) for f in m1._fields
                   if f not in ("idle", "iowait", "guest", "guest_nice"))
        total = sum(getattr(m1, f) - getattr(m0, f) for f in m1._fields
                    if f not in ("guest", "guest_nice"))
        ncpu = psutil.cpu_count() or 1
        return {"wall_s": round(wall, 2), "cores_used": cores,
                "machine_busy_pct": round(100.0 * busy / max(total, 1e-9), 1),
                "machine_cores_busy": round(ncpu * busy / max(total, 1e-9), 2),
                "other_cores": round(ncpu * busy / max(total, 1e-9) - sum(cores.values()), 2),
                "peak_rss_mb": {n: round(v / 2**20, 1) for n, v in self.peak_rss.items()},
                "peak_rss_largest_process_mb": {n: round(v / 2**20, 1)
                                                for n, v in self.peak_rss_single.items()}}


def es_stats(es) -> dict:
    # OpenSearch 2.19 keeps no node-level bulk statistics: its bulk figures read 0.
    bulk_metric = "bulk," if SEARCH_BACKEND == "elasticsearch" else ""
    stats = es.nodes.stats(metric="indices,thread_pool",
                           index_metric=f"{bulk_metric}indexing,refresh,search,get")
    node = next(iter(stats["nodes"].values()))
    ind = node["indices"]
    write = node["thread_pool"].get("write", {})
    bulk = ind.get("bulk", {})
    return {"bulk_ops": bulk.get("total_operations", 0),
            "bulk_ms": bulk.get("total_time_in_millis", 0),
            "bulk_bytes": bulk.get("total_size_in_bytes", 0),
            "index_total": ind["indexing"]["index_total"],
            "index_ms": ind["indexing"]["index_time_in_millis"],
            "refresh_total": ind["refresh"]["total"],
            "refresh_external": ind["refresh"].get("external_total", 0),
            "refresh_ms": ind["refresh"]["total_time_in_millis"],
            "query_total": ind["search"]["query_total"],
            "get_total": ind["get"]["total"],
            "write_rejected": write.get("rejected", 0),
            "write_largest_queue": write.get("queue", 0)}


def es_delta(before: dict, after: dict, wall: float) -> dict:
    d = {k: after[k] - before[k] for k in before}
    bulks = max(d["bulk_ops"], 1)
    return {"bulk_requests": d["bulk_ops"],
            "bulk_avg_ms": round(d["bulk_ms"] / bulks, 1),
            "bulk_avg_kb": round(d["bulk_bytes"] / bulks / 1024, 1),
            "docs_indexed": d["index_total"],
            "docs_per_s": round(d["index_total"] / max(wall, 1e-9)),
            "indexing_ms_per_doc": round(d["index_ms"] / max(d["index_total"], 1), 3),
            "refreshes": d["refresh_external"],
            "internal_refreshes": d["refresh_total"] - d["refresh_external"],
            "refresh_ms": d["refresh_ms"],
            "searches": d["query_total"], "gets": d["get_total"],
            "write_rejections": d["write_rejected"]}


class QueueStart:
    """The instant a listener starts taking messages from its pool queue: the first
    poll (every 10 ms) that sees a consumer or fewer ready messages than queued."""

    def __init__(self, run: Run, pool: str, queued: int):
        self.run, self.pool, self.queued = run, pool, queued
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with kombu.Connection(self.run.amqp_url) as conn:
            ch = conn.channel()
            while not self._stop.is_set():
                _, ready, consumers = ch.queue_declare(self.pool, passive=True)
                if consumers > 0 or ready < self.queued:
                    self.at = time.monotonic()
                    return
                time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


SEARCH_METHOD = (
    "a search on <group>-search for the documents written since the last one seen "
    "(_seq_no above the highest seen minus 100, in _seq_no order, only the stored "
    "sf_version), never refreshing the index, right after each doorbell ring of the "
    "group (the listener rings once its refresh has made a batch visible) and at "
    "least every 250 ms (refreshes without a ring: a reader's own, Elasticsearch's "
    "scheduled one): it sees what a user's search sees at that instant, one search "
    "per refresh. A change counts as searchable when its resource is found with its "
    "version or a newer one. (Before 2026-12-06: a search every 50 ms, which added "
    "about 25 ms on average; every 10 ms cost Elasticsearch 0.7 of a core.)")


class SearchWatcher:
    """When each (resource, version) becomes visible in ``<group>-search``; see
    ``SEARCH_METHOD``. Without ``transport_url`` (no rings) it searches every 50 ms."""

    def __init__(self, es, group: str, transport_url: str | None = None,
                 margin: int = 100):
        from searchlight_forward.indexer import layout
        self.es = es
        self.alias = layout.search_alias(group)
        self.interval = 0.25 if transport_url else 0.05   # the longest between searches
        self.margin = margin
        self.position = -1
        self.seen: dict[tuple[str, int], float] = {}   # (id, version) -> first seen
        self.polls = 0
        self.errors = 0
        self._rung = threading.Event()
        self._stop = threading.Event()
        self._doorbell = None
        if transport_url:
            from searchlight_forward.changelog.doorbell import DoorbellListener
            self._doorbell = DoorbellListener(transport_url, [group],
                                              lambda ring: self._rung.set())
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SearchWatcher":
        if self._doorbell is not None and not self._doorbell.start(10):
            raise RuntimeError("the search watcher could not bind its doorbell queue")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._rung.wait(self.interval)
            self._rung.clear()
            if self._stop.is_set():
                return
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - counted; keep watching
                self.errors += 1

    def poll(self) -> None:
        self.polls += 1
        after = self.position - self.margin
        search_after = None
        while True:
            extra = {"search_after": search_after} if search_after is not None else {}
            resp = self.es.search(
                index=self.alias, query={"range": {"_seq_no": {"gt": after}}},
                sort=[{"_seq_no": "asc"}], size=1000, source=["sf_version"],
                seq_no_primary_term=True, track_total_hits=False,
                filter_path="hits.hits._id,hits.hits._source,hits.hits._seq_no,"
                            "hits.hits.sort", **extra)
            hits = resp.get("hits", {}).get("hits", [])
            now = time.monotonic()
            for hit in hits:
                rid = hit["_id"].rsplit("_", 1)[0]
                self.seen.setdefault((rid, hit["_source"]["sf_version"]), now)
                self.position = max(self.position, hit["_seq_no"])
            if len(hits) < 1000:
                return
            search_after = hits[-1]["sort"]

    def stop(self) -> None:
        self._stop.set()
        self._rung.set()
        self._thread.join(5)
        if self._doorbell is not None:
            self._doorbell.stop()


class PublisherPool:
    """``processes`` publishing processes that live for the whole run."""

    def __init__(self, run: Run, processes: int):
        self.processes = processes
        self.jobs = [SPAWN.Queue() for _ in range(processes)]
        self.results = SPAWN.Queue()
        self.progress = SPAWN.Array("q", processes, lock=False)
        self.procs = [SPAWN.Process(target=workers.publisher_main,
                                    args=(i, run.transport_url, self.jobs[i], self.results,
                                          self.progress), daemon=True)
                      for i in range(processes)]
        for p in self.procs:
            p.start()
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        self._job = 0
        self._prepared: str | None = None      # spec_key of the stream prepared last

    def prepare(self, spec: dict, timeout: float = 600.0) -> None:
        """Every process makes and encodes its share of ``spec`` now, so that neither
        a scenario's timed window nor the publishing clock includes it (``publish``
        does it first if it was not done)."""
        key = workers.spec_key(spec)
        if key == self._prepared:
            return
        self._round({"spec": spec, "prepare": True}, timeout,
                    "publishers did not prepare the stream in time")
        self._prepared = key

    def _round(self, job: dict, timeout: float, late: str, tick=lambda: None) -> list:
        """Give every process ``job``; their answers, ``tick()`` while waiting."""
        self._job += 1
        for q in self.jobs:
            q.put({"job": self._job, "processes": self.processes, **job})
        results = []
        deadline = time.monotonic() + timeout
        while len(results) < self.processes:
            try:
                results.append(self.results.get(timeout=0.2))
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
            tick()
            if time.monotonic() > deadline:
                raise BenchError(late)
            if not all(p.is_alive() for p in self.procs):
                raise BenchError("a publisher process died")
        return results

    def publish(self, spec: dict, rate: float = 0.0, record: bool = False, bar=None,
                start_in: float = 0.5, timeout: float = 600.0) -> dict:
        """Publish the stream ``spec`` (flat out, or paced at ``rate``/s overall);
        the processes start together ``start_in`` seconds after it is prepared."""
        self.prepare(spec, timeout)
        before = sum(self.progress)
        shown = [0]

        def tick():
            if bar is not None:
                done = sum(self.progress) - before
                bar.update(done - shown[0])
                shown[0] = done
        t0 = time.monotonic() + start_in
        results = self._round({"spec": spec, "rate": rate, "t0": t0, "record": record},
                              timeout, "publishers did not finish in time", tick)
        count = spec["count"]
        times = [float("nan")] * count if record else None
        for r in results:
            if record:
                for j, at in zip(r["indices"], r["times"]):
                    times[j] = at
        finished = max(r["finished"] for r in results)
        began = t0 if rate else min(r["started"] for r in results)
        return {"sent": sum(r["sent"] for r in results),
                "errors": sum(r["errors"] for r in results),
                "t0": t0, "finished": finished,
                "rate": round(sum(r["sent"] for r in results) / max(finished - began, 1e-3)),
                "times": times}

    def close(self) -> None:
        for q in self.jobs:
            q.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ZaqarReader(ChildProcess):
    """The operator's Zaqar queue read by its own process (``workers.zaqar_reader_main``),
    which records when each change arrived."""

    what = "the Zaqar reader"

    def __init__(self, project: str, queue: str):
        super().__init__(workers.zaqar_reader_main, ZAQAR_URL, project, queue,
                         ZAQAR_CLIENT_ID)

    def records(self) -> list:
        return self.ask("records")

    def count(self) -> int:
        return self.ask("count")


class Context:
    """What a benchmark's scenarios share: its arguments, its run (private names),
    the publisher pool and the servers' processes (set by its main)."""

    def __init__(self, args):
        self.args = args
        self.run = Run(keep=getattr(args, "keep", False))
        self.pool: PublisherPool | None = None
        self.servers: dict = {}

    def spec(self, seed: int, count: int, start: str = "2026-03-02T12:00:00") -> dict:
        return workers.stream_spec(seed, count, self.run.project_ids, start)


def run_scenarios(ctx, fns: dict, names, desc: str, results: dict, log,
                  before=None, after=None) -> None:
    """Each scenario ``fns[name](ctx)`` in turn, with a progress bar: its results, or
    its error (a failing scenario is reported and the others go on). ``before(name)``
    and ``after(name, result)`` run around each."""
    import traceback
    with tqdm.tqdm(total=len(names), desc=desc, unit="scenario", position=0) as outer:
        for name in names:
            outer.set_postfix_str(name)
            t = time.monotonic()
            try:
                if before is not None:
                    before(name)
                results[name] = fns[name](ctx)
                if after is not None:
                    after(name, results[name])
            except BenchError as exc:
                results[name] = {"error": str(exc)}
                log(f"{name}: FAILED: {exc}")
            except Exception as exc:  # noqa: BLE001 - a bug: report, go on
                results[name] = {"error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc()}
                log(f"{name}: FAILED:\n{traceback.format_exc()}")
            results[name]["scenario_wall_s"] = round(time.monotonic() - t, 1)
            outer.update(1)


# -- one command line and one report for every benchmark ----------------------------

def log(msg: str) -> None:
    """A line above the progress bars."""
    tqdm.tqdm.write(msg)


def arguments(doc: str, scenarios=(), results: str | None = None,
              keep: bool = True) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first paragraph as description and
    the rest as epilog; ``--only`` and ``--skip`` among ``scenarios``; ``--output``, the
    directory of the ``results`` files (bench/results); ``--keep`` the temporary
    directory. The benchmark adds its own options, then calls ``parse``."""
    description, _, epilog = doc.partition("\n\n")
    p = argparse.ArgumentParser(description=description, epilog=epilog or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if scenarios:
        p.add_argument("--only", default="",
                       help=f"comma-separated scenarios to run: {', '.join(scenarios)}")
        p.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    if results:
        p.add_argument("--output", default=RESULTS, help=f"directory for {results}")
    if keep:
        p.add_argument("--keep", action="store_true",
                       help="keep the temporary directory (configurations and logs)")
    return p


def sized(p: argparse.ArgumentParser, name: str, kind, default, quick, text: str) -> None:
    """An option whose default is ``default``, or ``quick`` with --quick (``parse``
    chooses); its help says both."""
    action = p.add_argument(name, type=kind, default=None,
                            help=f"{text} (default {default:g}; quick {quick:g})")
    p.set_defaults(**{f"_sized_{action.dest}": (kind(default), kind(quick))})


def load_options(p: argparse.ArgumentParser, quick: str, publishers: int, timeout: tuple,
                 drain: tuple, warmup: tuple) -> None:
    """The options of a benchmark that publishes: --quick (``quick``: what it makes
    smaller), --publishers (processes), and --timeout, --drain, --warmup, each
    ``(default seconds, help)``."""
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--publishers", type=int, default=publishers, help="publisher processes")
    for name, (default, text) in (("--timeout", timeout), ("--drain", drain),
                                  ("--warmup", warmup)):
        p.add_argument(name, type=float, default=default, help=text)


def parse(p: argparse.ArgumentParser, argv=None, scenarios=()) -> argparse.Namespace:
    """The arguments: ``sized`` options' defaults chosen; ``args.scenarios``: those of
    ``scenarios`` chosen by --only and --skip, in their order (an unknown name is an
    error)."""
    args = p.parse_args(argv)
    for key in [k for k in vars(args) if k.startswith("_sized_")]:
        dest, (default, quick) = key[len("_sized_"):], vars(args).pop(key)
        if getattr(args, dest) is None:
            setattr(args, dest, quick if args.quick else default)
    if scenarios:
        chosen = {s.strip() for s in args.only.split(",") if s.strip()} or set(scenarios)
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        unknown = (chosen | skip) - set(scenarios)
        if unknown:
            p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: "
                    f"{', '.join(scenarios)}")
        args.scenarios = [s for s in scenarios if s in chosen and s not in skip]
    return args


def interrupt(signum, frame):
    """SIGTERM as Ctrl-C: the same clean-up."""
    raise KeyboardInterrupt


def main(args, argv, command: str, scenarios: dict, report, *, desc: str,
         servers=("elasticsearch", "rabbitmq"), context=Context, publishers: int = 0,
         settings: dict | None = None, before=None, after=None) -> int:
    """The whole run of a benchmark (``command``, e.g. bench/run.py): the local
    ``servers`` healthy, the logs quiet, a ``context`` (``Context``) with its private
    Run and ``publishers`` publisher processes, ``scenarios[name](ctx)`` for each of
    ``args.scenarios`` (``run_scenarios``, with ``before`` and ``after``), everything
    cleaned up, then ``results["meta"]`` (when, how long, the command, the machine,
    git, and ``settings``) and ``report(results, meta)``, which writes the results
    (``write_results``). Returns what ``report`` returns if not None, else 1 if a
    scenario failed, 0 if none did; 130 on Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, interrupt)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    wait_for_servers(servers)
    from searchlight_forward.commands import common  # noqa: F401 - quiets eventlet
    workers.quiet_logging()
    ctx = context(args)
    results: dict = {}
    ctx.run.open()
    try:
        ctx.servers = server_processes()
        if publishers:
            ctx.pool = PublisherPool(ctx.run, publishers)
        run_scenarios(ctx, scenarios, args.scenarios, desc, results, log, before, after)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        if ctx.pool is not None:
            ctx.pool.close()
        ctx.run.close()
    meta = {"started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "wall_s": round(time.monotonic() - t0, 1), "run": ctx.run.prefix,
            "command": " ".join([command, *(sys.argv[1:] if argv is None else argv)]),
            "scenarios": args.scenarios, "machine": machine(), "git": git_state(),
            **(settings or {})}
    results["meta"] = meta
    code = report(results, meta)
    if code is not None:
        return code
    return 0 if all("error" not in results[s] for s in args.scenarios) else 1


def write_results(output: str, name: str, results: dict, md: str,
                  extra: tuple[str, ...] = ()) -> None:
    """``<output>/<name>.json`` and ``<name>.md``, the table printed, and where they
    (and any ``extra`` files) went."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(output, f"{name}.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    wall = (results.get("meta") or {}).get("wall_s")
    where = ", ".join([f"{os.path.relpath(output, os.getcwd())}/{name}.json", f"{name}.md",
                       *(os.path.relpath(x, os.getcwd()) for x in extra)])
    print((f"wall time {wall:.0f} s; " if wall is not None else "") + f"written {where}")


def machine() -> dict:
    """The machine and the versions that the figures depend on."""
    import oslo_messaging  # noqa: F401
    from importlib import metadata
    info = {"nproc": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": _cpu_model(), "kernel": platform.release(),
            "python": platform.python_version(),
            "packages": {p: _version(metadata, p) for p in (
                "oslo.messaging", "elasticsearch", "opensearch-py", "kombu", "websockets",
                "python-zaqarclient", "searchlight-forward")}}
    with contextlib.suppress(Exception):
        nodes = search_client().nodes.info(metric="jvm")["nodes"]
        node = next(iter(nodes.values()))
        info["search_server"] = f"{SEARCH_BACKEND} {node['version']}"
        info["elasticsearch"] = node["version"]
        info["elasticsearch_heap_mb"] = round(
            node["jvm"]["mem"]["heap_max_in_bytes"] / 2**20)
    with contextlib.suppress(Exception):
        with kombu.Connection(BROKER_URL.replace("rabbit://", "amqp://", 1)) as c:
            c.connect()
            props = c.connection.server_properties
            info["rabbitmq"] = props.get("version")
            info["erlang"] = props.get("platform")
    with contextlib.suppress(Exception):
        out = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout
        info["redis"] = out.split("v=")[1].split()[0]
    import glob
    found = glob.glob(os.path.join(ROOT, ".state", "zaqar", "venv", "lib", "python*",
                                   "site-packages", "zaqar-*.dist-info"))
    if found:
        info["zaqar"] = os.path.basename(found[0])[len("zaqar-"):-len(".dist-info")]
    return info


def git_state() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                               capture_output=True, text=True).stdout.splitlines()
        return {"commit": commit, "uncommitted_files": len(dirty)}
    except OSError:
        return {}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _version(metadata, name):
    try:
        return metadata.version(name)
    except Exception:  # noqa: BLE001
        return None


# -- the subscriptions API and its Keystone --------------------------------------------

class KeystoneCounter:
    """A plain-HTTP forward proxy on 127.0.0.1 that counts the requests passing through
    it by (method, path): give it to a child as ``HTTP_PROXY`` and every Keystone call
    of its keystoneauth1 sessions (auth_token's token validations included) is
    counted, whatever URL the service catalog gives."""

    def __init__(self):
        import collections
        import http.client
        import http.server
        import urllib.parse
        counter = self
        self.counts: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        hop = {"connection", "proxy-connection", "keep-alive", "transfer-encoding",
               "te", "trailer", "upgrade", "proxy-authorization"}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                parts = urllib.parse.urlsplit(self.path)
                with counter.lock:
                    counter.counts[(self.command, parts.path)] += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                  timeout=60)
                try:
                    conn.request(self.command, parts.path + (f"?{parts.query}"
                                                             if parts.query else ""),
                                 body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in hop and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = do_PATCH = _forward

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.counts)

    def validations(self) -> int:
        """Token validations (GET /v3/auth/tokens) so far."""
        with self.lock:
            return sum(n for (method, path), n in self.counts.items()
                       if method == "GET" and path.rstrip("/").endswith("/auth/tokens"))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_api(scn: Scenario, env: dict | None = None, timeout: float = 60.0) -> Child:
    """``searchlight-forward-api`` on the scenario's config ([subscriptions] api_port),
    with ``env`` added to ours; returns once /healthz answers."""
    import configparser as _cp
    parser = _cp.RawConfigParser()
    parser.read(scn.conf)
    port = parser.getint("subscriptions", "api_port")
    saved = os.environ.copy()
    try:
        os.environ.update(env or {})
        child = Child(_command(scn, "api"), os.path.join(scn.dir, "api.log"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return wait_up(child, f"http://127.0.0.1:{port}/healthz",
                   lambda answer: answer.get("status") == "ok", "searchlight-forward-api",
                   timeout)
