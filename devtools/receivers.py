"""One webhook receiver for the tests, the fault suite and the benchmark.

``Receiver`` is an asyncio HTTP/1.1 server on 127.0.0.1, its loop in a thread of
its own: keep-alive, ``Content-Length`` bodies (what the webhook sink sends), an
empty answer with a status decided per delivery. It is the benchmark's receiver
(bench/webhooks.py runs one in a process of its own), so it stays lean: a
thread-per-connection ``http.server`` costs about four times the CPU per request
and, on two cores, takes the delivery service's.

What it answers and does:

* ``status``: a number, or a function of the ``Delivery`` returning one
  (``gone_unless_mine``: 410 Gone to the confirmations of others' subscriptions);
  settable at any time;
* ``confirm``: visit the confirmation link of every confirmation answered 2xx (from a
  thread, after the answer), as a subscriber's endpoint does; ``confirmed`` counts the
  visits that succeeded;
* ``keep``: ``"deliveries"`` keeps every request as a ``Delivery`` (headers, body,
  JSON, arrival: what tests check), ``"arrivals"`` a lean tuple per request
  ``(path, type, resource_type, id, version, project_id, at)`` (the benchmark's
  delays), ``None`` nothing: ``counts`` and ``summary()`` are kept in every mode.

Arrival times are ``time.monotonic()``: one clock for every process of the machine.
It imports nothing of the project.
"""
from __future__ import annotations

import asyncio
import collections
import http
import json
import threading
import time

try:
    import orjson
    _loads = orjson.loads
except ImportError:  # pragma: no cover - the project depends on orjson
    _loads = json.loads

CONFIRMATION = "subscription.confirmation"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_ANSWERS: dict[int, bytes] = {}


def _answer(status: int) -> bytes:
    found = _ANSWERS.get(status)
    if found is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        found = _ANSWERS[status] = (f"HTTP/1.1 {status} {reason}\r\n"
                                    "Content-Length: 0\r\n\r\n").encode()
    return found


class Delivery:
    """One request as it arrived: its path, headers (lower-case names), body, the
    body's JSON (None if it is not JSON), arrival (monotonic) and the status answered."""

    __slots__ = ("path", "headers", "body", "json", "at", "status")

    def __init__(self, path: str, headers: dict, body: bytes, at: float):
        self.path, self.headers, self.body, self.at = path, headers, body, at
        self.status = 0
        try:
            self.json = _loads(body)
        except ValueError:
            self.json = None

    @property
    def type(self) -> str | None:
        return self.json.get("type") if isinstance(self.json, dict) else None

    @property
    def data(self) -> dict:
        data = self.json.get("data") if isinstance(self.json, dict) else None
        return data if isinstance(data, dict) else {}

    @property
    def confirmation(self) -> bool:
        return self.type == CONFIRMATION


def gone_unless_mine(mine: set):
    """A status policy: 410 Gone (the service disables the subscription) to the
    confirmation of any subscription whose id is not in ``mine``, 200 to the rest."""
    return lambda d: 410 if d.confirmation and d.data.get("subscription_id") not in mine \
        else 200


