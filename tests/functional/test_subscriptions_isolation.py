"""No subscription ever receives what its creator may not see: a property over
random projects, roles and documents, on the real servers with real Keystone
tokens and a real receiver per subscription.

Subscriptions (made through the API, confirmed by their receivers): a member of
demo, a member of alt (user copies of their project), an admin for the admin
project (admin copy) and an admin for all projects (admin copies of everything).
Hypothesis draws resources (type, project - one of theirs, an unknown one or none -
an admin-only field, a field the subscriptions pipeline's regex filter removes,
updates, a delete). Every delivery must verify with the reference package and obey
contract 3, and each subscription must end with exactly its share, each resource at
its newest state. The expectation is written from the drawn input.
"""
from __future__ import annotations

import fnmatch
import itertools
import uuid

import pytest
import standardwebhooks
from hypothesis import HealthCheck, given, settings

from tests.functional.conftest import wait_for, write_pipelines
from devtools.receivers import Receiver
from tests.functional.subscriptions_support import (API, SUBSCRIPTIONS_PIPELINE, free_port,
                                                     subscriptions_conf)
from tests.functional.isolation_support import ADMIN_FIELD, resources
from tests.functional.websocket_support import ADMIN_ONLY, document_change

EXAMPLES = 8
_run = itertools.count()


@pytest.fixture
def subscribers(config_file, names, keystone, es, start_delivery):
    """name -> (receiver, secret, project or None for all, admin copy?)."""
    port = free_port()
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(text + subscriptions_conf(names, keystone, port))
    api = API(config_file, port)
    start_delivery()
    made, receivers = {}, []
    try:
        for name, user, all_projects in (("demo", "demo", False), ("alt", "alt", False),
                                         ("admin", "admin", False),
                                         ("everything", "admin", True)):
            receiver = Receiver()
            receivers.append(receiver)
            token = keystone.token(user)
            body = {"protocol": "webhook", "endpoint": receiver.url}
            if all_projects:
                body["all_projects"] = True
            resp = api.call("POST", "/v1/subscriptions", token, body)
            assert resp.status_code == 201, resp.text
            sub = resp.json()["subscription"]
            wait_for(lambda: api.call("GET", f"/v1/subscriptions/{sub['id']}", token)
                     .json()["subscription"]["state"] == "active", 30, f"{name} confirmed")
            made[name] = (receiver, sub["secret"],
                          None if all_projects else keystone.users[user]["project_id"],
                          user == "admin")
        yield made
    finally:
        for r in receivers:
            r.stop()
        api.stop()
        es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


def test_no_subscription_receives_another_projects_resource_or_a_hidden_field(
        subscribers, writer, keystone):
    own = [keystone.users[u]["project_id"] for u in ("demo", "alt", "admin")]
    projects = own + [uuid.uuid4().hex, None]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(resources(projects, max_size=12))
    def check(drawn):
        run = next(_run)
        final = {}
        for i, r in enumerate(drawn):
            rid = f"x{run}-{i}"
            fields = {}
            if r["admin_field"]:
                fields[ADMIN_FIELD[r["type"]]] = "compute-7"
            if r["secret"]:
                fields["secret_password"] = "hunter2"
            for version in range(1, r["updates"] + 2):
                writer.changes([document_change(rid, r["project"], version,
                                                rtype=r["type"], **fields)])
            version = r["updates"] + 1
            if r["deleted"]:
                version += 1
                writer.changes([document_change(rid, r["project"], version, deleted=True,
                                                rtype=r["type"])])
            final[rid] = (r, version)
        markers = {p: f"m{run}-{p[:6]}" for p in own}
        for project, marker in markers.items():
            writer(project, [marker], 1)
        for name, (receiver, secret, project, admin) in subscribers.items():
            wanted = {m for p, m in markers.items() if project in (None, p)}
            wait_for(lambda: wanted <= {d.json["data"]["id"] for d in receiver.changes()},
                     60, f"{name}'s markers")
            hook = standardwebhooks.Webhook(secret)
            last = {}
            for d in receiver.changes():
                hook.verify(d.body, {k: d.headers[k] for k in (
                    "webhook-id", "webhook-timestamp", "webhook-signature")})
                data = d.json["data"]
                if not data["id"].startswith(f"x{run}-"):
                    continue
                r, _ = final[data["id"]]
                assert project is None or data["project_id"] == project, (name, data)
                document = data["document"] or {}
                hidden = [k for k in document if any(
                    fnmatch.fnmatchcase(k, p) for p in ADMIN_ONLY[data["resource_type"]])]
                assert admin or not hidden, f"{name} got admin-only {hidden}"
                assert "secret_password" not in document, f"{name} got a filtered field"
                if admin and r["admin_field"] and data["operation"] == "index":
                    assert ADMIN_FIELD[r["type"]] in document, "admin copy without its field"
                assert data["version"] > last.get(data["id"], 0), "older after newer"
                last[data["id"]] = data["version"]
            expected = {rid: v for rid, (r, v) in final.items()
                        if project is None or r["project"] == project}
            assert last == expected, name

    check()
