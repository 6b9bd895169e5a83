"""A subscription: what a tenant asked to receive, where, and in which state (pure).

A subscription belongs to one project (or, made by an admin, to all projects). It
names a protocol (``webhook``, ``email`` or ``syslog``), an endpoint (an URL, an
address or a ``syslog+tls://`` URL),
optional filters (resource types, event types, priorities) and has a state:

* ``pending_confirmation``: created, or its endpoint changed; nothing but the
  confirmation request is sent until the endpoint's owner confirms;
* ``active``: changes are delivered;
* ``disabled``: nothing is sent; ``state_reason`` says why (the owner, ``410
  Gone``, failing for too long, a confirmation that could not be delivered).

The role copy it receives is its creator's (``admin`` or ``user``), fixed at
creation, as a WebSocket connection's is.

``parse_create`` and ``parse_update`` turn a request body into a subscription or
raise ``Invalid`` naming the field; ``public_view`` is what the API shows (never a
secret or the confirmation token).
"""
from __future__ import annotations

import base64
import dataclasses
import email.utils
import secrets as random
import time
import uuid
from typing import Any, Mapping
from urllib.parse import urlsplit

from forwarders.sinks.syslog.url import parse_url
from searchlight_forward.model.documents import ADMIN, ROLES
from searchlight_forward.model.priority import PRIORITIES

WEBHOOK, EMAIL, SYSLOG, FEED, WEBSUB = "webhook", "email", "syslog", "feed", "websub"
#: what a tenant creates through /v1/subscriptions (WebSub ones come from the hub)
PROTOCOLS = (WEBHOOK, EMAIL, SYSLOG, FEED)
MAX_FEED_TTL = 366 * 86400
PENDING, ACTIVE, DISABLED = "pending_confirmation", "active", "disabled"
EACH, DIGEST = "each", "digest"
EMAIL_MODES = (EACH, DIGEST)
NOW, BEGINNING = "now", "beginning"
SECRET_PREFIX = "whsec_"

MAX_PATTERNS = 50
MAX_NAME = 255
MAX_ENDPOINT = 2048


class Invalid(ValueError):
    """A request body names a bad value; ``field`` says which."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who asks (from the Keystone token, through auth_token's headers)."""
    user_id: str
    project_id: str
    roles: tuple[str, ...]
    admin_copy: bool = False        # policy: may receive admin copies


@dataclasses.dataclass(frozen=True)
class Rules:
    """The operator's limits, from ``[subscriptions]``."""
    resource_types: tuple[str, ...]
    default_rate_limit: float = 10.0
    max_rate_limit: float = 100.0
    min_digest_interval: int = 60
    max_digest_interval: int = 86400


@dataclasses.dataclass(frozen=True)
class Secret:
    value: str                            # whsec_<base64>
    expires_at: float | None = None       # epoch seconds; None: current

    def to_dict(self) -> dict:
        return {"value": self.value, "expires_at": self.expires_at}


