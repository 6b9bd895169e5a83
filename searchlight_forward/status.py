"""GET /status: a long-running process's counters as JSON, for operators and probes;
GET /metrics: the same counters for Prometheus (when the process gives a registry)."""
from __future__ import annotations

import http.server
import json
import logging
import threading
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LOG = logging.getLogger(__name__)


class StatusServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], dict],
                 metrics: CollectorRegistry | None = None):
        snapshot_fn = snapshot

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/metrics" and metrics is not None:
                    body, kind = generate_latest(metrics), CONTENT_TYPE_LATEST
                elif path in ("/status", ""):
                    body = json.dumps(snapshot_fn(), indent=2, default=str).encode()
                    kind = "application/json"
                else:
                    self.send_error(404, "try /status" + (" or /metrics" if metrics else ""))
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the process log for the process
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
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
