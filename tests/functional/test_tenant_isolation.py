"""Tenant isolation as a property, with real Keystone tokens on the real server.

Hypothesis draws resources (type, project, admin-only and secret fields, deleted or
not) and connections (a Keystone user, all_projects or not, connected before the
writes - live - or after them - resume). Every frame any connection receives must
obey contract 3, and every connection must end with exactly its share:

* no resource of another project, unless the token has the admin role and the
  connection asked for all projects;
* no admin-only field for a non-admin, and the admin copy for an admin;
* no field the pipeline's regex filter removes, for anyone;
* every visible resource at its newest version, nothing else.

The users are Keystone's own: the bootstrapped demo users and admin, plus a project
created here with a user holding the admin role in it and a plain member.
"""
from __future__ import annotations

import fnmatch
import itertools
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarders.filters.base import FilterContext
from forwarders.filters.fields import RegexFields
from tests.functional.isolation_support import ADMIN_FIELD, TYPES, resources
from tests.functional.websocket_support import ADMIN_ONLY, ALL_TYPES, Client, document_change

SECRET = "^secret_"                       # the pipeline's regex filter
EXAMPLES = 25
_run = itertools.count()


@pytest.fixture(scope="module")
def people(keystone):
    """name -> (token, project id, admin?) for real Keystone users, and the projects."""
    suffix = uuid.uuid4().hex[:6]
    keystone.add_project(f"sft-iso-{suffix}")
    keystone.add_user(f"sft-iso-admin-{suffix}", f"sft-iso-{suffix}", ["admin"])
    keystone.add_user(f"sft-iso-member-{suffix}", f"sft-iso-{suffix}", ["member"])
    names = ["demo", "demo-reader", "alt", "alt-reader", "admin",
             f"sft-iso-admin-{suffix}", f"sft-iso-member-{suffix}"]
    try:
        users = {}
        for name in names:
            token = keystone.token(name)
            user = keystone.users[name]
            users[name] = (token, user["project_id"], "admin" in user["roles"])
        projects = sorted({p for _, p, _ in users.values()}) + [uuid.uuid4().hex, None]
        yield users, projects
    finally:
        keystone.cleanup()


def connections(users):
    return st.lists(st.fixed_dictionaries({
        "user": st.sampled_from(sorted(users)),
        "all_projects": st.booleans(),
        "live": st.booleans(),
    }), min_size=1, max_size=4)


def visible(conn, users, resource) -> bool:
    _, project, admin = users[conn["user"]]
    if admin and conn["all_projects"]:
        return True
    return resource["project"] is not None and resource["project"] == project


def leaks(frame_envelope, conn, users) -> list[str]:
    """What in one received change breaks contract 3 for this connection."""
    _, project, admin = users[conn["user"]]
    problems = []
    if not (admin and conn["all_projects"]) and frame_envelope["project_id"] != project:
        problems.append(f"project {frame_envelope['project_id']} seen by {conn['user']}")
    document = frame_envelope["document"] or {}
    rtype = frame_envelope["resource_type"]
    admin_fields = [k for k in document if any(fnmatch.fnmatchcase(k, p)
                                               for p in ADMIN_ONLY[rtype])]
    if admin_fields and not admin:
        problems.append(f"admin-only {admin_fields} seen by {conn['user']}")
    if any(k.startswith("secret_") for k in document):
        problems.append(f"secret field seen by {conn['user']}")
    return problems


def test_no_connection_ever_sees_what_its_token_does_not_allow(
        ws_server, writer, people, keystone, tmp_path):
    users, projects = people
    secrets = RegexFields("secrets", {"patterns": SECRET},
                          FilterContext(ADMIN_ONLY, tuple(ALL_TYPES)))
    server = ws_server(types=TYPES, filters=[secrets], poll_interval=0.5,
                       validator=keystone.validator(tmp_path))
    examples = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(resources(projects), connections(users))
    def check(drawn_resources, drawn_connections):
        run = next(_run)
        opened: list[tuple[dict, Client]] = []

        def open_(conn):
            client = Client(server.url)
            opened.append((conn, client))
            token, _, admin = users[conn["user"]]
            assert client.authenticate(token)["type"] == "authenticated"
            client.send({"action": "subscribe", "resource_types": TYPES,
                         "all_projects": conn["all_projects"]})
            if conn["all_projects"] and not admin:
                refused = client.recv()
                assert refused["type"] == "error" and refused["code"] == "forbidden"
                client.subscribe(types=TYPES)      # falls back to its own project
                conn["all_projects"] = False
            else:
                deadline = time.monotonic() + 30
                while client.recv(timeout=30)["type"] != "resumed":
                    assert time.monotonic() < deadline

        try:
            for conn in drawn_connections:
                if conn["live"]:
                    open_(conn)
            changes, final = [], {}
            for i, res in enumerate(drawn_resources):
                rid = f"iso-{run}-{i}"
                fields = {"secret_note": "s3cr3t"} if res["secret"] else {}
                if res["admin_field"]:
                    fields[ADMIN_FIELD[res["type"]]] = "compute-7"
                version = 100
                for version in range(100, 101 + res["updates"]):
                    changes.append(document_change(rid, res["project"], version,
                                                   rtype=res["type"], **fields))
                if res["deleted"]:
                    version += 1
                    changes.append(document_change(rid, res["project"], version,
                                                   deleted=True, rtype=res["type"]))
                final[(res["type"], rid)] = (res, version)
            writer.changes(changes)
            for conn in drawn_connections:
                if not conn["live"]:
                    open_(conn)
            # A fence per project, written last: once a connection has its fence,
            # everything before it in _seq_no order has been offered to it.
            fences = {p: f"fence-{run}-{n}" for n, p in enumerate(projects) if p}
            writer.changes([document_change(f, p, 1) for p, f in fences.items()])

            for conn, client in opened:
                _, project, admin = users[conn["user"]]
                wanted = (list(fences.values()) if admin and conn["all_projects"]
                          else [fences[project]])
                deadline = time.monotonic() + 30
                while not all(("OS::Nova::Server", f) in client.view for f in wanted):
                    assert time.monotonic() < deadline, f"fences missing at {conn}"
                    client.pump(0.2)
                problems = [p for env in client.received for p in leaks(env, conn, users)]
                assert problems == [], problems
                assert client.regressions == []
                for key, (res, version) in final.items():
                    env = client.view.get(key)
                    if not visible(conn, users, res):
                        assert env is None, (conn, key)
                    elif res["deleted"]:
                        assert env is None or env["operation"] == "delete", (conn, key)
                    else:
                        assert env is not None and env["version"] == version, (conn, key)
                        if res["admin_field"]:
                            has = ADMIN_FIELD[res["type"]] in env["document"]
                            assert has == admin, (conn, key, "role copy")
        finally:
            for _, client in opened:
                client.close()
        examples.append(run)

    check()
    assert len(examples) >= EXAMPLES
