"""A long-running process's HTTP endpoints for operators and probes:

GET /status    every counter as JSON;
GET /metrics   the same counters for Prometheus (when the process gives a registry);
GET /healthz   liveness: 200, or 503 with the problems (restart the process);
GET /readyz    readiness: 200, or 503 with the problems (its peers, its progress).
"""
from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LOG = logging.getLogger(__name__)


def health(check: Callable[[], list[str]]) -> tuple[int, str]:
    """(HTTP status, JSON body) of a liveness or readiness check: 200 with no
    problems, else 503 listing them (a check that raises is a problem too)."""
    try:
        problems = check()
    except Exception as exc:  # noqa: BLE001 - a failing check fails
        problems = [f"check failed: {type(exc).__name__}: {exc}"[:300]]
    body = json.dumps({"status": "failing" if problems else "ok", "problems": problems})
    return (503 if problems else 200), body + "\n"


class StatusServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], dict],
                 metrics: CollectorRegistry | None = None,
                 live: Callable[[], list[str]] = list,
                 ready: Callable[[], list[str]] = list,
                 sock: socket.socket | None = None):
        """Serve on ``host:port``, or on ``sock``, a listening socket bound already
        (by a cotyledon master for its worker: ``worker.StatusPorts``)."""
        snapshot_fn = snapshot
        checks = {"/healthz": live, "/readyz": ready}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0].rstrip("/")
                code = 200
                if path == "/metrics" and metrics is not None:
                    body, kind = generate_latest(metrics), CONTENT_TYPE_LATEST
                elif path in ("/status", ""):
                    body = json.dumps(snapshot_fn(), indent=2, default=str).encode()
                    kind = "application/json"
                elif path in checks:
                    code, text = health(checks[path])
                    body, kind = text.encode(), "application/json"
                else:
                    self.send_error(404, "try /status, /metrics, /healthz or /readyz")
                    return
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the process log for the process
                pass

        if sock is None:
            self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        else:
            self.httpd = http.server.ThreadingHTTPServer(sock.getsockname()[:2], Handler,
                                                         bind_and_activate=False)
            self.httpd.socket.close()
            self.httpd.socket = sock
            self.httpd.server_address = sock.getsockname()[:2]
            self.httpd.server_name, self.httpd.server_port = self.httpd.server_address
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="status")

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/status"

    def start(self) -> None:
        self.thread.start()
        LOG.info("status at %s", self.url)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
