"""Subscriptions end to end, on the real servers: Keystone tokens through
keystonemiddleware, oslo.policy, the delivery service reading the change log, and a
real HTTP receiver whose deliveries are verified with the ``standardwebhooks``
reference package (not with our signing code)."""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import uuid

import prometheus_client
import pytest
import requests
import standardwebhooks

from searchlight_forward import metrics
from forwarders.cmd import subscriptions as cli
from tests.functional.conftest import wait_for
from devtools.receivers import Receiver
from tests.functional.subscriptions_support import api_command, started_apis
from tests.functional.websocket_support import ADMIN_ONLY, SERVER, document_change

ADMIN_FIELD = "OS-EXT-SRV-ATTR:host"
assert any(fnmatch.fnmatchcase(ADMIN_FIELD, p) for p in ADMIN_ONLY[SERVER])


@pytest.fixture
def stack(config_file, names, keystone, es):
    """``start(**options)``: the API on the test's config, with those [subscriptions]
    options."""
    yield from started_apis(config_file, names, keystone, es)


class Hooked:
    """A demo member's confirmed webhook subscription, delivered by a running
    delivery service: the API, token, project, receiver, subscription, service."""

    def __init__(self, api, keystone, receivers, start_delivery, **fields):
        self.api = api
        self.member = keystone.token("demo")
        self.project = keystone.users["demo"]["project_id"]
        self.receiver = receivers()
        self.service = start_delivery()
        self.sub = active(api, self.member, self.receiver, **fields)


@pytest.fixture
def hooked(stack, keystone, receivers, start_delivery):
    """hooked(**subscription fields, api=None) -> Hooked."""
    return lambda api=None, **fields: Hooked(api or stack(), keystone, receivers,
                                             start_delivery, **fields)


