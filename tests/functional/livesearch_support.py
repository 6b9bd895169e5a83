"""A live search client (a real websockets client) that keeps the result it is told:
``results`` replaces it, ``entered``/``updated`` put a resource in, ``left`` takes it
out; and the oracle: what the same query returns from the index, asked directly."""
from __future__ import annotations

import time

from tests.functional.websocket_support import Client

ROLE, DELETED, VERSION = "sf_role", "sf_deleted", "sf_version"


class SearchClient(Client):
    def __init__(self, url: str, **kw):
        super().__init__(url, **kw)
        self.result: dict[tuple, dict] = {}       # key -> envelope
        self.frames: list[dict] = []              # every live search frame, in order
        self.total: int | None = None

    def recv(self, timeout: float = 10.0) -> dict:
        frame = super().recv(timeout)
        kind = frame["type"]
        if kind == "results":
            self.result = {(e["resource_type"], e["id"]): e for e in frame["hits"]}
            self.total = frame["total"]
        elif kind in ("entered", "updated"):
            env = frame["envelope"]
            key = (env["resource_type"], env["id"])
            if env["version"] <= self.versions.get(key, 0):
                self.regressions.append((key, self.versions[key], env["version"]))
            self.versions[key] = env["version"]
            self.result[key] = env
        elif kind == "left":
            key = (frame["resource_type"], frame["id"])
            self.versions[key] = max(self.versions.get(key, 0), frame["version"])
            self.result.pop(key, None)
        if kind in ("results", "entered", "updated", "left"):
            self.frames.append(frame)
            self.cursor = frame.get("cursor") or self.cursor
        return frame

    def search(self, types, query=None, sort=None, page_size=200, all_projects=False,
               cursor=None, timeout: float = 30.0) -> dict:
        """Subscribe with a query; the first frame that answers it (results, or
        resumed after a cursor, or an error)."""
        message = {"action": "subscribe", "resource_types": list(types),
                   "all_projects": all_projects, "page_size": page_size}
        if query is not None:
            message["query"] = query
        if sort is not None:
            message["sort"] = sort
        if cursor is not None:
            message["cursor"] = cursor
        self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            if frame["type"] in ("results", "resumed", "error"):
                return frame

    def held(self) -> dict[tuple, int]:
        return {key: env["version"] for key, env in self.result.items()}


def oracle(es, group: str, role: str, project: str | None, types, query) -> dict:
    """key -> version of what the index returns for the query, for that role copy and
    project (None: every project): the test's own Elasticsearch query."""
    es.indices.refresh(index=f"{group}-listener")
    scope = [{"term": {ROLE: role}}, {"terms": {"resource_type": list(types)}}]
    if project is not None:
        scope.append({"term": {"project_id": project}})
    if query is not None:
        scope.append(query)
    resp = es.search(index=f"{group}-listener", size=1000, query={"bool": {
        "filter": scope, "must_not": [{"term": {DELETED: True}}]}})
    return {(h["_source"]["resource_type"], h["_source"]["id"]): h["_source"][VERSION]
            for h in resp["hits"]["hits"]}


def converge(client: SearchClient, expected_of, timeout: float = 30.0) -> None:
    """Pump until the client's result equals ``expected_of()`` (asked again while
    waiting), or fail with the difference."""
    deadline = time.monotonic() + timeout
    expected = expected_of()
    while client.held() != expected and time.monotonic() < deadline:
        client.pump(0.2)
        expected = expected_of()
    held = client.held()
    assert held == expected, {"missing": sorted(set(expected) - set(held))[:5],
                              "extra": sorted(set(held) - set(expected))[:5],
                              "versions": sorted(k for k in held.keys() & expected.keys()
                                                 if held[k] != expected[k])[:5]}
    assert client.regressions == []
