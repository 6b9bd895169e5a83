"""The subscriptions API: JSON over HTTP at ``/v1/subscriptions`` (a WSGI app).

It runs behind keystonemiddleware's ``auth_token`` (``api.wsgi`` puts it there),
which validates the caller's token and replaces the ``X-User-Id``,
``X-Project-Id``, ``X-Roles`` and ``X-Identity-Status`` headers with Keystone's
answer; ``delay_auth_decision`` lets through only the routes that need no token
(``/``, ``/healthz`` and the confirmation link, whose token is its secret). Every
other route asks oslo.policy (``subscriptions.policy``) with the subscription's
project as the target. Answers to callers who may not see a subscription are 404,
as if it did not exist (no probing of other projects' ids).

Routes (docs/subscriptions.md has the reference)::

    GET    /v1/subscriptions[?all_projects=true][&limit=N]
    POST   /v1/subscriptions
    GET    /v1/subscriptions/{id}
    PATCH  /v1/subscriptions/{id}
    DELETE /v1/subscriptions/{id}
    GET    /v1/subscriptions/{id}/secret
    POST   /v1/subscriptions/{id}/secret/rotate
    GET|POST /v1/subscriptions/{id}/confirm?token=...
    POST   /v1/search         (live search's first page and cursor: docs/websocket.md)
    GET    /v1/feeds/{id}/{token}[?before=...], GET /v1/feeds?resource_type=...
           (Atom: docs/feeds.md)
    POST   /v1/websub         (the WebSub hub: docs/websub.md)
"""
from __future__ import annotations

import dataclasses
import hmac
import io
import json
import logging
import re
import time
from typing import Callable, Sequence
from urllib.parse import urlsplit

import webob
import webob.dec
import webob.exc
from oslo_policy import policy as oslo_policy

from forwarders.feeds import tokens as feed_tokens
from forwarders.livesearch.query import QueryError
from forwarders.sinks import destinations
from forwarders.sinks.destinations import DestinationRefused, Network
from forwarders.sinks.syslog.url import parse_url
from forwarders.subscriptions import model
from forwarders.subscriptions.model import (ACTIVE, FEED, PENDING, SYSLOG, WEBHOOK,
                                            Caller, Invalid, Rules, Secret, Subscription)
from forwarders.subscriptions.store import Conflict, Stored, SubscriptionStore
from searchlight_forward.changelog.snapshot import TooBroad
from searchlight_forward.model.documents import ADMIN, USER

LOG = logging.getLogger(__name__)

ROUTE = re.compile(r"^/v1/subscriptions(?:/(?P<id>[0-9a-f-]{36})"
                   r"(?P<rest>/secret|/secret/rotate|/confirm)?)?/?$")


@dataclasses.dataclass(frozen=True)
class Settings:
    rules: Rules
    allowed_networks: Sequence[Network] = ()
    allow_http: bool = False
    allow_plain_syslog: bool = False
    max_per_project: int = 100
    secret_overlap: float = 86400.0


def _error(status: int, message: str, field: str | None = None) -> webob.Response:
    title = webob.exc.status_map[status].title
    body = {"error": {"code": status, "title": title, "message": message}}
    if field:
        body["error"]["field"] = field
    return webob.Response(json_body=body, status=status, charset="utf-8")


def _json(data, status: int = 200) -> webob.Response:
    return webob.Response(json_body=data, status=status, charset="utf-8")


