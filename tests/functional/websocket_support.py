"""What the WebSocket tests share: the resource mix, a real ``websockets`` client that
keeps the latest envelope per resource, and comparisons with Elasticsearch."""
from __future__ import annotations

import fnmatch
import json
import time

import pytest
import websockets
from searchlight_forward.search import helpers
from websockets.sync.client import connect

from searchlight_forward.changelog.reader import ChangeLog, NoIndex
from searchlight_forward.model.change import DocumentChange, Operation
from searchlight_forward.model import documents
from searchlight_forward.plugins import load_plugins
from devtools.simulator import CloudSimulator
from devtools.wsclient import STILL_OPEN, close_code_of  # noqa: F401 - tests import them here

SERVER, PORT, VOLUME = "OS::Nova::Server", "OS::Neutron::Port", "OS::Cinder::Volume"
TYPES = [SERVER, PORT, VOLUME]
PLUGINS = load_plugins()
ADMIN_ONLY = {p.resource_type: tuple(p.admin_only_fields) for p in PLUGINS.plugins}
ALL_TYPES = sorted(ADMIN_ONLY)
SEED = 21
SIM_PROJECTS = CloudSimulator(seed=SEED).projects    # demo, alt_demo, admin -> ids
A, B, C = SIM_PROJECTS["demo"], SIM_PROJECTS["alt_demo"], SIM_PROJECTS["admin"]


class Client:
    """A real websockets client that keeps the latest envelope per resource."""

    def __init__(self, url: str, header_token: str | None = None, sock=None, **kw):
        headers = {"X-Auth-Token": header_token} if header_token else None
        self.ws = connect(url, open_timeout=10, close_timeout=5, compression=None,
                          additional_headers=headers, sock=sock, legacy=True, **kw)
        self.view: dict[tuple, dict] = {}
        self.versions: dict[tuple, int] = {}
        self.cursor: str | None = None
        self.changes = 0
        self.regressions: list = []
        self.other: list[dict] = []
        self.received: list[dict] = []          # every envelope, in order

    def send(self, data) -> None:
        self.ws.send(data if isinstance(data, (str, bytes)) else json.dumps(data))

    def recv(self, timeout: float = 10.0) -> dict:
        frame = json.loads(self.ws.recv(timeout=timeout))
        if frame["type"] == "change":
            self._apply(frame)
        else:
            self.other.append(frame)
        return frame

    def _apply(self, frame: dict) -> None:
        env = frame["envelope"]
        key = (env["resource_type"], env["id"])
        if env["version"] <= self.versions.get(key, 0):
            self.regressions.append((key, self.versions[key], env["version"]))
        self.versions[key] = env["version"]
        self.view[key] = env
        self.received.append(env)
        self.cursor = frame["cursor"]
        self.changes += 1

    def authenticate(self, token: str) -> dict:
        self.send({"action": "authenticate", "token": token})
        return self.recv()

    def subscribe(self, types=TYPES, all_projects=False, cursor=None,
                  timeout: float = 60.0) -> dict:
        self.send({"action": "subscribe", "resource_types": list(types),
                   "all_projects": all_projects, "cursor": cursor})
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            if frame["type"] == "resumed":
                self.cursor = frame["cursor"] or self.cursor
                return frame
            assert frame["type"] in ("change", "authenticated", "token_expiring"), frame

    def pump(self, seconds: float = 0.3) -> int:
        """Read whatever arrives until ``seconds`` pass without a frame."""
        count = 0
        while True:
            try:
                self.recv(timeout=seconds)
            except TimeoutError:
                return count
            count += 1

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; its close code."""
        code = close_code_of(self.ws, timeout)
        if code == STILL_OPEN:
            pytest.fail(f"the server did not close the connection within {timeout}s")
        return code

    def close(self) -> None:
        self.ws.close()


# -- comparisons --------------------------------------------------------------------------

def es_view(es, group: str, role: str, project: str | None, types=TYPES,
            live_only: bool = False) -> dict[tuple, dict]:
    """What Elasticsearch holds for a role copy (and project): key -> source."""
    es.indices.refresh(index=f"{group}-listener")
    filters = [{"term": {documents.ROLE_FIELD: role}}, {"terms": {"resource_type": types}}]
    if project is not None:
        filters.append({"term": {"project_id": project}})
    view = {}
    for hit in helpers.scan(es, index=f"{group}-listener",
                            query={"query": {"bool": {"filter": filters}}}):
        src = hit["_source"]
        if live_only and src.get(documents.DELETED_FIELD):
            continue
        view[(src["resource_type"], src["id"])] = src
    return view


def matches(client: Client, expected: dict[tuple, dict], tombstones: bool = False) -> list:
    """Differences between a client's latest envelopes and Elasticsearch's sources.

    A resource deleted before the client ever had it needs no delete, unless
    ``tombstones`` (a client connected before anything happened sees every delete).
    """
    problems = []
    for key in set(expected) | set(client.view):
        src, env = expected.get(key), client.view.get(key)
        if env is None and src.get(documents.DELETED_FIELD) and not tombstones:
            continue
        if src is None or env is None:
            problems.append((key, "missing at client" if env is None else "extra at client"))
            continue
        if env["version"] != src[documents.VERSION_FIELD]:
            problems.append((key, "version", env["version"], src[documents.VERSION_FIELD]))
        elif env["operation"] != ("delete" if src.get(documents.DELETED_FIELD) else "index"):
            problems.append((key, "operation", env["operation"]))
        elif env["document"] is not None:
            stored = {k: v for k, v in src.items() if k not in documents.INTERNAL_FIELDS}
            if env["document"] != stored:
                problems.append((key, "document differs"))
    return problems


def converge(client: Client, expected: dict, timeout: float = 60.0,
             tombstones: bool = False) -> None:
    deadline = time.monotonic() + timeout
    problems = matches(client, expected, tombstones)
    while problems and time.monotonic() < deadline:
        client.pump(0.3)
        problems = matches(client, expected, tombstones)
    assert problems == [], (len(problems), sorted(problems, key=str)[:10])
    assert client.regressions == []


def admin_only_fields_in(envelope: dict) -> list[str]:
    patterns = ADMIN_ONLY[envelope["resource_type"]]
    return [k for k in envelope["document"] or {}
            if any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def document_change(rid: str, project: str | None, version: int, deleted: bool = False,
                    rtype: str = SERVER, **fields):
    """A full document change (or a delete) to write straight through the Indexer."""
    if deleted:
        return DocumentChange(rtype, rid, project, Operation.DELETE, version,
                              "resource.delete", "2026-03-02 12:00:00.000000")
    document = {"id": rid, "resource_type": rtype, "project_id": project,
                "name": f"res-{rid}", "status": "ACTIVE", "updated_at": None, **fields}
    return DocumentChange(rtype, rid, project, Operation.INDEX, version,
                          "resource.update", "2026-03-02 12:00:00.000000", document=document)


def offered_everything(server, es, group: str) -> bool:
    """Has the server dispatched every write the index holds now? (A resume serves
    up to what was dispatched; later writes come live.)"""
    try:
        head = ChangeLog(es, group).head().position
    except NoIndex:
        return False
    at = server.server.dispatched()
    return head.same_log(at) and all(a >= h for a, h in zip(at.seq_nos, head.seq_nos))
