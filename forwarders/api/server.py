"""The HTTP server ``searchlight-forward-api`` runs the API on: waitress.

Why waitress: it is pure Python (pip installs it, nothing to compile; uWSGI needs a C
build), it serves inside the command's own process (no separate process manager to
run and configure, as uWSGI's master is), it is what this repository already runs
Keystone on (scripts/keystone_launcher.py), and its event loop reads every request's
head and body before a worker thread sees it, so a slow client holds a socket, never
a thread. Under uWSGI or mod_wsgi, serve ``forwarders.cmd.api:init_application`` instead: that
server's limits then apply.

The limits are [subscriptions] options (forwarders/subscriptions/opts.py), handed to
waitress's own settings:

    api_max_connections  -> connection_limit
    api_max_body_size    -> max_request_body_size (+ 1: waitress refuses a body of
                            exactly its limit; the option is the largest accepted)
    api_max_header_size  -> max_request_header_size (request line and headers)
    api_client_timeout   -> channel_timeout (an idle connection is closed), and the
                            whole-request deadline below
    api_threads          -> threads

Where waitress does not give the answer a client must get (tests/functional/
test_api_hostile.py, bench/faults.py ``hostile_api``), a small subclass of one of
the classes waitress lets a server replace (``parser_class``, ``channel_class``):

- its own error answers (400, 413, 431, 501) are plain text: here they have the
  API's JSON error shape and are counted with the API's answers;
- a request line alone over the header limit is 414 (waitress: 431);
- more than ``MAX_HEADERS`` header fields is 431 (waitress has no count limit; this
  is http.client's and http.server's);
- ``channel_timeout`` counts inactivity, so a client trickling a byte a second
  (slowloris) would never be cut off, and one that goes silent in the middle of its
  request would be closed without an answer: a request not received whole within
  ``api_client_timeout`` of its first byte is answered 408 and the connection closed;
- at ``connection_limit`` waitress stops accepting, and new clients wait in the
  listen backlog without an answer: here the connection kept alive longest since
  its last answer is closed to make room, and if none is idle the new client is
  answered 503 at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import time
from typing import Callable

import webob.exc
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import Error, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from searchlight_forward.status import Served

LOG = logging.getLogger(__name__)

MAX_HEADERS = 100


def error_body(code: int, message: str) -> bytes:
    """The API's error shape (docs/subscriptions.md), for answers made here."""
    return json.dumps({"error": {"code": code, "title": webob.exc.status_map[code].title,
                                 "message": message}}).encode()


class JSONError(Error):
    """An answer waitress makes itself (the request never reaches the application),
    in the API's JSON shape; counted by ``count`` when it is sent."""

    count: Callable[[int], None] = staticmethod(lambda code: None)

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.reason = code, webob.exc.status_map[code].title

    def to_response(self, ident=None):
        self.count(self.code)
        return (f"{self.code} {self.reason}", [("Content-Type", "application/json")],
                error_body(self.code, self.body))


class _Parser(HTTPRequestParser):
    """waitress's request parser, with the answers above."""

    timeout: float          # api_client_timeout (set per server)
    max_body: int           # api_max_body_size
    error_class = JSONError

    def __init__(self, adj):
        super().__init__(adj)
        self.deadline = time.monotonic() + self.timeout

    def received(self, data):
        if self.completed:
            return 0
        if time.monotonic() > self.deadline:
            self._fail(408, "the request did not arrive in time")
            return len(data)
        in_head, before = not self.headers_finished, self.header_plus
        consumed = super().received(data)
        error = self.error
        if isinstance(error, RequestHeaderFieldsTooLarge) and b"\n" not in before + data:
            self._fail(414, "the request line is longer than the most accepted "
                            f"({self.adj.max_request_header_size} bytes)")
        elif isinstance(error, RequestHeaderFieldsTooLarge):
            self._fail(431, "the request's head is larger than the most accepted "
                            f"({self.adj.max_request_header_size} bytes)")
        elif isinstance(error, RequestEntityTooLarge):
            size = (f"more than {self.max_body}" if self.chunked
                    else str(self.content_length))
            self._fail(413, f"the body has {size} bytes; the most accepted is "
                            f"{self.max_body}")
        elif error is not None and not isinstance(error, JSONError):
            self._fail(error.code, error.body)
        elif in_head and self.headers_finished and len(self.headers) > MAX_HEADERS:
            self._fail(431, f"more than {MAX_HEADERS} header fields")
        # After an error the connection closes: the rest is not another request.
        return len(data) if self.error is not None else consumed

    def _fail(self, code: int, message: str) -> None:
        self.error = self.error_class(code, message)
        self.completed = True


