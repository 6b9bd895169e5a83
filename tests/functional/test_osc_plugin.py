"""The OpenStackClient plugin for the subscriptions API (forwarders/cmd/osc): the
real ``openstack`` command, OS_* credentials for the local Keystone, the API found
through the catalog (service type ``search``) in a region of the test's own
(``LocalKeystone.catalog_entry``) at an API the test starts.

Without the plugin every command below is unknown to ``openstack`` (exit status 2),
so each test fails. Expected values are written from what the test created.
"""
from __future__ import annotations

import json
import uuid

import pytest

from forwarders.cmd import subscriptions as cli
from tests.conftest import RUN
from tests.functional.conftest import wait_for
from tests.functional.subscriptions_support import started_apis
from tests.functional.test_searchlight_client import openstack

pytestmark = pytest.mark.timeout(240)

SERVER = "OS::Nova::Server"


@pytest.fixture
def region(config_file, names, keystone, es):
    """The API on the test's config, registered in the catalog for this test only:
    (api, region)."""
    for start in started_apis(config_file, names, keystone, es):
        api = start()
        name = f"{RUN}-search-{uuid.uuid4().hex[:6]}"
        with keystone.catalog_entry("search", name, api.url) as found:
            yield api, found


def run_json(keystone, user, region, *args):
    return json.loads(openstack(keystone, user, region, "subscription", *args,
                                "-f", "json").stdout)


def test_a_member_manages_a_webhook_subscription(region, keystone, receivers):
    _, reg = region
    demo = keystone.users["demo"]["project_id"]
    endpoint = receivers(confirm=False).url
    sub = run_json(keystone, "demo", reg, "create", "--protocol", "webhook",
                   "--endpoint", endpoint, "--name", "ops hook",
                   "--resource-type", SERVER, "--event-type", "compute.instance.*")
    assert (sub["protocol"], sub["endpoint"], sub["name"], sub["project_id"],
            sub["state"], sub["all_projects"], sub["role"]) == (
        "webhook", endpoint, "ops hook", demo, "pending_confirmation", False, "user")
    assert sub["resource_types"] == [SERVER]
    assert sub["event_types"] == ["compute.instance.*"]
    assert sub["secret"].startswith("whsec_")

    listed = run_json(keystone, "demo", reg, "list")
    assert listed == [{"ID": sub["id"], "Name": "ops hook", "Protocol": "webhook",
                       "Endpoint": endpoint, "State": "pending_confirmation",
                       "Project ID": demo}]
    table = openstack(keystone, "demo", reg, "subscription", "list").stdout
    assert f"| {sub['id']} | ops hook" in table
    long = run_json(keystone, "demo", reg, "list", "--long")
    assert long[0]["Resource Types"] == [SERVER] and long[0]["Role"] == "user"

    shown = run_json(keystone, "demo", reg, "show", sub["id"])
    assert shown == {k: v for k, v in sub.items() if k != "secret"} | {
        "updated_at": shown["updated_at"]}
    assert "secret" not in shown

    done = openstack(keystone, "demo", reg, "subscription", "set", sub["id"],
                     "--name", "renamed", "--disable", "--rate-limit", "2")
    assert done.stdout == ""
    shown = run_json(keystone, "demo", reg, "show", sub["id"])
    assert (shown["name"], shown["state"], shown["rate_limit"]) == ("renamed", "disabled", 2)
    assert shown["resource_types"] == [SERVER]

    secrets = run_json(keystone, "demo", reg, "secret", "show", sub["id"])
    assert secrets == [{"Secret": sub["secret"], "Expires At": None}]
    rotated = run_json(keystone, "demo", reg, "secret", "rotate", sub["id"],
                       "--expire-previous-in", "3600")
    assert len(rotated) == 2 and rotated[1]["Secret"] == sub["secret"]
    assert rotated[0]["Secret"].startswith("whsec_") and rotated[0]["Secret"] != sub["secret"]
    assert rotated[0]["Expires At"] is None and rotated[1]["Expires At"] is not None
    assert run_json(keystone, "demo", reg, "secret", "show", sub["id"]) == rotated

    # A reader may look, not change.
    assert [r["ID"] for r in run_json(keystone, "demo-reader", reg, "list")] == [sub["id"]]
    refused = openstack(keystone, "demo-reader", reg, "subscription", "delete", sub["id"],
                        check=False)
    assert refused.returncode == 1 and "1 of 1 subscriptions failed to delete" in refused.stderr

    assert openstack(keystone, "demo", reg, "subscription", "delete", sub["id"]).stdout == ""
    missing = openstack(keystone, "demo", reg, "subscription", "show", sub["id"], check=False)
    assert missing.returncode == 1 and "(HTTP 404)" in missing.stderr
    assert run_json(keystone, "demo", reg, "list") == []


