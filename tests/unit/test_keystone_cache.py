"""The Keystone validator's pure parts: the answer cache and the token body."""
from __future__ import annotations

import datetime
import threading

import pytest

from forwarders.websocket.auth import Identity, InvalidToken, ValidatorUnavailable
from forwarders.websocket.keystone import ValidationCache, identity_of

UTC = datetime.timezone.utc
T0 = 1_800_000_000.0          # wall clock of the fake clocks


class Clock:
    def __init__(self):
        self.t = 0.0

    def mono(self):
        return self.t

    def wall(self):
        return T0 + self.t


def ident(expires_in=3600.0, project="p1"):
    at = datetime.datetime.fromtimestamp(T0 + expires_in, UTC)
    return Identity("u1", project, frozenset({"member"}), at)


def counting(answer):
    calls = []

    def fetch(token):
        calls.append(token)
        if isinstance(answer, BaseException):
            raise answer
        return answer
    return fetch, calls


def test_answers_are_cached_for_ttl_then_asked_again():
    clock = Clock()
    cache = ValidationCache(10.0, 100, clock.mono, clock.wall)
    fetch, calls = counting(ident())
    assert cache.get("tok", fetch).project_id == "p1"
    clock.t = 9.9
    cache.get("tok", fetch)
    assert len(calls) == 1 and cache.hits == 1
    clock.t = 10.1
    cache.get("tok", fetch)
    assert len(calls) == 2


def test_never_cached_past_the_tokens_expiry():
    clock = Clock()
    cache = ValidationCache(10.0, 100, clock.mono, clock.wall)
    fetch, calls = counting(ident(expires_in=3.0))
    cache.get("tok", fetch)
    clock.t = 3.5
    cache.get("tok", fetch)
    assert len(calls) == 2


def test_bad_tokens_are_cached_too_but_outages_are_not():
    clock = Clock()
    cache = ValidationCache(10.0, 100, clock.mono, clock.wall)
    fetch, calls = counting(InvalidToken("token unknown, expired or revoked"))
    for _ in range(3):
        with pytest.raises(InvalidToken, match="unknown"):
            cache.get("garbage", fetch)
    assert len(calls) == 1
    down, down_calls = counting(ValidatorUnavailable("Keystone unreachable"))
    for _ in range(2):
        with pytest.raises(ValidatorUnavailable):
            cache.get("tok", down)
    assert len(down_calls) == 2 and len(cache) == 1


def test_fresh_asks_again_and_replaces_the_entry():
    clock = Clock()
    cache = ValidationCache(10.0, 100, clock.mono, clock.wall)
    cache.get("tok", counting(ident())[0])
    revoked, calls = counting(InvalidToken("revoked"))
    with pytest.raises(InvalidToken):
        cache.get("tok", revoked, fresh=True)
    with pytest.raises(InvalidToken):          # the cache now knows it too
        cache.get("tok", counting(ident())[0])
    assert len(calls) == 1


def test_zero_ttl_disables_the_cache():
    cache = ValidationCache(0.0, 100)
    fetch, calls = counting(ident())
    cache.get("tok", fetch)
    cache.get("tok", fetch)
    assert len(calls) == 2 and len(cache) == 0


def test_concurrent_misses_of_one_token_share_one_call():
    """The first caller's fetch waits (bounded) for the others to call fetch too:
    without single flight all 8 would, and the condition would come true at once."""
    cache = ValidationCache(10.0, 100)
    callers = 8
    calls = []
    more_calls = threading.Condition()
    start = threading.Barrier(callers)

    def slow(token):
        with more_calls:
            calls.append(token)
            more_calls.notify_all()
            more_calls.wait_for(lambda: len(calls) == callers, timeout=3.0)
        return ident()

    results = []

    def caller():
        start.wait()
        results.append(cache.get("tok", slow))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(results) == callers
    assert {r.project_id for r in results} == {"p1"}


def test_keystone_body_to_identity():
    body = {"token": {
        "methods": ["password"], "expires_at": "2026-11-22T01:00:00.000000Z",
        "issued_at": "2026-11-22T00:00:00.000000Z", "audit_ids": ["a"],
        "user": {"id": "u9", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "project": {"id": "p9", "name": "demo",
                    "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}]}}
    identity = identity_of(body, "tok")
    assert identity.user_id == "u9" and identity.project_id == "p9"
    assert identity.roles == {"member", "reader"}
    assert identity.expires_at == datetime.datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    with pytest.raises(InvalidToken):
        identity_of({"access": {}}, "tok")
    with pytest.raises(InvalidToken):
        identity_of({"nothing": 1}, "tok")