def subscribe(api, token, endpoint, **fields) -> dict:
    resp = api.call("POST", "/v1/subscriptions", token,
                    {"protocol": "webhook", "endpoint": endpoint, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()["subscription"]


def state_of(api, token, sub_id) -> str:
    return api.call("GET", f"/v1/subscriptions/{sub_id}", token).json()[
        "subscription"]["state"]


def verified(receiver: Receiver, secret: str) -> list[dict]:
    """Every change the receiver got, each checked with the reference package."""
    hook = standardwebhooks.Webhook(secret)
    out = []
    for d in receiver.changes():
        hook.verify(d.body, {k: d.headers[k] for k in
                             ("webhook-id", "webhook-timestamp", "webhook-signature")})
        out.append(d.json)
    return out


def active(api, token, receiver, **fields) -> dict:
    sub = subscribe(api, token, receiver.url, **fields)
    wait_for(lambda: state_of(api, token, sub["id"]) == "active", 30,
             "the endpoint to confirm")
    return sub


def test_a_confirmed_webhook_gets_its_projects_changes_signed_redacted_in_order(
        stack, start_delivery, writer, keystone, receivers):
    api = stack()
    demo = keystone.token("demo")
    demo_project = keystone.users["demo"]["project_id"]
    alt_project = keystone.users["alt"]["project_id"]
    receiver = receivers()
    sub = subscribe(api, demo, receiver.url, name="ops hook")
    assert sub["state"] == "pending_confirmation" and sub["secret"].startswith("whsec_")
    assert sub["project_id"] == demo_project and not sub["all_projects"]
    start_delivery()
    wait_for(lambda: state_of(api, demo, sub["id"]) == "active", 30, "confirmation")
    [request] = receiver.confirmations()
    standardwebhooks.Webhook(sub["secret"]).verify(request.body, {
        k: request.headers[k] for k in ("webhook-id", "webhook-timestamp",
                                        "webhook-signature")})

    ids = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    for version in (1, 2, 3):
        writer(demo_project, ids, version, **{ADMIN_FIELD: "compute-1",
                                             "secret_token": "x"})
        writer(alt_project, [f"alt-{i}" for i in range(3)], version)
    writer.changes([document_change(ids[0], demo_project, 4, deleted=True)])
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    writer(demo_project, [marker], 1)

    wait_for(lambda: any(c.json["data"]["id"] == marker for c in receiver.changes()), 60,
             "the marker")
    changes = verified(receiver, sub["secret"])
    seen: dict[str, list[int]] = {}
    for change in changes:
        data = change["data"]
        assert data["project_id"] == demo_project, data
        assert ADMIN_FIELD not in (data["document"] or {}), "admin-only field sent"
        assert "secret_token" not in (data["document"] or {}), "filtered field sent"
        seen.setdefault(data["id"], []).append(data["version"])
    for rid, versions in seen.items():
        assert versions == sorted(set(versions)), f"{rid} out of order: {versions}"
    # Written: each id at versions 1..3 (the first deleted at 4), then the marker.
    assert {rid: v[-1] for rid, v in seen.items()} == {
        **{rid: 3 for rid in ids[1:]}, ids[0]: 4, marker: 1}
    delete = [c for c in changes if c["data"]["id"] == ids[0]][-1]
    assert delete["type"] == "resource.deleted" and delete["data"]["document"] is None
    ids_seen = [c["webhook-id"] for c in (d.headers for d in receiver.changes())]
    assert len(ids_seen) == len(set(ids_seen)), "one change delivered twice"


def test_the_policy_decides_with_real_tokens_of_two_projects_and_three_roles(
        stack, keystone, receivers):
    api = stack()
    member, reader = keystone.token("demo"), keystone.token("demo-reader")
    other, admin = keystone.token("alt"), keystone.token("admin")
    url = receivers(confirm=False).url
    assert api.call("GET", "/v1/subscriptions").status_code == 401
    assert api.call("GET", "/v1/subscriptions", "not-a-token").status_code == 401
    assert api.call("POST", "/v1/subscriptions", reader,
                    {"protocol": "webhook", "endpoint": url}).status_code == 403
    sub = subscribe(api, member, url)
    path = f"/v1/subscriptions/{sub['id']}"
    # The project's reader reads it but cannot change it nor see its secret.
    assert api.call("GET", path, reader).status_code == 200
    assert [s["id"] for s in api.call("GET", "/v1/subscriptions", reader).json()[
        "subscriptions"]] == [sub["id"]]
    assert api.call("PATCH", path, reader, {"name": "x"}).status_code == 403
    assert api.call("GET", path + "/secret", reader).status_code == 403
    assert api.call("DELETE", path, reader).status_code == 403
    # Another project learns nothing, not even that it exists.
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        assert api.call(method, path, other, body).status_code == 404
    assert api.call("GET", "/v1/subscriptions", other).json()["subscriptions"] == []
    assert api.call("GET", "/v1/subscriptions", member, all_projects="true"
                    ).status_code == 403
    assert api.call("POST", "/v1/subscriptions", member, {
        "protocol": "webhook", "endpoint": url, "all_projects": True}).status_code == 403
    alt_project = keystone.users["alt"]["project_id"]
    assert api.call("POST", "/v1/subscriptions", member, {
        "protocol": "webhook", "endpoint": url, "project_id": alt_project}
        ).status_code == 403
    # The member manages it; the admin sees and manages everything.
    patched = api.call("PATCH", path, member, {"name": "renamed", "rate_limit": 5})
    assert patched.status_code == 200 and patched.json()["subscription"]["name"] == "renamed"
    assert api.call("GET", path + "/secret", member).json()["secrets"][0][
        "secret"] == sub["secret"]
    assert api.call("GET", path, admin).status_code == 200
    everyone = subscribe(api, admin, url, all_projects=True)
    assert everyone["all_projects"] and everyone["project_id"] is None
    listed = {s["id"] for s in api.call("GET", "/v1/subscriptions", admin,
                                        all_projects="true").json()["subscriptions"]}
    assert {sub["id"], everyone["id"]} <= listed
    assert api.call("GET", f"/v1/subscriptions/{everyone['id']}", member).status_code == 404
    assert api.call("DELETE", path, member).status_code == 204
    assert api.call("GET", path, member).status_code == 404


def test_bad_requests_and_disallowed_endpoints_are_refused_with_the_field(
        stack, keystone, receivers):
    api = stack()
    member = keystone.token("demo")

    def refused(body, status=400):
        resp = api.call("POST", "/v1/subscriptions", member, body)
        assert resp.status_code == status, resp.text
        return resp.json()["error"]

    assert refused({"protocol": "sms", "endpoint": "x"})["field"] == "protocol"
    assert refused({"protocol": "webhook", "endpoint": "ftp://x"})["field"] == "endpoint"
    assert refused({"protocol": "webhook", "endpoint": "http://u:p@example.com/"}
                   )["field"] == "endpoint"
    assert refused({"protocol": "webhook", "endpoint": receivers().url,
                    "resource_types": ["OS::Nope"]})["field"] == "resource_types"
    assert refused({"protocol": "webhook", "endpoint": receivers().url,
                    "rate_limit": 10_000})["field"] == "rate_limit"
    assert refused({"protocol": "webhook", "endpoint": receivers().url, "extra": 1}
                   )["field"] == "extra"
    # Not in [subscriptions] allowed_networks (127.0.0.1/32 in the tests):
    for url in ("http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/", "http://127.0.0.2/", "http://192.168.0.1/",
                "http://0.0.0.0/", "http://[::ffff:10.0.0.1]/"):
        error = refused({"protocol": "webhook", "endpoint": url})
        assert error["field"] == "endpoint" and "allowed_networks" in error["message"], url
    assert refused({"protocol": "webhook",
                    "endpoint": "http://no-such-host.invalid/"})["field"] == "endpoint"
    garbled = requests.post(f"{api.url}/v1/subscriptions", data=b"{not json", timeout=30,
                            headers={"X-Auth-Token": member,
                                     "Content-Type": "application/json"})
    assert garbled.status_code == 400 and "not JSON" in garbled.json()["error"]["message"]
    form = requests.post(f"{api.url}/v1/subscriptions", data={"protocol": "webhook"},
                         headers={"X-Auth-Token": member}, timeout=30)
    assert form.status_code == 415
    assert refused([1, 2])["field"] == "body"


def test_unconfirmed_and_disabled_endpoints_receive_nothing_but_the_request(
        stack, start_delivery, writer, keystone, receivers):
    api = stack()
    member = keystone.token("demo")
    project = keystone.users["demo"]["project_id"]
    silent = receivers(confirm=False)
    pending = subscribe(api, member, silent.url)
    start_delivery()
    witness = receivers()
    active(api, member, witness)
    paused = receivers()
    paused_sub = active(api, member, paused)
    assert api.call("PATCH", f"/v1/subscriptions/{paused_sub['id']}", member,
                    {"state": "disabled"}).json()["subscription"]["state"] == "disabled"
    writer(project, ["r1", "r2"], 1)
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    writer(project, [marker], 1)
    wait_for(lambda: any(c.json["data"]["id"] == marker for c in witness.changes()), 60,
             "the witness to get the marker")
    # The witness has everything written after the others' last chance to send it.
    wait_for(lambda: state_of(api, member, pending["id"]) == "pending_confirmation", 5,
             "the pending subscription to stay pending")
    assert silent.changes() == [] and len(silent.confirmations()) >= 1
    assert paused.changes() == []


def test_an_endpoint_that_fails_then_recovers_gets_every_resource_in_order(
        hooked, writer):
    h = hooked()
    api, member, project, receiver, sub, service = (
        h.api, h.member, h.project, h.receiver, h.sub, h.service)
    receiver.status = 503
    ids = [f"f{i}" for i in range(6)]
    for version in range(1, 6):
        writer(project, ids, version)
    writer.changes([document_change("f0", project, 6, deleted=True)])
    wait_for(lambda: len(receiver.refused) >= 3, 30, "a few refused attempts")
    receiver.status = 200
    wait_for(lambda: {c["data"]["id"]: c["data"]["version"]
                      for c in verified(receiver, sub["secret"])}
             == {"f0": 6, **{rid: 5 for rid in ids[1:]}}, 60,
             "every resource at its newest version")
    per_resource: dict[str, list[int]] = {}
    for change in verified(receiver, sub["secret"]):
        per_resource.setdefault(change["data"]["id"], []).append(change["data"]["version"])
    assert all(v == sorted(set(v)) for v in per_resource.values()), per_resource
    assert state_of(api, member, sub["id"]) == "active"
    # Operators see it summed over subscriptions (no per-subscription labels).
    scraped = prometheus_client.generate_latest(metrics.registry(service.metrics)).decode()
    sums = {line.split()[0]: float(line.split()[1]) for line in scraped.splitlines()
            if line.startswith("searchlight_forward_delivery_subscriptions_")}
    assert sums["searchlight_forward_delivery_subscriptions_failures_total"] >= 1
    assert sums["searchlight_forward_delivery_subscriptions_delivered_total"] >= 6
    assert sums['searchlight_forward_delivery_subscriptions_owned{mode="live"}'] + sums[
        'searchlight_forward_delivery_subscriptions_owned{mode="catching_up"}'] == 1
    assert sub["id"] not in scraped


def disabled_after_answering(status: int, h: Hooked, writer) -> dict:
    """The subscription as shown once disabled, its endpoint having answered
    ``status`` to a change."""
    h.receiver.status = status
    writer(h.project, [f"s{status}"], 1)
    return wait_for(lambda: (lambda s: s if s["state"] == "disabled" else None)(
        h.api.call("GET", f"/v1/subscriptions/{h.sub['id']}", h.member).json()[
            "subscription"]), 30, "the subscription to be disabled")


def test_410_gone_disables_the_subscription_with_the_reason(
        hooked, writer, receivers):
    h = hooked()
    api, member, project, receiver = h.api, h.member, h.project, h.receiver
    shown = disabled_after_answering(410, h, writer)
    assert "410" in shown["state_reason"]
    refused_before = len(receiver.refused)
    witness = receivers()
    active(api, member, witness)
    writer(project, ["g2"], 1)
    wait_for(lambda: any(c.json["data"]["id"] == "g2" for c in witness.changes()), 60,
             "the witness to get g2")
    assert len(receiver.refused) == refused_before, "a disabled endpoint was called"


def test_an_endpoint_failing_longer_than_disable_after_is_disabled(
        stack, hooked, writer):
    shown = disabled_after_answering(500, hooked(api=stack(disable_after=2)), writer)
    assert "failing for" in shown["state_reason"] and "500" in shown["state_reason"]


def test_a_rotated_secret_and_the_previous_one_both_verify_during_the_overlap(
        hooked, writer):
    h = hooked()
    api, member, project, receiver, sub = h.api, h.member, h.project, h.receiver, h.sub
    rotated = api.call("POST", f"/v1/subscriptions/{sub['id']}/secret/rotate", member,
                       {"expire_previous_in": 3600})
    assert rotated.status_code == 200, rotated.text
    new, old = [s["secret"] for s in rotated.json()["secrets"]]
    assert old == sub["secret"] and new != old
    writer(project, ["k1"], 1)
    wait_for(lambda: receiver.changes(), 60, "a delivery after the rotation")
    assert verified(receiver, new) == verified(receiver, old)
    stranger = "whsec_" + "A" * 32
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verified(receiver, stranger)


def test_the_cli_manages_subscriptions_with_openstack_credentials(
        stack, keystone, receivers, capsys):
    api = stack()
    user = keystone.users["demo"]
    creds = ["--api-url", api.url, "--os-auth-url", keystone.auth_url,
             "--os-username", user["name"], "--os-password", user["password"],
             "--os-user-domain-id", user["domain_id"], "--os-project-id", user["project_id"]]

    def run(*args) -> tuple[int, dict | None]:
        status = cli.main(creds + list(args))
        out = capsys.readouterr().out
        return status, (json.loads(out) if out.strip() else None)

    status, created = run("create", "--protocol", "webhook", "--endpoint",
                          receivers(confirm=False).url, "--resource-type",
                          "OS::Nova::Server", "--event-type", "compute.instance.*")
    sub = created["subscription"]
    assert status == 0 and sub["resource_types"] == ["OS::Nova::Server"]
    assert run("list")[1]["subscriptions"][0]["id"] == sub["id"]
    status, updated = run("update", sub["id"], "--disable", "--rate-limit", "2")
    assert (updated["subscription"]["state"], updated["subscription"]["rate_limit"]) == (
        "disabled", 2)
    assert run("secret", sub["id"])[1]["secrets"][0]["secret"] == sub["secret"]
    assert run("rotate-secret", sub["id"])[1]["secrets"][1]["secret"] == sub["secret"]
    assert run("delete", sub["id"]) == (0, None)
    status, missing = run("show", sub["id"])
    assert status == 1 and missing["error"]["code"] == 404


def test_a_rate_limited_subscription_is_paced_and_misses_nothing(
        hooked, writer):
    h = hooked(rate_limit=2)
    project, receiver, sub = h.project, h.receiver, h.sub
    ids = [f"p{i}" for i in range(8)]
    writer(project, ids, 1)
    wait_for(lambda: len(receiver.changes()) >= 8, 60, "eight deliveries")
    arrivals = sorted(d.at for d in receiver.changes())
    # A bucket of 2 at 2/s: the first two at once, then one every 0.5 s at best.
    assert arrivals[-1] - arrivals[0] >= (8 - 2) / 2 - 0.1
    assert sorted(c["data"]["id"] for c in verified(receiver, sub["secret"])) == ids


def test_the_api_command_serves_behind_keystone(stack, config_file, processes, keystone):
    url = api_command(stack, config_file, processes)
    assert requests.get(url + "/v1/subscriptions", timeout=10).status_code == 401
    listed = requests.get(url + "/v1/subscriptions", timeout=10,
                          headers={"X-Auth-Token": keystone.token("demo-reader")})
    assert listed.status_code == 200 and listed.json() == {"subscriptions": []}


def test_explain_shows_a_subscriptions_fields_for_its_creators_role(
        stack, config_file, keystone, receivers):
    api = stack()
    mine = subscribe(api, keystone.token("demo"), receivers(confirm=False).url,
                     resource_types=["OS::Nova::Server"])
    admins = subscribe(api, keystone.token("admin"), receivers(confirm=False).url,
                       resource_types=["OS::Nova::Server"])

    def explain(sub_id):
        done = subprocess.run(
            [sys.executable, "-m", "forwarders.cmd.manage", "--config-file",
             str(config_file), "explain", "--subscription", sub_id],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    member_view, admin_view = explain(mine["id"]), explain(admins["id"])
    assert "OS::Nova::Server, user copy" in member_view
    assert "OS::Cinder::Volume" not in member_view          # its own selection
    assert ADMIN_FIELD not in member_view and ADMIN_FIELD in admin_view
    assert "OS::Nova::Server, admin copy" in admin_view
