"""The API's operator endpoints, as every other process has them (README, "Operating
it"): ``/status`` (JSON counters), ``/metrics`` (prometheus_client's WSGI app),
``/healthz`` and ``/readyz`` (``searchlight_forward.status``'s JSON answers). A WSGI middleware, outermost: these answer without a token, before
the body limit and keystonemiddleware, like the other processes' status ports; every
other request goes on and its answer is counted (by status code and duration).
"""
from __future__ import annotations

import json
import time
from typing import Callable

from prometheus_client import make_wsgi_app

from searchlight_forward import metrics, search
from searchlight_forward.counters import Counters
from searchlight_forward.logs import describe
from searchlight_forward.status import answer, health

# The status codes the API answers (app.py, wsgi.py, keystonemiddleware, and waitress
# in server.py): each is exported at 0 before it is first answered, so an alert on 5xx
# sees 0, not no data.
STATUS_CODES = (200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 410, 411, 413, 414,
                415, 431, 500, 501, 503)
ROUTES = ("/status", "/metrics", "/healthz", "/readyz")


class StatusRoutes:
    """WSGI middleware: the operator endpoints, and counters of everything else.

    ``connections`` (set by ``wsgi.serve``) reports waitress's connection counts;
    under uWSGI or mod_wsgi there is none. ``responses.add`` is also told of the
    answers waitress makes itself (``server.JSONError``)."""

    def __init__(self, app, es: search.Client | None = None):
        self._app = app
        self.es = es
        self.responses = Counters()
        self.connections: Callable[[], dict] | None = None
        self.started = time.time()
        self.seconds = metrics.Histogram(
            metrics.metric_name("api", "request_seconds"),
            "time to answer one API request (token validation included)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=None)
        self.registry = metrics.registry(self.metrics)
        self.metrics_app = make_wsgi_app(self.registry)

    # -- WSGI -------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        if path in ROUTES and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._answer(path, environ, start_response)
        begun = time.monotonic()
        seen: list[int] = []

        def counting_start(status, headers, exc_info=None):
            seen.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)
        try:
            return self._app(environ, counting_start)
        finally:
            self.responses.add(seen[-1] if seen else 500)
            self.seconds.observe(time.monotonic() - begun)

    def _answer(self, path: str, environ, start_response):
        if path == "/metrics":
            return self.metrics_app(environ, start_response)
        if path == "/status":
            body = (json.dumps(self.stats(), indent=2) + "\n").encode()
            return answer(start_response, 200, body)
        code, text = health(self.liveness if path == "/healthz" else self.readiness)
        return answer(start_response, code, text.encode())

    # -- what they say ----------------------------------------------------------------

    def liveness(self) -> list[str]:
        return []          # answering at all is being alive: the server has no loop

    def readiness(self) -> list[str]:
        """Elasticsearch answers (subscriptions, search and feeds all read it)."""
        if self.es is None:
            return []
        try:
            search.reachable(self.es)
        except Exception as exc:  # noqa: BLE001 - any failure: not ready
            return [f"Elasticsearch: {describe(exc)}"]
        return []

    def stats(self) -> dict:
        responses = {str(code): n for code, n in sorted(self.responses.items())}
        return {"api": {"requests": sum(self.responses.values()),
                        "responses": responses,
                        "connections": self.connections() if self.connections else None,
                        "started_at": self.started}}

    def metrics(self) -> list:
        out = [metrics.by_label("api", "responses", "API answers, by HTTP status code",
                                "code", self.responses, STATUS_CODES)]
        out += list(self.seconds.collect())
        if self.connections is not None:
            conns = self.connections()
            out.append(metrics.gauge("api", "open_connections",
                                     "connections being served now", conns["open"]))
            out += metrics.counters("api", {"refused_connections": conns["refused"]},
                                    "connections answered 503 at the connection cap")
        return out
