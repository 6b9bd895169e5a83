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
import random

import pytest

from devtools import hostile as hostile_notes
from devtools.oracle import differences, stored
from devtools.simulator import CloudSimulator
from searchlight_forward.deadletter import DeadLetterIndex
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import AUDIT_PIPELINE, ChangeLines, wait_caught_up
from tests.functional.websocket_support import (A, B, SERVER, SIM_PROJECTS, TYPES,
                                                converge, document_change, es_view)

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




def test_the_delivery_service_records_a_malformed_entry_and_delivers_the_rest(
        config_file, start_delivery, writer, es, names):
    write_pipelines(config_file, AUDIT_PIPELINE)
    writer(A, ["first"], 1000)
    with ChangeLines() as audit:
        start_delivery()
        wait_for(lambda: [line["id"] for line in audit.lines] == ["first"], 30,
                 "the audit pipeline to deliver 'first'")
        writer.changes([document_change("poison", POISON_PROJECT, 2000),
                        document_change("after-1", A, 2000),
                        document_change("after-2", A, 2000)])
        writer(A, ["later"], 3000)
        wait_for(lambda: "later" in [line["id"] for line in audit.lines], 30,
                 "the audit pipeline to deliver 'later'")
        wait_caught_up(es, names["state"], names["group"], ["audit"])
    assert [line["id"] for line in audit.lines] == ["first", "after-1", "after-2", "later"]
    records = [r for r in forward_records(es, names["dead_letters"])
               if r["publisher_id"] == f"consumer:{names['group']}/audit"]
    assert len(records) == 1, records        # the admin copy: the pipeline's role
    assert "'project_id' is list" in records[0]["reason"]
    assert json.loads(records[0]["notification"])["payload"]["id"] == "poison"


@pytest.mark.parametrize("seed", [5, 6])
def test_no_notification_of_valid_json_makes_a_live_client_miss_another_change(
        seed, start_listener, publisher, ws_server, clients, es, names):
    """Bounded property over the real path (RabbitMQ, listener, Elasticsearch, the
    WebSocket server, ``websockets`` clients): a cloud's notifications with, at
    random places, 40 copies of another cloud's notifications whose one value has the
    wrong JSON type. Every live client ends with exactly what Elasticsearch holds for
    it, the good cloud is indexed as its simulator says, and every notification is
    accounted for: indexed, ignored, or a dead letter."""
    rng = random.Random(seed)
    cloud = CloudSimulator(seed=seed, project_ids=SIM_PROJECTS)
    good = cloud.stream(4, delete_ratio=0.2, types=tuple(TYPES))
    victims = CloudSimulator(seed=seed + 100, project_ids=SIM_PROJECTS)
    hostile = hostile_notes.wrong_shapes(rng, victims.stream(3, types=tuple(TYPES)), 40)
    listener = start_listener()
    server = ws_server(types=TYPES)
    watchers = []
    for token, all_projects in (("tok-admin", True), ("tok-a", False), ("tok-b", False)):
        client = clients(server.url)
        client.authenticate(token)
        client.subscribe(all_projects=all_projects)
        watchers.append((client, "admin" if token == "tok-admin" else "user",
                         None if all_projects else (A if token == "tok-a" else B)))
    stream = hostile_notes.interleave(rng, good, [note for _, note in hostile])
    for note in stream:
        publisher.publish_simulated(note)
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 120,
             f"the listener to take {len(stream)} notifications")

    final = stored(es, names["group"])       # (the victims' valid copies are there too)
    assert differences(cloud.expected, {k: v for k, v in final.items()
                                        if k in cloud.expected}) == []
    for client, role, project in watchers:
        converge(client, es_view(es, names["group"], role, project), tombstones=True)
    counters = listener.processor.counters
    assert counters["dead_lettered"] > 0             # some of the 40 are refused
    assert counters["notifications"] == len(stream)
