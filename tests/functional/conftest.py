"""Fixtures on the real servers (Elasticsearch, RabbitMQ, Zaqar, Keystone on 127.0.0.1).

Every name a test uses starts with this run's prefix (``tests.conftest.RUN``) and is
unique to the test: its resource group, dead-letter and state indices, RabbitMQ pool
(in the run's own virtual host) and Zaqar projects. Tests neither see nor feed each
other, nor a running demo.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import kombu
import pytest
from oslo_config import cfg
from oslo_log import log

from devtools.publisher import NotificationPublisher
from forwarders.delivery import worker as delivery_worker
from forwarders.websocket.auth import TokenFileValidator
from devtools.websocket_thread import ServerThread
from forwarders.websocket.server import WebSocketServer
from searchlight_forward import search
from searchlight_forward.changelog.announcer import Announcer
from searchlight_forward.changelog.doorbell import Doorbell
from searchlight_forward.changelog.reader import ChangeLog
from forwarders.cmd.common import register
from searchlight_forward.indexer import indices, layout
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.service import Listener
from tests.conftest import (AMQP_URL, ES_URL, ROOT, RUN, SEARCH_BACKEND, START_HINT,
                            TRANSPORT_URL, ZAQAR_URL, zaqar_project)
from tests.functional.websocket_support import (A, ADMIN_ONLY, ALL_TYPES, B, C, PLUGINS,
                                                Client, document_change)
from devtools.keystone import LocalKeystone
from devtools.receivers import Receiver


@pytest.fixture(scope="session")
def es():
    client = search.connect(ES_URL, SEARCH_BACKEND, request_timeout=30)
    try:
        client.cluster.health(wait_for_status="yellow", timeout="30s")
    except Exception as exc:  # noqa: BLE001 - the message says what to do
        pytest.fail(f"{SEARCH_BACKEND} is not reachable at {ES_URL} ({exc}); {START_HINT}")
    yield client
    client.indices.delete(index=f"{RUN}-*", ignore_unavailable=True, allow_no_indices=True)


@pytest.fixture(scope="session")
def broker(vhost):
    with kombu.Connection(AMQP_URL, connect_timeout=5) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"RabbitMQ is not reachable at {TRANSPORT_URL} ({exc}); {START_HINT}")
    return TRANSPORT_URL


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:8]
    return {"group": f"{RUN}-{suffix}", "pool": f"{RUN}-pool-{suffix}",
            "dead_letters": f"{RUN}-dead-{suffix}", "state": f"{RUN}-state-{suffix}",
            "zaqar": zaqar_project(suffix)}


CONF = """
[DEFAULT]
transport_url = {transport_url}
debug = false

[listener]
notifications_pool = {pool}
rejected_queue =
workers = {listener_workers}
batch_size = 100
batch_timeout = 0.1
retry_initial_backoff = 0.2
retry_max_backoff = 2
announce_interval = 0.05
status_port = 0

[elasticsearch]
backend = {backend}
hosts = {es_url}
dead_letter_index = {dead_letters}
number_of_shards = {shards}

[resource_plugins]
resource_group_name = {group}

[changelog]
state_index = {state}
poll_interval = 0.5
purge_interval = 3600

[delivery]
lease_seconds = 6
commit_interval = 0.2
status_port = 0

[forwarding]
zaqar_url = {zaqar_url}
"""


def write_conf(path, names, shards: int = 1, listener_workers: int = 1,
               extra: str = "", transport_url: str = TRANSPORT_URL) -> None:
    path.write_text(CONF.format(transport_url=transport_url, es_url=ES_URL,
                                backend=SEARCH_BACKEND,
                                zaqar_url=ZAQAR_URL, shards=shards,
                                listener_workers=listener_workers, **names) + extra)


@pytest.fixture
def config_file(tmp_path, names, es, broker):
    path = tmp_path / "searchlight-forward.conf"
    write_conf(path, names)
    yield path
    for index in (f"{names['group']}-*", names["dead_letters"], names["state"]):
        es.indices.delete(index=index, ignore_unavailable=True, allow_no_indices=True)
    with kombu.Connection(AMQP_URL) as conn:
        try:
            conn.channel().queue_delete(names["pool"])
        except Exception:  # noqa: BLE001 - the queue may never have been declared
            pass


def write_pipelines(config_file, text: str) -> None:
    (config_file.parent / "forwarders.ini").write_text(text)


def load_conf(path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register(conf)
    conf(["--config-file", str(path)], project="searchlight-forward")
    return conf


def in_process(config_file, build):
    """start({(group, option): value}) -> a started ``build(conf)`` with those
    overrides, and the list of those started (for the fixture to stop)."""
    running = []

    def start(overrides: dict | None = None):
        conf = load_conf(config_file)
        for (group, name), value in (overrides or {}).items():
            conf.set_override(name, value, group=group)
        thing = build(conf)
        thing.start()
        running.append(thing)
        return thing
    return start, running


@pytest.fixture
def start_listener(config_file):
    """Start in-process listeners on the test's config; all stopped at teardown."""
    start, running = in_process(config_file, lambda conf: Listener(conf, threading.Event()))
    yield start
    for listener in running:
        listener.stop()


@pytest.fixture
def start_delivery(config_file):
    """Start in-process delivery services on the test's config (and forwarders.ini)."""
    start, running = in_process(
        config_file, lambda conf: delivery_worker.build(conf, threading.Event()))
    yield start
    for service in running:
        service.stop()


