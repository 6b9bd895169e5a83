"""Keystone tokens on the real WebSocket server, against the real local Keystone:
identity from Keystone, revocation and expiry on open connections, renewal in-band.

Changes are written straight through the Indexer and the doorbell is rung, so the
tests are about tokens, not about the listener (test_websocket.py covers that)."""
from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forwarders.websocket import protocol
from forwarders.websocket.keystone import KeystoneValidator
from tests.functional.conftest import wait_for
from tests.functional.websocket_support import SERVER


def start(ws_server, keystone, tmp_path, cache_ttl=10, **settings):
    validator = keystone.validator(tmp_path, cache_ttl=cache_ttl)
    assert isinstance(validator, KeystoneValidator)
    return ws_server(types=[SERVER], validator=validator, **settings)


def test_identity_comes_from_keystone(ws_server, clients, keystone, tmp_path, writer):
    writer(keystone.projects["demo"], ["d1"], 10)
    writer(keystone.projects["alt-demo"], ["a1"], 10)
    server = start(ws_server, keystone, tmp_path)
    member = clients(server.url)
    hello = member.authenticate(keystone.token("demo"))
    assert hello["type"] == "authenticated", hello
    assert hello["project_id"] == keystone.projects["demo"]
    assert hello["user_id"] == keystone.users["demo"]["user_id"]
    assert "member" in hello["roles"] and hello["admin"] is False
    assert hello["expires_at"]
    member.subscribe(types=[SERVER])
    assert set(member.view) == {(SERVER, "d1")}

    admin = clients(server.url, header_token=keystone.token("admin"))
    hello = admin.recv()
    assert hello["admin"] is True and hello["project_id"] == keystone.projects["admin"]
    admin.subscribe(types=[SERVER], all_projects=True)
    assert {(SERVER, "d1"), (SERVER, "a1")} <= set(admin.view)

    reader = clients(server.url)
    reader.authenticate(keystone.token("alt-reader"))
    reader.send({"action": "subscribe", "resource_types": [SERVER], "all_projects": True})
    assert reader.recv()["code"] == "forbidden"

    for bad in ("garbage", keystone.token("demo")[:-4] + "AAAA"):
        c = clients(server.url)
        c.send({"action": "authenticate", "token": bad})
        assert c.close_code() == protocol.AUTH_FAILED

    # Prometheus: one Keystone call per distinct token (cache misses), each timed.
    text = urllib.request.urlopen(server.url.replace("ws://", "http://") + "/metrics",
                                  timeout=10).read().decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text)
               for s in f.samples if not s.labels or "le" not in s.labels}
    misses = samples["searchlight_forward_websocket_validator_misses_total"]
    assert misses >= 5                 # demo, admin, alt-reader and the two bad ones
    assert samples["searchlight_forward_websocket_keystone_validation_seconds_count"] \
        == misses


def test_revoked_token_stops_receiving_within_the_recheck_interval(
        ws_server, clients, keystone, tmp_path, writer):
    project = keystone.projects["demo"]
    server = start(ws_server, keystone, tmp_path, cache_ttl=30, token_recheck_interval=1.0)
    token = keystone.token("demo")
    victim = clients(server.url)
    victim.authenticate(token)
    victim.subscribe(types=[SERVER])
    bystander = clients(server.url)
    bystander.authenticate(keystone.token("demo"))        # another token, same user
    bystander.subscribe(types=[SERVER])
    writer(project, ["r1"], 10)
    wait_for(lambda: victim.pump(0.2) or (SERVER, "r1") in victim.view, 20, "r1 at the victim")

    keystone.revoke(token)
    revoked_at = time.monotonic()
    assert victim.close_code(timeout=15) == protocol.TOKEN_REVOKED
    print(f"revoked token closed after {time.monotonic() - revoked_at:.2f}s")

    # The re-check also told the cache: the revoked token opens nothing any more.
    late = clients(server.url)
    late.send({"action": "authenticate", "token": token})
    assert late.close_code() == protocol.AUTH_FAILED

    writer(project, ["r2"], 11)
    wait_for(lambda: bystander.pump(0.2) or (SERVER, "r2") in bystander.view, 20,
             "r2 at the bystander, whose token is still good")
    assert server.server.counters["revoked"] == 1


