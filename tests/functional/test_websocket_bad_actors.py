"""Bad actors against the real WebSocket server, all at once, while a good client
keeps receiving: silent sockets, floods, garbage, oversized frames, raw TCP junk and
a token of one project asking for another. Every attacker is bounded in count and
time; the assertions are about close codes, the good client's view and the
server's counters, never about timings. Floods go to a second server that tolerates
any number of bad frames, so that only the rate limit can stop them."""
from __future__ import annotations

import json
import socket
import threading

import pytest
import websockets
from websockets.sync.client import connect

from forwarders.websocket import protocol
from tests.functional.conftest import wait_for
from tests.functional.websocket_support import A, B, TYPES, close_code_of, converge, es_view
from tests.functional.test_websocket import processed, publish, stream

ATTACKERS = {"silent": 12, "flood": 6, "garbage": 6, "oversized": 4, "junk_tcp": 4}


def attack(kind: str, url: str, port: int, results: list, flood_url: str) -> None:
    try:
        if kind == "junk_tcp":
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 8)
                try:
                    raw.recv(4096)
                except OSError:
                    pass
            results.append((kind, "done"))
            return
        target = flood_url if kind == "flood" else url
        with connect(target, open_timeout=10, close_timeout=2, compression=None,
                     max_size=2 ** 22) as ws:
            if kind == "flood":
                # Frames as fast as the socket takes them; this server tolerates
                # any number of bad frames, so only the rate limit can stop them.
                for _ in range(2000):
                    ws.send('{"action": "authenticate", "token": "tok-a"}')
            elif kind == "garbage":
                ws.send(json.dumps({"action": "authenticate", "token": "tok-b"}))
                ws.recv(timeout=10)
                for i in range(50):
                    ws.send("{" * (i + 1))
            elif kind == "oversized":
                ws.send("x" * (1024 * 1024))
            results.append((kind, close_code_of(ws)))
    except websockets.ConnectionClosed as exc:
        results.append((kind, exc.rcvd.code if exc.rcvd else None))
    except Exception as exc:  # noqa: BLE001 - recorded and asserted on
        results.append((kind, repr(exc)))


def test_bad_actors_are_closed_and_nobody_else_notices(start_listener,
                                                        publisher, ws_server, clients,
                                                        es, names):
    listener = start_listener()
    server = ws_server(auth_timeout=2.0, max_errors=10, max_frame_rate=5.0, frame_burst=20)
    lenient = ws_server(auth_timeout=2.0, max_errors=10**6, max_frame_rate=5.0,
                        frame_burst=20)
    good = clients(server.url)
    good.authenticate("tok-a")
    good.subscribe()

    # A token of project A naming project B is refused, and still sees only A.
    nosy = clients(server.url)
    nosy.authenticate("tok-a")
    nosy.send({"action": "subscribe", "resource_types": TYPES, "project_id": B})
    refused = nosy.recv()
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    nosy.subscribe()

    results: list = []
    threads = [threading.Thread(target=attack, daemon=True,
                                args=(kind, server.url, server.port, results, lenient.url))
               for kind, count in ATTACKERS.items() for _ in range(count)]
    for t in threads:
        t.start()
    notes = stream(count_per_type=3)
    publish(publisher, notes)           # during the attack
    latecomer = clients(server.url)     # the server still answers newcomers
    assert latecomer.authenticate("tok-b")["type"] == "authenticated"
    latecomer.subscribe()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)

    by_kind: dict[str, list] = {}
    for kind, outcome in results:
        by_kind.setdefault(kind, []).append(outcome)
    assert by_kind["silent"] == [protocol.AUTH_FAILED] * ATTACKERS["silent"]
    assert by_kind["flood"] == [protocol.RATE_LIMITED] * ATTACKERS["flood"]
    assert by_kind["garbage"] == [protocol.PROTOCOL_VIOLATION] * ATTACKERS["garbage"]
    assert by_kind["oversized"] == [protocol.MESSAGE_TOO_BIG] * ATTACKERS["oversized"]
    assert by_kind["junk_tcp"] == ["done"] * ATTACKERS["junk_tcp"]

    processed(listener, len(notes))
    expected_a = es_view(es, names["group"], "user", A)
    converge(good, expected_a)
    converge(nosy, expected_a)
    converge(latecomer, es_view(es, names["group"], "user", B))
    assert good.view and all(key[1] and env["project_id"] == A
                             for key, env in nosy.view.items())

    stats = server.server.stats()
    assert lenient.server.stats()["closes"][str(protocol.RATE_LIMITED)] == ATTACKERS["flood"]
    assert stats["closes"][str(protocol.AUTH_FAILED)] == ATTACKERS["silent"]
    wait_for(lambda: server.server.stats()["connections"] == 3, 10,
             "only the three good connections to remain")


def test_connection_floods_are_refused_before_and_after_authentication(ws_server,
                                                                       clients):
    server = ws_server(auth_timeout=30.0, max_unauthenticated=5,
                       max_connections_per_user=2)
    silent = [clients(server.url) for _ in range(5)]          # never authenticate
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(server.url, open_timeout=10)
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "30"
    for c in silent[:3]:
        c.close()
    wait_for(lambda: server.server.stats()["unauthenticated"] == 2, 10,
             "the closed silent sockets to be counted out")

    first, second = clients(server.url), clients(server.url)
    assert first.authenticate("tok-a")["type"] == "authenticated"
    assert second.authenticate("tok-a")["type"] == "authenticated"
    third = clients(server.url)
    third.send({"action": "authenticate", "token": "tok-a"})    # alice's third
    assert third.close_code() == protocol.RATE_LIMITED
    other = clients(server.url)
    assert other.authenticate("tok-b")["type"] == "authenticated"   # bob is not alice
    second.close()
    wait_for(lambda: server.server.per_user.get("alice") == 1, 10, "alice's close")
    again = clients(server.url)
    assert again.authenticate("tok-a")["type"] == "authenticated"
    stats = server.server.stats()
    assert stats["counters"]["refused_unauthenticated"] == 1
    assert stats["counters"]["refused_per_user"] == 1
