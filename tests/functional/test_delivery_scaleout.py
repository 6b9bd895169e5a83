"""Scale-out on the real servers, as an operator runs it: two listener processes
(cotyledon workers), two delivery processes, a three-shard index, a causal stream
then a shuffled one over every plugin, a kill -9 of a delivery process and of the
listeners mid-stream. Every Zaqar queue and the logger see versions that never go
down per resource, and every resource's final state arrives."""
from __future__ import annotations

import random
import threading
import time
import uuid

from devtools.simulator import CloudSimulator
from tests.conftest import RUN
from tests.functional.conftest import wait_for, write_conf, write_pipelines
from tests.functional.delivery_support import (drain, head_of, log_lines, pipelines_ini,
                                               wait_caught_up)
from devtools.oracle import differences, latest_per_resource, stored
from tests.functional.test_workers import consumers

SHARDS = 3


RATE = 150         # notifications per second: a stream lasts a few seconds


def publish_paced(publisher, notes) -> tuple[threading.Thread, threading.Event]:
    """Publish in the background at RATE, so that kills land mid-stream: the first
    half, then the rest once the returned event is set (after the kill), so the kill
    is mid-stream however slowly a loaded machine indexes and delivers."""
    resume = threading.Event()

    def run():
        for i, note in enumerate(notes):
            if i == len(notes) // 2:
                resume.wait(300)
            publisher.publish_simulated(note)
            if i % 15 == 14:
                time.sleep(15 / RATE)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, resume


def converged(es, group, expected, timeout=180.0) -> None:
    """Wait until the index holds every resource's final state (the oracle)."""
    deadline = time.monotonic() + timeout
    problems = differences(expected, stored(es, group))
    while problems and time.monotonic() < deadline:
        time.sleep(1.0)
        problems = differences(expected, stored(es, group))
    assert problems == [], (len(problems), problems[:10])


def stored_docs(es, group) -> int:
    try:
        es.indices.refresh(index=f"{group}-listener")
        return es.count(index=f"{group}-listener")["count"]
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_two_listeners_two_delivery_processes_three_shards_kill_9(
        config_file, names, es, publisher, processes):
    suffix = uuid.uuid4().hex[:8]
    queue, ops_project, tenants = f"q-{suffix}", f"{names['zaqar']}-ops", f"{RUN}-{suffix}"
    write_conf(config_file, names, shards=SHARDS, listener_workers=2)
    write_pipelines(config_file, pipelines_ini(ops_project, queue, tenants))

    simulator = CloudSimulator(seed=31)
    causal = simulator.stream(10, delete_ratio=0.3)
    shuffled = simulator.stream(10, delete_ratio=0.3)
    random.Random(4).shuffle(shuffled)

    listeners = processes("listener", config_file, "listeners")
    first = processes("delivery", config_file, "delivery-a")
    second = processes("delivery", config_file, "delivery-b")
    wait_for(lambda: head_of(es, names["group"]), 60, "the listeners to create the index")
    assert len(head_of(es, names["group"]).seq_nos) == SHARDS
    # RabbitMQ drops what is published before the pool queue is bound.
    wait_for(lambda: consumers(names["pool"]) == 2, 60, "both listener workers to consume")

    # The causal stream; one delivery process is killed -9 in the middle of it, once
    # both have delivered something.
    publishing, resume = publish_paced(publisher, causal)
    wait_for(lambda: len(log_lines(first.log_path)) + len(log_lines(second.log_path)) > 50,
             120, "the first deliveries")
    first.kill9()
    resume.set()
    publishing.join(300)

    # The shuffled stream; the listeners are killed -9 in the middle of it, then
    # started again (what they held unacknowledged comes back from RabbitMQ).
    before = stored_docs(es, names["group"])
    publishing, resume = publish_paced(publisher, shuffled)
    wait_for(lambda: stored_docs(es, names["group"]) > before + 60, 120,
             "the shuffled stream to be indexing")
    listeners.kill9()
    resume.set()
    publishing.join(300)
    processes("listener", config_file, "listeners-again")
    expected = simulator.expected
    converged(es, names["group"], expected)

    # The surviving delivery process takes the dead one's pipelines over.
    wait_caught_up(es, names["state"], names["group"], ["ops", "tenants", "audit"],
                   timeout=240)

    operator = drain(ops_project, queue)
    final, regressions = latest_per_resource(operator)
    assert regressions == []
    assert differences(expected, final) == []          # hold: nothing lost

    for project in simulator.projects.values():
        final, regressions = latest_per_resource(drain(f"{tenants}-{project}", queue))
        assert regressions == []
        assert {e["project_id"] for e in final.values()} <= {project}

    # The logger: whichever process owned it, first the killed one, then the other.
    lines = log_lines(first.log_path) + log_lines(second.log_path)
    final, regressions = latest_per_resource(lines)
    assert regressions == []
    assert set(final) == set(expected)
    wrong = [k for k, e in expected.items()
             if (final[k]["operation"] == "delete") != e.deleted
             or (not e.deleted and final[k]["document.name"] != e.fields.get("name"))]
    assert wrong == []
