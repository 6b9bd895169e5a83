"""The main job on the embedded default (`make demo`).

Starts the listener on etc/searchlight-forward.conf against the local servers,
publishes a realistic stream of notifications for a few projects through a real
oslo_messaging.Notifier, shows what reached Elasticsearch, and keeps the listener
running until Ctrl-C, which stops it and the local servers.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import elasticsearch
import tqdm

from searchlight_forward.publisher import NotificationPublisher
from searchlight_forward.simulator import CloudSimulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ES_URL = os.environ.get("SF_ES_URL", "http://127.0.0.1:9200")
TRANSPORT_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-file", default=os.path.join(ROOT, "etc",
                                                              "searchlight-forward.conf"))
    parser.add_argument("--per-type", type=int, default=20,
                        help="simulated resources per resource type")
    parser.add_argument("--keep-servers", action="store_true",
                        help="leave the local servers running on exit")
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)

    subprocess.run([os.path.join(bindir, "searchlight-forward-manage"), "--config-file",
                    args.config_file, "create"], check=True)
    logs = os.path.join(ROOT, ".state", "demo")
    os.makedirs(logs, exist_ok=True)
    listener = subprocess.Popen([os.path.join(bindir, "searchlight-forward-listener"),
                                 "--config-file", args.config_file,
                                 "--log-file", os.path.join(logs, "listener.log")])
    websocket = subprocess.Popen([os.path.join(bindir, "searchlight-forward-websocket"),
                                  "--config-file", args.config_file,
                                  "--log-file", os.path.join(logs, "websocket.log")])
    try:
        time.sleep(3)   # the listener declares its queue; published events need it
        # The projects the demo tokens (etc/websocket-tokens.json) belong to.
        tokens = json.load(open(os.path.join(ROOT, "etc", "websocket-tokens.json")))
        ids = {"demo": tokens["demo-member-token"]["project_id"],
               "alt_demo": tokens["alt-reader-token"]["project_id"],
               "admin": tokens["admin-token"]["project_id"]}
        stream = CloudSimulator(seed=int(time.time()), project_ids=ids).stream(args.per_type)
        publisher = NotificationPublisher(TRANSPORT_URL)
        for sim in tqdm.tqdm(stream, desc="publishing", unit="notification"):
            publisher.publish(sim.exchange, sim.topic, sim.publisher_id, sim.event_type,
                              sim.payload, priority=sim.priority)
        publisher.close()
        time.sleep(3)
        es = elasticsearch.Elasticsearch(ES_URL)
        es.indices.refresh(index="searchlight-search")
        counts = es.search(index="searchlight-search", size=0,
                           query={"term": {"sf_role": "admin"}},
                           aggs={"types": {"terms": {"field": "resource_type", "size": 50}}})
        print("\nsearchlight-search now holds:")
        for bucket in counts["aggregations"]["types"]["buckets"]:
            print(f"  {bucket['key']:<28} {bucket['doc_count']}")
        print(f"\nQuery it: curl '{ES_URL}/searchlight-search/_search?q=sf_role:user&pretty'")
        print("Dead letters: .venv/bin/searchlight-forward-manage --config-file "
              f"{args.config_file} dead-letters list")
        print("Live changes over WebSocket: ws://127.0.0.1:8765 — send "
              '{"action": "authenticate", "token": "demo-member-token"} then '
              '{"action": "subscribe", "resource_types": ["OS::Nova::Server"]} '
              "(demo tokens in etc/websocket-tokens.json; admin-token sees all projects "
              'with "all_projects": true)')
        print("Zaqar: queue openstack-resources in project ops at "
              "http://127.0.0.1:8888 (see docs/zaqar.md); listener counters at "
              "http://127.0.0.1:8790/status")
        print(f"Logs (one line per forwarded change in listener.log): {logs}/")
        print("The listener keeps running; Ctrl-C stops it and the local servers.")
        listener.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (listener, websocket):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (listener, websocket):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep_servers:
            subprocess.run(["python3",
                            os.path.join(ROOT, "scripts", "servers.py"), "down"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
