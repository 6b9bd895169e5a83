"""Keystone token validation for the WebSocket server (``auth = keystone``).

A Horizon user already holds a project-scoped Keystone token; the live table sends
exactly that token. This validator asks Keystone about it (``GET /v3/auth/tokens``
with ``X-Subject-Token``), as a service user whose credentials are the usual
keystoneauth1 options in ``[websocket_keystone]``, and takes the user, project,
role names and expiry from Keystone's answer.

Answers are cached for ``cache_ttl`` seconds (and never past the token's own
expiry), good and bad ones alike: a page that reconnects, or many tabs of one
user, cost one Keystone call, and a flood of garbage tokens costs one call per
distinct token. The price: **a revoked token stays valid for new connections
until its cache entry expires.** Open connections are re-checked past the cache
(``validate(token, fresh=True)``) by the server every
``[websocket] token_recheck_interval``.

Concurrent validations of one token share one Keystone call.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import threading
import time
from typing import Any, Mapping

import cachetools
from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from forwarders.websocket.auth import (AuthConfigError, Identity, InvalidToken,
                                       TokenValidator, ValidatorUnavailable)
from searchlight_forward import metrics

LOG = logging.getLogger(__name__)

GROUP = "websocket_keystone"

keystone_opts = [
    cfg.FloatOpt("cache_ttl", default=10.0, min=0.0,
                 help="Seconds a validation answer (valid or not) is cached. A token "
                      "revoked in Keystone is still accepted for NEW connections until "
                      "its entry expires; open connections are re-checked every "
                      "[websocket] token_recheck_interval regardless. 0: no cache."),
    cfg.IntOpt("cache_size", default=10000, min=1,
               help="Most tokens kept in the validation cache (least recently used "
                    "go first)."),
    cfg.StrOpt("interface", default="public",
               choices=["public", "internal", "admin"],
               help="Which identity endpoint of the catalog validates tokens."),
    cfg.StrOpt("region_name", help="Region of the identity endpoint, if several."),
]


def list_opts() -> list:
    """This group's options for the sample config: ours, then keystoneauth1's
    (auth_type = password and its credentials, and the session's TLS/timeout)."""
    return (keystone_opts + ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options()
            + ks_loading.get_auth_plugin_conf_options("password"))


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(keystone_opts, GROUP)
    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)


def identity_of(body: Mapping[str, Any], token: str) -> Identity:
    """Keystone's token body -> Identity (pure; raises InvalidToken for a body that
    is not a v3 token)."""
    try:
        info = access.create(body=dict(body), auth_token=token)
    except Exception:  # noqa: BLE001 - keystoneauth raises ValueError or KeyError
        raise InvalidToken("Keystone's answer is not a v3 token") from None
    if info.version != "v3":
        raise InvalidToken("Keystone's answer is not a v3 token")
    return Identity(user_id=info.user_id, project_id=info.project_id,
                    roles=frozenset(info.role_names or ()), expires_at=info.expires)