class Receiver:
    """A webhook receiver on ``host``; ``url`` is ``<base>/hook``, and any other path
    of ``base`` is an endpoint too (``summary()`` counts per path). See the module."""

    def __init__(self, status=200, confirm: bool = True, keep: str | None = "deliveries",
                 host: str = "127.0.0.1", port: int = 0, thread: bool = True):
        if keep not in ("deliveries", "arrivals", None):
            raise ValueError(f"keep: 'deliveries', 'arrivals' or None, not {keep!r}")
        self.status = status
        self.confirm = confirm
        self.keep = keep
        self.lock = threading.Lock()
        self.reset()
        self._transports: set = set()
        self._loop = asyncio.new_event_loop()
        self._thread = None
        if thread:
            # The listening socket is made on the receiver's own thread: the caller's
            # may be running an event loop of its own (Playwright's sync API does).
            ready = threading.Event()
            failed: list[BaseException] = []
            self._thread = threading.Thread(target=self._run, args=(host, port, ready, failed),
                                            daemon=True, name="receiver")
            self._thread.start()
            ready.wait(30)
            if failed:
                raise failed[0]
        else:
            self._listen(host, port)

    def _listen(self, host: str, port: int) -> None:
        server = self._loop.run_until_complete(self._loop.create_server(
            lambda: _Connection(self), host, port, backlog=1024))
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self.base = f"http://{host}:{self.port}"
        self.url = f"{self.base}/hook"

    def _run(self, host: str, port: int, ready: threading.Event, failed: list) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._listen(host, port)
        except BaseException as exc:  # noqa: BLE001 - raised in the constructor
            failed.append(exc)
            ready.set()
            return
        ready.set()
        self.serve()

    def serve(self) -> None:
        """Serve until ``stop()``: on its own thread, or (``thread=False``) on the
        calling one (the benchmark's receivers' process: about a quarter less CPU per
        request than a loop on a second thread)."""
        self._loop.run_forever()
        self._loop.close()

    def reset(self) -> None:
        """Forget everything received."""
        with self.lock:
            self.deliveries: list[Delivery] = []   # answered 2xx (keep="deliveries")
            self.refused: list[Delivery] = []      # answered otherwise (keep="deliveries")
            self.arrivals: list[tuple] = []        # keep="arrivals"
            self.counts: collections.Counter = collections.Counter()
            self.bytes = 0
            self._endpoints: dict[str, list] = {}  # path -> [requests, ids, first, last]

    # -- on the loop's thread ---------------------------------------------------------

    def _received(self, transport, path: str, headers: dict, body: bytes,
                  at: float) -> None:
        d = Delivery(path, headers, body, at)
        status = self.status if isinstance(self.status, int) else self.status(d)
        d.status = status
        ok = 200 <= status < 300
        kind = d.type
        with self.lock:
            self.counts["requests"] += 1
            self.bytes += len(body)
            stats = self._endpoints.get(path)
            if stats is None:
                stats = self._endpoints[path] = [0, set(), at, at]
            stats[0] += 1
            stats[1].add(headers.get("webhook-id"))
            stats[3] = at
            if d.json is None:
                self.counts["unparsed"] += 1
            if not ok:
                self.counts["refused"] += 1
            elif kind == CONFIRMATION:
                self.counts["confirmations"] += 1
            else:
                self.counts["changes"] += 1
            if self.keep == "deliveries":
                (self.deliveries if ok else self.refused).append(d)
            elif self.keep == "arrivals":
                data = d.data
                self.arrivals.append((path, kind, data.get("resource_type"), data.get("id"),
                                      data.get("version"), data.get("project_id"), at))
        transport.write(_answer(status))
        if ok and self.confirm and kind == CONFIRMATION:
            url = d.data.get("confirm_url")
            if url:                              # after the answer, as an endpoint would
                threading.Thread(target=self._visit, args=(url,), daemon=True).start()

    def _visit(self, url: str) -> None:
        import requests
        try:
            ok = requests.get(url, timeout=30).ok
        except requests.RequestException:
            ok = False
        if ok:
            with self.lock:
                self.counts["confirmed"] += 1

    # -- for the caller -----------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.counts["requests"]

    def changes(self) -> list[Delivery]:
        """The changes answered 2xx, in arrival order (keep="deliveries")."""
        with self.lock:
            return [d for d in self.deliveries if not d.confirmation]

    def confirmations(self) -> list[Delivery]:
        """Every confirmation request, whatever it was answered (keep="deliveries")."""
        with self.lock:
            return [d for d in self.deliveries + self.refused if d.confirmation]

    def take_arrivals(self) -> list[tuple]:
        """The arrivals since the last call (keep="arrivals"), then forgets them."""
        with self.lock:
            taken, self.arrivals = self.arrivals, []
        return taken

    def summary(self) -> dict:
        """Totals, and per endpoint: requests, distinct ``webhook-id`` values, first
        and last arrival."""
        with self.lock:
            endpoints = {p: {"requests": s[0], "distinct_ids": len(s[1]), "first": s[2],
                             "last": s[3]} for p, s in self._endpoints.items()}
            counts, size = dict(self.counts), self.bytes
        requests = counts.get("requests", 0)
        return {"requests": requests, "unparsed": counts.get("unparsed", 0),
                "changes": counts.get("changes", 0),
                "confirmations": counts.get("confirmations", 0),
                "refused": counts.get("refused", 0), "confirmed": counts.get("confirmed", 0),
                "mean_body_bytes": round(size / requests) if requests else 0,
                "endpoints": endpoints,
                "duplicates": sum(e["requests"] - e["distinct_ids"] for e in endpoints.values()),
                "first": min((e["first"] for e in endpoints.values()), default=None),
                "last": max((e["last"] for e in endpoints.values()), default=None)}

    def stop(self) -> None:
        """Stop listening and close every connection (from any thread but the one
        serving)."""
        def close() -> None:
            self._server.close()
            for transport in list(self._transports):
                transport.close()
            self._loop.call_soon(self._loop.stop)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)


class _Connection(asyncio.Protocol):
    """One client's keep-alive connection: requests parsed as they arrive."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.buf = bytearray()

    def connection_made(self, transport):
        self.transport = transport
        self.receiver._transports.add(transport)

    def connection_lost(self, exc):
        self.receiver._transports.discard(self.transport)

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
                self.transport.write(_BAD)
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return                           # the rest of the body is on its way
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.receiver._received(self.transport, path, headers, body, time.monotonic())
