"""Who is on the other end of a WebSocket: the token validation seam.

The server hands every token to a ``TokenValidator`` and gets back an ``Identity``
(user, project, roles, expiry) or ``InvalidToken``. Validators are found by name:
the built-in ``token_file`` here, and any other registered under the
``searchlight_forward.websocket_auth`` entry point namespace (``keystone``,
``forwarders/websocket/keystone.py``, is one): ``validate`` may block on I/O, the
server calls it in a worker thread, and again with ``fresh=True`` for every open
connection every ``token_recheck_interval`` to notice revoked tokens.

.. warning::

   ``TokenFileValidator`` is a DEMO. Its tokens are static secrets in a file that
   never rotate unless someone edits it, and whoever can read the file can act as
   any user in it. Do not use it in production; use Keystone validation.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import threading
from typing import Any, Callable, Mapping

import stevedore

from forwarders.options import ConfigError

LOG = logging.getLogger(__name__)

NAMESPACE = "searchlight_forward.websocket_auth"
UTC = datetime.timezone.utc


class InvalidToken(Exception):
    """The token is unknown, malformed or expired; the message says which (never
    the token itself)."""


class ValidatorUnavailable(Exception):
    """The validator cannot answer now (Keystone down, service user refused); the
    message says what to check. The token may be good or bad."""


class AuthConfigError(ConfigError):
    """A validator cannot be built from its options; the message names the option."""


@dataclasses.dataclass(frozen=True)
class Identity:
    user_id: str | None
    project_id: str | None
    roles: frozenset = frozenset()
    expires_at: datetime.datetime | None = None   # aware (UTC); None: never

    def is_admin(self, admin_role: str = "admin") -> bool:
        return admin_role in self.roles

    def expired(self, now: datetime.datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (now or datetime.datetime.now(UTC)) >= self.expires_at

    def seconds_left(self, now: datetime.datetime | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or datetime.datetime.now(UTC))).total_seconds()


class TokenValidator(abc.ABC):
    """Turns a token into an Identity. Implementations must be thread-safe."""

    #: the registry name
    name = ""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "TokenValidator":
        """Build from configuration options (``token_file``, a Keystone URL, ...)."""
        return cls()

    def metric_families(self) -> list:
        """Prometheus families of its own (e.g. a latency histogram); none by default."""
        return []

    @abc.abstractmethod
    def validate(self, token: str, fresh: bool = False) -> Identity:
        """The token's identity; raises ``InvalidToken`` or ``ValidatorUnavailable``.
        May block (I/O). ``fresh``: ask the authority, not a cache."""

    def stats(self) -> dict:
        return {}


def parse_expiry(value: Any, where: str) -> datetime.datetime | None:
    """ISO 8601 (``2026-03-02T12:00:00Z``) to an aware UTC datetime; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: expires_at must be an ISO 8601 string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{where}: expires_at {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class TokenFileValidator(TokenValidator):
    """DEMO ONLY - static tokens from a JSON file. Not for production.

    The file maps tokens to identities::

        {
          "demo-token-1": {"user_id": "alice", "project_id": "3f1e...",
                           "roles": ["member", "reader"]},
          "admin-token":  {"user_id": "admin", "project_id": "9c0d...",
                           "roles": ["admin"], "expires_at": "2030-01-01T00:00:00Z"}
        }

    The file is read at start and again whenever its modification time changes, so
    tokens can be added or revoked without a restart. A file that became invalid is
    reported and the previous contents stay in force. Tokens are kept only as
    SHA-256 digests in memory and never appear in messages.
    """

    name = "token_file"

    def __init__(self, path: str):
        if not path:
            raise AuthConfigError("token_file: a path is required for auth = token_file")
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._identities: dict[str, Identity] = {}
        LOG.warning("WebSocket authentication uses the DEMO token file %s: static "
                    "tokens, not for production (use Keystone validation)", path)
        self._load(initial=True)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "TokenFileValidator":
        return cls(options.get("token_file") or "")

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def parse(cls, text: str, where: str = "token file") -> dict[str, Identity]:
        """Digest -> Identity for the file's contents; ValueError names the entry."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{where} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{where} must hold a JSON object of token -> identity")
        identities = {}
        for position, (token, entry) in enumerate(data.items(), 1):
            entry_where = f"{where}, entry {position}"
            if not token:
                raise ValueError(f"{entry_where}: empty token")
            if not isinstance(entry, dict):
                raise ValueError(f"{entry_where}: the identity must be an object")
            roles = entry.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError(f"{entry_where}: roles must be a list of strings")
            for key in ("project_id", "user_id"):
                if entry.get(key) is not None and not isinstance(entry[key], str):
                    raise ValueError(f"{entry_where}: {key} must be a string")
            identities[cls._digest(token)] = Identity(
                user_id=entry.get("user_id"), project_id=entry.get("project_id"),
                roles=frozenset(roles),
                expires_at=parse_expiry(entry.get("expires_at"), entry_where))
        return identities

    def _load(self, initial: bool = False) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            if initial:
                raise AuthConfigError(f"token_file: cannot read {self.path}: {exc}") from None
            LOG.error("token file %s is unreadable (%s); keeping the tokens loaded "
                      "before", self.path, exc)
            return
        if mtime == self._mtime:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                identities = self.parse(f.read(), self.path)
        except (OSError, ValueError) as exc:
            if initial:
                raise AuthConfigError(f"token_file: {exc}") from None
            LOG.error("%s; keeping the tokens loaded before", exc)
            self._mtime = mtime
            return
        self._identities, self._mtime = identities, mtime
        LOG.info("loaded %d tokens from %s", len(identities), self.path)

    def validate(self, token: str, fresh: bool = False) -> Identity:
        if not isinstance(token, str) or not token:
            raise InvalidToken("empty token")
        with self._lock:      # the file is re-read whenever it changed: always fresh
            self._load()
            identity = self._identities.get(self._digest(token))
        if identity is None:
            raise InvalidToken("unknown token")
        if identity.expired():
            raise InvalidToken("token expired")
        return identity


# -- registry --------------------------------------------------------------------

_BUILT_IN: dict[str, Callable[[Mapping[str, Any]], TokenValidator]] = {
    TokenFileValidator.name: TokenFileValidator.from_options,
}


def register(name: str, factory: Callable[[Mapping[str, Any]], TokenValidator]) -> None:
    """Add a validator factory by name (tests, embedding); entry points (namespace
    ``searchlight_forward.websocket_auth``, read through stevedore) are the usual way
    for a third party."""
    _BUILT_IN[name] = factory


def _extensions() -> stevedore.ExtensionManager:
    # A validator whose distribution fails to import is skipped (and logged by
    # stevedore), not fatal to the others.
    return stevedore.ExtensionManager(NAMESPACE, invoke_on_load=False,
                                      on_load_failure_callback=_load_failed)


def _load_failed(manager, entrypoint, exc) -> None:
    LOG.warning("token validator %s cannot be loaded: %s", entrypoint.name, exc)


def available() -> list[str]:
    return sorted(set(_BUILT_IN) | set(_extensions().names()))


def known(name: str) -> bool:
    return name in available()


def load_validator(name: str, options: Mapping[str, Any]) -> TokenValidator:
    """The validator registered as ``name``, built from ``options``."""
    factory = _BUILT_IN.get(name)
    if factory is None:
        extensions = _extensions()
        if name not in extensions.names():
            raise AuthConfigError(f"auth: unknown token validator {name!r}; available: "
                                  f"{', '.join(available())}")
        cls = extensions[name].plugin
        factory = cls.from_options if hasattr(cls, "from_options") else cls
    return factory(options)
