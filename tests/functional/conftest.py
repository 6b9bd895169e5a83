"""Fixtures on the real servers: Elasticsearch and RabbitMQ on 127.0.0.1.

Each test gets its own resource group, dead-letter index and RabbitMQ pool queue,
and removes them afterwards, so tests neither see nor feed each other.
"""
from __future__ import annotations

import datetime
import json
import re
import threading
import time
import uuid

import elasticsearch
import kombu
import pytest
from oslo_config import cfg
from oslo_log import log

from forwarders.outbox import PREFIX as OUTBOX_PREFIX
from forwarders.websocket.auth import TokenFileValidator
from forwarders.websocket.doorbell import Doorbell
from forwarders.websocket.server import ServerThread, WebSocketServer
from searchlight_forward import config
from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.service import Listener
from searchlight_forward.publisher import NotificationPublisher
from tests.conftest import AMQP_URL, ES_URL, TRANSPORT_URL
from tests.functional.websocket_support import (A, ADMIN_ONLY, ALL_TYPES, B, C, PLUGINS,
                                                Client, document_change)
from tests.keystone_support import LocalKeystone

START_HINT = "start the local servers first: python3 scripts/servers.py up"


@pytest.fixture(scope="session")
def es():
    client = elasticsearch.Elasticsearch(ES_URL, request_timeout=30)
    try:
        client.cluster.health(wait_for_status="yellow", timeout="30s")
    except Exception as exc:  # noqa: BLE001 - the message says what to do
        pytest.fail(f"Elasticsearch is not reachable at {ES_URL} ({exc}); {START_HINT}")
    return client


@pytest.fixture(scope="session")
def broker():
    with kombu.Connection(AMQP_URL, connect_timeout=5) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"RabbitMQ is not reachable at {TRANSPORT_URL} ({exc}); {START_HINT}")
    return TRANSPORT_URL


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:8]
    return {"group": f"sft-{suffix}", "pool": f"sft-pool-{suffix}",
            "dead_letters": f"sft-dead-{suffix}"}


@pytest.fixture
def config_file(tmp_path, names, es, broker):
    path = tmp_path / "searchlight-forward.conf"
    path.write_text(f"""
[DEFAULT]
transport_url = {TRANSPORT_URL}
debug = false

[listener]
notifications_pool = {names['pool']}
batch_size = 100
batch_timeout = 0.1
retry_initial_backoff = 0.2
retry_max_backoff = 2
status_port = 0

[elasticsearch]
hosts = {ES_URL}
dead_letter_index = {names['dead_letters']}

[resource_plugins]
resource_group_name = {names['group']}
""")
    yield path
    for index in (f"{names['group']}-*", names["dead_letters"]):
        es.indices.delete(index=index, ignore_unavailable=True, allow_no_indices=True)
    # The pool queue and the hold pipelines' outboxes (named after the pool).
    ini = path.parent / "forwarders.ini"
    pipelines = re.findall(r"^\[pipeline:([^\]]+)\]", ini.read_text(), re.M) if ini.exists() else []
    with kombu.Connection(AMQP_URL) as conn:
        for queue in [names["pool"]] + [f"{OUTBOX_PREFIX}{names['pool']}.{p}" for p in pipelines]:
            try:
                conn.channel().queue_delete(queue)
            except Exception:  # noqa: BLE001 - the queue may never have been declared
                pass


def load_conf(path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    config.register(conf)
    conf(["--config-file", str(path)], project="searchlight-forward")
    return conf


@pytest.fixture
def start_listener(config_file):
    """Start in-process listeners on the test's config; all stopped at teardown."""
    running: list[Listener] = []

    def start(**overrides) -> Listener:
        conf = load_conf(config_file)
        for (group, name), value in overrides.items():
            conf.set_override(name, value, group=group)
        listener = Listener(conf, threading.Event())
        listener.start()
        running.append(listener)
        return listener

    yield start
    for listener in running:
        listener.stop()


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

FORWARDERS_INI = """
[forwarding]
pipelines = horizon

[pipeline:horizon]
pipeline = websocket

[sink:websocket]
use = egg:searchlight-forward#websocket
auth = token_file
token_file = %(here)s/tokens.json
"""


@pytest.fixture
def forwarding(config_file):
    """The listener's pipelines: one, ending in the websocket sink (rings the doorbell)."""
    (config_file.parent / "forwarders.ini").write_text(FORWARDERS_INI)


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
              **settings) -> ServerThread:
        settings.setdefault("port", 0)
        settings.setdefault("poll_interval", 1.0)
        settings.setdefault("auth_timeout", 5.0)
        settings.setdefault("close_timeout", 5.0)
        server = WebSocketServer(
            elasticsearch.Elasticsearch(ES_URL, request_timeout=30), names["group"],
            validator or TokenFileValidator(str(tokens)), types, admin_only=ADMIN_ONLY,
            filters=filters, doorbell_url=TRANSPORT_URL if doorbell else None, **settings)
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
def writer(es, names):
    """write(project, ids, version, **fields): index Nova servers straight through the
    Indexer and ring the doorbell; write.changes([DocumentChange...]) for any."""
    indices.ensure(es, names["group"], PLUGINS.plugins)
    indexer = Indexer(es, {t: names["group"] for t in ALL_TYPES}, ADMIN_ONLY)
    bell = Doorbell(TRANSPORT_URL)

    def changes(batch):
        indexer.apply(list(enumerate(batch)))
        bell.ring()

    def write(project, ids, version, **fields):
        changes([document_change(rid, project, version, **fields) for rid in ids])
    write.changes = changes
    yield write
    bell.close()
    es.indices.delete(index=f"{names['group']}-*", ignore_unavailable=True,
                      allow_no_indices=True)