@dataclasses.dataclass(frozen=True)
class Subscription:
    id: str
    project_id: str | None                # None: every project (admins only)
    protocol: str
    endpoint: str
    role: str
    created_by: str
    created_at: float
    updated_at: float
    state: str = PENDING
    state_reason: str | None = None
    name: str = ""
    resource_types: tuple[str, ...] | None = None
    event_types: tuple[str, ...] | None = None
    priorities: tuple[str, ...] | None = None
    rate_limit: float = 10.0              # deliveries per second, at most
    email_mode: str = EACH
    digest_interval: int = 3600
    start_from: str = NOW
    secrets: tuple[Secret, ...] = ()
    confirmation_token: str = ""
    confirmation_sent_at: float | None = None
    confirmation_attempts: int = 0
    confirmation_error: str | None = None
    confirmed_at: float | None = None
    #: where the cursor starts, per resource group (the change log's head when the
    #: endpoint was confirmed): nothing before the confirmation is sent
    start_positions: Mapping[str, Any] | None = None
    #: a feed: the SHA-256 of its secret URL's token (the token itself is shown once)
    feed_token_hash: str = ""
    #: a feed's URL stops working then (epoch seconds; None: until revoked)
    expires_at: float | None = None
    #: WebSub: the feed subscription whose feed is the topic, the subscriber's
    #: hub.secret (X-Hub-Signature) and when its lease ends
    websub_topic: str = ""
    websub_topic_url: str = ""            # the feed's secret URL, as the subscriber gave it
    websub_feed_hash: str = ""            # that feed's token hash then: a rotation ends it
    websub_secret: str = ""
    lease_expires_at: float | None = None

    # -- storage ----------------------------------------------------------------------

    def to_source(self) -> dict:
        data = dataclasses.asdict(self)
        data["secrets"] = [s.to_dict() for s in self.secrets]
        for key in ("resource_types", "event_types", "priorities"):
            data[key] = list(data[key]) if data[key] is not None else None
        data["start_positions"] = (dict(self.start_positions)
                                   if self.start_positions is not None else None)
        return data

    @classmethod
    def from_source(cls, source: Mapping[str, Any]) -> "Subscription":
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in source.items() if k in known}
        data["secrets"] = tuple(Secret(**s) for s in source.get("secrets") or ())
        for key in ("resource_types", "event_types", "priorities"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    # -- what it selects -------------------------------------------------------------

    def current_secrets(self, now: float | None = None) -> tuple[str, ...]:
        """Secrets to sign with now: the newest first, then those still overlapping."""
        now = time.time() if now is None else now
        return tuple(s.value for s in self.secrets
                     if s.expires_at is None or s.expires_at > now)

    def signing_secrets(self, now: float | None = None) -> tuple[str, ...]:
        """The current secrets as the webhook sink's ``secrets`` option takes them:
        ``whsec_...`` or, for one that expires, ``whsec_...@<epoch seconds>``."""
        now = time.time() if now is None else now
        return tuple(s.value if s.expires_at is None else f"{s.value}@{s.expires_at!r}"
                     for s in self.secrets if s.expires_at is None or s.expires_at > now)

    def replace(self, **changes) -> "Subscription":
        return dataclasses.replace(self, **changes)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(24)).decode()


def new_token() -> str:
    """A confirmation token: hex, so that it never starts with "-" (a command line
    would take ``--token -K3...`` for a missing value) and needs no URL escaping."""
    return random.token_hex(24)


# -- requests ------------------------------------------------------------------------

UPDATABLE = frozenset({"name", "endpoint", "resource_types", "event_types", "priorities",
                       "rate_limit", "email_mode", "digest_interval", "state"})
CREATABLE = UPDATABLE - {"state"} | {"protocol", "project_id", "all_projects", "start_from",
                                     "expires_in"}


def parse_create(body: Any, caller: Caller, rules: Rules, now: float | None = None
                 ) -> Subscription:
    """A new subscription from a POST body; ``Invalid`` names what is wrong.

    ``project_id`` defaults to the caller's; ``all_projects: true`` makes it None
    (the policy decides who may do either)."""
    body = _object(body)
    _known(body, CREATABLE)
    protocol = _choice(body, "protocol", PROTOCOLS, required=True)
    if protocol == FEED:
        return _feed(body, caller, rules, now)
    if "expires_in" in body:
        raise Invalid("expires_in", "only feeds expire")
    all_projects = body.get("all_projects", False)
    if not isinstance(all_projects, bool):
        raise Invalid("all_projects", "must be true or false")
    if all_projects and body.get("project_id") is not None:
        raise Invalid("all_projects", "give either project_id or all_projects")
    project_id = None if all_projects else _string(body, "project_id", 64) or caller.project_id
    now = time.time() if now is None else now
    sub = Subscription(
        id=str(uuid.uuid4()), project_id=project_id, protocol=protocol,
        endpoint=_endpoint(protocol, body.get("endpoint")),
        role=ADMIN if caller.admin_copy else ROLES[1], created_by=caller.user_id,
        created_at=now, updated_at=now, name=_string(body, "name", MAX_NAME) or "",
        start_from=_choice(body, "start_from", (NOW, BEGINNING)) or NOW,
        rate_limit=rules.default_rate_limit,
        secrets=(Secret(new_secret()),) if protocol == WEBHOOK else (),
        confirmation_token=new_token())
    return _apply(sub, body, rules)


