"""WebSocket forwarding on the real servers.

Real Notifier -> RabbitMQ -> in-process listener -> Elasticsearch -> the listener's
announcer refreshes and rings the RabbitMQ doorbell -> WebSocket server (its own
thread and loop) -> real ``websockets`` clients. Each client's view is compared with
what Elasticsearch finally holds for its role and project.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from devtools.faultproxy import FaultProxy
from devtools.simulator import CloudSimulator
from forwarders.filters.base import FilterContext
from forwarders.filters.fields import RegexFields
from forwarders.websocket import protocol
from searchlight_forward.model.change import DocumentChange, Operation
from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.changelog.announcer import Announcer
from searchlight_forward.changelog.doorbell import Doorbell
from searchlight_forward.changelog.reader import ChangeLog
from tests.conftest import ES_URL, TRANSPORT_URL
from tests.functional.conftest import wait_for
from tests.functional.websocket_support import (A, ADMIN_ONLY, offered_everything, ALL_TYPES, B, C, PLUGINS,
                                                SEED, SERVER, TYPES, Client,
                                                admin_only_fields_in, converge, es_view)



# -- fixtures ------------------------------------------------------------------------

def publish(publisher, notes) -> None:
    for note in notes:
        publisher.publish_simulated(note)


def processed(listener, count: int, timeout: float = 120.0) -> None:
    wait_for(lambda: listener.processor.counters["notifications"] >= count, timeout,
             f"{count} notifications to be processed")


def stream(count_per_type: int = 6, seed: int = SEED, delete_ratio: float = 0.3):
    return CloudSimulator(seed=seed).stream(count_per_type, delete_ratio=delete_ratio,
                                            types=tuple(TYPES))


# -- tests -----------------------------------------------------------------------------

def test_projects_and_roles_are_separated(start_listener, publisher, ws_server,
                                          clients, es, names):
    # Two listeners in one pool write, two WebSocket servers read.
    listeners = [start_listener(), start_listener()]
    server, other_server = ws_server(), ws_server()
    a = clients(server.url)
    assert a.authenticate("tok-a")["project_id"] == A
    b = clients(other_server.url, header_token="tok-b")  # the handshake header works too
    admin_all = clients(server.url)
    auth = admin_all.authenticate("tok-admin")
    assert auth["admin"] is True and auth["type"] == "authenticated"
    admin_own = clients(server.url)
    admin_own.authenticate("tok-admin")
    for client, all_projects in ((a, False), (b, False), (admin_all, True), (admin_own, False)):
        resumed = client.subscribe(all_projects=all_projects)
        assert resumed["count"] == 0

    notes = stream()
    publish(publisher, notes)
    wait_for(lambda: sum(l.processor.counters["notifications"] for l in listeners)
             >= len(notes), 120, f"{len(notes)} notifications to be processed")
    assert all(l.processor.counters["notifications"] > 0 for l in listeners)
    assert sum(l.processor.counters["dead_lettered"] for l in listeners) == 0

    group = names["group"]
    # Connected before anything happened: they see every change, deletes included.
    converge(a, es_view(es, group, "user", A), tombstones=True)
    converge(b, es_view(es, group, "user", B), tombstones=True)
    converge(admin_all, es_view(es, group, "admin", None), tombstones=True)
    converge(admin_own, es_view(es, group, "admin", C), tombstones=True)

    assert {e["project_id"] for e in a.view.values()} == {A}
    assert {e["project_id"] for e in b.view.values()} == {B}
    assert {e["project_id"] for e in admin_all.view.values()} >= {A, B, C}
    for client in (a, b):
        leaked = {k: admin_only_fields_in(e) for k, e in client.view.items()
                  if admin_only_fields_in(e)}
        assert leaked == {}
    # The admin copies do carry what the users were spared (e.g. OS-EXT-SRV-ATTR:host).
    assert any(admin_only_fields_in(e) for e in admin_all.view.values()
               if e["resource_type"] == SERVER)
    assert any(e["operation"] == "delete" for e in a.view.values())
    for s in (server, other_server):
        assert s.server.stats()["feed"]["counters"].get("failures", 0) == 0


def test_reconnect_with_cursor_misses_nothing_and_nothing_older(
        start_listener, publisher, ws_server, clients, es, names):
    listener = start_listener()
    server = ws_server()
    notes = stream(count_per_type=8)
    first, second = notes[:len(notes) // 2], notes[len(notes) // 2:]
    group = names["group"]

    a = clients(server.url)
    a.authenticate("tok-a")
    a.subscribe()
    publish(publisher, first)
    processed(listener, len(first))
    converge(a, es_view(es, group, "user", A), tombstones=True)
    had = dict(a.versions)
    cursor = a.cursor
    a.close()

    # Changes made while the client is away: updates, deletes, new resources.
    publish(publisher, second)
    processed(listener, len(notes))
    # all of them behind the server's dispatched position, so the resume serves them
    wait_for(lambda: offered_everything(server, es, group), 30, "the server to read them")

    again = clients(server.url)
    again.authenticate("tok-a")
    resumed = again.subscribe(cursor=cursor)
    assert resumed["full"] is False and resumed["count"] == again.changes > 0
    older = [(k, v, had[k]) for k, v in again.versions.items() if k in had and v < had[k]]
    assert older == []
    # What it had plus what the resume brought is exactly Elasticsearch's state.
    merged = Client.__new__(Client)
    merged.view, merged.versions, merged.regressions = dict(a.view), {}, []
    merged.view.update(again.view)
    merged.pump = lambda seconds: 0
    converge(merged, es_view(es, group, "user", A), timeout=0, tombstones=True)

    # A cursor from the end of the stream resumes nothing; a fresh client resyncs.
    third = clients(server.url)
    third.authenticate("tok-a")
    assert third.subscribe(cursor=again.cursor)["count"] == 0
    fresh = clients(server.url)
    fresh.authenticate("tok-a")
    resumed = fresh.subscribe()
    live = es_view(es, group, "user", A, live_only=True)
    assert resumed["full"] is True and resumed["count"] == len(live) > 0
    converge(fresh, live, timeout=0)


def test_rebuilt_index_cursor_forces_full_resync(start_listener, publisher,
                                                 ws_server, clients, es, names):
    listener = start_listener()
    server = ws_server()
    group = names["group"]
    notes = stream(count_per_type=6)
    first, second = notes[:len(notes) // 2], notes[len(notes) // 2:]
    publish(publisher, first)
    processed(listener, len(first))

    old = clients(server.url)
    old.authenticate("tok-a")
    old.subscribe()
    old_cursor = old.cursor
    watcher = clients(server.url)       # stays connected through the rebuild
    watcher.authenticate("tok-admin")
    watcher.subscribe(all_projects=True)
    old_index = old_cursor.rsplit(":", 1)[0]
    assert old_index == indices.current_index(es, group)

    members = [p for p in PLUGINS.plugins]
    new_index = indices.rebuild(es, group, members)
    assert new_index != old_index
    publish(publisher, second)
    processed(listener, len(notes))

    # The live client follows onto the new index without an older version.
    converge(watcher, es_view(es, group, "admin", None))
    assert watcher.cursor.startswith(new_index + ":")

    back = clients(server.url)
    back.authenticate("tok-a")
    resumed = back.subscribe(cursor=old_cursor)
    live = es_view(es, group, "user", A, live_only=True)
    assert resumed["full"] is True and resumed["cursor"].startswith(new_index + ":")
    assert resumed["count"] == len(live) > 0
    converge(back, live, timeout=0)


def test_slow_client_is_closed_and_others_keep_receiving(start_listener, ws_server,
                                                         clients, es, names):
    start_listener()       # creates the index
    server = ws_server(queue_size=200, close_timeout=30.0)
    fast = clients(server.url)
    fast.authenticate("tok-a")
    fast.subscribe(types=[SERVER])
    stop = threading.Event()
    reader = threading.Thread(target=lambda: [fast.pump(0.1) for _ in iter(stop.is_set, True)],
                              daemon=True)
    reader.start()          # reads all the time, like a browser

    # A client that never reads, with a tiny receive buffer: the server's writes
    # back up, its queue fills, and it must be cut off alone.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = clients(server.url, sock=sock, max_queue=1)
    slow.authenticate("tok-a2")
    slow.subscribe(types=[SERVER])

    indexer = Indexer(es, {SERVER: names["group"]}, ADMIN_ONLY)
    blob = "x" * 20_000
    total = 0
    announcer = Announcer({names["group"]: ChangeLog(es, names["group"])},
                          Doorbell(TRANSPORT_URL))
    try:
        for round_ in range(60):       # bursts of 50, under queue_size
            changes = [(i, DocumentChange(
                SERVER, f"srv-{round_}-{i}", A, Operation.INDEX, 1_000 + i,
                "instance.update", "2026-03-02 12:00:00.000000",
                document={"id": f"srv-{round_}-{i}", "resource_type": SERVER,
                          "project_id": A, "name": f"vm-{i}", "blob": blob,
                          "updated_at": None}))
                for i in range(50)]
            indexer.apply(changes)
            total += len(changes)
            announcer.announce(names["group"])
            time.sleep(0.05)
            if server.server.closes.get(protocol.TOO_SLOW):
                break
        wait_for(lambda: server.server.closes.get(protocol.TOO_SLOW), 30,
                 "the slow client to be closed for overflowing")
        wait_for(lambda: len(fast.view) >= total, 60,
                 f"the fast client to get all {total} servers")
    finally:
        stop.set()
        reader.join(5)
        announcer.stop()
    assert slow.close_code(timeout=30) == protocol.TOO_SLOW
    assert fast.regressions == [] and len(fast.view) == total
    assert server.server.closes.get(protocol.TOO_SLOW) == 1


def test_hostile_frames_get_errors_or_close_codes(start_listener, publisher,
                                                  ws_server, clients, es, names):
    listener = start_listener()
    server = ws_server(auth_timeout=1.5, max_errors=5)
    good = clients(server.url)
    good.authenticate("tok-a")
    good.subscribe()

    def error_code(client, data):
        client.send(data)
        frame = client.recv()
        assert frame["type"] == "error", frame
        return frame["code"]

    c = clients(server.url)
    assert error_code(c, {"action": "subscribe", "resource_types": TYPES}) == \
        "not_authenticated"
    assert error_code(c, "not json at all") == "bad_json"
    assert error_code(c, b"\x00\x01binary") == "binary_frame"
    assert error_code(c, [1, 2, 3]) == "bad_frame"
    assert error_code(c, {"action": ["authenticate"]}) == "bad_frame"
    assert c.close_code() == protocol.AUTH_FAILED        # never authenticated in time

    c = clients(server.url)
    c.authenticate("tok-a")
    assert error_code(c, {"action": "subscribe", "resource_types": ["OS::Evil::Thing"]}) \
        == "unknown_resource_type"
    assert error_code(c, {"action": "subscribe", "resource_types": TYPES,
                          "all_projects": True}) == "forbidden"
    assert error_code(c, {"action": "subscribe", "resource_types": TYPES,
                          "cursor": {"$gt": 1}}) == "bad_cursor"
    assert error_code(c, {"action": "dance"}) == "unknown_action"
    c.send("{{{")
    c.send("{{{")
    assert c.close_code() == protocol.PROTOCOL_VIOLATION

    c = clients(server.url)
    c.send({"action": "authenticate", "token": "forged"})
    assert c.close_code() == protocol.AUTH_FAILED
    c = clients(server.url)
    c.send({"action": "authenticate", "token": "tok-soon"})      # expired
    assert c.close_code() == protocol.AUTH_FAILED
    brief = clients(server.url)
    brief.authenticate("tok-brief")                              # expires while connected
    brief.subscribe()

    c = clients(server.url)
    c.authenticate("tok-a")
    c.send(json.dumps({"action": "authenticate", "token": "y" * (200 * 1024)}))
    assert c.close_code() == protocol.MESSAGE_TOO_BIG

    # Plain HTTP and a deeply nested frame do not hurt either.
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    raw.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    raw.close()
    c = clients(server.url)
    c.authenticate("tok-a")
    assert error_code(c, "[" * 30000 + "]" * 30000) in ("bad_json", "bad_frame")

    # Meanwhile the good client still gets changes.
    notes = stream(count_per_type=2)
    publish(publisher, notes)
    processed(listener, len(notes))
    converge(good, es_view(es, names["group"], "user", A))
    assert len(good.view) > 0
    assert brief.close_code(timeout=15) == protocol.TOKEN_EXPIRED
    assert [f["type"] for f in brief.other] == ["authenticated", "token_expiring", "resumed"]
    stats = server.server.stats()
    assert stats["closes"].get(str(protocol.AUTH_FAILED)) == 3
    assert stats["closes"].get(str(protocol.TOKEN_EXPIRED)) == 1
    assert stats["closes"].get(str(protocol.PROTOCOL_VIOLATION)) == 1
    assert stats["closes"].get(str(protocol.MESSAGE_TOO_BIG)) == 1


def test_doorbell_wakes_the_server_and_pipeline_filters_apply(
        start_listener, publisher, ws_server, clients, es, names):
    listener = start_listener()
    secrets = RegexFields("secrets", {"patterns": "^name$, ^metadata$"},
                          FilterContext(ADMIN_ONLY, tuple(ALL_TYPES)))
    server = ws_server(poll_interval=60.0, filters=[secrets])
    wait_for(lambda: server.server.doorbell.connected, 10, "the doorbell queue")
    a = clients(server.url, header_token="tok-a")
    assert a.recv()["type"] == "authenticated"
    a.subscribe(types=[SERVER])
    notes = [n for n in stream(count_per_type=3) if n.resource_type == SERVER]
    publish(publisher, notes)
    processed(listener, len(notes))
    expected = {key: {k: v for k, v in src.items() if k not in ("name", "metadata")}
                for key, src in es_view(es, names["group"], "user", A, types=[SERVER]).items()}
    converge(a, expected, timeout=20)     # the poll alone would take 60 s
    assert server.server.doorbell.received > 0
    assert all("name" not in (e["document"] or {}) for e in a.view.values())


def test_a_server_started_while_elasticsearch_is_away_serves_and_follows_on_its_return(
        start_listener, publisher, ws_server, clients):
    from tests.functional.test_dead_letters import image_payload
    from tests.functional.test_poison import image_id, publish_image
    listener = start_listener()
    before = [image_id() for _ in range(5)]
    for rid in before:
        publish_image(publisher, image_payload(image_id=rid, owner=A))
    wait_for(lambda: listener.processor.counters["notifications"] >= len(before), 60,
             "the first images to be indexed")
    host, port = ES_URL.split("//")[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        proxy.block()                       # Elasticsearch away when the server starts
        server = ws_server(es_url=proxy.url, poll_interval=0.2)
        http_url = server.url.replace("ws://", "http://")
        assert _http(f"{http_url}/readyz")[0] == 503         # not ready, but serving
        assert _http(f"{http_url}/healthz")[0] == 200
        early = clients(server.url)
        assert early.authenticate("tok-a")["project_id"] == A    # no Elasticsearch needed
        early.send({"action": "subscribe", "resource_types": ["OS::Glance::Image"],
                    "all_projects": False, "cursor": None})
        # Where the log ends is unknown: try again later, not an empty table.
        code = early.close_code()
        assert code == protocol.TRY_AGAIN_LATER
        proxy.unblock()
        wait_for(lambda: server.server.stats()["position"] is not None, 30,
                 "the server to locate the log's end")
        wait_for(lambda: _http(f"{http_url}/readyz") == (200, {"status": "ok",
                                                               "problems": []}),
                 30, "the server to be ready")
        after = [image_id() for _ in range(5)]
        client = clients(server.url)
        client.authenticate("tok-a")
        client.subscribe(types=["OS::Glance::Image"])
        for rid in after:
            publish_image(publisher, image_payload(image_id=rid, owner=A))
        wait_for(lambda: (client.pump(0.2) or True)
                 and {k[1] for k in client.view} >= set(before) | set(after), 60,
                 "every image, indexed before and after Elasticsearch returned")
        assert {k[1] for k in client.view} == set(before) | set(after)
        assert client.regressions == []
        # Prometheus: one connection open (the early one was closed with 1013).
        families = {f.name: f for f in text_string_to_metric_families(
            _http(f"{http_url}/metrics", parse=False)[1])}
        assert families["searchlight_forward_websocket_open_connections"].samples[0].value == 1
        closes = {s.labels["code"]: s.value for s in families[
            "searchlight_forward_websocket_closes"].samples}
        assert {code: n for code, n in closes.items() if n} == {
            str(protocol.TRY_AGAIN_LATER): 1}
        assert closes[str(protocol.AUTH_FAILED)] == 0     # known codes: 0, not absent
    finally:
        proxy.stop()


def _http(url: str, parse: bool = True):
    """(status, body) of a GET, also for 503."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    return status, json.loads(body) if parse else body
