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
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from tests.functional.livesearch_support import SearchClient, converge, oracle
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