def _feed(body: Mapping[str, Any], caller: Caller, rules: Rules, now: float | None
          ) -> Subscription:
    """A feed subscription: no endpoint (its secret URL is made by the API), active
    at once; ``expires_in`` seconds optional."""
    if body.get("endpoint") is not None:
        raise Invalid("endpoint", "a feed has no endpoint: its URL is in the answer")
    all_projects = body.get("all_projects", False)
    if not isinstance(all_projects, bool):
        raise Invalid("all_projects", "must be true or false")
    ttl = body.get("expires_in")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)
                            or not 60 <= ttl <= MAX_FEED_TTL):
        raise Invalid("expires_in", f"seconds, from 60 to {MAX_FEED_TTL}")
    now = time.time() if now is None else now
    sub = Subscription(
        id=str(uuid.uuid4()), protocol=FEED, endpoint="", state=ACTIVE,
        project_id=None if all_projects else _string(body, "project_id", 64)
        or caller.project_id,
        role=ADMIN if caller.admin_copy else ROLES[1], created_by=caller.user_id,
        created_at=now, updated_at=now, name=_string(body, "name", MAX_NAME) or "",
        expires_at=now + ttl if ttl else None, confirmed_at=now)
    return _apply(sub, {k: v for k, v in body.items()
                        if k in ("resource_types", "event_types", "priorities")}, rules)


def parse_update(body: Any, sub: Subscription, rules: Rules, now: float | None = None
                 ) -> Subscription:
    """``sub`` with a PATCH body applied. A new endpoint must be confirmed again;
    ``state`` may be set to ``active`` (re-enabling) or ``disabled``."""
    body = _object(body)
    _known(body, UPDATABLE)
    now = time.time() if now is None else now
    changed = _apply(sub, body, rules).replace(updated_at=now)
    if "endpoint" in body:
        endpoint = _endpoint(sub.protocol, body["endpoint"])
        if endpoint != sub.endpoint:
            changed = changed.replace(
                endpoint=endpoint, state=PENDING, state_reason="the endpoint changed",
                confirmation_token=new_token(), confirmation_sent_at=None,
                confirmation_attempts=0, confirmation_error=None, confirmed_at=None,
                start_positions=None)
    if "state" in body:
        state = _choice(body, "state", (ACTIVE, DISABLED))
        if state == DISABLED and sub.state != DISABLED:
            changed = changed.replace(state=DISABLED, state_reason="disabled by its owner")
        elif state == ACTIVE and sub.state == DISABLED:
            # Back to where it was: confirmed endpoints resume, others confirm first.
            confirmed = sub.confirmed_at is not None and "endpoint" not in body
            changed = changed.replace(
                state=ACTIVE if confirmed else PENDING,
                state_reason="enabled again by its owner",
                confirmation_sent_at=None if not confirmed else sub.confirmation_sent_at,
                confirmation_attempts=0 if not confirmed else sub.confirmation_attempts)
    return changed


