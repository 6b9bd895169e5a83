"""The WebSocket protocol, sans I/O: one connection's state machine.

Like the ``websockets`` library's own layering, this module does no network, no
asyncio and no Elasticsearch. The server feeds it what happened (a client frame, a
token validated, a change read from Elasticsearch) and gets back what to do
(``Send`` a frame, ``Close`` with a code, ``Validate`` a token, start a
``Resume``). It decides everything a connection may see, so the rules of contract 3
("nothing leaks") are tested here with plain data:

* a connection sees one role copy of each resource: the admin copy if its identity
  has the admin role, else the user copy, which the indexer stored without the
  admin-only fields; the user copy is also redacted again with today's admin-only
  patterns, in case it was written before a pattern was added;
* it sees only its own project's resources, unless its identity is admin and it
  asked ``all_projects``; a token without a project sees nothing of anyone's;
* every document passes through the pipeline's filters; if a filter fails, the
  change is not sent at all (never the unfiltered document);
* per resource, a version is sent only if it is higher than the one sent before on
  this connection, so no older state follows a newer one (resume, live and an index
  rebuild included), and changes go out in change-log order (``_seq_no`` order
  within each shard), so the cursor of any frame resumes without a gap.

Client frames are JSON text objects with an ``action``; anything else gets an
``error`` frame, and a connection that keeps sending bad frames is closed, as is
one that sends frames faster than its ``frame_rate`` token bucket allows.

Tokens have a lifetime: the server tells the session when one is about to expire
(``token_expiring``), has expired or was revoked; the client may send a fresh
token for the same user, project and role at any time (``authenticate`` again) and
keeps its subscription, cursor and the versions sent.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
import time
from typing import Any, Iterable, Mapping

from forwarders.livesearch.query import QueryError, parse as parse_query
from forwarders.pipeline.render import Renderer, dumps as _dumps
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.model.documents import ADMIN, ROLE_FIELD, USER
from searchlight_forward.tokenbucket import TokenBucket

LOG = logging.getLogger(__name__)

# -- close codes (documented in docs/websocket.md) -----------------------------------
GOING_AWAY = 1001          # the server is shutting down (sent by the library)
MESSAGE_TOO_BIG = 1009     # a frame above max_size (sent by the library)
INTERNAL_ERROR = 1011      # a server bug on this connection
TRY_AGAIN_LATER = 1013     # Elasticsearch or the token validator is unavailable
AUTH_FAILED = 4001         # no token in time, bad or expired token at authentication
PROTOCOL_VIOLATION = 4002  # too many bad frames
TOKEN_EXPIRED = 4005       # the token expired while connected: get a new one
TOKEN_REVOKED = 4006       # the token was revoked while connected: log in again
TOO_SLOW = 4008            # the outgoing queue overflowed
RATE_LIMITED = 4029        # frames faster than the rate limit, too many connections

CLOSE_REASONS = {
    GOING_AWAY: "server shutting down",
    MESSAGE_TOO_BIG: "frame too big",
    INTERNAL_ERROR: "internal error",
    TRY_AGAIN_LATER: "try again later",
    AUTH_FAILED: "authentication failed",
    PROTOCOL_VIOLATION: "too many bad frames",
    TOKEN_EXPIRED: "token expired",
    TOKEN_REVOKED: "token revoked",
    TOO_SLOW: "too slow",
    RATE_LIMITED: "too many frames or connections",
}

MAX_TOKEN_LENGTH = 16 * 1024
EXPIRY_MARGIN = 1.0        # seconds: an invalid token this close to expiry has expired
MAX_RESOURCE_TYPES = 256
MAX_REASON_BYTES = 123     # RFC 6455: a close reason fits in 123 bytes of UTF-8
_NONE: frozenset = frozenset()   # an empty set of keys, shared until one is added


# -- outputs ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Send:
    text: str


@dataclasses.dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Validate:
    """Validate ``token`` and call ``token_accepted`` or ``token_rejected``."""
    token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Resume:
    """Start the subscription: resume from its cursor, then go live."""
    subscription: "Subscription"


Action = Send | Close | Validate | Resume


# -- values --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Subscription:
    resource_types: frozenset
    all_projects: bool
    cursor: Position | None
    role: str                   # which stored copy: ADMIN or USER
    project_id: str | None      # None only with all_projects
    query: Any = None           # a forwarders.livesearch.query.Query: a live search

    def wants(self, source: Mapping[str, Any]) -> bool:
        """Is this stored document (one role copy) for this subscription?"""
        if source.get(ROLE_FIELD) != self.role:
            return False
        if source.get("resource_type") not in self.resource_types:
            return False
        if self.all_projects:
            return True
        return self.project_id is not None and source.get("project_id") == self.project_id


class Holders:
    """Which live searches (of one project) hold which resource: a change that moves
    a resource to another project is dispatched to that project's connections, so
    the server asks this index which others must be told the resource left."""

    def __init__(self):
        self._owners: dict[tuple, set] = {}

    def add(self, key: tuple, owner: Any) -> None:
        self._owners.setdefault(key, set()).add(owner)

    def discard(self, key: tuple, owner: Any) -> None:
        owners = self._owners.get(key)
        if owners is not None:
            owners.discard(owner)
            if not owners:
                del self._owners[key]

    def get(self, key: tuple) -> tuple:
        return tuple(self._owners.get(key, ()))

    def __len__(self) -> int:
        return len(self._owners)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def frame(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields}, separators=(",", ":"), default=str)


def error(code: str, message: str, action: Any = None) -> Send:
    fields: dict[str, Any] = {"code": code, "message": message}
    if isinstance(action, str) and len(action) <= 64:
        fields["action"] = action
    return Send(frame("error", **fields))


def close(code: int, reason: str | None = None) -> Close:
    text = reason or CLOSE_REASONS.get(code, "")
    data = text.encode("utf-8")
    if len(data) > MAX_REASON_BYTES:
        text = data[:MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."
    return Close(code, text)


# -- the state machine -----------------------------------------------------------

class State(str, enum.Enum):
    AWAITING_TOKEN = "awaiting_token"
    VALIDATING = "validating"
    AUTHENTICATED = "authenticated"
    RESUMING = "resuming"
    LIVE = "live"
    CLOSED = "closed"


class Session:
    """One WebSocket connection, from the first frame to the close.

    ``known_types``: the resource types this server serves. ``max_errors``: bad
    frames tolerated before closing with 4002. ``max_pending``: frames kept while a
    token is being validated (a client may send ``authenticate`` and ``subscribe``
    back to back).
    """

    def __init__(self, known_types: Iterable[str], renderer: Renderer,
                 admin_role: str = "admin", max_errors: int = 10, max_pending: int = 8,
                 frame_rate: TokenBucket | None = None, vocabularies=None,
                 holders: Holders | None = None, owner: Any = None):
        self.known_types = frozenset(known_types)
        #: forwarders.livesearch.query.Vocabularies (None: no live search here)
        self.vocabularies = vocabularies
        #: a live search's result: keys of the resources in it, also recorded in
        #: ``holders`` under ``owner`` (the server's connection) when one project's.
        #: (Empty sets are the shared ``_NONE`` until a key is added: an idle
        #: connection costs what it holds, issue 28.)
        self.members: set[tuple] | frozenset = _NONE
        self.holders = holders
        self.owner = owner if owner is not None else self
        #: resumed from a cursor: the client may hold resources this connection was
        #: not told about, so a non-matching change is a ``left`` until evaluated once
        self.uncertain = False
        self.evaluated: set[tuple] | frozenset = _NONE
        # ``burst`` frames at once, refilled at ``rate`` a second: a client needs two
        # frames to start and one per token renewal, so a legitimate one never comes
        # near the defaults.
        self.frame_rate = frame_rate or TokenBucket(5.0, 20)
        #: a fresh token is being validated while the current one stays in force
        self.renewing = False
        self.renderer = renderer
        self.admin_role = admin_role
        self.max_errors = max_errors
        self.max_pending = max_pending
        self.state = State.AWAITING_TOKEN
        self.identity = None
        self.subscription: Subscription | None = None
        self.errors = 0
        self.close_code: int | None = None
        self._pending: list[str | bytes] = []
        #: (resource_type, id) -> the version last sent on this connection
        self.sent: dict[tuple, int] = {}
        #: changes at or below this position were sent (or skipped) already
        self.position: Position | None = None
        self.frames_sent = 0

    # -- client frames -----------------------------------------------------------

    def receive(self, data: Any, now: float | None = None) -> list[Action]:
        """A frame from the client (``str`` for text frames, ``bytes`` for binary),
        received at ``now`` (monotonic seconds)."""
        if self.state is State.CLOSED:
            return []
        if not self.frame_rate.allow(time.monotonic() if now is None else now):
            return self._close(RATE_LIMITED, "too many frames: at most "
                               f"{self.frame_rate.burst} at once, then "
                               f"{self.frame_rate.rate:g} per second")
        return self._handle(data)

    def _handle(self, data: Any) -> list[Action]:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._bad("binary_frame", "send JSON in text frames")
        if not isinstance(data, str):
            return self._bad("bad_frame", "unreadable frame")
        if self.state is State.VALIDATING:
            if len(self._pending) >= self.max_pending:
                return self._bad("not_authenticated",
                                 "wait for the 'authenticated' frame before sending more")
            self._pending.append(data)
            return []
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            return self._bad("bad_json", "the frame is not JSON")
        if not isinstance(message, dict):
            return self._bad("bad_frame", "the frame must be a JSON object with an 'action'")
        action = message.get("action")
        if action == "authenticate":
            return self._authenticate(message)
        if action == "subscribe":
            return self._subscribe(message)
        if not isinstance(action, str):
            return self._bad("bad_frame", "'action' must be a string", None)
        return self._bad("unknown_action",
                         "unknown action; use 'authenticate' or 'subscribe'", action)

    def header_token(self, token: str) -> list[Action]:
        """A token from the ``X-Auth-Token`` handshake header."""
        return self._authenticate({"action": "authenticate", "token": token})

    def _authenticate(self, message: dict) -> list[Action]:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return self._bad("bad_request", "'token' must be a non-empty string",
                             "authenticate")
        if len(token) > MAX_TOKEN_LENGTH:
            return self._bad("bad_request", "'token' is too long", "authenticate")
        if self.state is State.AWAITING_TOKEN:
            self.state = State.VALIDATING
            return [Validate(token)]
        # A renewal: the current token stays in force until the new one is accepted.
        if self.renewing:
            return self._bad("renewal_in_progress", "wait for the answer to the "
                             "previous token", "authenticate")
        self.renewing = True
        return [Validate(token)]

    def _subscribe(self, message: dict) -> list[Action]:
        if self.state in (State.AWAITING_TOKEN, State.VALIDATING):
            return self._bad("not_authenticated", "authenticate first", "subscribe")
        if self.state is not State.AUTHENTICATED:
            return self._bad("already_subscribed",
                             "one subscription per connection; reconnect with your "
                             "cursor to change it", "subscribe")
        types = message.get("resource_types")
        if (not isinstance(types, list) or not types or len(types) > MAX_RESOURCE_TYPES
                or not all(isinstance(t, str) and t for t in types)):
            return self._bad("bad_request", "'resource_types' must be a non-empty list "
                             "of resource type names", "subscribe")
        unknown = sorted(set(types) - self.known_types)
        if unknown:
            shown = ", ".join(u[:64] for u in unknown[:5])
            return self._bad("unknown_resource_type",
                             f"unknown resource type(s): {shown}; served here: "
                             f"{', '.join(sorted(self.known_types))}", "subscribe")
        all_projects = message.get("all_projects", False)
        if not isinstance(all_projects, bool):
            return self._bad("bad_request", "'all_projects' must be true or false",
                             "subscribe")
        project_id = message.get("project_id")
        if project_id is not None and project_id != self.identity.project_id:
            # The project always comes from the token; naming another one is refused
            # (admins see other projects with all_projects).
            return self._bad("forbidden", "project_id must be the token's project",
                             "subscribe")
        raw_cursor = message.get("cursor")
        cursor = None
        if raw_cursor is not None:
            try:
                cursor = Position.parse(raw_cursor)
            except ValueError as exc:
                return self._bad("bad_cursor", str(exc), "subscribe")
        admin = self.identity.is_admin(self.admin_role)
        if all_projects and not admin:
            return self._bad("forbidden", "all_projects needs the admin role", "subscribe")
        if not all_projects and not self.identity.project_id:
            return self._bad("forbidden", "the token is not scoped to a project",
                             "subscribe")
        role = self.renderer.role_for(ADMIN if admin else USER)
        query = None
        if any(k in message for k in ("query", "sort", "page_size")):
            if self.vocabularies is None:
                return self._bad("not_supported", "live search is not enabled on this "
                                 "server", "subscribe")
            try:
                query = parse_query(message, self.vocabularies.get(role, types))
            except QueryError as exc:
                return self._bad("bad_query", str(exc), "subscribe")
        # The served types' own set and names, not the frame's copies: one set for
        # every connection that asks for everything.
        wanted = set(types)
        types = (self.known_types if wanted == self.known_types
                 else frozenset(t for t in self.known_types if t in wanted))
        self.subscription = Subscription(
            resource_types=types, all_projects=all_projects, cursor=cursor,
            role=role, project_id=None if all_projects else self.identity.project_id,
            query=query)
        self.state = State.RESUMING
        self.errors = 0
        return [Resume(self.subscription)]

    def _bad(self, code: str, message: str, action: Any = None) -> list[Action]:
        self.errors += 1
        if self.errors > self.max_errors:
            return self._close(PROTOCOL_VIOLATION,
                               f"too many bad frames (last: {code})")
        return [error(code, message, action)]

    # -- results of the server's work --------------------------------------------

    def token_accepted(self, identity) -> list[Action]:
        if self.renewing and self.state not in (State.VALIDATING, State.CLOSED):
            return self._renewed(identity)
        if self.state is not State.VALIDATING:
            return []
        if identity.expired():
            return self.token_rejected("token expired")
        self.identity = identity
        self.state = State.AUTHENTICATED
        self.errors = 0
        actions: list[Action] = [Send(frame(
            "authenticated", user_id=identity.user_id, project_id=identity.project_id,
            roles=sorted(identity.roles), admin=identity.is_admin(self.admin_role),
            expires_at=_iso(identity.expires_at),
            resource_types=sorted(self.known_types)))]
        pending, self._pending = self._pending, []
        for data in pending:
            actions.extend(self._handle(data))
            if self.state is State.CLOSED:
                break
        return actions

    def _renewed(self, identity) -> list[Action]:
        """A fresh token for this connection: same user, project and admin-ness, or
        the subscription would no longer match what the token allows."""
        self.renewing = False
        if identity.expired():
            return [error("bad_token", "the new token is expired", "authenticate")]
        old = self.identity
        if (identity.user_id != old.user_id or identity.project_id != old.project_id
                or identity.is_admin(self.admin_role) != old.is_admin(self.admin_role)):
            return [error("identity_mismatch", "the new token is for another user, "
                          "project or role; reconnect with it and your cursor to change "
                          "identity", "authenticate")]
        self.identity = identity
        return [Send(frame("reauthenticated", expires_at=_iso(identity.expires_at),
                           roles=sorted(identity.roles)))]

    def token_rejected(self, reason: str) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        if self.renewing:
            # The token in force is still good; only the renewal failed.
            self.renewing = False
            return [error("bad_token", f"the new token was refused: {reason}",
                          "authenticate")]
        return self._close(AUTH_FAILED, f"authentication failed: {reason}")

    def validation_unavailable(self) -> list[Action]:
        if self.renewing and self.state is not State.CLOSED:
            self.renewing = False
            return [error("try_again_later", "token validation is unavailable; the "
                          "current token stays in force, send the new one again later",
                          "authenticate")]
        return self._close(TRY_AGAIN_LATER, "token validation unavailable; try again later")

    def auth_deadline(self) -> list[Action]:
        if self.state not in (State.AWAITING_TOKEN, State.VALIDATING):
            return []
        return self._close(AUTH_FAILED, "authentication timeout: send "
                           "{\"action\": \"authenticate\", \"token\": ...} first")

    def token_expiring(self) -> list[Action]:
        """The token in force expires soon: ask for a fresh one."""
        if self.state is State.CLOSED or self.identity is None:
            return []
        return [Send(frame("token_expiring", expires_at=_iso(self.identity.expires_at),
                           seconds_left=max(0, int(self.identity.seconds_left() or 0))))]

    def token_expired(self, now=None) -> list[Action]:
        """The expiry timer fired; a renewal may have made it moot."""
        if self.state is State.CLOSED or self.identity is None:
            return []
        if not self.identity.expired(now):
            return []
        return self._close(TOKEN_EXPIRED, "token expired; send a fresh token before "
                           "expiry, or reconnect with a new token and your cursor")

    def too_many_connections(self, limit: int) -> list[Action]:
        """The token is good, but its user already has ``limit`` connections here."""
        return self._close(RATE_LIMITED, f"too many connections: at most {limit} per "
                           "user; close another one first")

    def token_revoked(self, reason: str, now=None) -> list[Action]:
        """A re-check found the token in force no longer valid. Within
        ``EXPIRY_MARGIN`` of its expiry that is the expiry, which ``token_expired``
        reports (4005), not a revocation."""
        if self.state is State.CLOSED or self.identity is None:
            return []
        left = self.identity.seconds_left(now)
        if left is not None and left <= EXPIRY_MARGIN:
            return []
        return self._close(TOKEN_REVOKED, f"token no longer valid ({reason}); log in "
                           "again")

    def overflow(self, queued: int) -> list[Action]:
        return self._close(TOO_SLOW, f"too slow: {queued} frames queued; reconnect "
                           "with your cursor")

    def unavailable(self, what: str) -> list[Action]:
        return self._close(TRY_AGAIN_LATER, f"{what} unavailable; try again later")

    def closed(self) -> None:
        """The connection is gone, whoever closed it."""
        self.state = State.CLOSED
        self._set_members(())

    def _close(self, code: int, reason: str) -> list[Action]:
        self.state = State.CLOSED
        self.close_code = code
        return [close(code, reason)]

    # -- changes -------------------------------------------------------------------

    def wants(self, entry: Entry) -> bool:
        """May this connection see ``entry`` at all (role copy, type, project)?"""
        return (self.subscription is not None
                and self.state in (State.RESUMING, State.LIVE)
                and self.subscription.wants(entry.source))

    def concerns(self, entry: Entry) -> bool:
        """Is ``entry`` for this connection: one it may see, or (a live search) one
        that moves a resource it holds out of its project, which must be told as a
        ``left`` without the new state. While resuming, the members are not known
        yet, so a live search keeps every entry of its role copy and types."""
        if self.wants(entry):
            return True
        sub = self.subscription
        if sub is None or sub.query is None or sub.all_projects:
            return False
        source = entry.source
        if (source.get(ROLE_FIELD) != sub.role
                or source.get("resource_type") not in sub.resource_types):
            return False
        return self.state is State.RESUMING or (self.state is State.LIVE
                                                 and entry.key in self.members)

    def _set_members(self, keys: Iterable[tuple]) -> None:
        if self.holders is not None:
            for key in self.members:
                self.holders.discard(key, self.owner)
        self.members = _NONE
        for key in keys:
            self._hold(key)

    def _hold(self, key: tuple) -> None:
        if not self.members:
            self.members = set()
        self.members.add(key)
        if self.holders is not None and not self.subscription.all_projects:
            self.holders.add(key, self.owner)

    def _release(self, key: tuple) -> None:
        if key in self.members:
            self.members.discard(key)
        if self.holders is not None:
            self.holders.discard(key, self.owner)

    def start_at(self, position: Position | None) -> None:
        """Entries at or below ``position`` are covered already (the client's
        cursor, when it is ahead of this server, or where a resume ended)."""
        if position is None:
            return
        if self.position is None or not self.position.same_log(position):
            self.position = position
        else:
            self.position = self.position.merged(position)

    def offer(self, entry: Entry) -> str | None:
        """The frame to send for ``entry``, or None. Records what was sent."""
        if entry.within(self.position):
            return None
        visible = self.wants(entry)
        if not visible and not (self.members and entry.key in self.members
                                and self.concerns(entry)):
            return None
        if entry.after is not None:
            self.start_at(entry.after)
        key = entry.key
        sent = self.sent.get(key)
        if sent is not None and entry.version <= sent:
            return None
        if self.subscription.query is not None:
            return self._offer_to_search(entry, key, visible)
        if entry.deleted and sent is None and entry.resync:
            return None   # a client being resynchronised never had it
        text = self.renderer.render(entry)
        if text is None:
            return None
        self.sent[key] = entry.version
        self.frames_sent += 1
        return text

    def _offer_to_search(self, entry: Entry, key: tuple, visible: bool) -> str | None:
        """A live search's frame for a change: ``entered`` or ``updated`` while the
        resource matches, ``left`` when it stops matching, is deleted or moved to a
        project this connection does not see (``visible`` false: nothing of the
        change but its key, version and cursor goes out)."""
        cursor = _dumps(str(entry.after)) if entry.after else "null"
        member = key in self.members
        told = member or (self.uncertain and key not in self.evaluated)
        if self.uncertain:
            if not self.evaluated:
                self.evaluated = set()
            self.evaluated.add(key)
        shared = (None if entry.deleted or not visible
                  else self.renderer.shared_envelope(entry))
        if shared is not None and self.subscription.query.matches(shared[0].document):
            self._hold(key)
            text = (f'{{"type":"{"updated" if member else "entered"}","cursor":{cursor},'
                    f'"envelope":{shared[1]}}}')
        elif told and (entry.deleted or not visible or shared is not None):
            self._release(key)
            text = frame("left", cursor=str(entry.after) if entry.after else None,
                         resource_type=key[0], id=key[1], version=entry.version,
                         reason="deleted" if entry.deleted else "no_longer_matches")
        else:
            return None         # (a failed filter withholds the change: nothing sent)
        self.sent[key] = entry.version
        self.frames_sent += 1
        return text

    def results(self, snapshot, full: bool) -> list[Action]:
        """A live search's snapshot (``searchlight_forward.changelog.snapshot``):
        its members; the ``results`` frame when the client starts afresh (no cursor,
        or one that needs a full resynchronisation), else the changes since the
        client's cursor follow as entered/updated/left."""
        self._set_members(snapshot.members)
        if not full:
            self.uncertain = True
            return []
        hits = []
        for entry in snapshot.page:
            shared = self.renderer.shared_envelope(entry)
            if shared is not None:
                hits.append(shared[1])
                self.sent[entry.key] = entry.version
        self.start_at(snapshot.position)
        cursor = _dumps(str(self.position or snapshot.position))
        query = self.subscription.query
        return [Send(f'{{"type":"results","cursor":{cursor},"total":{snapshot.total},'
                     f'"page_size":{query.page_size},"hits":[{",".join(hits)}]}}')]

    def search_refused(self, code: str, message: str) -> list[Action]:
        """The live search cannot start (too many matches): the client may subscribe
        again, with a narrower query."""
        if self.state is not State.RESUMING:
            return []
        self.state = State.AUTHENTICATED
        self._set_members(())
        self.subscription = None
        return [error(code, message, "subscribe")]

    def resumed(self, position: Position | None, count: int, full: bool) -> list[Action]:
        """The resume is over: tell the client, and go live."""
        if self.state is not State.RESUMING:
            return []
        self.start_at(position)
        self.state = State.LIVE
        cursor = self.position or position
        # A live search's full state is its ``results`` frame (sent whenever one is
        # due): the resume after it only brings changes, so it is never "full" (a
        # client that drops what a full resume did not mention would drop the
        # results it just received).
        full = full and self.subscription.query is None
        return [Send(frame("resumed", cursor=str(cursor) if cursor else None,
                           count=count, full=full))]
