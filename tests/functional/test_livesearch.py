"""Live search over the WebSocket on the real servers: a subscription is a query,
and the result a connection holds stays what the index returns for it.

The oracle is the search server itself: after every batch of changes, each
connection's result (results + entered + updated - left) must equal what the same
query, written by the test inside the connection's role and project, returns from
the index; and no frame ever carries another project's resource or, to a user, an
admin-only field.
"""
from __future__ import annotations

import itertools
import random
import threading
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from forwarders.filters.base import FilterContext
from forwarders.filters.fields import RegexFields
from tests.functional.conftest import write_pipelines
from tests.functional.livesearch_support import SearchClient, converge, oracle
from tests.functional.subscriptions_support import API, free_port, subscriptions_conf
from tests.functional.websocket_support import (A, B, SERVER, admin_only_fields_in,
                                                document_change)

pytestmark = pytest.mark.timeout(240)

STATUSES = ["ACTIVE", "ERROR", "SHUTOFF", "BUILD"]
HOSTS = ["compute-1", "compute-2"]
DATES = ["2026-03-01T10:00:00Z", "2026-03-02T12:00:00Z", "2026-03-03T00:00:00.500Z"]


def random_fields(rng: random.Random) -> dict:
    fields = {"status": rng.choice(STATUSES), "locked": rng.random() < 0.3,
              "created": rng.choice(DATES), "tags": rng.sample(["web", "db", "prod"],
                                                                k=rng.randint(0, 2)),
              "flavor": {"vcpus": rng.choice([1, 2, 4, 8])},
              "OS-EXT-SRV-ATTR:host": rng.choice(HOSTS)}
    if rng.random() < 0.2:
        del fields["status"]
    return fields


def random_query(rng: random.Random, admin: bool) -> dict | None:
    leaves = [
        lambda: {"term": {"status": rng.choice(STATUSES)}},
        lambda: {"terms": {"status": rng.sample(STATUSES, k=2)}},
        lambda: {"range": {"flavor.vcpus": {rng.choice(["gte", "gt"]): rng.choice([1, 2, 4]),
                                            "lte": 8}}},
        lambda: {"term": {"locked": rng.random() < 0.5}},
        lambda: {"range": {"created": {"lte": "2026-03-02"}}},
        lambda: {"prefix": {"name": "res-"}},
        lambda: {"exists": {"field": "status"}},
        lambda: {"terms": {"tags": ["web", "prod"]}},
    ]
    if admin:
        leaves.append(lambda: {"term": {"OS-EXT-SRV-ATTR:host": rng.choice(HOSTS)}})
    shape = rng.randrange(4)
    if shape == 0:
        return None
    if shape == 1:
        return rng.choice(leaves)()
    return {"bool": {"filter": [rng.choice(leaves)()],
                     "should": [rng.choice(leaves)() for _ in range(2)],
                     "must_not": [rng.choice(leaves)()] if shape == 3 else [],
                     "minimum_should_match": rng.randint(0, 1)}}


def check_frames(client: SearchClient, project: str | None, admin: bool) -> None:
    for frame in client.frames:
        envs = frame.get("hits") or ([frame["envelope"]] if "envelope" in frame else [])
        for env in envs:
            if project is not None:
                assert env["project_id"] == project, env
            if not admin:
                assert admin_only_fields_in(env) == [], env


