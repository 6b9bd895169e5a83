"""A Keystone restart, as an operator's upgrade or a crash makes one, under the
WebSocket server and the subscriptions API. The Keystone here is the test's own
(``PrivateKeystone``: the local one's users and keys, its own process and port), so
stopping it touches no other test.

What users must see: connections already open stay open and keep receiving while
Keystone is away; a new connection is told to try again later (1013), an API call
gets 503; once Keystone is back, both work again without restarting anything, and
the open connections' tokens are re-checked again."""
from __future__ import annotations

import pytest
import requests
import websockets

from forwarders.websocket import protocol
from tests.functional.conftest import wait_for
from tests.functional.subscriptions_support import free_port, started_apis
from tests.functional.websocket_support import SERVER, Client
from devtools.keystone import PrivateKeystone


@pytest.fixture
def private_keystone(tmp_path, keystone):
    ks = PrivateKeystone(tmp_path / "keystone", free_port()).start()
    yield ks
    ks.stop()


def _authenticates(url: str, token: str) -> bool:
    """Does a new connection get in with ``token``? (1013 while Keystone is away.)"""
    try:
        client = Client(url)
    except (OSError, websockets.InvalidHandshake):
        return False
    try:
        return client.authenticate(token).get("type") == "authenticated"
    except websockets.ConnectionClosed:
        return False
    finally:
        client.close()


def test_a_keystone_restart_keeps_open_connections_and_new_ones_work_once_it_is_back(
        private_keystone, ws_server, clients, tmp_path, writer):
    ks = private_keystone.accounts
    demo = ks.projects["demo"]
    validator = ks.validator(tmp_path, cache_ttl=1)
    server = ws_server(types=[SERVER], validator=validator, token_recheck_interval=1.0)
    counters = server.server.counters

    watcher = clients(server.url)
    assert watcher.authenticate(ks.token("demo"))["type"] == "authenticated"
    watcher.subscribe(types=[SERVER])
    writer(demo, ["before"], 10)
    wait_for(lambda: watcher.pump(0.2) or (SERVER, "before") in watcher.view, 20,
             "the change before the restart")
    unused = ks.token("demo")            # never shown to the server before the outage

    private_keystone.stop()
    # The open connection's token cannot be re-checked: it keeps it, and its changes.
    seen = counters["recheck_unavailable"]
    wait_for(lambda: counters["recheck_unavailable"] > seen, 30,
             "a token re-check to find Keystone away")
    writer(demo, ["during"], 11)
    wait_for(lambda: watcher.pump(0.2) or (SERVER, "during") in watcher.view, 20,
             "the change during the outage on the open connection")
    newcomer = clients(server.url)
    newcomer.send({"action": "authenticate", "token": unused})
    assert newcomer.close_code() == protocol.TRY_AGAIN_LATER

    private_keystone.start()
    # Back: a new connection with the same token gets in (the refusal was not cached).
    wait_for(lambda: _authenticates(server.url, unused), 60,
             "a new connection to get in once Keystone is back")
    # ... and the open connection's token is re-checked again, successfully: two
    # rounds in which Keystone answered.
    unavailable, rounds = counters["recheck_unavailable"], counters["rechecks"]
    wait_for(lambda: counters["rechecks"] >= rounds + 2, 30, "two re-check rounds")
    assert counters["recheck_unavailable"] == unavailable
    writer(demo, ["after"], 12)
    wait_for(lambda: watcher.pump(0.2) or (SERVER, "after") in watcher.view, 20,
             "the change after the restart on the same connection")
    assert {(SERVER, "before"), (SERVER, "during"), (SERVER, "after")} <= set(watcher.view)


@pytest.fixture
def api_with_private_keystone(config_file, names, private_keystone, es):
    """The subscriptions API in this process, behind the private Keystone."""
    yield from started_apis(config_file, names, private_keystone.accounts, es)


def test_the_api_answers_503_while_keystone_is_away_and_works_once_it_is_back(
        private_keystone, api_with_private_keystone):
    ks = private_keystone.accounts
    api = api_with_private_keystone()
    assert api.call("GET", "/v1/subscriptions", ks.token("demo")).status_code == 200
    unused = ks.token("demo")             # never shown to the API before the outage

    private_keystone.stop()
    away = api.call("GET", "/v1/subscriptions", unused)
    assert away.status_code == 503, away.text
    assert away.json()["error"]["message"] == ("Keystone cannot validate the token now; "
                                               "try again")
    assert away.headers["Retry-After"] == "5"

    private_keystone.start()
    # Well within the minute for which the API remembers tokens Keystone refused:
    # an outage is not a refusal.
    wait_for(lambda: api.call("GET", "/v1/subscriptions", unused).status_code == 200, 20,
             "the API to accept the token once Keystone is back")
