"""The HTTP ends of bench/subscriptions.py, each in a process of its own: the webhook
receivers, and a bare POST client (the ceiling the delivery service is compared with).

``receiver_main`` is the whole life of the receivers' process (multiprocessing, spawn): one
asyncio HTTP/1.1 server on 127.0.0.1 (keep-alive, ``Content-Length`` bodies, which
is what the webhook sink sends) that answers every POST ``200`` with an empty body
and records, per endpoint path (one per subscription: ``/s/<n>``), the arrival time
(``time.monotonic()``: one clock for every process of the machine, so the parent
can subtract its publish times), the ``webhook-id`` header and the change the body
carries. It imports nothing of the project, so its CPU and memory are the
receiving end's only.

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

import asyncio
import collections
import json
import time

try:
    import orjson
    loads = orjson.loads
except ImportError:  # pragma: no cover - the project depends on orjson
    loads = json.loads

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _State:
    def __init__(self):
        self.count = 0
        self.bytes = 0
        self.bad = 0
        self.records: list[tuple] = []
        self.per_endpoint: dict[str, list] = collections.defaultdict(
            lambda: [0, set(), None, None])    # requests, webhook-ids, first, last

    def record(self, path: str, headers: dict, body: bytes, now: float) -> None:
        self.count += 1
        self.bytes += len(body)
        stats = self.per_endpoint[path]
        stats[0] += 1
        stats[1].add(headers.get("webhook-id"))
        if stats[2] is None:
            stats[2] = now
        stats[3] = now
        try:
            message = loads(body)
            data = message.get("data") or {}
            self.records.append((path, message.get("type"), data.get("resource_type"),
                                 data.get("id"), data.get("version"),
                                 data.get("project_id"), now))
        except (ValueError, AttributeError):
            self.bad += 1

    def summary(self) -> dict:
        endpoints = {p: {"requests": s[0], "distinct_ids": len(s[1]), "first": s[2],
                         "last": s[3]} for p, s in self.per_endpoint.items()}
        firsts = [e["first"] for e in endpoints.values() if e["first"] is not None]
        lasts = [e["last"] for e in endpoints.values() if e["last"] is not None]
        return {"requests": self.count, "unparsed": self.bad,
                "mean_body_bytes": round(self.bytes / self.count) if self.count else 0, "endpoints": endpoints,
                "duplicates": sum(e["requests"] - e["distinct_ids"]
                                  for e in endpoints.values()),
                "first": min(firsts) if firsts else None,
                "last": max(lasts) if lasts else None}


def _protocol(state: _State):
    class Receiver(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = bytearray()

        def data_received(self, data):
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                try:
                    lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                    _, path, _ = lines[0].split(" ", 2)
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    length = int(headers.get("content-length") or 0)
                except ValueError:
                    self.transport.write(BAD)
                    self.transport.close()
                    return
                if len(self.buf) < end + 4 + length:
                    return                       # the rest of the body is on its way
                body = bytes(self.buf[end + 4:end + 4 + length])
                del self.buf[:end + 4 + length]
                state.record(path, headers, body, time.monotonic())
                self.transport.write(OK)

    return Receiver


def receiver_main(conn, host: str = "127.0.0.1") -> None:
    state = _State()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_protocol(state), host, 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            name = cmd[0]
            if name == "stop":
                break
            if name == "port":
                conn.send(port)
            elif name == "count":
                conn.send(state.count)
            elif name == "summary":
                conn.send(state.summary())
            elif name == "records":
                conn.send(state.records)
                state.records = []
            elif name == "reset":
                state.__init__()
                conn.send(True)
            else:
                conn.send(None)
        server.close()
        conn.send(True)

    asyncio.run(main())


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