class Process:
    """A console script of ours in its own process, logging to a file."""

    def __init__(self, command: str, config_file, log_path):
        self.command = command
        module = ("searchlight_forward.commands.listener" if command == "listener"
                  else f"forwarders.cmd.{command}")
        self.args = [sys.executable, "-m", module,
                     "--config-file", str(config_file)]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        log_file = open(self.log_path, "ab")
        # Its own process group: cotyledon's workers go with it.
        self.proc = subprocess.Popen(self.args, stdout=log_file, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)
        return self

    def kill9(self) -> None:
        """kill -9 of the whole process group (manager and workers)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def processes(tmp_path):
    """processes(command, config_file, name): our commands in their own processes;
    all stopped at teardown."""
    started: list[Process] = []

    def start(command, config_file, name=None) -> Process:
        name = name or f"{command}-{len(started)}"
        proc = Process(command, config_file, tmp_path / f"{name}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def publisher(broker):
    pub = NotificationPublisher(broker)
    yield pub
    pub.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll until ``predicate()`` is truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {value!r}")


# -- WebSocket servers and clients (tests/functional/websocket_support.py) ------------

WEBSOCKET_PIPELINE = """
[forwarding]
pipelines =

[view:websocket]
filters =
"""


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({
        "tok-a": {"user_id": "alice", "project_id": A, "roles": ["member", "reader"]},
        "tok-a2": {"user_id": "anna", "project_id": A, "roles": ["member"]},
        "tok-b": {"user_id": "bob", "project_id": B, "roles": ["member"]},
        "tok-admin": {"user_id": "root", "project_id": C, "roles": ["admin", "member"]},
        "tok-soon": {"user_id": "carl", "project_id": A, "roles": ["member"],
                     "expires_at": "2000-01-01T00:00:00Z"},
        "tok-brief": {"user_id": "dora", "project_id": A, "roles": ["member"],
                      "expires_at": (datetime.datetime.now(datetime.timezone.utc)
                                     + datetime.timedelta(seconds=4)).isoformat()},
    }))
    return path


@pytest.fixture
def ws_server(es, names, tokens, broker):
    """Start WebSocket servers for the test's resource group (token file validator
    unless another is given); all stopped at teardown."""
    running: list[ServerThread] = []

    def start(doorbell: bool = True, types=ALL_TYPES, filters=(), validator=None,
              es_url: str = ES_URL, **settings) -> ServerThread:
        settings.setdefault("port", 0)
        settings.setdefault("poll_interval", 1.0)
        settings.setdefault("auth_timeout", 5.0)
        settings.setdefault("close_timeout", 5.0)
        server = WebSocketServer(
            search.connect(es_url, SEARCH_BACKEND, request_timeout=30),
            names["group"],
            validator or TokenFileValidator(str(tokens)), types, admin_only=ADMIN_ONLY,
            filters=filters, doorbell_url=TRANSPORT_URL if doorbell else None,
            state_index=names["state"],
            mappings={p.resource_type: p.search_mapping() for p in PLUGINS.plugins},
            **settings)
        thread = ServerThread(server).start()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.stop()


@pytest.fixture
def clients():
    opened: list[Client] = []

    def open_client(url, **kw) -> Client:
        client = Client(url, **kw)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def receivers():
    """receivers(**options): real webhook receivers (devtools.receivers), stopped at
    teardown."""
    made = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]
    yield make
    for r in made:
        r.stop()


# -- Keystone and direct writes -----------------------------------------------------

@pytest.fixture(scope="session")
def keystone():
    try:
        ks = LocalKeystone()
        ks.token("demo")
    except Exception as exc:  # noqa: BLE001 - the message says what to do
        pytest.fail(f"the local Keystone is not usable ({exc}); start it: "
                    "python3 scripts/servers.py up")
    return ks


@pytest.fixture
def writer(es, names, broker):
    """write(project, ids, version, **fields): index Nova servers straight through the
    Indexer, then make them visible and ring as a listener does;
    write.changes([DocumentChange...]) for any."""
    indices.ensure(es, names["group"], PLUGINS.plugins)
    indexer = Indexer(es, {t: names["group"] for t in ALL_TYPES}, ADMIN_ONLY)
    announcer = Announcer({names["group"]: ChangeLog(es, names["group"])},
                          Doorbell(TRANSPORT_URL))

    def changes(batch):
        indexer.apply(list(enumerate(batch)))
        announcer.announce(names["group"])

    def write(project, ids, version, **fields):
        changes([document_change(rid, project, version, **fields) for rid in ids])
    write.changes = changes
    yield write
    announcer.stop()
    es.indices.delete(index=f"{names['group']}-*", ignore_unavailable=True,
                      allow_no_indices=True)


@contextlib.contextmanager
def index_with_unstarted_shard(es, group: str, shards: int):
    """A new index of ``group`` (its aliases) whose last shard cannot start on this
    one-node cluster (at most ``shards - 1`` per node), once the others started;
    deleted afterwards (the cluster is red while it exists)."""
    body = layout.index_body(PLUGINS.plugins, shards, 0)
    body["settings"]["index.routing.allocation.total_shards_per_node"] = shards - 1
    name = layout.new_index_name(group)
    es.indices.create(index=name, aliases=layout.aliases(group), wait_for_active_shards=0,
                      **body)
    try:
        wait_for(lambda: es.cluster.health(index=name)["active_shards"] == shards - 1, 30,
                 f"{shards - 1} of {shards} shards to start")
        yield name
    finally:
        es.indices.delete(index=name)