class BodyLimit:
    """WSGI middleware, outermost (before ``auth_token``): a request body larger than
    ``max_size`` bytes is refused with 413 before any of it is read or its token is
    validated; a body within the limit is read here, whole, so that nothing behind
    reads from the client's socket (a client too slow to send it gets 408)."""

    def __init__(self, app, max_size: int):
        self._app = app                 # as auth_token names what it wraps
        self.max_size = max_size

    def __call__(self, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "Content-Length is not a number")(environ, start_response)
        if length < 0:
            return _error(400, "Content-Length is negative")(environ, start_response)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length > self.max_size:
            return _error(413, f"the body has {length} bytes; the most accepted is "
                          f"{self.max_size}")(environ, start_response)
        if chunked:
            return _error(411, "send a Content-Length (chunked bodies are not "
                          "accepted)")(environ, start_response)
        body = b""
        if length:
            try:
                body = _read(environ["wsgi.input"], length)
            except OSError:             # the server's deadline (TimeoutError) or a reset
                return _error(408, "the request body did not arrive in time")(
                    environ, start_response)
            if len(body) < length:
                return _error(400, f"the body ended after {len(body)} of {length} "
                              "bytes")(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self._app(environ, start_response)


def _read(stream, length: int) -> bytes:
    parts, left = [], length
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class Refused(Exception):
    """An answer other than success: (status, message, field)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class SubscriptionsAPI:
    def __init__(self, store: SubscriptionStore, enforcer: oslo_policy.Enforcer,
                 settings: Settings, heads: Callable[[], dict],
                 resolve: Callable = destinations.resolve, searcher=None, feeds=None,
                 hub=None):
        self.searcher = searcher        # forwarders.livesearch.endpoint.Searcher or None
        self.feeds = feeds              # forwarders.feeds.api.Feeds or None
        self.hub = hub                  # forwarders.feeds.websub.Hub or None
        self.store = store
        self.enforcer = enforcer
        self.settings = settings
        self.heads = heads              # () -> {group: position dict}: the log's end now
        self.resolve = resolve

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        try:
            return self._route(req)
        except Refused as exc:
            return _error(exc.status, exc.message, exc.field)
        except Invalid as exc:
            return _error(400, exc.message, exc.field)
        except Conflict:
            return _error(409, "the subscription changed meanwhile; read it and try again")
        except Exception:  # noqa: BLE001 - a 500 with no detail; the log has it
            LOG.exception("%s %s failed", req.method, req.path)
            return _error(500, "internal error; the service's log has the details")

    # -- routing -------------------------------------------------------------------------

    def _route(self, req: webob.Request) -> webob.Response:
        if req.path in ("/", ""):
            return _json({"versions": [{"id": "v1", "status": "CURRENT",
                                        "links": [{"rel": "self", "href": "/v1/"}]}]})
        if req.path == "/healthz":
            return _json({"status": "ok"})
        if self.feeds is not None and req.path.startswith("/v1/feeds"):
            return self.feeds.handle(req, self._caller if req.headers.get(
                "X-Identity-Status") == "Confirmed" else None)
        if self.hub is not None and req.path.rstrip("/") == "/v1/websub":
            return self.hub.handle(req)
        if req.path.rstrip("/") == "/v1/search":
            if req.method != "POST":
                raise Refused(405, "use POST")
            return self.search(req, self._caller(req))
        match = ROUTE.match(req.path)
        if match is None:
            raise Refused(404, f"no such resource: {req.path}")
        sub_id, rest = match.group("id"), match.group("rest")
        if rest == "/confirm":
            if req.method not in ("GET", "POST"):
                raise Refused(405, "use GET or POST")
            return self.confirm(sub_id, req.params.get("token", ""))
        caller = self._caller(req)
        if sub_id is None:
            handlers = {"GET": self.list, "POST": self.create}
        elif rest is None:
            handlers = {"GET": self.show, "PATCH": self.update, "DELETE": self.delete}
        elif rest == "/secret":
            handlers = {"GET": self.secret}
        else:
            handlers = {"POST": self.rotate}
        handler = handlers.get(req.method)
        if handler is None:
            raise Refused(405, f"{req.method} is not allowed here; use "
                          f"{', '.join(handlers)}")
        return handler(req, caller) if sub_id is None else handler(req, caller, sub_id)

    def _caller(self, req: webob.Request) -> Caller:
        if req.headers.get("X-Identity-Status") != "Confirmed":
            raise Refused(401, "a valid Keystone token is required (X-Auth-Token)")
        roles = tuple(r.strip() for r in req.headers.get("X-Roles", "").split(",")
                      if r.strip())
        caller = Caller(user_id=req.headers.get("X-User-Id", ""),
                        project_id=req.headers.get("X-Project-Id", ""), roles=roles)
        return dataclasses.replace(caller, admin_copy=self._allowed(
            "subscriptions:admin_copy", caller, {"project_id": caller.project_id}))

    def _allowed(self, rule: str, caller: Caller, target: dict) -> bool:
        creds = {"user_id": caller.user_id, "project_id": caller.project_id,
                 "roles": list(caller.roles)}
        return self.enforcer.authorize(rule, target, creds)

    def _enforce(self, rule: str, caller: Caller, project_id: str | None,
                 hidden: bool = False) -> None:
        """403 (404 where the subscription's existence is not the caller's business)."""
        if not self._allowed(rule, caller, {"project_id": project_id}):
            if hidden:
                raise Refused(404, "no such subscription")
            raise Refused(403, f"policy does not allow {rule}")

    def _load(self, caller: Caller, sub_id: str, rule: str) -> Stored:
        stored = self.store.get(sub_id)
        if stored is None:
            raise Refused(404, "no such subscription")
        project = stored.subscription.project_id
        # Those who may not even read it learn nothing; readers get 403 on writes.
        self._enforce("subscriptions:get", caller, project, hidden=True)
        self._enforce(rule, caller, project)
        return stored

    # -- handlers ----------------------------------------------------------------------

    def search(self, req, caller: Caller) -> webob.Response:
        if self.searcher is None:
            raise Refused(404, "search is not enabled on this server")
        body = self._body(req)
        all_projects = body.get("all_projects", False) if isinstance(body, dict) else False
        if not isinstance(all_projects, bool):
            raise Refused(400, "must be true or false", "all_projects")
        self._enforce("search:all_projects" if all_projects else "search:query", caller,
                      None if all_projects else caller.project_id)
        role = ADMIN if caller.admin_copy else USER
        try:
            return _json(self.searcher.search(body, role,
                                              None if all_projects else caller.project_id))
        except QueryError as exc:
            raise Refused(400, exc.message, exc.path) from None
        except TooBroad as exc:
            raise Refused(400, str(exc), "query") from None

    def list(self, req, caller: Caller) -> webob.Response:
        all_projects = req.params.get("all_projects", "").lower() in ("1", "true", "yes")
        try:
            limit = min(1000, max(1, int(req.params.get("limit", 1000))))
        except ValueError:
            raise Refused(400, "limit must be a number", "limit") from None
        if all_projects:
            self._enforce("subscriptions:list:all_projects", caller, None)
            found = self.store.listing(None, limit)
        else:
            project = req.params.get("project_id") or caller.project_id
            self._enforce("subscriptions:list", caller, project)
            found = self.store.listing(project, limit)
        return _json({"subscriptions": [model.public_view(s.subscription) for s in found]})

    def create(self, req, caller: Caller) -> webob.Response:
        sub = model.parse_create(self._body(req), caller, self.settings.rules)
        if sub.project_id is None:
            self._enforce("subscriptions:create:all_projects", caller, None)
        else:
            self._enforce("subscriptions:create", caller, sub.project_id)
            if self.store.count(sub.project_id) >= self.settings.max_per_project:
                raise Refused(409, f"the project has {self.settings.max_per_project} "
                              "subscriptions, the most allowed; delete one first")
        self._check_endpoint(sub)
        token = None
        if sub.protocol == FEED:
            token = model.new_token()
            sub = sub.replace(feed_token_hash=feed_tokens.token_hash(token))
        stored = self.store.create(sub)
        if sub.project_id is not None and \
                self.store.count(sub.project_id) > self.settings.max_per_project:
            # Creates running at once (in this process or another) all passed the
            # count above: each looks again now that its own is searchable, and gives
            # way if the project is over. The last one written always sees all the
            # others, so the cap holds (at worst several give way at once).
            self._withdraw(stored)
            raise Refused(409, f"the project has {self.settings.max_per_project} "
                          "subscriptions, the most allowed; delete one first")
        LOG.info("subscription %s created by user %s for project %s (%s %s)", sub.id,
                 caller.user_id, sub.project_id or "*", sub.protocol, sub.endpoint)
        view = model.public_view(stored.subscription)
        if sub.protocol == WEBHOOK:
            view["secret"] = sub.secrets[0].value     # shown once here; GET .../secret
        if token is not None:                         # shown once; rotate for another
            view["feed_url"] = self.feeds.feed_url(sub.id, token)
        resp = _json({"subscription": view}, 201)
        resp.location = f"/v1/subscriptions/{sub.id}"
        return resp

    def _withdraw(self, stored: Stored) -> None:
        for _ in range(5):
            try:
                self.store.delete(stored)
                return
            except KeyError:
                return
            except Conflict:        # the delivery service touched it meanwhile
                stored = self.store.get(stored.subscription.id)
                if stored is None:
                    return

    def show(self, req, caller: Caller, sub_id: str) -> webob.Response:
        stored = self._load(caller, sub_id, "subscriptions:get")
        return _json({"subscription": model.public_view(stored.subscription)})

    def update(self, req, caller: Caller, sub_id: str) -> webob.Response:
        body = self._body(req)
        stored = self._load(caller, sub_id, "subscriptions:update")
        changed = model.parse_update(body, stored.subscription, self.settings.rules)
        if changed.endpoint != stored.subscription.endpoint:
            self._check_endpoint(changed)
        try:
            stored = self.store.update(stored, changed)
        except KeyError:
            raise Refused(404, "no such subscription") from None
        return _json({"subscription": model.public_view(stored.subscription)})

    def delete(self, req, caller: Caller, sub_id: str) -> webob.Response:
        stored = self._load(caller, sub_id, "subscriptions:delete")
        try:
            self.store.delete(stored)
        except KeyError:
            raise Refused(404, "no such subscription") from None
        LOG.info("subscription %s deleted by user %s", sub_id, caller.user_id)
        return webob.Response(status=204)

    def secret(self, req, caller: Caller, sub_id: str) -> webob.Response:
        stored = self._load(caller, sub_id, "subscriptions:secret:get")
        return _json({"secrets": self._secrets(stored.subscription)})

    def rotate(self, req, caller: Caller, sub_id: str) -> webob.Response:
        body = self._body(req) if req.body else {}
        overlap = body.get("expire_previous_in", self.settings.secret_overlap)
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not (
                0 <= overlap <= 7 * 86400):
            raise Refused(400, "seconds, from 0 to 604800", "expire_previous_in")
        stored = self._load(caller, sub_id, "subscriptions:secret:rotate")
        sub = stored.subscription
        if sub.protocol == FEED:          # a new URL; the old one stops at once
            token = model.new_token()
            self.store.update(stored, sub.replace(
                feed_token_hash=feed_tokens.token_hash(token), updated_at=time.time()))
            return _json({"feed_url": self.feeds.feed_url(sub.id, token)})
        if sub.protocol != WEBHOOK:
            raise Refused(400, "only webhook subscriptions have secrets")
        now = time.time()
        kept = tuple(Secret(s.value, min(s.expires_at or now + overlap, now + overlap))
                     for s in sub.secrets if s.expires_at is None or s.expires_at > now)
        changed = sub.replace(secrets=(Secret(model.new_secret()),) + kept, updated_at=now)
        stored = self.store.update(stored, changed)
        return _json({"secrets": self._secrets(stored.subscription)})

    def confirm(self, sub_id: str | None, token: str) -> webob.Response:
        stored = self.store.get(sub_id) if sub_id else None
        sub = stored.subscription if stored else None
        # Unknown id and wrong token look alike: the link is the only credential.
        if sub is None or not token or not hmac.compare_digest(
                token.encode(), sub.confirmation_token.encode()):
            raise Refused(404, "no such confirmation")
        heads = self.heads() if sub.start_from == model.NOW else None

        def confirm(current: Subscription):
            if current.state != PENDING or current.confirmation_token != token:
                return None
            now = time.time()
            return current.replace(state=ACTIVE, state_reason="confirmed",
                                   confirmed_at=now, updated_at=now, start_positions=heads)
        # The delivery service may be recording the request's delivery meanwhile.
        stored = self.store.change(sub.id, confirm)
        if stored is None:
            raise Refused(404, "no such confirmation")
        sub = stored.subscription
        if sub.state != ACTIVE:
            raise Refused(409, f"the subscription is {sub.state}: {sub.state_reason}")
        LOG.info("subscription %s confirmed", sub.id)
        return _json({"id": sub.id, "state": ACTIVE})

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _body(req) -> dict:
        if req.content_type not in ("application/json", ""):
            raise Refused(415, "send application/json")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from None
        except RecursionError:          # e.g. 100,000 '[': the decoder gives up
            raise Refused(400, "the body is not JSON we accept: nested too deeply") \
                from None
        if not isinstance(body, dict):
            raise Invalid("body", "must be a JSON object")
        return body

    def _secrets(self, sub: Subscription) -> list[dict]:
        now = time.time()
        return [{"secret": s.value, "expires_at": s.expires_at} for s in sub.secrets
                if s.expires_at is None or s.expires_at > now]

    def _check_endpoint(self, sub: Subscription) -> None:
        if sub.protocol == SYSLOG:
            transport, host, port = parse_url(sub.endpoint)
            if transport != "tls" and not self.settings.allow_plain_syslog:
                raise Refused(400, "use a syslog+tls:// URL (this deployment refuses "
                              "plain TCP and UDP)", "endpoint")
            try:
                self.resolve(host, port, self.settings.allowed_networks)
            except DestinationRefused as exc:
                raise Refused(400, f"endpoint refused: {exc}", "endpoint") from None
            return
        if sub.protocol != WEBHOOK:
            return
        parts = urlsplit(sub.endpoint)
        if parts.scheme == "http" and not self.settings.allow_http:
            raise Refused(400, "use an https URL (this deployment refuses http)",
                          "endpoint")
        try:
            self.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                         else 80),
                         self.settings.allowed_networks)
        except DestinationRefused as exc:
            raise Refused(400, f"endpoint refused: {exc}", "endpoint") from None
