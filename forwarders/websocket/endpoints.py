"""The WebSocket server's plain HTTP on the same port: ``/status``, ``/metrics``,
``/healthz`` and ``/readyz``, a pointer for anything else that is not a WebSocket
handshake, and the refusal of handshakes beyond ``max_unauthenticated``
(``websockets``' ``process_request``). The live tables are in Horizon
(horizon-plugin/, docs/horizon.md)."""
from __future__ import annotations

import collections
import http
import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection

from forwarders.websocket import protocol
from searchlight_forward import metrics
from searchlight_forward.status import health

NOT_A_HANDSHAKE = ("this port speaks WebSocket (docs/websocket.md) and answers /status, "
                   "/metrics, /healthz and /readyz; the live tables are in Horizon "
                   "(docs/horizon.md)\n")


def _typed(response, content_type: str):
    # connection.respond says text/plain; Headers is a multidict
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


class Endpoints:
    """What one ``WebSocketServer`` answers over plain HTTP."""

    def __init__(self, server):
        self.server = server
        self.registry = metrics.registry(self.metrics)

    def process_request(self, connection: ServerConnection, request):
        server = self.server
        path = request.path.split("?", 1)[0]
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if upgrade and server.unauthenticated >= server.settings.max_unauthenticated:
            # Sockets that never authenticate cost a file descriptor each until
            # auth_timeout: refuse more before the handshake.
            server.counters.add("refused_unauthenticated")
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                          "too many connections awaiting "
                                          "authentication; retry later\n")
            response.headers["Retry-After"] = str(max(1, int(server.settings.auth_timeout)))
            return response
        if path == "/status":
            return _typed(connection.respond(http.HTTPStatus.OK,
                                             json.dumps(self.stats()) + "\n"),
                          "application/json")
        if path == "/metrics":
            return _typed(connection.respond(http.HTTPStatus.OK,
                                             generate_latest(self.registry).decode()),
                          CONTENT_TYPE_LATEST)
        if path in ("/healthz", "/readyz"):
            code, body = health(self.liveness if path == "/healthz" else self.readiness)
            return _typed(connection.respond(http.HTTPStatus(code), body),
                          "application/json")
        if not upgrade:
            return connection.respond(http.HTTPStatus.NOT_FOUND, NOT_A_HANDSHAKE)
        return None

    def liveness(self) -> list[str]:
        return [] if self.server.feed.alive() else ["the change feed's thread has stopped"]

    def readiness(self) -> list[str]:
        """Answered from the feed's last poll (never a request from the event loop):
        it knows where the log ends and its last read of Elasticsearch succeeded."""
        feed = self.server.feed
        if not feed.located:
            return ["Elasticsearch: where the change log ends is not known yet"]
        if feed.last_error:
            return [f"Elasticsearch: {feed.last_error}"]
        return []

    def metrics(self) -> list:
        """Prometheus families: connections by state, closes by code (both bounded
        sets), the server's, the feed's and the token validator's counters."""
        server = self.server
        states = collections.Counter(c.session.state.value for c in list(server.clients))
        out = [metrics.gauge("websocket", "open_connections", "open WebSocket connections",
                             len(server.clients)),
               metrics.gauge("websocket", "open_unauthenticated",
                             "open connections that have not authenticated yet",
                             server.unauthenticated)]
        # Known states and close codes at 0 before they occur (alerts see 0).
        out.append(metrics.labelled_gauge(
            "websocket", "open_connections_by_state", "open connections by protocol state",
            "state", states, [s.value for s in protocol.State]))
        out.append(metrics.by_label(
            "websocket", "closes", "connections closed by the server, by close code",
            "code", server.closes, (
                protocol.GOING_AWAY, protocol.MESSAGE_TOO_BIG, protocol.INTERNAL_ERROR,
                protocol.TRY_AGAIN_LATER, protocol.AUTH_FAILED, protocol.PROTOCOL_VIOLATION,
                protocol.TOKEN_EXPIRED, protocol.TOKEN_REVOKED, protocol.TOO_SLOW,
                protocol.RATE_LIMITED)))
        out += metrics.counters("websocket", dict(server.counters), "WebSocket server counter")
        out += metrics.counters("websocket_feed", dict(server.feed.counters), "change feed")
        out += metrics.counters("websocket_entries", dict(server.unhandled.counters),
                                "change-log entries not handed on (each a dead letter)",
                                known=("unhandled", "recorded", "record_failures"))
        out += metrics.counters("websocket_validator", server.validator.stats(),
                                "token validator")
        out += server.validator.metric_families()
        return out

    def stats(self) -> dict:
        server = self.server
        states = collections.Counter(c.session.state.value for c in list(server.clients))
        position = server.dispatched()
        return {"group": server.group, "connections": len(server.clients),
                "unauthenticated": server.unauthenticated,
                "states": dict(states),
                "closes": {str(k): v for k, v in server.closes.items()},
                "counters": dict(server.counters), "feed": server.feed.stats(),
                "position": str(position) if position else None,
                "doorbell": None if server.doorbell is None else server.doorbell.stats(),
                "filter_failures": server.renderer.failures,
                "unhandled_entries": dict(server.unhandled.counters),
                "validator": server.validator.stats()}
