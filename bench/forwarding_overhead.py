"""Forwarding overhead: one listener with the shipped pipelines on, then off.

    .venv/bin/python bench/forwarding_overhead.py [--count 6000] [--repeat 2]

For each run the same realistic stream (every plugin, several projects) is queued in
RabbitMQ first, then a fresh listener drains it into a fresh index; the clock runs
from the listener's start until every notification is indexed and, with pipelines
on, every pipeline has delivered (the Zaqar hold outbox is empty). Runs alternate
off/on so machine noise hits both; the ratio is what to read. Needs the local
servers (`python3 scripts/servers.py up`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

import elasticsearch
import kombu
import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from searchlight_forward.commands import common  # noqa: E402,F401 - quiets eventlet
from searchlight_forward.listener.service import Listener  # noqa: E402
from searchlight_forward.publisher import NotificationPublisher  # noqa: E402
from searchlight_forward.simulator import CloudSimulator  # noqa: E402
from tests.functional.conftest import load_conf  # noqa: E402

ES_URL = os.environ.get("SF_ES_URL", "http://127.0.0.1:9200")
TRANSPORT_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")


def write_config(directory: str, group: str, pool: str, pipelines: bool) -> str:
    conf = os.path.join(directory, "searchlight-forward.conf")
    with open(conf, "w") as f:
        f.write(f"""[DEFAULT]
transport_url = {TRANSPORT_URL}
[listener]
notifications_pool = {pool}
status_port = 0
[elasticsearch]
hosts = {ES_URL}
dead_letter_index = {group}-dead
[resource_plugins]
resource_group_name = {group}
[forwarding]
config_file = {'forwarders.ini' if pipelines else 'none.ini'}
""")
    if pipelines:
        ini = open(os.path.join(ROOT, "etc", "forwarders.ini")).read()
        ini = ini.replace("queue = openstack-resources", f"queue = bench-{group[-8:]}")
        ini = ini.replace("project = ops", f"project = bench-{group[-8:]}")
        with open(os.path.join(directory, "forwarders.ini"), "w") as f:
            f.write(ini)
        open(os.path.join(directory, "websocket-tokens.json"), "w").write("{}")
    return conf


def one_run(stream, pipelines: bool, bar) -> float:
    group, pool = f"bench-{uuid.uuid4().hex[:8]}", f"bench-pool-{uuid.uuid4().hex[:8]}"
    directory = tempfile.mkdtemp(prefix="sf-bench-")
    conf = load_conf(write_config(directory, group, pool, pipelines))
    es = elasticsearch.Elasticsearch(ES_URL)
    try:
        # Declare the pool queue, then queue the whole stream before timing.
        warm = Listener(load_conf(os.path.join(directory, "searchlight-forward.conf")))
        warm.start()
        warm.stop()
        publisher = NotificationPublisher(TRANSPORT_URL)
        for sim in stream:
            publisher.publish_simulated(sim)
            bar.update(1)
        publisher.close()

        listener = Listener(conf)
        started = time.perf_counter()
        listener.start()
        while listener.processor.counters["notifications"] < len(stream):
            time.sleep(0.01)
        indexed = time.perf_counter() - started
        if pipelines:
            def settled():
                stats = listener.forwarding.stats()
                return all(s.get("delivered", 0) + s.get("dropped", 0) + s.get("rejected", 0)
                           >= s.get("submitted", 0) - s.get("queued", 0) and s.get("queued", 0) == 0
                           and s.get("held_batches", 0) == 0 for s in stats.values())
            while not settled():
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if os.environ.get("SF_BENCH_DEBUG"):
            print(f"\nindexed after {indexed:.2f}s, settled after {elapsed:.2f}s",
                  listener.stats())
        listener.stop()
        return elapsed
    finally:
        es.indices.delete(index=f"{group}-*", ignore_unavailable=True, allow_no_indices=True)
        with kombu.Connection(TRANSPORT_URL.replace("rabbit://", "amqp://", 1)) as c:
            for q in [pool] + [f"searchlight-forward.outbox.{pool}.{p}" for p in ("telco", "tenants")]:
                try:
                    c.channel().queue_delete(q)
                except Exception:  # noqa: BLE001
                    pass
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6000, help="notifications per run")
    parser.add_argument("--repeat", type=int, default=2, help="off/on pairs")
    args = parser.parse_args()
    per_type = max(1, args.count // 60)
    stream = CloudSimulator(seed=1).stream(per_type)[:args.count]
    times = {False: [], True: []}
    with tqdm.tqdm(total=len(stream) * 2 * args.repeat, desc="queueing", unit="msg") as bar:
        for _ in range(args.repeat):
            for pipelines in (False, True):
                times[pipelines].append(one_run(stream, pipelines, bar))
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"\n{len(stream)} notifications, {args.repeat} runs each (median)")
    print(f"{'pipelines':<10} {'seconds':>8} {'notifications/s':>16}")
    print(f"{'off':<10} {off:>8.2f} {len(stream) / off:>16.0f}")
    print(f"{'on':<10} {on:>8.2f} {len(stream) / on:>16.0f}")
    print(f"throughput with pipelines on / off: {off / on:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
