"""Atom feeds over HTTP: a project's latest changes of chosen resource types.

    GET /v1/feeds/{subscription id}/{token}[?before=<cursor>]   (a secret feed URL)
    GET /v1/feeds?resource_type=<type>[&before=<cursor>]        (X-Auth-Token)

A feed reader cannot send a Keystone token, so a ``feed`` subscription holds a secret
URL (its token's SHA-256 only is stored); deleting the subscription, disabling it or
rotating the secret ends the URL at once, and an expiry may end it too. Both ways
read the same: the caller's (or the subscription creator's) role copy, its project,
through the ``[pipeline:subscriptions]`` template's filters, exactly what a webhook
of that subscription would receive.
"""
from __future__ import annotations

import datetime
import fnmatch
import logging
import time
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

import webob
import webob.exc

from forwarders.feeds import tokens
from forwarders.sinks.websub import atom
from forwarders.subscriptions.model import DISABLED, FEED, Subscription
from forwarders.subscriptions.store import SubscriptionStore
from searchlight_forward import search
from searchlight_forward.changelog import recent
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, IndexGone, NoIndex, Selection
from searchlight_forward.model.documents import ADMIN, USER
from searchlight_forward.model.priority import selects

LOG = logging.getLogger(__name__)
MAX_PAGE = 200


def error_response(status: int, message: str) -> webob.Response:
    """The API's documented error shape (docs/subscriptions.md, "The API")."""
    return webob.Response(json_body={"error": {
        "code": status, "title": webob.exc.status_map[status].title,
        "message": message}}, status=status, charset="utf-8")


class FeedError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Feeds:
    def __init__(self, store: SubscriptionStore, es: search.Client,
                 groups: Mapping[str, str], renderer: Any, public_url: str,
                 allowed: Callable[[str, Any, str | None], bool], page_size: int = 50):
        self.store = store
        self.es = es
        self.groups = dict(groups)           # resource type -> its group
        self.renderer = renderer             # role copies through the template's filters
        self.public_url = public_url.rstrip("/")
        self.allowed = allowed               # (rule, caller, project) -> bool
        self.page_size = page_size
        self.hub_url = f"{self.public_url}/v1/websub"

    def feed_url(self, sub_id: str, token: str) -> str:
        return f"{self.public_url}/v1/feeds/{sub_id}/{token}"

    # -- who may read what ---------------------------------------------------------------

    def by_token(self, sub_id: str, token: str) -> Subscription:
        """The feed subscription a secret URL names; FeedError says why not."""
        stored = self.store.get(sub_id)
        sub = stored.subscription if stored else None
        if sub is None or sub.protocol != FEED or not tokens.matches(token,
                                                                     sub.feed_token_hash):
            raise FeedError(404, "no such feed: the URL is wrong, or was revoked (its "
                                 "subscription deleted or its secret rotated)")
        if sub.state == DISABLED:
            raise FeedError(410, f"this feed is disabled: {sub.state_reason or ''}".strip())
        if sub.expires_at is not None and sub.expires_at <= time.time():
            when = datetime.datetime.fromtimestamp(sub.expires_at, datetime.timezone.utc)
            raise FeedError(410, f"this feed URL expired at {when:%Y-%m-%dT%H:%M:%SZ}; ask "
                                 "its owner for a new one (rotate its secret)")
        return sub

    def handle(self, req: webob.Request, caller_of) -> webob.Response:
        try:
            parts = req.path.rstrip("/").split("/")        # '', v1, feeds, [id, token]
            if req.method != "GET":
                raise FeedError(405, "use GET")
            if len(parts) == 5:
                sub = self.by_token(parts[3], parts[4])
                types = sub.resource_types or tuple(sorted(self.groups))
                return self.respond(
                    req, sub.role, sub.project_id, types, sub.event_types,
                    sub.priorities, title=f"{sub.name or 'changes'} ({', '.join(types)})",
                    feed_id=f"urn:uuid:{sub.id}",
                    base=self.feed_url(sub.id, parts[4]))
            if len(parts) != 3:
                raise FeedError(404, f"no such resource: {req.path}")
            if caller_of is None:
                raise FeedError(401, "a valid Keystone token is required (X-Auth-Token), "
                                     "or use a feed subscription's secret URL")
            caller = caller_of(req)
            rtype = req.params.get("resource_type", "")
            if rtype not in self.groups:
                raise FeedError(400, f"resource_type: one of {', '.join(sorted(self.groups))}")
            if not self.allowed("search:query", caller, caller.project_id):
                raise FeedError(403, "policy does not allow search:query")
            return self.respond(
                req, ADMIN if caller.admin_copy else USER, caller.project_id, (rtype,),
                None, None, title=f"{rtype} changes of project {caller.project_id}",
                feed_id=f"tag:searchlight-forward,2026:feed/{caller.project_id}/{rtype}",
                base=f"{self.public_url}/v1/feeds?resource_type={quote(rtype)}")
        except FeedError as exc:
            return error_response(exc.status, exc.message)

    # -- the document --------------------------------------------------------------------

    def respond(self, req, role: str, project_id: str | None, types: Sequence[str],
                event_types, priorities, title: str, feed_id: str,
                base: str) -> webob.Response:
        groups = {self.groups[t] for t in types if t in self.groups}
        if len(groups) != 1:
            raise FeedError(400, "a feed covers the resource types of one resource group")
        before = None
        if req.params.get("before"):
            try:
                before = Position.parse(req.params["before"])
            except ValueError as exc:
                raise FeedError(400, f"before: {exc}") from None
        changelog = ChangeLog(self.es, groups.pop())
        role = self.renderer.role_for(role)          # the view's role rule
        selection = Selection(roles=(role,), project_id=project_id,
                              resource_types=frozenset(types))
        limit = req.params.get("limit", str(self.page_size))
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
            raise FeedError(400, f"limit: entries per page, from 1 to {MAX_PAGE}")
        try:
            entries, older = recent.newest(self.es, changelog, selection, before,
                                           int(limit))
        except NoIndex:
            entries, older = [], None
        except IndexGone:
            raise FeedError(410, "before: the index was rebuilt since this cursor; start "
                                 "again from the feed's first page") from None
        envelopes = []
        for entry in entries:
            shared = self.renderer.shared_envelope(entry)
            if shared is None:
                continue
            envelope = shared[0]
            if not _selected(envelope, event_types, priorities):
                continue
            envelopes.append(envelope)
        if "limit" in req.params:
            base += ("&" if "?" in base else "?") + f"limit={int(limit)}"
        sep = "&" if "?" in base else "?"
        self_url = base + (f"{sep}before={quote(str(before))}" if before else "")
        next_url = f"{base}{sep}before={quote(str(older))}" if older else None
        body = atom.document(title, feed_id, self_url, self.hub_url, next_url, envelopes)
        resp = webob.Response(body=body, content_type=atom.CONTENT_TYPE, charset="utf-8")
        resp.headers["Link"] = f'<{self.hub_url}>; rel="hub", <{self_url}>; rel="self"'
        resp.cache_control = "no-store"
        return resp


def _selected(envelope, event_types, priorities) -> bool:
    """A subscription's event types and priorities (as its pipeline would select)."""
    if event_types and not any(fnmatch.fnmatchcase(envelope.event_type or "", p)
                               for p in event_types):
        return False
    return not priorities or selects(priorities, envelope.priority, envelope.alert)
