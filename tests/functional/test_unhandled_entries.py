"""An entry no reader can handle is recorded alone; nothing else is skipped.

Real Elasticsearch, RabbitMQ doorbell, WebSocket server and ``websockets`` clients.
The malformed entry (a list ``project_id``, as a Nova notification with a list
``tenant_id`` produced before the listener validated plugins' output) is written
straight through the Indexer, in one burst with good changes after it. Before the
readers isolated entries, the WebSocket fan-out raised on it and the rest of the
page never reached any connected client (issue 23: ``first, poison, later``).
"""
from __future__ import annotations

import json

from searchlight_forward.deadletter import DeadLetterIndex
from tests.functional.conftest import wait_for
from tests.functional.websocket_support import A, SERVER, document_change

POISON_PROJECT = ["a-project", "another"]


def forward_records(es, index: str) -> list[dict]:
    if not es.indices.exists(index=index):
        return []
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=100, query={"term": {"stage": "forward"}})
    return [h["_source"] for h in hits["hits"]["hits"]]


def names_received(client) -> list[str]:
    return [env["id"] for env in client.received]


def test_a_malformed_entry_is_recorded_and_every_other_change_reaches_live_clients(
        ws_server, clients, writer, es, names):
    dead = DeadLetterIndex(es, names["dead_letters"])
    dead.ensure()
    writer(A, ["first"], 1000)               # the index exists before the server
    server = ws_server(dead_letters=dead)
    admin = clients(server.url)
    admin.authenticate("tok-admin")
    admin.subscribe(types=[SERVER], all_projects=True)
    member = clients(server.url)
    member.authenticate("tok-a")
    member.subscribe(types=[SERVER])
    wait_for(lambda: (admin.pump(0.2), "first" in names_received(admin))[1], 30,
             "the admin client to hold 'first'")
    cursor = admin.cursor

    # One burst, one page: the poison, then two good changes; then one more.
    writer.changes([document_change("poison", POISON_PROJECT, 2000),
                    document_change("after-1", A, 2000),
                    document_change("after-2", A, 2000)])
    writer(A, ["later"], 3000)

    expected = ["first", "after-1", "after-2", "later"]     # written above, in order
    for client in (admin, member):
        wait_for(lambda: (client.pump(0.2), "later" in names_received(client))[1], 30,
                 "'later' to arrive")
        client.pump(0.5)
        assert names_received(client) == expected

    # A client resuming from 'first' gets the same, and the server still serves.
    again = clients(server.url)
    again.authenticate("tok-admin")
    resumed = again.subscribe(types=[SERVER], all_projects=True, cursor=cursor)
    assert names_received(again) == ["after-1", "after-2", "later"], resumed

    # The poison is a dead letter naming the reader, where it is and why.
    records = wait_for(lambda: [r for r in forward_records(es, names["dead_letters"])
                                if r["publisher_id"] == f"consumer:websocket/{names['group']}"],
                       30, "the WebSocket server's dead letter")
    # (one per role copy: the admin's and the users' are two entries of the log)
    assert len(records) == 2, records
    stored = [json.loads(r["notification"])["payload"] for r in records]
    assert all("'project_id' is list" in r["reason"] and "expected a string or null"
               in r["reason"] for r in records)
    assert [(s["id"], s["project_id"]) for s in stored] == [("poison", POISON_PROJECT)] * 2
    assert len({s["position"] for s in stored}) == 2
    assert server.server.stats()["unhandled_entries"]["unhandled"] == 2
