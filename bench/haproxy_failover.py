"""WebSocket failover behind HAProxy: kill -9 one of two WebSocket server processes
under load and measure how fast its clients are back.

    .venv/bin/python bench/haproxy_failover.py                 # 20, 100, 200 clients
    .venv/bin/python bench/haproxy_failover.py --clients 50

Each point is one run of the functional test
(tests/functional/test_haproxy_failover.py, which asserts what is measured): two
real ``searchlight-forward-websocket`` processes behind a private HAProxy
(devtools/haproxy.py), N clients through HAProxy, a writer changing resources
before, during and after the kill. Figures per run: clients on the killed server,
kill to the last of them resumed (max) and the median, kill to the connection loss
seen by a client, reconnects HAProxy first sent to the dead server and
redispatched, changes the resumes carried, changes missed, older or resent (all
three asserted 0).

Needs the local servers (`python3 scripts/servers.py up --packages haproxy`).
Writes bench/results/haproxy_failover.json and haproxy_failover.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEST = "tests/functional/test_haproxy_failover.py"


def run(clients: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "figures.json")
        env = dict(os.environ, SF_FAILOVER_CLIENTS=str(clients), SF_FAILOVER_RESULTS=out)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", TEST,
                               "-p", "no:cacheprovider"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            sys.exit(f"{clients} clients: the failover test failed:\n"
                     f"{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
        with open(out) as f:
            return json.load(f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 100, 200])
    args = parser.parse_args()
    rows = []
    for n in args.clients:
        figures = run(n)
        rows.append(figures)
        print(json.dumps(figures), flush=True)
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "haproxy_failover.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| clients | writes/s | on the killed server | kill to resumed, max | p50 | "
             "loss seen, max | redispatched | changes in the resumes | missed | older | resent |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['writer_changes_per_s']:.0f} | "
                     f"{r['on_killed_server']} | "
                     f"{r['resumed_max_s'] * 1000:.0f} ms | {r['resumed_p50_s'] * 1000:.0f} ms | "
                     f"{r['drop_seen_max_s'] * 1000:.0f} ms | {r['redispatched']} | "
                     f"{r['resumed_changes']} | "
                     f"{r['missed']} | {r['older']} | {r['resent']} |")
    with open(os.path.join(results, "haproxy_failover.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
