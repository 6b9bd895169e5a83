"""The HTTP ends of bench/subscriptions.py, each in a process of its own: the webhook
receivers, and a bare POST client (the ceiling the delivery service is compared with).

``receiver_main`` is the whole life of the receivers' process (multiprocessing, spawn):
devtools/receivers.py's ``Receiver`` (the one the tests use; asyncio, keep-alive; its
loop on the main thread, the commands on another), answering every POST ``200`` and
recording, per endpoint path (one per subscription: ``/s/<n>``), the arrival time
(``time.monotonic()``: one clock for every process of the machine, so the parent can
subtract its publish times), the ``webhook-id`` header and the change the body
carries. It imports nothing of the project, so its CPU and
memory are the receiving end's only.

Commands on ``conn`` (a ``multiprocessing`` pipe), each answered:

* ``("port",)``: the port it listens on;
* ``("count",)``: requests received so far;
* ``("summary",)``: per endpoint: requests, distinct ``webhook-id`` values, first
  and last arrival; and the totals (with the mean body size);
* ``("records",)``: every arrival since the last call, as
  ``(endpoint, type, resource_type, id, version, project_id, t)``, then forgets them;
* ``("reset",)``: forget everything received;
* ``("stop",)``.

``post_ceiling_main`` is the whole life of the ceiling's process: what one Python
process can POST to the same receivers with the same concurrency (one urllib3
keep-alive pool of ``concurrency`` connections per endpoint and as many threads,
like the webhook sink's), a prepared body of the deliveries' size and a fresh
``webhook-id`` per request, and nothing else: no Elasticsearch read, no filter, no
signature, no cursor.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from devtools.receivers import Receiver  # noqa: E402


def receiver_main(conn, host: str = "127.0.0.1") -> None:
    receiver = Receiver(confirm=False, keep="arrivals", host=host, thread=False)
    answers = {"port": lambda: receiver.port, "count": lambda: receiver.requests,
               "summary": receiver.summary, "records": receiver.take_arrivals,
               "reset": lambda: receiver.reset() or True}

    def commands() -> None:
        while True:
            cmd = conn.recv()
            if cmd[0] == "stop":
                break
            conn.send(answers[cmd[0]]() if cmd[0] in answers else None)
        receiver.stop()
    threading.Thread(target=commands, daemon=True).start()
    receiver.serve()                 # the loop on the main thread, until "stop"
    conn.send(True)


def post_ceiling_main(port: int, endpoints: list[str], count: int, concurrency: int,
                      body_size: int, result) -> None:
    """POST ``count`` requests spread over ``endpoints`` (``concurrency`` threads and
    connections each) as fast as they are answered; puts the start and end times
    (monotonic), the requests sent and the failures on ``result``."""
    import itertools
    import threading

    import urllib3
    body = json.dumps({"type": "resource.updated", "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"resource_type": "OS::Nova::Server", "id": "ceiling",
                                "version": 1, "document": {"pad": "x" * max(0, body_size - 150)}}}
                      ).encode()
    pools = {e: urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=concurrency,
                                           block=True, retries=False,
                                           timeout=urllib3.Timeout(total=10))
             for e in endpoints}
    numbers = itertools.count()
    lock = threading.Lock()
    failures = [0]

    def work(endpoint: str) -> None:
        pool = pools[endpoint]
        while True:
            with lock:
                n = next(numbers)
            if n >= count:
                return
            try:
                resp = pool.urlopen("POST", endpoint, body=body, headers={
                    "webhook-id": f"msg_ceiling_{n}", "webhook-timestamp": "0",
                    "webhook-signature": "v1,none", "Content-Type": "application/json"},
                    preload_content=False)
                resp.read()
                resp.release_conn()
                if resp.status != 200:
                    failures[0] += 1
            except urllib3.exceptions.HTTPError:
                failures[0] += 1

    threads = [threading.Thread(target=work, args=(e,), daemon=True)
               for e in endpoints for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    result.put({"started": started, "finished": time.monotonic(),
                "sent": min(count, next(numbers)), "failures": failures[0],
                "body_bytes": len(body)})
