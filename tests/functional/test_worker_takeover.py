"""A delivery worker killed under traffic: cotyledon starts another in its slot, and
that one takes its predecessor's cursors at once (same master, same slot: the same
owner), so a ``hold`` pipeline stands still for the time it takes to fork a worker,
not for a lease (``lease_seconds`` is 30 s here, the default)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

from devtools.simulator import CloudSimulator
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.test_poison import set_options
from tests.functional.test_several_processes import status
from tests.functional.test_status_endpoints import free_port
from tests.functional.test_workers import children

PIPELINES = """
[forwarding]
pipelines = held

[pipeline:held]
pipeline = held_logger

[sink:held_logger]
use = egg:searchlight-forward#logger
fields = resource_type, id, version
on_failure = hold
"""

TARGET = 5.0          # seconds of standstill after a worker kill, at most
RATE = 20.0           # notifications a second, published all along


def changes(log_path) -> list[tuple[float, int, str]]:
    """(time, pid, line) of every change the logger sink wrote in the process's log
    (oslo.log's default format: ``date time.ms pid LEVEL logger [-] message``)."""
    found = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if " change {" not in line:
                continue
            date, clock, pid = line.split(" ", 3)[:3]
            stamp, _, millis = clock.partition(".")
            when = time.mktime(time.strptime(f"{date} {stamp}", "%Y-%m-%d %H:%M:%S"))
            found.append((when + int(millis) / 1000, int(pid), line))
    return found


def delivered_ids(log_path) -> set[str]:
    return {json.loads(line[line.index(" change {") + 8:])["id"]
            for _, _, line in changes(log_path)}


def test_a_replaced_delivery_worker_takes_its_slots_cursors_at_once(
        config_file, names, start_listener, publisher, processes):
    port = free_port()
    set_options(config_file, "delivery", f"lease_seconds = 30\nstatus_port = {port}")
    write_pipelines(config_file, PIPELINES)
    start_listener()
    delivery = processes("delivery", config_file, "delivery")
    manager = delivery.proc.pid
    simulator = CloudSimulator(seed=101)
    notes = simulator.stream(3, delete_ratio=0.0)     # ~180: 9 s of traffic
    stop = threading.Event()

    def publish():
        for note in notes:
            if stop.wait(1 / RATE):
                return
            publisher.publish_simulated(note)

    publishing = threading.Thread(target=publish, daemon=True)
    try:
        workers = wait_for(lambda: len(children(manager)) == 1 and children(manager), 60,
                           "the delivery worker")
        victim = next(iter(workers))
        owner = wait_for(lambda: (status(port) or {}).get("owner"), 60, "its /status")
        publishing.start()
        wait_for(lambda: any(pid == victim for _, pid, _ in changes(delivery.log_path)),
                 60, "the first changes delivered")

        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        # The pipeline moves again once the new worker's logger sink writes a change.
        first_new = wait_for(
            lambda: next((when for when, pid, _ in changes(delivery.log_path)
                          if pid != victim), None), 60, "the replaced worker to deliver")
        standstill = first_new - killed_at
        print(f"\nstandstill after the worker kill: {standstill:.2f} s "
              f"(lease_seconds 30, target {TARGET} s)")
        assert standstill < TARGET, f"the pipeline stood still {standstill:.1f} s"
        # The same owner (master and slot), and its status endpoint is back too.
        assert wait_for(lambda: (status(port) or {}).get("owner"), 30,
                        "the new worker's /status") == owner
    except BaseException:
        stop.set()
        raise
    finally:
        publishing.join(60)
    # Nothing lost: every resource published reaches the sink.
    wait_for(lambda: delivered_ids(delivery.log_path) >= {rid for _, rid in simulator.expected},
             120, "every resource to be delivered")
