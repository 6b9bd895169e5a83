"""Zaqar away for a while, the listener killed meanwhile: the hold pipeline loses nothing.

Stops and starts the real Zaqar server through scripts/servers.py.
"""
import collections
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from searchlight_forward.simulator import CloudSimulator
from tests.conftest import ZAQAR_URL, zaqar_client_for
from searchlight_forward.listener.service import load
from tests.functional.conftest import load_conf, wait_for
from tests.functional.expected import differences, expected_states, stored_states
from tests.functional.websocket_support import ALL_TYPES
from tests.functional.test_crash import queue_exists, start_listener_process, stored_count

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def servers(*args):
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "servers.py"), *args],
                   check=True, capture_output=True, timeout=180)


def drain(client, queue_name, timeout=5.0):
    """Every message of the queue, in order, deleting them as they come."""
    got = []
    queue = client.queue(queue_name)
    idle = 0.0
    while idle < timeout:
        batch = list(queue.pop(20))
        if not batch:
            idle += 0.5
            threading.Event().wait(0.5)
            continue
        idle = 0.0
        got.extend(m.body for m in batch)
    return got


@pytest.fixture
def zaqar_back():
    """Whatever a test does to Zaqar, it is running again afterwards."""
    yield
    servers("up", "zaqar")


def test_hold_pipeline_delivers_everything_in_order_after_an_outage_and_a_kill_9(
        config_file, names, es, publisher, tmp_path, zaqar_back, tokens, ws_server, clients):
    project = f"ops-{uuid.uuid4().hex[:6]}"
    queue_name = f"held-{uuid.uuid4().hex[:8]}"
    (config_file.parent / "forwarders.ini").write_text(f"""
[forwarding]
pipelines = telco horizon

[pipeline:horizon]
pipeline = websocket

[sink:websocket]
use = egg:searchlight-forward#websocket
auth = token_file
token_file = %(here)s/tokens.json

[pipeline:telco]
pipeline = telco_zaqar
must_deliver = true

[sink:telco_zaqar]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {queue_name}
project = {project}
on_failure = hold
backoff = 0.2
max_backoff = 1
""")
    stream = CloudSimulator(seed=33).stream(8)
    first, second = stream[:len(stream) // 2], stream[len(stream) // 2:]
    log_path = tmp_path / "listener.log"

    # A Horizon-style admin client watches every project over WebSocket meanwhile.
    watcher = clients(ws_server().url)
    watcher.authenticate("tok-admin")
    watcher.subscribe(types=ALL_TYPES, all_projects=True)

    servers("down", "zaqar")
    proc = start_listener_process(config_file, log_path)
    try:
        wait_for(lambda: queue_exists(names["pool"]), 60, "the listener's queue")
        for sim in first:
            publisher.publish_simulated(sim)
        # Indexing goes on while Zaqar is away.
        wait_for(lambda: stored_count(es, names["group"]) > 0, 60, "indexing during the outage")
        wait_for(lambda: "failed" in log_path.read_text(), 60,
                 "the hold pipeline to meet the outage")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

        proc = start_listener_process(config_file, log_path)
        for sim in second:
            publisher.publish_simulated(sim)
        _, plugins = load(load_conf(config_file))
        expected = expected_states(stream, plugins)
        wait_for(lambda: not differences(expected, stored_states(es, names["group"])), 120,
                 "the whole stream to be indexed while Zaqar is away", interval=1.0)
        # ... and the WebSocket client got every live resource's newest state meanwhile.
        live = {key: s.version for key, s in stored_states(es, names["group"]).items()
                if not s.deleted}
        wait_for(lambda: watcher.pump(0.3) >= 0 and all(
            watcher.versions.get(key) == version for key, version in live.items()),
            60, "WebSocket delivery during the Zaqar outage")
        assert watcher.regressions == []

        servers("up", "zaqar")
        client = zaqar_client_for(project)
        final = stored_states(es, names["group"])
        received: list[dict] = []

        def complete():
            received.extend(drain(client, queue_name, timeout=2.0))
            latest = {}
            for body in received:
                latest[body["id"]] = max(latest.get(body["id"], 0), body["version"])
            return all(latest.get(rid) == state.version for (_, rid), state in final.items())

        wait_for(complete, 180, "every resource's newest version in Zaqar", interval=1.0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    per_resource = collections.defaultdict(list)
    for body in received:
        per_resource[body["id"]].append(body["version"])
    for rid, versions in per_resource.items():
        assert versions == sorted(versions), f"{rid} went back in time: {versions}"
    assert {rid for _, rid in final} == set(per_resource)
    deletes = {rid for (_, rid), s in final.items() if s.deleted}
    assert deletes and all(
        body["document"] is None for body in received
        if body["id"] in deletes and body["operation"] == "delete")