class _Channel(HTTPChannel):
    parser_class = _Parser
    answered = False        # has answered a request: idle now, it is keep-alive

    def service(self):
        super().service()
        self.answered = True

    def idle(self) -> bool:
        """Kept alive after an answer, with no request in or out now."""
        return (self.answered and not self.requests and self.request is None
                and not self.total_outbufs_len and not self.will_close
                and not self.close_when_flushed)


class _Server(TcpWSGIServer):
    """waitress's TCP server, answering 503 beyond ``connection_limit``."""

    channel_class = _Channel
    refused = 0
    too_many = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")

    def readable(self):
        # As waitress's, but accepting at the limit too (handle_accept refuses).
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting

    def maintenance(self, now):
        # A client silent in the middle of its request past its deadline: 408 (the
        # parser answers 408 to any byte after its deadline: give it one), before
        # waitress closes idle connections (channel_timeout) without an answer.
        late = time.monotonic()
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and not request.completed and late > request.deadline:
                channel.received(b"\0")
        super().maintenance(now)

    def handle_accept(self):
        if len(self.active_channels) >= self.adj.connection_limit:
            # The connection kept alive longest without a request makes room: clients
            # that keep connections open after their answer (a pool, a leak) must
            # not lock others out until channel_timeout. Connections in the middle
            # of a request, or that have sent none yet, are not closed.
            idle = [c for c in self.active_channels.values() if c.idle()]
            if idle:
                min(idle, key=lambda c: c.last_activity).handle_close()
        if len(self.active_channels) < self.adj.connection_limit:
            return super().handle_accept()
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn = accepted[0]
        body = error_body(503, "too many connections; try again")
        with contextlib.suppress(OSError):     # this is the loop: never wait here
            conn.setblocking(False)
            conn.send(self.too_many % (len(body), body))
            conn.shutdown(socket.SHUT_WR)
        conn.close()
        self.refused += 1


class APIServer(Served):
    """The application on waitress (``start`` runs it in a thread), with the limits
    of ``conf.subscriptions``; ``count(code)`` is told of every answer waitress
    makes itself."""

    def __init__(self, app, host: str, port: int, conf,
                 count: Callable[[int], None] | None = None):
        s = conf.subscriptions
        errors = type("APIError", (JSONError,), {
            "count": staticmethod(count or (lambda code: None))})
        parser = type("Parser", (_Parser,), {"timeout": s.api_client_timeout,
                                             "max_body": s.api_max_body_size,
                                             "error_class": errors})
        channel = type("Channel", (_Channel,), {"parser_class": parser})
        server = type("Server", (_Server,), {"channel_class": channel})
        idle = max(1, math.ceil(s.api_client_timeout))
        adj = Adjustments(
            host=host, port=port, threads=s.api_threads,
            connection_limit=s.api_max_connections,
            max_request_body_size=s.api_max_body_size + 1,
            max_request_header_size=s.api_max_header_size,
            channel_timeout=idle, cleanup_interval=min(idle, 30),
            ident="searchlight-forward-api", clear_untrusted_proxy_headers=True)
        self.httpd = server(app, adj=adj)
        super().__init__(self.httpd, "api")

    def connections(self) -> dict:
        """Connections open now and refused at the cap so far."""
        return {"open": len(self.httpd.active_channels), "refused": self.httpd.refused}
