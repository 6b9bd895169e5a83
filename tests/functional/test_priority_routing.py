"""Priority routing on the real servers: Nova's legacy notifications through
RabbitMQ, the listener and the delivery service to real Zaqar queues.

A failed boot is ``compute.instance.create.error`` (ERROR) followed within a second by
``compute.instance.update`` (INFO, state error) for the same server; the index folds
both into one state, so the error must survive as the change's alert
(searchlight_forward.model.priority). Expected queues are written from what the test
publishes: the failing servers, and only they, reach the error queues.
"""
from __future__ import annotations

import copy
import json
import uuid

import pytest

from tests.conftest import ROOT, RUN, ZAQAR_URL
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import drain, wait_caught_up

pytestmark = pytest.mark.timeout(120)

NOVA = ROOT + "/tests/fixtures/notifications/nova"
PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def pipelines(project: str, prefix: str) -> str:
    """By priority (every change, routed by ``{priority}``) and alerts only."""
    return f"""
[forwarding]
pipelines = bypriority alerts

[pipeline:bypriority]
pipeline = routed

[pipeline:alerts]
pipeline = alerts_queue
priorities = error, critical

[sink:routed]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {prefix}-{{priority}}
project = {project}
on_failure = hold
timeout = 1

[sink:alerts_queue]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {prefix}-alerts
project = {project}
on_failure = hold
timeout = 1
"""


def legacy(event_type: str, server_id: str, second: int, **payload) -> dict:
    raw = json.loads(open(f"{NOVA}/{event_type}.json").read())
    body = copy.deepcopy(raw["payload"])
    body.update(instance_id=server_id, tenant_id=PROJECT, display_name=server_id[:8],
                **payload)
    return {"event_type": event_type, "priority": raw["priority"].lower(),
            "payload": body, "timestamp": f"2026-03-02 12:00:{second:02d}.000000"}


def boot(server_id: str, fails: bool) -> list[dict]:
    """Nova's legacy notifications of one boot, in the order Nova sends them."""
    notes = [legacy("compute.instance.create.start", server_id, 1, state="building")]
    if fails:
        notes.append(legacy("compute.instance.create.error", server_id, 3))
        notes.append(legacy("compute.instance.update", server_id, 4, state="error",
                            old_state="building"))
    else:
        notes.append(legacy("compute.instance.create.end", server_id, 3))
    return notes


def test_create_errors_reach_the_error_queues_and_nothing_else_does(
        config_file, names, start_listener, start_delivery, publisher, es):
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    ops = f"{names['zaqar']}-ops"
    write_pipelines(config_file, pipelines(ops, prefix))
    failing = {str(uuid.uuid4()) for _ in range(4)}
    fine = {str(uuid.uuid4()) for _ in range(4)}
    listener = start_listener()
    start_delivery()
    notes = [n for s in sorted(failing | fine) for n in boot(s, s in failing)]
    for note in notes:
        publisher.publish("nova", "notifications", "compute.host1", note["event_type"],
                          note["payload"], priority=note["priority"],
                          emitted_at=note["timestamp"])
    wait_for(lambda: listener.processor.counters["notifications"] >= len(notes), 60,
             f"{len(notes)} notifications indexed")
    wait_caught_up(es, names["state"], names["group"], ["bypriority", "alerts"])

    queues = {name: drain(ops, f"{prefix}-{name}")
              for name in ("info", "warn", "error", "critical", "alerts")}
    servers = {name: {b["id"] for b in bodies} for name, bodies in queues.items()}
    assert servers["alerts"] == failing
    assert servers["error"] == failing
    assert servers["warn"] == servers["critical"] == set()
    # A failing server may reach the info queue only before its error was indexed.
    for body in queues["info"]:
        assert "alert" not in body and body["document"]["status"] != "ERROR", body
    assert fine <= servers["info"]
    for name in ("alerts", "error"):
        last = {b["id"]: b for b in queues[name]}       # oldest first: the last is newest
        for server_id in failing:
            body = last[server_id]
            assert body["document"]["status"] == "ERROR"
            assert body["alert"]["priority"] == "error"
            assert body["alert"]["event_type"] == "compute.instance.create.error"
            assert body["version"] >= body["alert"]["version"]