def test_members_see_their_projects_and_admins_every_one_with_all_projects(
        region, keystone, receivers):
    _, reg = region
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    admin = keystone.users["admin"]["project_id"]
    made = {}
    for user in ("demo", "alt", "admin"):
        made[user] = run_json(keystone, user, reg, "create", "--protocol", "webhook",
                              "--endpoint", receivers(confirm=False).url,
                              "--name", f"{user}'s")
    everyone = run_json(keystone, "admin", reg, "create", "--protocol", "webhook",
                        "--endpoint", receivers(confirm=False).url, "--all-projects",
                        "--name", "every project")
    assert everyone["all_projects"] is True and everyone["role"] == "admin"
    for_alt = run_json(keystone, "admin", reg, "create", "--protocol", "webhook",
                       "--endpoint", receivers(confirm=False).url, "--project", alt)
    assert for_alt["project_id"] == alt

    def ids(user, *args):
        return sorted((r["ID"], r["Project ID"]) for r in run_json(
            keystone, user, reg, "list", *args))
    assert ids("demo") == [(made["demo"]["id"], demo)]
    assert ids("alt") == sorted([(made["alt"]["id"], alt), (for_alt["id"], alt)])
    # One for every project belongs to none: only --all-projects lists it.
    assert ids("admin") == [(made["admin"]["id"], admin)]
    assert ids("admin", "--all-projects") == sorted(
        [(made["demo"]["id"], demo), (made["alt"]["id"], alt), (for_alt["id"], alt),
         (made["admin"]["id"], admin), (everyone["id"], everyone["project_id"])])
    assert ids("admin", "--project", alt) == ids("alt")

    refused = openstack(keystone, "demo", reg, "subscription", "list", "--all-projects",
                        check=False)
    assert refused.returncode == 1 and "(HTTP 403)" in refused.stderr
    refused = openstack(keystone, "demo", reg, "subscription", "create", "--protocol",
                        "webhook", "--endpoint", receivers(confirm=False).url,
                        "--all-projects", check=False)
    assert refused.returncode == 1 and "(HTTP 403)" in refused.stderr
    # Another project's subscription is not found, as a missing one.
    hidden = openstack(keystone, "demo", reg, "subscription", "show", made["alt"]["id"],
                       check=False)
    assert hidden.returncode == 1 and "(HTTP 404)" in hidden.stderr
    shown = run_json(keystone, "admin", reg, "show", made["alt"]["id"])
    assert (shown["id"], shown["project_id"], shown["name"]) == (
        made["alt"]["id"], alt, "alt's")
    openstack(keystone, "admin", reg, "subscription", "delete", made["demo"]["id"],
              made["alt"]["id"])
    assert ids("demo") == [] and ids("alt") == [(for_alt["id"], alt)]


def test_an_endpoint_is_confirmed_with_the_token_of_its_link(
        region, keystone, receivers, start_delivery):
    _, reg = region
    receiver = receivers(confirm=False)
    sub = run_json(keystone, "demo", reg, "create", "--protocol", "webhook",
                   "--endpoint", receiver.url)
    start_delivery()
    wait_for(lambda: receiver.confirmations(), 30, "the confirmation request")
    [request] = receiver.confirmations()
    link = request.data["confirm_url"]
    assert request.data["subscription_id"] == sub["id"]
    token = link.split("token=", 1)[1]

    wrong = openstack(keystone, "demo", reg, "subscription", "confirm", sub["id"],
                      "--token", "not-" + token, check=False)
    assert wrong.returncode == 1 and "(HTTP 404)" in wrong.stderr
    assert run_json(keystone, "demo", reg, "show", sub["id"])["state"] == \
        "pending_confirmation"
    confirmed = run_json(keystone, "demo", reg, "confirm", sub["id"], "--token", token)
    assert confirmed == {"id": sub["id"], "state": "active"}
    shown = run_json(keystone, "demo", reg, "show", sub["id"])
    assert shown["state"] == "active" and shown["confirmed_at"] is not None


def test_the_subscriptions_cli_finds_the_api_through_the_catalog(region, keystone, capsys,
                                                                  monkeypatch):
    """searchlight-forward-subscriptions without --api-url or SF_API_URL: the catalog's
    search service in the region named (the test's own), as `openstack` finds it."""
    _, reg = region
    monkeypatch.delenv("SF_API_URL", raising=False)
    user = keystone.users["demo"]
    creds = ["--os-auth-url", keystone.auth_url, "--os-username", user["name"],
             "--os-password", user["password"], "--os-user-domain-id", user["domain_id"],
             "--os-project-id", user["project_id"], "--os-region-name", reg]
    assert cli.main(creds + ["list"]) == 0
    assert json.loads(capsys.readouterr().out) == {"subscriptions": []}
    with pytest.raises(SystemExit) as nowhere:      # a region without the service
        cli.main(creds[:-1] + [f"{reg}-nowhere", "list"])
    assert "search" in str(nowhere.value) and "nowhere" in str(nowhere.value), \
        nowhere.value
