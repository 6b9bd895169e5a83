"""Workers run as OpenStack services run them (cotyledon): a worker that dies is
replaced, and the service goes on working."""
from __future__ import annotations

import os
import signal

import kombu
import pytest

from devtools.simulator import CloudSimulator
from tests.conftest import AMQP_URL
from tests.functional.conftest import wait_for, write_conf, write_pipelines
from tests.functional.delivery_support import head_of, log_lines, pipelines_ini


def consumers(queue: str) -> int:
    with kombu.Connection(AMQP_URL) as conn:
        try:
            return conn.channel().queue_declare(queue, passive=True).consumer_count
        except Exception:  # noqa: BLE001 - not declared yet
            return 0


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the cotyledon manager's workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


@pytest.mark.parametrize("command", ["listener", "delivery"])
def test_a_killed_worker_is_replaced_and_work_goes_on(command, config_file, names, es,
                                                      publisher, processes):
    write_conf(config_file, names, listener_workers=2)
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", "q",
                                               f"{names['zaqar']}-t"))
    listener = processes("listener", config_file, "listener")
    delivery = processes("delivery", config_file, "delivery")
    manager = {"listener": listener, "delivery": delivery}[command].proc.pid
    expected = 2 if command == "listener" else 1
    workers = wait_for(lambda: len(children(manager)) == expected and children(manager),
                       60, f"{expected} {command} worker(s)")
    wait_for(lambda: head_of(es, names["group"]), 60, "the index")

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (len(children(manager)) == expected and
                                 victim not in children(manager) and children(manager)),
                        60, "cotyledon to start another worker")
    assert replaced != workers
    # Notifications published before the pool queue is bound are dropped by RabbitMQ
    # (no queue, no message): publish once every listener worker consumes.
    wait_for(lambda: consumers(names["pool"]) == 2, 60, "both listener workers to consume")

    # And the service still works: notifications published now are indexed and
    # delivered (the logger sink's lines are in the delivery process's log).
    simulator = CloudSimulator(seed=41)
    notes = simulator.stream(1, delete_ratio=0.0)
    for note in notes:
        publisher.publish_simulated(note)
    wait_for(lambda: {(line["resource_type"], line["id"])
                      for line in log_lines(delivery.log_path)} >= set(simulator.expected),
             120, "every resource to reach the logger")
