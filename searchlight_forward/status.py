"""A long-running process's HTTP endpoints for operators and probes:

GET /status    every counter as JSON;
GET /metrics   the same counters for Prometheus (prometheus_client's WSGI app, when the
               process gives a registry);
GET /healthz   liveness: 200, or 503 with the problems (restart the process);
GET /readyz    readiness: 200, or 503 with the problems (its peers, its progress).

A small WSGI application on waitress (the server searchlight-forward-api runs on too,
docs/operations.md), in a thread of the process.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Callable

import waitress.server
from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore

LOG = logging.getLogger(__name__)

# Worker threads of a status server: probes and scrapes are few and quick.
STATUS_THREADS = 2


def health(check: Callable[[], list[str]]) -> tuple[int, str]:
    """(HTTP status, JSON body) of a liveness or readiness check: 200 with no
    problems, else 503 listing them (a check that raises is a problem too)."""
    try:
        problems = check()
    except Exception as exc:  # noqa: BLE001 - a failing check fails
        problems = [f"check failed: {type(exc).__name__}: {exc}"[:300]]
    body = json.dumps({"status": "failing" if problems else "ok", "problems": problems})
    return (503 if problems else 200), body + "\n"


def answer(start_response, code: int, body: bytes, kind: str = "application/json"):
    """A complete WSGI answer (``code`` 200, 404 or 503)."""
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[code]
    start_response(f"{code} {reason}", [("Content-Type", kind),
                                        ("Content-Length", str(len(body))),
                                        ("Cache-Control", "no-store")])
    return [body]


class StatusApp:
    """The endpoints as a WSGI application."""

    def __init__(self, snapshot: Callable[[], dict],
                 metrics: CollectorRegistry | None = None,
                 live: Callable[[], list[str]] = list,
                 ready: Callable[[], list[str]] = list):
        self.snapshot = snapshot
        self.metrics = make_wsgi_app(metrics) if metrics is not None else None
        self.checks = {"/healthz": live, "/readyz": ready}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return answer(start_response, 405, b'{"error": "use GET"}\n')
        if path == "/metrics" and self.metrics is not None:
            return self.metrics(environ, start_response)
        if path in ("/status", ""):
            body = json.dumps(self.snapshot(), indent=2, default=str).encode()
            return answer(start_response, 200, body)
        if path in self.checks:
            code, text = health(self.checks[path])
            return answer(start_response, code, text.encode())
        return answer(start_response, 404, b'{"error": "try /status, /metrics, '
                                            b'/healthz or /readyz"}\n')


class Served:
    """A waitress server run by a daemon thread of this process. ``stop`` closes
    it from waitress's own loop (its trigger), then ends its worker threads."""

    def __init__(self, server: waitress.server.BaseWSGIServer, name: str):
        self.server = server
        self.host, self.port = server.effective_host, int(server.effective_port)
        self.thread = threading.Thread(target=server.run, daemon=True, name=name)

    def start(self) -> "Served":
        self.thread.start()
        return self

    def stop(self) -> None:
        """Idempotent; a server never started is closed here."""
        server, self.server = self.server, None
        if server is None:
            return
        if self.thread.is_alive():
            # close_all in the loop's thread (its trigger's thunks): the loop ends
            # once its map is empty. Under the trigger's lock, which the loop holds
            # to run thunks: another thread's pull could wake it, and close_all
            # close the trigger's pipe, before this pull writes to it.
            trigger = server.trigger
            with trigger.lock:
                trigger.thunks.append(lambda: wasyncore.close_all(server._map))
                trigger.pull_trigger()
            self.thread.join(10)
        else:
            wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown(timeout=5)


class StatusServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], dict],
                 metrics: CollectorRegistry | None = None,
                 live: Callable[[], list[str]] = list,
                 ready: Callable[[], list[str]] = list,
                 sock: socket.socket | None = None):
        """Serve on ``host:port``, or on ``sock``, a listening socket bound already
        (by a cotyledon master for its worker: ``worker.StatusPorts``; waitress
        serves it as it is, ``sockets=``)."""
        app = StatusApp(snapshot, metrics, live, ready)
        where = {"sockets": [sock]} if sock is not None else {
            "host": host or "0.0.0.0", "port": port}
        # poll(), not select(): a delivery process with thousands of subscriptions
        # holds more than 1,024 descriptors (a keep-alive connection per endpoint),
        # and select() fails on any above that.
        server = waitress.server.create_server(
            app, threads=STATUS_THREADS, ident="searchlight-forward",
            asyncore_use_poll=True, **where)
        self.served = Served(server, "status")
        self.httpd = server

    @property
    def url(self) -> str:
        return f"http://{self.served.host}:{self.served.port}/status"

    def start(self) -> None:
        self.served.start()
        LOG.info("status at %s", self.url)

    def stop(self) -> None:
        self.served.stop()