def test_cached_revoked_token_opens_until_the_next_recheck(ws_server, clients, keystone,
                                                           tmp_path):
    """The documented price of the cache: a token revoked while no connection holds
    it is accepted from the cache, and closed by the next re-check."""
    server = start(ws_server, keystone, tmp_path, cache_ttl=60, token_recheck_interval=3.0)
    token = keystone.token("demo")
    first = clients(server.url)
    first.authenticate(token)
    first.close()
    wait_for(lambda: server.server.stats()["connections"] == 0, 10, "the close")
    keystone.revoke(token)
    late = clients(server.url)
    assert late.authenticate(token)["type"] == "authenticated"     # from the cache
    assert late.close_code(timeout=15) == protocol.TOKEN_REVOKED


def test_expiry_closes_4005_unless_renewed_in_band(ws_server, clients, keystone, tmp_path,
                                                   writer):
    project = keystone.projects["demo"]
    server = start(ws_server, keystone, tmp_path, expiry_warning=4.0)
    renewing = clients(server.url)
    hello = renewing.authenticate(keystone.short_token("demo", 8))
    assert hello["type"] == "authenticated" and hello["expires_at"]
    renewing.subscribe(types=[SERVER])
    lazy = clients(server.url)
    lazy.authenticate(keystone.short_token("demo", 8))
    lazy.subscribe(types=[SERVER])
    writer(project, ["e1"], 10)

    def frame_of(client, kind, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = [f for f in client.other if f["type"] == kind]
            if seen:
                return seen[-1]
            client.pump(0.2)
        pytest.fail(f"no {kind} frame within {timeout}s")

    wait_for(lambda: lazy.pump(0.2) or (SERVER, "e1") in lazy.view, 20, "e1 at lazy")
    warning = frame_of(renewing, "token_expiring")
    assert warning["expires_at"] == hello["expires_at"] and warning["seconds_left"] <= 4
    renewing.send({"action": "authenticate", "token": keystone.token("demo")})
    renewed = frame_of(renewing, "reauthenticated")
    assert renewed["expires_at"] > hello["expires_at"]
    cursor_before = renewing.cursor

    assert lazy.close_code(timeout=20) == protocol.TOKEN_EXPIRED
    writer(project, ["e2"], 11)                 # after the first token expired
    wait_for(lambda: renewing.pump(0.2) or (SERVER, "e2") in renewing.view, 20,
             "e2 at the renewed connection")
    assert renewing.cursor > cursor_before and renewing.regressions == []
    assert [f["type"] for f in renewing.other].count("resumed") == 1   # never resumed again

    # The lazy client resumes with a new token and its cursor: nothing missed.
    back = clients(server.url)
    back.authenticate(keystone.token("demo"))
    back.subscribe(types=[SERVER], cursor=lazy.cursor)
    assert (SERVER, "e2") in back.view and (SERVER, "e1") not in back.view


def test_renewal_for_another_project_is_refused(ws_server, clients, keystone, tmp_path,
                                                writer):
    server = start(ws_server, keystone, tmp_path)
    c = clients(server.url)
    c.authenticate(keystone.token("demo"))
    c.subscribe(types=[SERVER])
    c.send({"action": "authenticate", "token": keystone.token("alt")})
    refused = c.recv()
    assert refused["type"] == "error" and refused["code"] == "identity_mismatch"
    c.send({"action": "authenticate", "token": "not-a-token"})
    refused = c.recv()
    assert refused["type"] == "error" and refused["code"] == "bad_token"
    writer(keystone.projects["alt-demo"], ["alt-1"], 10)
    writer(keystone.projects["demo"], ["demo-1"], 10)
    wait_for(lambda: c.pump(0.2) or (SERVER, "demo-1") in c.view, 20, "demo-1")
    assert (SERVER, "alt-1") not in c.view


def test_keystone_unreachable_closes_1013(ws_server, clients, keystone, tmp_path):
    validator = keystone.validator(tmp_path, cache_ttl=10)
    validator.session.auth.auth_url = "http://127.0.0.1:9/v3"    # nothing listens there
    server = ws_server(types=[SERVER], validator=validator)
    c = clients(server.url)
    c.send({"action": "authenticate", "token": keystone.token("demo")})
    assert c.close_code() == protocol.TRY_AGAIN_LATER
