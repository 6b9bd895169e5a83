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
    POST   /v1/search         (live search's first page and cursor: docs/websocket.md,
           for a body with resource_types or page_size; any other body, and GET, is
           Searchlight's search: docs/searchlight-api.md)
    GET    /v1/search/plugins, /v1/search/facets (Searchlight's: docs/searchlight-api.md)
    GET    /v1/feeds/{id}/{token}[?before=...], GET /v1/feeds?resource_type=...
           (Atom: docs/feeds.md)
    POST   /v1/websub         (the WebSub hub: docs/websub.md)

They are a ``routes`` mapper (``ROUTES``; ``HANDLERS`` names each method's handler:
another method is 405 naming those allowed). Refusals are ``webob.exc`` exceptions
whose body is the API's error shape (``refuse``); request bodies are checked against
JSON Schemas (``api.schemas``) before the model's own checks.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import time
from typing import Callable, Sequence
from urllib.parse import urlsplit

import orjson
import routes
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
from forwarders.api import schemas, searchlight
from forwarders.subscriptions.model import (ACTIVE, FEED, PENDING, SYSLOG, WEBHOOK,
                                            Caller, Invalid, Rules, Secret, Subscription)
from forwarders.subscriptions.store import Conflict, Stored, SubscriptionStore
from searchlight_forward.changelog.snapshot import TooBroad
from searchlight_forward.model.documents import ADMIN, USER

LOG = logging.getLogger(__name__)


def _routes() -> routes.Mapper:
    """The routes (``HANDLERS`` says which method each answers, with what)."""
    mapper = routes.Mapper()
    mapper.minimization, mapper.explicit = False, True
    sub = {"id": "[0-9a-f-]{36}"}
    mapper.connect("root", "/")
    mapper.connect("healthz", "/healthz")
    mapper.connect("feeds", "/v1/feeds{rest:(/.*)?}")
    mapper.connect("websub", "/v1/websub")
    mapper.connect("search", "/v1/search")
    mapper.connect("search_plugins", "/v1/search/plugins")
    mapper.connect("search_facets", "/v1/search/facets")
    mapper.connect("subscriptions", "/v1/subscriptions")
    mapper.connect("subscription", "/v1/subscriptions/{id}", requirements=sub)
    mapper.connect("secret", "/v1/subscriptions/{id}/secret", requirements=sub)
    mapper.connect("rotate", "/v1/subscriptions/{id}/secret/rotate", requirements=sub)
    mapper.connect("confirm", "/v1/subscriptions/{id}/confirm", requirements=sub)
    return mapper


ROUTES = _routes()
# route -> {method: handler}; a handler takes (req) with the route's own arguments
# (``confirm`` and the ``*_open`` ones answer without a token).
HANDLERS = {
    "root": {"GET": "versions", "HEAD": "versions"},
    "healthz": {"GET": "healthz", "HEAD": "healthz"},
    "search": {"GET": "search", "POST": "search"},
    "search_plugins": {"GET": "searchlight"},
    "search_facets": {"GET": "searchlight"},
    "subscriptions": {"GET": "list", "POST": "create"},
    "subscription": {"GET": "show", "PATCH": "update", "DELETE": "delete"},
    "secret": {"GET": "secret"},
    "rotate": {"POST": "rotate"},
    "confirm": {"GET": "confirm", "POST": "confirm"},
}
OPEN = {"versions", "healthz", "confirm"}          # no Keystone token needed


@dataclasses.dataclass(frozen=True)
class APISettings:
    rules: Rules
    allowed_networks: Sequence[Network] = ()
    allow_http: bool = False
    allow_plain_syslog: bool = False
    max_per_project: int = 100
    secret_overlap: float = 86400.0


def refuse(status: int, message: str, field: str | None = None
           ) -> webob.exc.HTTPException:
    """webob.exc's exception for ``status``, its body in the API's error shape
    (docs/subscriptions.md): raise it, or answer with it (it is a response)."""
    cls = webob.exc.status_map[status]
    error = {"code": status, "title": cls.title, "message": message}
    if field:
        error["field"] = field
    return cls(json_body={"error": error}, content_type="application/json",
               charset="utf-8")


def _json(data, status: int = 200) -> webob.Response:
    return webob.Response(json_body=data, status=status, charset="utf-8")


def _json_fast(data, status: int = 200) -> webob.Response:
    """``_json``'s answer, encoded by orjson (Searchlight's answers: up to 10,000
    documents); the same JSON, except that non-ASCII characters are sent as UTF-8
    rather than escaped. What orjson will not encode (an integer beyond 64 bits, a
    non-string key) goes through ``_json``."""
    try:
        body = orjson.dumps(data)
    except TypeError:
        return _json(data, status)
    return webob.Response(body=body, status=status, charset="utf-8",
                          content_type="application/json")


class SubscriptionsAPI:
    def __init__(self, store: SubscriptionStore, enforcer: oslo_policy.Enforcer,
                 settings: APISettings, heads: Callable[[], dict],
                 resolve: Callable = destinations.resolve, searcher=None, feeds=None,
                 hub=None):
        self.searcher = searcher        # forwarders.livesearch.endpoint.Searcher or None
        self.feeds = feeds              # forwarders.feeds.api.Feeds or None
        self.hub = hub                  # forwarders.feeds.websub.WebSubHub or None
        self.store = store
        self.enforcer = enforcer
        self.settings = settings
        self.heads = heads              # () -> {group: position dict}: the log's end now
        self.resolve = resolve
        self.schemas = schemas.Schemas(settings.rules)
        self.v1 = None if searcher is None else searchlight.SearchlightV1(searcher,
                                                                          self._allowed)

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        try:
            return self._route(req)
        except webob.exc.HTTPException as exc:
            return exc
        except (Invalid, schemas.Mismatch) as exc:
            return refuse(400, exc.message, exc.field)
        except Conflict:
            return refuse(409, "the subscription changed meanwhile; read it and try again")
        except Exception:  # noqa: BLE001 - a 500 with no detail; the log has it
            LOG.exception("%s %s failed", req.method, req.path)
            return refuse(500, "internal error; the service's log has the details")

    # -- routing -------------------------------------------------------------------------

    def _route(self, req: webob.Request) -> webob.Response:
        path = req.path_info.rstrip("/") or "/"
        found = ROUTES.routematch(path)
        name = found[1].name if found else None
        if name == "feeds" and self.feeds is not None:
            return self.feeds.handle(req, self._caller if req.headers.get(
                "X-Identity-Status") == "Confirmed" else None)
        if name == "websub" and self.hub is not None:
            return self.hub.handle(req)
        handlers = HANDLERS.get(name)
        if handlers is None:
            raise refuse(404, f"no such resource: {req.path}")
        handler = handlers.get(req.method)
        if handler is None:
            exc = refuse(405, f"{req.method} is not allowed here; use "
                             f"{' or '.join(dict.fromkeys(handlers))}")
            exc.allow = list(dict.fromkeys(handlers))
            raise exc
        args = {"sub_id": found[0]["id"]} if "id" in found[0] else {}
        if handler in OPEN:
            return getattr(self, handler)(req, **args)
        return getattr(self, handler)(req, self._caller(req), **args)

    def versions(self, req) -> webob.Response:
        return _json({"versions": [{"id": "v1", "status": "CURRENT",
                                    "links": [{"rel": "self", "href": "/v1/"}]}]})

    def healthz(self, req) -> webob.Response:
        return _json({"status": "ok"})

    def _caller(self, req: webob.Request) -> Caller:
        if req.headers.get("X-Identity-Status") != "Confirmed":
            raise refuse(401, "a valid Keystone token is required (X-Auth-Token)")
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
                raise refuse(404, "no such subscription")
            raise refuse(403, f"policy does not allow {rule}")

    def _load(self, caller: Caller, sub_id: str, rule: str) -> Stored:
        stored = self.store.get(sub_id)
        if stored is None:
            raise refuse(404, "no such subscription")
        project = stored.subscription.project_id
        # Those who may not even read it learn nothing; readers get 403 on writes.
        self._enforce("subscriptions:get", caller, project, hidden=True)
        self._enforce(rule, caller, project)
        return stored

    # -- handlers ----------------------------------------------------------------------

    def search(self, req, caller: Caller) -> webob.Response:
        if self.searcher is None:
            raise refuse(404, "search is not enabled on this server")
        if req.method == "GET" or not searchlight.is_live_search(req.body):
            return self.searchlight(req, caller)
        body = self._body(req, self.schemas.search)
        all_projects = body.get("all_projects", False)
        self._enforce("search:all_projects" if all_projects else "search:query", caller,
                      None if all_projects else caller.project_id)
        role = ADMIN if caller.admin_copy else USER
        try:
            return _json(self.searcher.search(body, role,
                                              None if all_projects else caller.project_id))
        except QueryError as exc:
            raise refuse(400, exc.message, exc.path) from None
        except TooBroad as exc:
            raise refuse(400, str(exc), "query") from None

    def searchlight(self, req, caller: Caller) -> webob.Response:
        """Searchlight's v1 plugins and facets (forwarders/api/searchlight.py)."""
        if self.v1 is None:
            raise refuse(404, "search is not enabled on this server")
        what = req.path_info.rstrip("/").rsplit("/", 1)[-1]   # plugins, facets, search
        try:
            if what == "search":
                if not req.body:
                    raise refuse(400, "Body expected in request.")
                return _json_fast(self.v1.search(self._body(req, self.schemas.search),
                                                 caller))
            return _json_fast(getattr(self.v1, what)(req.GET, caller))
        except searchlight.Refused as exc:
            raise refuse(exc.status, exc.message, exc.field) from None

    def list(self, req, caller: Caller) -> webob.Response:
        all_projects = req.params.get("all_projects", "").lower() in ("1", "true", "yes")
        try:
            limit = min(1000, max(1, int(req.params.get("limit", 1000))))
        except ValueError:
            raise refuse(400, "limit must be a number", "limit") from None
        if all_projects:
            self._enforce("subscriptions:list:all_projects", caller, None)
            found = self.store.listing(None, limit)
        else:
            project = req.params.get("project_id") or caller.project_id
            self._enforce("subscriptions:list", caller, project)
            found = self.store.listing(project, limit)
        return _json({"subscriptions": [model.public_view(s.subscription) for s in found]})

    def create(self, req, caller: Caller) -> webob.Response:
        sub = model.parse_create(self._body(req, self.schemas.create), caller, self.settings.rules)
        if sub.project_id is None:
            self._enforce("subscriptions:create:all_projects", caller, None)
        else:
            self._enforce("subscriptions:create", caller, sub.project_id)
            if self.store.count(sub.project_id) >= self.settings.max_per_project:
                raise refuse(409, f"the project has {self.settings.max_per_project} "
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
            raise refuse(409, f"the project has {self.settings.max_per_project} "
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
        body = self._body(req, self.schemas.update)
        stored = self._load(caller, sub_id, "subscriptions:update")
        changed = model.parse_update(body, stored.subscription, self.settings.rules)
        if changed.endpoint != stored.subscription.endpoint:
            self._check_endpoint(changed)
        try:
            stored = self.store.update(stored, changed)
        except KeyError:
            raise refuse(404, "no such subscription") from None
        return _json({"subscription": model.public_view(stored.subscription)})

    def delete(self, req, caller: Caller, sub_id: str) -> webob.Response:
        stored = self._load(caller, sub_id, "subscriptions:delete")
        try:
            self.store.delete(stored)
        except KeyError:
            raise refuse(404, "no such subscription") from None
        LOG.info("subscription %s deleted by user %s", sub_id, caller.user_id)
        return webob.Response(status=204)

    def secret(self, req, caller: Caller, sub_id: str) -> webob.Response:
        stored = self._load(caller, sub_id, "subscriptions:secret:get")
        return _json({"secrets": self._secrets(stored.subscription)})

    def rotate(self, req, caller: Caller, sub_id: str) -> webob.Response:
        body = self._body(req, self.schemas.rotate) if req.body else {}
        overlap = body.get("expire_previous_in", self.settings.secret_overlap)
        stored = self._load(caller, sub_id, "subscriptions:secret:rotate")
        sub = stored.subscription
        if sub.protocol == FEED:          # a new URL; the old one stops at once
            token = model.new_token()
            self.store.update(stored, sub.replace(
                feed_token_hash=feed_tokens.token_hash(token), updated_at=time.time()))
            return _json({"feed_url": self.feeds.feed_url(sub.id, token)})
        if sub.protocol != WEBHOOK:
            raise refuse(400, "only webhook subscriptions have secrets")
        now = time.time()
        kept = tuple(Secret(s.value, min(s.expires_at or now + overlap, now + overlap))
                     for s in sub.secrets if s.expires_at is None or s.expires_at > now)
        changed = sub.replace(secrets=(Secret(model.new_secret()),) + kept, updated_at=now)
        stored = self.store.update(stored, changed)
        return _json({"secrets": self._secrets(stored.subscription)})

    def confirm(self, req, sub_id: str) -> webob.Response:
        token = req.params.get("token", "")
        stored = self.store.get(sub_id)
        sub = stored.subscription if stored else None
        # Unknown id and wrong token look alike: the link is the only credential.
        if sub is None or not token or not hmac.compare_digest(
                token.encode(), sub.confirmation_token.encode()):
            raise refuse(404, "no such confirmation")
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
            raise refuse(404, "no such confirmation")
        sub = stored.subscription
        if sub.state != ACTIVE:
            raise refuse(409, f"the subscription is {sub.state}: {sub.state_reason}")
        LOG.info("subscription %s confirmed", sub.id)
        return _json({"id": sub.id, "state": ACTIVE})

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _body(req, schema) -> dict:
        """The JSON body, checked against ``schema`` (``schemas.Mismatch``)."""
        if req.content_type not in ("application/json", ""):
            raise refuse(415, "send application/json")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError as exc:
            raise refuse(400, f"the body is not JSON: {exc}") from None
        except RecursionError:          # e.g. 100,000 '[': the decoder gives up
            raise refuse(400, "the body is not JSON we accept: nested too deeply") \
                from None
        schemas.check(schema, body)
        return body

    def _secrets(self, sub: Subscription) -> list[dict]:
        now = time.time()
        return [{"secret": s.value, "expires_at": s.expires_at} for s in sub.secrets
                if s.expires_at is None or s.expires_at > now]

    def _check_endpoint(self, sub: Subscription) -> None:
        if sub.protocol == SYSLOG:
            transport, host, port = parse_url(sub.endpoint)
            if transport != "tls" and not self.settings.allow_plain_syslog:
                raise refuse(400, "use a syslog+tls:// URL (this deployment refuses "
                              "plain TCP and UDP)", "endpoint")
            try:
                self.resolve(host, port, self.settings.allowed_networks)
            except DestinationRefused as exc:
                raise refuse(400, f"endpoint refused: {exc}", "endpoint") from None
            return
        if sub.protocol != WEBHOOK:
            return
        parts = urlsplit(sub.endpoint)
        if parts.scheme == "http" and not self.settings.allow_http:
            raise refuse(400, "use an https URL (this deployment refuses http)",
                          "endpoint")
        try:
            self.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                         else 80),
                         self.settings.allowed_networks)
        except DestinationRefused as exc:
            raise refuse(400, f"endpoint refused: {exc}", "endpoint") from None