def _apply(sub: Subscription, body: Mapping[str, Any], rules: Rules) -> Subscription:
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _string(body, "name", MAX_NAME) or ""
    if "resource_types" in body:
        types = _patterns(body, "resource_types")
        if types is not None:
            unknown = sorted(set(types) - set(rules.resource_types))
            if unknown:
                raise Invalid("resource_types", f"unknown type {unknown[0]!r}; known: "
                              f"{', '.join(rules.resource_types)}")
        changes["resource_types"] = types
    if "event_types" in body:
        changes["event_types"] = _patterns(body, "event_types")
    if "priorities" in body:
        found = _patterns(body, "priorities")
        if found is not None:
            found = tuple(p.lower() for p in found)
            bad = [p for p in found if p not in PRIORITIES]
            if bad:
                raise Invalid("priorities", f"unknown priority {bad[0]!r}; known: "
                              f"{', '.join(PRIORITIES)}")
        changes["priorities"] = found
    if "rate_limit" in body:
        rate = body["rate_limit"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
                0 < rate <= rules.max_rate_limit):
            raise Invalid("rate_limit", f"deliveries per second, more than 0 and at most "
                          f"{rules.max_rate_limit:g}")
        changes["rate_limit"] = float(rate)
    if "email_mode" in body or "digest_interval" in body:
        if sub.protocol != EMAIL:
            field = "email_mode" if "email_mode" in body else "digest_interval"
            raise Invalid(field, "only e-mail subscriptions have it")
    if "email_mode" in body:
        changes["email_mode"] = _choice(body, "email_mode", EMAIL_MODES)
    if "digest_interval" in body:
        value = body["digest_interval"]
        if isinstance(value, bool) or not isinstance(value, int) or not (
                rules.min_digest_interval <= value <= rules.max_digest_interval):
            raise Invalid("digest_interval", f"seconds, from {rules.min_digest_interval} "
                          f"to {rules.max_digest_interval}")
        changes["digest_interval"] = value
    return sub.replace(**changes)


def public_view(sub: Subscription) -> dict:
    """The subscription as the API shows it (no secret, no confirmation token)."""
    data = {k: v for k, v in sub.to_source().items()
            if k not in ("secrets", "confirmation_token", "start_positions",
                         "feed_token_hash", "websub_secret", "websub_topic_url",
                         "websub_feed_hash")}
    data["all_projects"] = sub.project_id is None
    data["links"] = [{"rel": "self", "href": f"/v1/subscriptions/{sub.id}"}]
    if sub.protocol != EMAIL:
        data.pop("email_mode")
        data.pop("digest_interval")
    return data


# -- field checks ---------------------------------------------------------------------

def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    return body


def _known(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(unknown[0], f"unknown field; known: {', '.join(sorted(allowed))}")


def _string(body: Mapping[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(field, f"must be a string of at most {limit} characters")
    return value


def _choice(body: Mapping[str, Any], field: str, choices: tuple[str, ...],
            required: bool = False) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if value not in choices:
        raise Invalid(field, f"must be one of {', '.join(choices)}")
    return value


def _patterns(body: Mapping[str, Any], field: str) -> tuple[str, ...] | None:
    """A list of strings (``fnmatch`` patterns for event types); null or [] for all."""
    value = body.get(field)
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) > MAX_PATTERNS or not all(
            isinstance(v, str) and 0 < len(v) <= 255 for v in value):
        raise Invalid(field, f"must be a list of at most {MAX_PATTERNS} non-empty strings")
    return tuple(value)


def _endpoint(protocol: str, value: Any) -> str:
    """The endpoint's syntax (where it resolves to is ``destinations``' business)."""
    if value is None or value == "":
        raise Invalid("endpoint", f"required: the {protocol} subscription's "
                      f"{'address' if protocol == EMAIL else 'URL'}")
    if not isinstance(value, str) or not value or len(value) > MAX_ENDPOINT:
        raise Invalid("endpoint", f"must be a string of at most {MAX_ENDPOINT} characters")
    if protocol == EMAIL:
        name, address = email.utils.parseaddr(value)
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain or address != value.strip() or name:
            raise Invalid("endpoint", "must be one e-mail address, like ops@example.com")
        return address
    if protocol == SYSLOG:
        try:
            parse_url(value)
        except ValueError as exc:
            raise Invalid("endpoint", str(exc)) from None
        return value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("endpoint", "must be an http or https URL")
    if parts.username or parts.password:
        raise Invalid("endpoint", "must not carry credentials (the signature "
                      "authenticates the sender)")
    return value