@settings(max_examples=4, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],      # real servers: no
          suppress_health_check=[HealthCheck.function_scoped_fixture,  # shrinking
                                 HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_every_connection_holds_what_its_query_returns_after_every_change(
        seed, es, names, writer, ws_server):
    rng = random.Random(seed)
    server = ws_server()
    run = uuid.uuid4().hex[:6]
    versions: dict[str, int] = {}
    projects: dict[str, str] = {}

    def change(rid: str, delete: bool = False) -> None:
        versions[rid] = versions.get(rid, 0) + 1
        writer.changes([document_change(rid, projects[rid], versions[rid], deleted=delete,
                                         **({} if delete else random_fields(rng)))])

    for i in range(12):
        rid = f"{run}-{i}"
        projects[rid] = rng.choice([A, B])
        change(rid)
    who = [("tok-a", A, False, False), ("tok-b", B, False, False),
           ("tok-admin", None, True, True)]
    connections = []
    for token, project, admin, all_projects in who:
        query = random_query(rng, admin)
        client = SearchClient(server.url)
        client.authenticate(token)
        answer = client.search([SERVER], query=query, all_projects=all_projects)
        assert answer["type"] == "results", answer
        role = "admin" if admin else "user"
        connections.append((client, role, project, admin, query))
    try:
        for _ in range(4):
            for rid in rng.sample(sorted(versions), k=4):
                if rng.random() < 0.25:                     # a project move
                    projects[rid] = B if projects[rid] == A else A
                change(rid, delete=rng.random() < 0.2 and versions[rid] > 0)
            for extra in itertools.islice(itertools.count(len(versions)), 2):
                rid = f"{run}-{extra}"
                projects[rid] = rng.choice([A, B])
                change(rid)
            for client, role, project, admin, query in connections:
                converge(client, lambda: oracle(es, names["group"], role, project,
                                                [SERVER], query))
                check_frames(client, project, admin)
    finally:
        for client, *_ in connections:
            client.close()


SEARCH_PIPELINES = """
[forwarding]
pipelines =

[view:websocket]
filters = secrets

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = ^secret_
"""
ADMIN_FIELD = "OS-EXT-SRV-ATTR:host"


def test_search_then_subscribe_from_its_cursor_misses_and_doubles_nothing(
        config_file, names, keystone, es, writer, ws_server, tmp_path):
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    rng = random.Random(7)
    ids = [f"s{i:02d}" for i in range(30)]
    versions = {rid: 1 for rid in ids}
    writer.changes([document_change(rid, demo if i % 3 else alt, 1,
                                    status=rng.choice(["ACTIVE", "ERROR"]),
                                    secret_token="x", **{ADMIN_FIELD: "compute-1"})
                    for i, rid in enumerate(ids)])
    write_pipelines(config_file, SEARCH_PIPELINES)
    port = free_port()
    config_file.write_text(config_file.read_text()
                           + subscriptions_conf(names, keystone, port))
    api = API(config_file, port)
    secrets = RegexFields("secrets", {"patterns": "^secret_"}, FilterContext())
    server = ws_server(validator=keystone.validator(tmp_path), filters=[secrets])
    token = keystone.token("demo")
    query = {"term": {"status": "ACTIVE"}}
    try:
        # Bad asks get a 400 naming the place; a hidden field reads like a missing one.
        hidden = api.call("POST", "/v1/search", token, {
            "resource_types": [SERVER], "query": {"term": {ADMIN_FIELD: "compute-1"}}})
        missing = api.call("POST", "/v1/search", token, {
            "resource_types": [SERVER], "query": {"term": {"no_such": "compute-1"}}})
        assert hidden.status_code == missing.status_code == 400
        assert hidden.json()["error"]["field"] == missing.json()["error"]["field"] == \
            "query.term"
        assert hidden.json()["error"]["message"].replace(ADMIN_FIELD, "F") == \
            missing.json()["error"]["message"].replace("no_such", "F")
        assert api.call("POST", "/v1/search", token, {
            "resource_types": [SERVER], "all_projects": True}).status_code == 403
        assert api.call("POST", "/v1/search", None, {
            "resource_types": [SERVER]}).status_code == 401

        # A small page: sorted, the total of the whole result, redacted, own project.
        page = api.call("POST", "/v1/search", token, {
            "resource_types": [SERVER], "query": query, "sort": [{"name": "desc"}],
            "page_size": 3}).json()
        expected = oracle(es, names["group"], "user", demo, [SERVER], query)
        assert page["total"] == len(expected) and len(page["hits"]) == 3
        names_seen = [h["document"]["name"] for h in page["hits"]]
        assert names_seen == sorted((f"res-{k[1]}" for k in expected), reverse=True)[:3]
        for hit in page["hits"]:
            assert hit["project_id"] == demo and ADMIN_FIELD not in hit["document"]
            assert "secret_token" not in hit["document"]

        # The whole result, then changes while subscribing from its cursor.
        answer = api.call("POST", "/v1/search", token, {
            "resource_types": [SERVER], "query": query, "page_size": 200}).json()
        client = SearchClient(server.url)
        client.result = {(h["resource_type"], h["id"]): h for h in answer["hits"]}
        client.versions = {key: h["version"] for key, h in client.result.items()}
        assert client.held() == expected
        stop = threading.Event()

        def churn():
            for n in range(40):
                if stop.is_set():
                    return
                rid = rng.choice(ids)
                versions[rid] += 1
                writer.changes([document_change(
                    rid, demo if int(rid[1:]) % 3 else alt, versions[rid],
                    deleted=rng.random() < 0.1,
                    status=rng.choice(["ACTIVE", "ERROR"]), secret_token="x")])
        thread = threading.Thread(target=churn)
        thread.start()
        client.authenticate(token)
        resumed = client.search([SERVER], query=query, cursor=answer["cursor"])
        assert resumed["type"] == "resumed", resumed
        thread.join(60)
        stop.set()
        converge(client, lambda: oracle(es, names["group"], "user", demo, [SERVER],
                                        query))
        assert not [f for f in client.frames if f["type"] == "results"]
        check_frames(client, demo, admin=False)
        client.close()
    finally:
        api.stop()


def test_a_snapshot_reflects_exactly_its_position(es, names, writer):
    """Written after the position, a resource is left out of the snapshot (the stream
    from the position brings it), whatever it held before: never counted twice."""
    from searchlight_forward.changelog.reader import ChangeLog
    from searchlight_forward.changelog.snapshot import TooBroad, take

    writer(A, [f"p{i}" for i in range(6)], 1, status="ACTIVE")
    position = ChangeLog(es, names["group"]).head().position
    writer(A, ["p0", "p1"], 2, status="ACTIVE")            # after the position
    writer(A, ["late"], 1, status="ACTIVE")
    scope = {"bool": {"filter": [{"term": {"sf_role": "user"}},
                                 {"term": {"status": "ACTIVE"}}]}}
    found = take(es, position, scope, [{"id": {"order": "desc"}}], 3, 100)
    assert found.members == {(SERVER, f"p{i}") for i in range(2, 6)}
    assert found.total == 4
    assert [e.source["id"] for e in found.page] == ["p5", "p4", "p3"]
    with pytest.raises(TooBroad):
        take(es, position, scope, [], 3, 3)


def test_a_query_too_broad_is_refused_and_a_narrower_one_follows(writer, ws_server):
    writer(A, [f"b{i}" for i in range(3)], 1, status="ACTIVE")
    writer(A, ["b3"], 1, status="ERROR")
    server = ws_server(live_search_cap=2)
    client = SearchClient(server.url)
    try:
        client.authenticate("tok-a")
        refused = client.search([SERVER], query={"prefix": {"name": "res-b"}})
        assert refused["type"] == "error" and refused["code"] == "query_too_broad"
        assert "narrow the query" in refused["message"]
        answer = client.search([SERVER], query={"term": {"status": "ERROR"}})
        assert answer["type"] == "results" and answer["total"] == 1
        assert [h["id"] for h in answer["hits"]] == ["b3"]
    finally:
        client.close()


@pytest.mark.parametrize("clause", [
    lambda f: {"query": {"term": {f: "compute-1"}}},
    lambda f: {"query": {"prefix": {f: "c"}}},
    lambda f: {"query": {"range": {f: {"gte": "a"}}}},
    lambda f: {"query": {"exists": {"field": f}}},
    lambda f: {"query": {"bool": {"must_not": [{"terms": {f: ["compute-1"]}}]}}},
    lambda f: {"sort": [{f: "asc"}]},
])
def test_a_user_cannot_probe_an_admin_only_or_filtered_field(writer, ws_server, clause):
    """Tried over the real server: every way of touching a hidden field (admin-only,
    or removed by the pipeline's filters) gets the very answer a field that does not
    exist gets, so no query can tell whether, or which, servers have a value there."""
    writer(A, ["h1"], 1, **{ADMIN_FIELD: "compute-1", "secret_token": "s"})
    secrets = RegexFields("secrets", {"patterns": "^secret_"}, FilterContext())
    server = ws_server(filters=[secrets])
    answers = {}
    for field in (ADMIN_FIELD, "secret_token", "no_such_field"):
        client = SearchClient(server.url)
        try:
            client.authenticate("tok-a")
            answer = client.search([SERVER], **clause(field))
        finally:
            client.close()
        assert answer["type"] == "error" and answer["code"] == "bad_query", answer
        answers[field] = answer["message"].replace(repr(field), "FIELD")
    assert len(set(answers.values())) == 1, answers
    # The admin may use the admin-only field (not the filtered one).
    admin = SearchClient(server.url)
    try:
        admin.authenticate("tok-admin")
        answer = admin.search([SERVER], all_projects=True, **clause(ADMIN_FIELD))
        assert answer["type"] == "results", answer
    finally:
        admin.close()


def next_change(client: SearchClient) -> dict:
    """The next entered, updated or left frame (past resumed and the like)."""
    while True:
        frame = client.recv()
        if frame["type"] in ("entered", "updated", "left"):
            return frame


def test_a_resource_moved_to_another_project_leaves_and_enters(writer, ws_server):
    """A project move is a change in another project: the connection holding the
    resource is told it left (without its new state), the other project's sees it
    enter, and an admin following every project sees it updated."""
    writer(A, ["m1", "m2"], 1, status="ACTIVE")
    server = ws_server()
    clients = {token: SearchClient(server.url) for token in ("tok-a", "tok-b", "tok-admin")}
    try:
        for token, client in clients.items():
            client.authenticate(token)
            answer = client.search([SERVER], query={"term": {"status": "ACTIVE"}},
                                   all_projects=token == "tok-admin")
            assert answer["type"] == "results", answer
        writer(B, ["m1"], 2, status="ACTIVE")
        left = next_change(clients["tok-a"])
        assert left["type"] == "left" and left["id"] == "m1", left
        assert left["reason"] == "no_longer_matches" and "envelope" not in left
        entered = next_change(clients["tok-b"])
        assert entered["type"] == "entered" and entered["envelope"]["project_id"] == B
        updated = next_change(clients["tok-admin"])
        assert updated["type"] == "updated" and updated["envelope"]["project_id"] == B
        writer(A, ["m1"], 3, status="ACTIVE")                 # and back
        assert next_change(clients["tok-a"])["type"] == "entered"
        assert next_change(clients["tok-b"])["type"] == "left"
        for token, project in (("tok-a", A), ("tok-b", B)):
            assert set(clients[token].held()) == {
                (SERVER, rid) for rid, where in (("m1", A), ("m2", A)) if where == project}
            check_frames(clients[token], project, admin=False)
    finally:
        for client in clients.values():
            client.close()


class DocsClient:
    """A live search client written only from docs/websocket.md: ``results``
    replaces the table, ``entered``/``updated`` put a resource in, ``left`` takes it
    out, ``change`` frames are what a resync mentions, and a ``resumed`` with
    ``full: true`` drops what the resync did not mention (the Clients section)."""

    def __init__(self, url: str):
        from websockets.sync.client import connect
        self.ws = connect(url, open_timeout=10, close_timeout=5)
        self.table: dict[str, dict] = {}
        self.mentioned: set[str] = set()
        self.resumed: dict | None = None

    def send(self, message: dict) -> None:
        import json
        self.ws.send(json.dumps(message))

    def handle(self, timeout: float = 10.0) -> dict:
        import json
        f = json.loads(self.ws.recv(timeout=timeout))
        if f["type"] == "results":
            self.table = {h["id"]: h for h in f["hits"]}
        elif f["type"] in ("entered", "updated", "change"):
            self.table[f["envelope"]["id"]] = f["envelope"]
            self.mentioned.add(f["envelope"]["id"])
        elif f["type"] == "left":
            self.table.pop(f["id"], None)
        elif f["type"] == "resumed":
            self.resumed = f
            if f["full"]:
                self.table = {k: v for k, v in self.table.items() if k in self.mentioned}
        return f


def test_a_client_written_from_the_docs_keeps_the_results_it_was_sent(writer, ws_server):
    writer(A, ["d1", "d2", "d3"], 1, status="ACTIVE")
    writer(A, ["d4"], 1, status="ERROR")
    server = ws_server()
    client = DocsClient(server.url)
    try:
        client.send({"action": "authenticate", "token": "tok-a"})
        client.send({"action": "subscribe", "resource_types": [SERVER],
                     "query": {"term": {"status": "ACTIVE"}}, "cursor": None})
        while client.resumed is None:
            client.handle()
        assert sorted(client.table) == ["d1", "d2", "d3"], client.resumed
        writer(A, ["d5"], 2, status="ACTIVE")
        writer(A, ["d1"], 2, status="ERROR")
        while "d5" not in client.table or "d1" in client.table:
            client.handle()
        assert sorted(client.table) == ["d2", "d3", "d5"]
    finally:
        client.ws.close()