class ValidationCache:
    """Token digest -> Identity or InvalidToken, for at most ``ttl`` seconds and never
    past the token's expiry; plus single flight: concurrent misses of one key wait
    for the first caller's answer. Thread-safe; pure apart from the clock."""

    def __init__(self, ttl: float, size: int, clock=time.monotonic, wall=time.time):
        self.ttl = ttl
        self._clock, self._wall = clock, wall
        self._entries = cachetools.TLRUCache(size, self._until, timer=clock)
        self._inflight: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _until(self, _key, answer, now) -> float:
        until = now + self.ttl
        expires = getattr(answer, "expires_at", None)
        if expires is not None:
            until = min(until, now + (expires.timestamp() - self._wall()))
        return until

    @staticmethod
    def key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, token: str, fetch, fresh: bool = False) -> Identity:
        """The identity of ``token``: cached, or ``fetch(token)`` (may raise
        InvalidToken, which is cached too, or anything else, which is not)."""
        key = self.key(token)
        with self._lock:
            answer = None if fresh or self.ttl <= 0 else self._entries.get(key)
            if answer is not None:
                self.hits += 1
                return self._unwrap(answer)
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                self.misses += 1
                future = self._inflight[key] = concurrent.futures.Future()
        if not owner:
            return future.result()
        try:
            answer = fetch(token)
        except InvalidToken as exc:
            answer = exc
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        with self._lock:
            if self.ttl > 0:
                self._entries[key] = answer
            elif key in self._entries:
                del self._entries[key]
        if isinstance(answer, InvalidToken):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return self._unwrap(answer)

    @staticmethod
    def _unwrap(answer):
        if isinstance(answer, InvalidToken):
            raise InvalidToken(str(answer))
        return answer

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class KeystoneValidator(TokenValidator):
    """Validates tokens against Keystone as the configured service user."""

    name = "keystone"

    def __init__(self, session, interface: str = "public", region_name: str | None = None,
                 cache_ttl: float = 10.0, cache_size: int = 10000):
        self.session = session
        self.endpoint_filter = {"service_type": "identity", "interface": interface,
                                "version": (3, 0)}
        if region_name:
            self.endpoint_filter["region_name"] = region_name
        self.cache = ValidationCache(cache_ttl, cache_size)
        self.seconds = metrics.Histogram(
            metrics.metric_name("websocket", "keystone_validation_seconds"),
            "time Keystone took to answer a token validation (cache misses only)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=None)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "KeystoneValidator":
        conf = options.get("conf")
        if conf is None:
            raise AuthConfigError("keystone: needs the service configuration "
                                  f"([{GROUP}])")
        register_opts(conf)
        group = conf[GROUP]
        try:
            auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
        except ks_exceptions.MissingRequiredOptions as exc:
            raise AuthConfigError(
                f"keystone: [{GROUP}] misses {', '.join(o.dest for o in exc.options)}; "
                "set auth_type = password, auth_url, username, password, "
                "project_name and the domains of the service user") from None
        if auth is None:
            raise AuthConfigError(f"keystone: set [{GROUP}] auth_type = password and the "
                                  "service user's credentials")
        session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)
        return cls(session, group.interface, group.region_name, group.cache_ttl,
                   group.cache_size)

    def validate(self, token: str, fresh: bool = False) -> Identity:
        if not isinstance(token, str) or not token:
            raise InvalidToken("empty token")
        identity = self.cache.get(token, self._ask_keystone, fresh)
        if identity.expired():
            raise InvalidToken("token expired")
        return identity

    def metric_families(self) -> list:
        return list(self.seconds.collect())

    def _ask_keystone(self, token: str) -> Identity:
        try:
            with self.seconds.time():
                response = self.session.get(
                    "/auth/tokens?nocatalog", endpoint_filter=self.endpoint_filter,
                    headers={"X-Subject-Token": token}, raise_exc=False)
        except ks_exceptions.Unauthorized:
            raise ValidatorUnavailable(
                f"Keystone refused the service user's credentials; check [{GROUP}] "
                "username, password and project") from None
        except ks_exceptions.ClientException as exc:
            raise ValidatorUnavailable(f"Keystone unreachable: {exc}") from None
        status = response.status_code
        if status == 404:
            raise InvalidToken("token unknown, expired or revoked")
        if status == 200:
            return identity_of(response.json(), token)
        if status == 401:
            raise ValidatorUnavailable(f"Keystone refused the service user's token; "
                                       f"check [{GROUP}]")
        if status == 403:
            raise ValidatorUnavailable(
                f"the service user of [{GROUP}] may not validate tokens; give it the "
                "'service' role (or a role Keystone's identity:validate_token allows)")
        raise ValidatorUnavailable(f"Keystone answered {status} to a token validation")

    def stats(self) -> dict:
        return {"cached": len(self.cache), "hits": self.cache.hits,
                "misses": self.cache.misses}
