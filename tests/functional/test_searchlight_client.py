"""python-searchlightclient 2.1.1 and ``openstack search`` (python-openstackclient),
unchanged, against the real API behind the local Keystone, finding it through the
catalog as they found Searchlight (service type ``search``).

Each test runs its own API on a free port and registers it for the test only
(``LocalKeystone.catalog_entry``): a ``search`` service of its own whose public and
internal endpoints are in a region of its own, which the clients name
(``region_name``, ``OS_REGION_NAME``). The local servers' own entry (service
``searchlight`` in RegionOne at the demo's API, made by scripts/servers.py) is
neither used nor touched, so a running ``make demo`` and the tests never meet.

The oracle is the input: every count below is written down from the documents the
test indexes through the ``writer`` fixture.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest
from keystoneauth1 import exceptions as ks_exceptions
from searchlightclient import client as searchlight_client

from tests.conftest import RUN
from tests.functional.conftest import load_conf, write_pipelines
from tests.functional.searchlight_support import HOST, PIPELINES
from tests.functional.subscriptions_support import API, free_port, subscriptions_conf
from tests.functional.websocket_support import ALL_TYPES, SERVER, VOLUME, document_change

pytestmark = pytest.mark.timeout(180)

OPENSTACK = pathlib.Path(sys.executable).parent / "openstack"


@pytest.fixture
def api(config_file, names, keystone, es, writer):
    """The API on the test's group over the test's documents, registered in the
    catalog for this test only: (api, region, demo project, alt project)."""
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    writer.changes([
        document_change("d1", demo, 1, status="ACTIVE", locked=True, key_name="k",
                        **{HOST: "compute-1"}),
        document_change("d2", demo, 1, status="ACTIVE", locked=False, key_name="k",
                        **{HOST: "compute-1"}),
        document_change("d3", demo, 1, status="ERROR", locked=False, key_name="k",
                        **{HOST: "compute-2"}),
        document_change("a1", alt, 1, status="SHUTOFF", locked=False, key_name="k",
                        **{HOST: "compute-3"}),
        document_change("v1", demo, 1, rtype=VOLUME, status="in-use"),
        document_change("v2", alt, 1, rtype=VOLUME, status="available")])
    write_pipelines(config_file, PIPELINES)
    port = free_port()
    config_file.write_text(config_file.read_text()
                           + subscriptions_conf(names, keystone, port))
    server = API(config_file, port)
    name = f"{RUN}-search-{uuid.uuid4().hex[:6]}"
    try:
        with keystone.catalog_entry("search", name, server.url) as region:
            yield server, region, demo, alt
    finally:
        server.stop()


def plugins(group: str) -> list[dict]:
    return [{"type": t, "alias-indexing": f"{group}-listener",
             "alias-searching": f"{group}-search"} for t in sorted(ALL_TYPES)]


def options(answer: dict, rtype: str, name: str) -> dict:
    found = [f for f in answer[rtype]["facets"] if f["name"] == name]
    assert len(found) == 1, (name, [f["name"] for f in answer[rtype]["facets"]])
    return {o["key"]: o["doc_count"] for o in found[0].get("options", [])}


# -- python-searchlightclient's Python API -------------------------------------------

def client_for(keystone, user: str, region: str, **kw):
    """searchlightclient.client.Client as a script builds it: a keystoneauth1 session,
    the endpoint from the catalog (service type ``search``, public, the region)."""
    return searchlight_client.Client("1", session=keystone.session(user),
                                     region_name=region, **kw)


def test_the_client_finds_the_api_in_the_catalog_and_lists_resource_types(
        api, keystone, names):
    server, region, _, _ = api
    for user in ("demo", "admin"):
        sl = client_for(keystone, user, region)
        assert sl.http_client.get_endpoint() == server.url
        types = sl.resource_types.list()
        assert [t.to_dict() for t in types] == plugins(names["group"])
        assert [t.type for t in types] == sorted(ALL_TYPES)
    internal = client_for(keystone, "demo", region, endpoint_type="internalURL")
    assert internal.http_client.get_endpoint() == server.url
    assert len(internal.resource_types.list()) == len(ALL_TYPES)


def test_the_client_lists_facets_in_the_callers_scope(api, keystone):
    _, region, demo, alt = api
    member = client_for(keystone, "demo", region)
    answer = member.facets.list(type=SERVER)
    assert list(answer) == [SERVER]
    assert answer[SERVER]["doc_count"] == 3                       # d1-d3
    assert options(answer, SERVER, "status") == {"ACTIVE": 2, "ERROR": 1}
    assert options(answer, SERVER, "project_id") == {demo: 3}
    listed = {f["name"] for f in answer[SERVER]["facets"]}
    assert HOST not in listed and "key_name" not in listed
    # all_projects=True from a member is ignored, as Searchlight ignored it.
    assert member.facets.list(type=SERVER, all_projects=True)[SERVER]["doc_count"] == 3
    both = member.facets.list()
    assert sorted(both) == sorted(ALL_TYPES)
    assert both[VOLUME]["doc_count"] == 1 and options(both, VOLUME, "status") == {"in-use": 1}

    admin = client_for(keystone, "admin", region)
    every = admin.facets.list(type=SERVER, all_projects=True)
    assert every[SERVER]["doc_count"] == 4
    assert options(every, SERVER, "status") == {"ACTIVE": 2, "ERROR": 1, "SHUTOFF": 1}
    assert options(every, SERVER, HOST) == {"compute-1": 2, "compute-2": 1, "compute-3": 1}
    assert options(every, SERVER, "project_id") == {demo: 3, alt: 1}
    top = admin.facets.list(type=SERVER, all_projects=True, limit_terms=1)
    assert options(top, SERVER, "status") == {"ACTIVE": 2}
    assert admin.facets.list(type=SERVER)[SERVER]["doc_count"] == 0   # admin's own project


def test_the_client_reports_the_apis_refusal(api, keystone):
    _, region, _, _ = api
    member = client_for(keystone, "demo", region)
    # searchlightclient lets keystoneauth raise (raise_exc=True): its message is the
    # error body's error.message.
    with pytest.raises(ks_exceptions.BadRequest) as refused:
        member.facets.list(type="OS::Nova::Nothing")
    assert "Resource type 'OS::Nova::Nothing' is not in the list of enabled plugins" \
        in str(refused.value)


def test_the_demo_api_is_in_the_catalog_as_searchlight_was(keystone):
    """scripts/servers.py's registration: one service of type search named
    searchlight, its public and internal endpoints in RegionOne at the address
    scripts/demo.py serves the API on ([subscriptions] api_host:api_port)."""
    conf = load_conf(pathlib.Path(__file__).resolve().parents[2] / "etc"
                     / "searchlight-forward.conf")
    host = conf.subscriptions.api_host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:" \
          f"{conf.subscriptions.api_port}"
    admin = keystone.session("admin")
    services = admin.get(f"{keystone.auth_url}/services?type=search").json()["services"]
    ours = [s for s in services if s["name"] == "searchlight"]
    assert len(ours) == 1, services
    endpoints = admin.get(f"{keystone.auth_url}/endpoints?service_id={ours[0]['id']}"
                          ).json()["endpoints"]
    assert sorted((e["interface"], e["region_id"], e["url"]) for e in endpoints) == \
        [("internal", "RegionOne", url), ("public", "RegionOne", url)]
    demo = keystone.session("demo")
    for interface in ("public", "internal"):
        assert demo.get_endpoint(service_type="search", interface=interface,
                                 region_name="RegionOne") == url


# -- the openstack command (python-openstackclient + searchlightclient's plugin) -----

def openstack(keystone, user: str, region: str, *args: str, check: bool = True):
    """``openstack *args`` as a user runs it: an openrc of OS_* variables for the
    local Keystone (nothing else of the caller's OS_* environment), the endpoint
    found through the catalog in ``region``, public interface."""
    u = keystone.users[user]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=keystone.auth_url, OS_IDENTITY_API_VERSION="3",
               OS_USERNAME=u["name"], OS_PASSWORD=u["password"],
               OS_USER_DOMAIN_ID=u["domain_id"], OS_PROJECT_ID=u["project_id"],
               OS_REGION_NAME=region, OS_INTERFACE="public")
    result = subprocess.run([str(OPENSTACK), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def test_openstack_search_resource_type_list(api, keystone, names):
    _, region, _, _ = api
    group = names["group"]
    rows = json.loads(openstack(keystone, "demo", region, "search", "resource", "type",
                                "list", "-f", "json").stdout)
    assert rows == [{"Alias Searching": p["alias-searching"],
                     "Alias Indexing": p["alias-indexing"], "Type": p["type"]}
                    for p in plugins(group)]
    table = openstack(keystone, "admin", region, "search", "resource", "type",
                      "list").stdout.splitlines()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table
             if line.startswith("|")]
    assert cells == [["Alias Searching", "Alias Indexing", "Type"]] + [
        [p["alias-searching"], p["alias-indexing"], p["type"]] for p in plugins(group)]


def facet_rows(keystone, user: str, region: str, *args: str) -> dict:
    rows = json.loads(openstack(keystone, user, region, "search", "facet", "list",
                                "-f", "json", *args).stdout)
    return {(r["Resource Type"], r["Name"]): (r["Type"], r["Options"]) for r in rows}


def test_openstack_search_facet_list(api, keystone):
    _, region, demo, alt = api
    mine = facet_rows(keystone, "demo", region, "--type", SERVER)
    assert {rtype for rtype, _ in mine} == {SERVER}
    assert mine[(SERVER, "status")] == ("string", "ACTIVE(2), ERROR(1)")
    assert mine[(SERVER, "project_id")] == ("string", f"{demo}(3)")
    assert mine[(SERVER, "created_at")] == ("date", "")
    # Elasticsearch's boolean buckets (key 0/1, key_as_string): the command prints key.
    assert mine[(SERVER, "locked")] == ("boolean", "0(2), 1(1)")
    assert (SERVER, HOST) not in mine and (SERVER, "key_name") not in mine
    # --all-projects from a member is ignored.
    assert facet_rows(keystone, "demo", region, "--type", SERVER, "--all-projects") == mine

    every = facet_rows(keystone, "admin", region, "--type", SERVER, "--all-projects")
    assert every[(SERVER, "status")] == ("string", "ACTIVE(2), ERROR(1), SHUTOFF(1)")
    assert every[(SERVER, HOST)] == ("string", "compute-1(2), compute-2(1), compute-3(1)")
    assert every[(SERVER, "project_id")][1] == ", ".join(
        f"{p}({n})" for p, n in sorted({demo: 3, alt: 1}.items(), key=lambda i: (-i[1], i[0])))
    top = facet_rows(keystone, "admin", region, "--type", SERVER, "--all-projects",
                     "--limit-terms", "1")
    assert top[(SERVER, "status")] == ("string", "ACTIVE(2)")

    everything = facet_rows(keystone, "demo", region)
    assert {rtype for rtype, _ in everything} == set(ALL_TYPES)
    assert everything[(VOLUME, "status")] == ("string", "in-use(1)")

    table = openstack(keystone, "demo", region, "search", "facet", "list", "--type",
                      SERVER).stdout
    assert "| Resource Type" in table and "ACTIVE(2), ERROR(1)" in table

    refused = openstack(keystone, "demo", region, "search", "facet", "list", "--type",
                        "OS::Nova::Nothing", check=False)
    assert refused.returncode == 1
    assert "Resource type 'OS::Nova::Nothing' is not in the list of enabled plugins " \
           "(HTTP 400)" in refused.stderr


def test_openstack_search_query(api, keystone):
    _, region, _, _ = api
    rows = json.loads(openstack(keystone, "demo", region, "search", "query",
                                "status: ACTIVE", "--type", SERVER, "-f", "json").stdout)
    assert sorted((r["ID"], r["Name"], r["Type"], r["Updated"]) for r in rows) == [
        ("d1", "res-d1", SERVER, None), ("d2", "res-d2", SERVER, None)]
    assert all(r["Score"] > 0 for r in rows)
    rows = json.loads(openstack(
        keystone, "demo", region, "search", "query", '{"term": {"status": "ERROR"}}',
        "--json", "--type", SERVER, VOLUME, "--source", "status,locked",
        "-f", "json").stdout)
    assert [(r["ID"], r["Type"], r["Source"]) for r in rows] == [
        ("d3", SERVER, {"id": "d3", "status": "ERROR", "locked": False})]
    rows = json.loads(openstack(
        keystone, "admin", region, "search", "query", "status: (ACTIVE OR SHUTOFF)",
        "--type", SERVER, "--all-projects", "--source", HOST, "-f", "json").stdout)
    assert sorted((r["ID"], r["Source"][HOST]) for r in rows) == [
        ("a1", "compute-3"), ("d1", "compute-1"), ("d2", "compute-1")]


def test_the_client_searches(api, keystone):
    _, region, _, _ = api
    sl = client_for(keystone, "demo", region)
    hits = sl.search.search(query={"term": {"status": "ERROR"}}, type=SERVER,
                            simplified=True)
    assert [(h["id"], h["status"]) for h in hits] == [("d3", "ERROR")]
    answer = sl.search.search(query={"match_all": {}}, type=[SERVER, VOLUME],
                              _source=["id"], sort=[{"id": "asc"}], limit=10)
    assert answer.hits["total"] == 4
    assert [(h["_type"], h["_source"]) for h in answer.hits["hits"]] == [
        (SERVER, {"id": "d1"}), (SERVER, {"id": "d2"}), (SERVER, {"id": "d3"}),
        (VOLUME, {"id": "v1"})]


def test_openstack_search_query_of_every_type(api, keystone):
    _, region, _, _ = api
    rows = json.loads(openstack(keystone, "demo", region, "search", "query",
                                "status: ACTIVE", "-f", "json").stdout)
    assert sorted((r["ID"], r["Type"]) for r in rows) == [("d1", SERVER), ("d2", SERVER)]
