"""The live tables inside a real Horizon 27, logged in through Horizon's own form.

Real Notifier -> RabbitMQ -> in-process listener -> Elasticsearch -> doorbell ->
WebSocket server (validating the Horizon session's Keystone token against the local
Keystone) -> the panel's page, served by this worker's Horizon (waitress, static
files collected and compressed offline) in headless Chromium.

Waits are on events (a cell's text, the socket's frames, Elasticsearch's state, the
WebSocket server's metrics), never bare sleeps.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import pathlib
import re
import shutil
import time
import urllib.request
import uuid

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.fail("the browser tests need Playwright for Python: pip install playwright "
                "(never 'playwright install': the browser is Debian's chromium package)",
                pytrace=False)

from devtools.simulator import CloudSimulator
from searchlight_forward.model import documents
from tests.browser.conftest import ARTIFACTS, WAIT_MS, Frames
from tests.functional.conftest import wait_for
from tests.functional.searchlight_support import start_api
from tests.functional.websocket_support import PLUGINS, SERVER, es_view

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOVA_FIXTURES = ROOT / "tests" / "fixtures" / "notifications" / "nova"
HOST = "OS-EXT-SRV-ATTR:host"        # admin-only (etc/forwarders.ini)
PROJECT_TABLE = "/project/live_instances/"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "horizon-live-table.png"
SCREENSHOT_SEED = 2718    # a mix of states 70% into its stream; used nowhere else
SERVER_PLUGIN = next(p for p in PLUGINS.plugins if p.resource_type == SERVER)
ADMIN_TABLE = "/admin/live_instances/"
SEARCH_PANEL = "/project/live_search/"

pytestmark = pytest.mark.timeout(180)


# -- helpers ---------------------------------------------------------------------------

def publish_server(publisher, event_type: str, server_id: str, project: str, *,
                   name: str, second: int, **data_fields) -> None:
    """A fixture notification for another server, at ``second`` past a base time
    (its resource timestamp and emission time, so later calls are newer)."""
    raw = json.loads((NOVA_FIXTURES / f"{event_type}.json").read_text())
    payload = copy.deepcopy(raw["payload"])
    data = payload["nova_object.data"]
    at = (datetime.datetime(2026, 12, 5, 12, 0, 0) + datetime.timedelta(seconds=second))
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    data.update(uuid=server_id, tenant_id=project, display_name=name, host_name=name,
                updated_at=stamp, **data_fields)
    publisher.publish("nova", "versioned_notifications", raw["publisher_id"],
                      raw["event_type"], payload, priority=raw["priority"].lower(),
                      emitted_at=at.strftime("%Y-%m-%d %H:%M:%S.000000"))


def indexed(es, names, project: str, expected: dict[str, str | None]) -> None:
    """Wait until Elasticsearch's user copies in ``project`` have these statuses."""
    deadline = time.monotonic() + 60
    while True:
        view = es_view(es, names["group"], "user", project, types=[SERVER])
        now = {}
        for server_id in expected:
            src = view.get((SERVER, server_id))
            now[server_id] = (None if src is None or src.get(documents.DELETED_FIELD)
                              else src.get("status"))
        if now == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Elasticsearch holds {now}, not {expected}, after 60 s")
        time.sleep(0.2)


def cell(page: Page, resource_id: str, field: str):
    return page.locator(f'.sf-rows tr[data-id="{resource_id}"] td[data-field="{field}"]')


def row_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(".sf-rows tr", "trs => trs.map(tr => tr.dataset.id)")


def header_fields(page: Page) -> list[str]:
    return page.eval_on_selector_all(".sf-head th", "ths => ths.map(th => th.dataset.field)")


def wait_live(page: Page) -> None:
    expect(page.locator(".sf-conn")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def ws_metric(server, name: str) -> float:
    """One sample of the WebSocket server's Prometheus metrics (over HTTP)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf"^\S*{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"no {name} in the metrics"
    return float(match.group(1))


def wait_metric(server, name: str, value: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (now := ws_metric(server, name)) != value:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} is {now}, not {value}, after {timeout} s")
        time.sleep(0.2)


def new_id() -> str:
    return str(uuid.uuid4())


# -- tests -----------------------------------------------------------------------------

def test_a_launch_steps_through_its_states_in_a_members_table(
        start_listener, publisher, horizon, keystone, pages):
    start_listener()
    horizon()
    demo = keystone.projects["demo"]
    page, frames = pages("demo", keystone, horizon.url)
    wait_live(page)
    expect(page.locator(".sf-empty")).to_have_text("No items to display.")
    # Inside Horizon: its navigation, its project picker, its user menu.
    expect(page.locator("#navbar-collapse")).to_contain_text("demo")
    page.evaluate("() => { window.sfLoadMark = 'first load'; }")

    server_id = new_id()
    name = '<img src=x onerror="window.sfPwned=1">web-1'     # text, never markup
    steps = [  # (event, notification fields, status cell, task cell, power cell)
        ("instance.create.start", {"state": "building", "task_state": "scheduling",
                                   "power_state": "pending"}, "BUILD", "scheduling", "No State"),
        ("instance.update", {"state": "building", "task_state": "networking",
                             "power_state": "pending"}, "BUILD", "networking", "No State"),
        ("instance.update", {"state": "building", "task_state": "spawning",
                             "power_state": "pending"}, "BUILD", "spawning", "No State"),
        ("instance.create.end", {"state": "active", "task_state": None,
                                 "power_state": "running"}, "ACTIVE", "\u2014", "Running"),
    ]
    for second, (event, fields, status, task, power) in enumerate(steps):
        publish_server(publisher, event, server_id, demo, name=name, second=second, **fields)
        expect(cell(page, server_id, "status")).to_have_text(status, timeout=WAIT_MS)
        expect(cell(page, server_id, "OS-EXT-STS:task_state")).to_have_text(task)
        expect(cell(page, server_id, "OS-EXT-STS:power_state")).to_have_text(power)
        if second == 0:
            page.evaluate("""id => { document.querySelector(
                `.sf-rows tr[data-id="${id}"]`).sfMark = 'kept'; }""", server_id)
    # One page load, one row element all along: the row changed in place.
    assert page.evaluate("""id => [window.sfLoadMark, document.querySelector(
        `.sf-rows tr[data-id="${id}"]`).sfMark]""", server_id) == ["first load", "kept"]
    expect(cell(page, server_id, "name")).to_have_text(name)
    assert page.locator(".sf-rows img").count() == 0
    assert page.evaluate("window.sfPwned") is None
    # The row links to Horizon's own detail page of the instance.
    link = cell(page, server_id, "name").locator("a")
    assert link.get_attribute("href") == f"/project/instances/{server_id}/"
    expect(page.locator(".sf-count")).to_have_text("Displaying 1 item")
    assert HOST not in header_fields(page)          # a member: no admin-only column
    assert len(frames.sockets) == 1 and page.errors == []


def test_members_of_two_projects_never_see_each_others_rows(
        start_listener, publisher, horizon, keystone, pages, es, names):
    start_listener()
    horizon()
    demo, alt = keystone.projects["demo"], keystone.projects["alt-demo"]
    before = {"demo": new_id(), "alt": new_id()}
    publish_server(publisher, "instance.create.end", before["demo"], demo, name="d-1", second=0)
    publish_server(publisher, "instance.create.end", before["alt"], alt, name="a-1", second=0)
    indexed(es, names, demo, {before["demo"]: "ACTIVE"})
    indexed(es, names, alt, {before["alt"]: "ACTIVE"})

    # Opened after both were indexed: the resume holds everything each may see.
    demo_page, demo_frames = pages("demo", keystone, horizon.url)
    alt_page, alt_frames = pages("alt", keystone, horizon.url)
    wait_live(demo_page)
    wait_live(alt_page)
    assert row_ids(demo_page) == [before["demo"]]
    assert row_ids(alt_page) == [before["alt"]]

    # Live, in both directions: each gets its own new row and nothing of the other's.
    after = {"demo": new_id(), "alt": new_id()}
    publish_server(publisher, "instance.create.end", after["alt"], alt, name="a-2", second=1)
    publish_server(publisher, "instance.create.end", after["demo"], demo, name="d-2", second=1)
    indexed(es, names, alt, {after["alt"]: "ACTIVE"})
    indexed(es, names, demo, {after["demo"]: "ACTIVE"})
    expect(cell(demo_page, after["demo"], "status")).to_have_text("ACTIVE")
    expect(cell(alt_page, after["alt"], "status")).to_have_text("ACTIVE")
    assert sorted(row_ids(demo_page)) == sorted([before["demo"], after["demo"]])
    assert sorted(row_ids(alt_page)) == sorted([before["alt"], after["alt"]])
    assert {d["project_id"] for d in demo_frames.documents()} == {demo}
    assert {d["project_id"] for d in alt_frames.documents()} == {alt}
    # Neither has the Admin dashboard.
    for page in (demo_page, alt_page):
        assert page.locator('a[href^="/admin/"]').count() == 0


def test_a_reader_sees_the_projects_rows_but_no_admin_panel(
        start_listener, publisher, horizon, keystone, pages, es, names):
    start_listener()
    horizon()
    demo = keystone.projects["demo"]
    server_id = new_id()
    publish_server(publisher, "instance.create.end", server_id, demo, name="r-1", second=0)
    indexed(es, names, demo, {server_id: "ACTIVE"})
    page, _ = pages("demo-reader", keystone, horizon.url)
    wait_live(page)
    assert row_ids(page) == [server_id]
    assert page.locator('a[href^="/admin/"]').count() == 0
    page.goto(horizon.url + ADMIN_TABLE)
    expect(page.locator("body")).to_contain_text("not authorized")
    assert page.locator("[data-sf-live-table]").count() == 0


def test_the_admin_panel_shows_every_project_with_the_admin_fields(
        start_listener, publisher, horizon, keystone, pages, es, names):
    start_listener()
    horizon()
    demo, alt = keystone.projects["demo"], keystone.projects["alt-demo"]
    ids = {demo: new_id(), alt: new_id()}
    for project, server_id in ids.items():
        publish_server(publisher, "instance.create.end", server_id, project, name="x",
                       second=0)
        indexed(es, names, project, {server_id: "ACTIVE"})
    page, frames = pages("admin", keystone, horizon.url, ADMIN_TABLE)
    wait_live(page)
    assert sorted(row_ids(page)) == sorted(ids.values())
    fields = header_fields(page)
    assert "project_id" in fields and HOST in fields
    host = json.loads((NOVA_FIXTURES / "instance.create.end.json").read_text())[
        "payload"]["nova_object.data"]["host"]
    for project, server_id in ids.items():
        expect(cell(page, server_id, HOST)).to_have_text(host)
        expect(cell(page, server_id, "project_id")).to_have_text(project[:8])
    subscribe = [f for s in frames.sockets for f in s["sent"] if f.get("action") == "subscribe"]
    assert subscribe and all(f["all_projects"] for f in subscribe)
    # The same admin's Project panel: its own project only.
    page.goto(horizon.url + PROJECT_TABLE)
    wait_live(page)
    assert row_ids(page) == []


def test_switching_project_switches_the_rows(
        start_listener, publisher, horizon, keystone, pages, es, names):
    start_listener()
    horizon()
    user = keystone.add_user(f"sft-switch-{uuid.uuid4().hex[:6]}", "demo", ["member"])
    try:
        keystone.add_role(user["name"], "alt-demo", "member")
        demo, alt = keystone.projects["demo"], keystone.projects["alt-demo"]
        ids = {demo: new_id(), alt: new_id()}
        for project, server_id in ids.items():
            publish_server(publisher, "instance.create.end", server_id, project, name="s",
                           second=0)
            indexed(es, names, project, {server_id: "ACTIVE"})
        page, frames = pages(user["name"], keystone, horizon.url)
        wait_live(page)
        first = frames.received("authenticated")[-1]["project_id"]
        other = alt if first == demo else demo
        assert row_ids(page) == [ids[first]]
        # Horizon's project picker: the page comes back for the other project.
        page.goto(f"{horizon.url}/auth/switch/{other}/?next={PROJECT_TABLE}")
        wait_live(page)
        assert frames.received("authenticated")[-1]["project_id"] == other
        assert row_ids(page) == [ids[other]]
    finally:
        keystone.cleanup()


def test_logging_out_closes_every_socket_of_the_session(
        start_listener, horizon, keystone, pages, browser):
    start_listener()
    server = horizon()
    page, frames = pages("demo", keystone, horizon.url)
    wait_live(page)
    # A second tab of the same session (same browser context, same cookies).
    other = page.context.new_page()
    other_frames = Frames(other)
    other.goto(horizon.url + "/project/live_volumes/")
    wait_live(other)
    wait_metric(server, "websocket_open_connections", 2)
    token = frames.tokens_sent()[0]

    # Sign Out from Horizon's user menu in the first tab.
    page.click(".user-menu .dropdown-toggle")
    page.click(".user-menu >> text=Sign Out")
    expect(page.locator("#id_username")).to_be_visible()
    # The first tab's socket closed as its page went; the second's at the server's
    # next re-check, because logging out revoked the token in Keystone (4006).
    expect(other.locator(".sf-conn")).to_have_attribute("data-state", "offline",
                                                        timeout=WAIT_MS)
    expect(other.locator(".sf-error")).to_contain_text("session has ended")
    wait_metric(server, "websocket_open_connections", 0)
    assert ws_metric(server, 'websocket_closes_total{code="4006"}') >= 1
    assert other_frames.sockets[-1]["closed"]
    assert other.locator(".sf-rows tr").count() == 0
    with pytest.raises(Exception):
        keystone.check_token(token)


def test_the_token_is_nowhere_but_in_the_socket(
        start_listener, publisher, horizon, keystone, pages, browser):
    start_listener()
    server = horizon()
    page, frames = pages("demo", keystone, horizon.url)
    wait_live(page)
    token = frames.tokens_sent()[0]
    assert len(token) > 20
    assert token not in page.url
    assert token not in page.content()
    storage = page.evaluate("""() => JSON.stringify([Object.entries(localStorage),
        Object.entries(sessionStorage), document.cookie])""")
    assert token not in storage
    assert all(token not in line for line in page.console_lines)
    cookies = json.dumps(page.context.cookies())
    assert token not in cookies
    horizon_log = horizon.site.log_path.read_text(errors="replace")
    assert token not in horizon_log
    # Another origin cannot get it. A page of another origin in the same browser
    # (the WebSocket server's port: cookies of 127.0.0.1 go there too) asks for it
    # with the session's cookies: Django's CSRF check refuses the request (Horizon
    # answers with its login redirect, never the token) and the browser gives that
    # origin no read of the answer (no CORS grant).
    session_url = horizon.url + page.get_attribute("[data-sf-live-table]",
                                                   "data-session-url")
    evil = page.context.new_page()
    evil.goto(f"http://127.0.0.1:{server.port}/status")
    outcome = evil.evaluate("""async url => {
        try {
            const r = await fetch(url, {method: "POST", credentials: "include",
                                        headers: {"X-Requested-With": "XMLHttpRequest"}});
            return "read: " + await r.text();
        } catch (e) { return "blocked"; }
    }""", session_url)
    assert outcome == "blocked"
    answer = page.context.request.post(session_url, headers={"Origin": "http://evil.example"})
    assert token not in answer.text()
    assert not answer.headers.get("content-type", "").startswith("application/json")
    # The page itself, same origin, with its CSRF token: the JSON with the token.
    mine = page.evaluate("""async url => {
        const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
        const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": csrf}});
        return [r.status, r.headers.get("cache-control"), (await r.json()).token === %s];
    }""" % json.dumps(token), session_url)
    assert mine[0] == 200 and "no-store" in mine[1] and mine[2] is True


def test_a_filtered_sorted_table_keeps_its_rows_true(
        start_listener, publisher, horizon, keystone, pages, es, names):
    """Horizon's filter box and sortable headers are a live search on the server."""
    start_listener()
    horizon()
    demo = keystone.projects["demo"]
    ids = {name: new_id() for name in ("web-b", "web-a", "db-1")}
    for name, server_id in ids.items():
        publish_server(publisher, "instance.create.end", server_id, demo, name=name,
                       second=0)
    indexed(es, names, demo, {server_id: "ACTIVE" for server_id in ids.values()})
    page, frames = pages("demo", keystone, horizon.url)
    wait_live(page)
    expect(page.locator(".sf-rows tr")).to_have_count(3)

    page.fill(".sf-filter-value", "web")
    page.press(".sf-filter-value", "Enter")
    expect(page.locator(".sf-rows tr")).to_have_count(2)
    page.click('.sf-head th[data-field="name"] button')       # ascending
    expect(page.locator(".sf-head th[data-field='name']")).to_have_attribute(
        "aria-sort", "ascending")
    wait_live(page)
    assert row_ids(page) == [ids["web-a"], ids["web-b"]]
    sent = [f for s in frames.sockets for f in s["sent"] if f.get("action") == "subscribe"]
    assert sent[-1]["query"] == {"prefix": {"name": "web"}}
    assert sent[-1]["sort"] == [{"name": "asc"}]

    # Live: a new match enters in its place, a renamed one leaves.
    newcomer = new_id()
    publish_server(publisher, "instance.create.end", newcomer, demo, name="web-0", second=1)
    publish_server(publisher, "instance.update", ids["web-b"], demo, name="db-2", second=1)
    # The two may become visible apart (each in its own batch): first the newcomer,
    # then two rows, so that the rename has been applied too (the table had two rows
    # before either arrived).
    expect(cell(page, newcomer, "name")).to_have_text("web-0")
    expect(page.locator(".sf-rows tr")).to_have_count(2)
    assert row_ids(page) == [newcomer, ids["web-a"]]


def test_the_table_reconnects_and_resumes_after_a_server_restart(
        start_listener, publisher, horizon, keystone, pages, es, names):
    start_listener()
    server = horizon()
    demo = keystone.projects["demo"]
    first = new_id()
    publish_server(publisher, "instance.create.end", first, demo, name="r-1", second=0)
    page, frames = pages("demo", keystone, horizon.url)
    expect(cell(page, first, "status")).to_have_text("ACTIVE")
    server.stop()
    expect(page.locator(".sf-conn")).to_have_attribute("data-state", "reconnecting")
    # Changes while the server is down reach the page once it is back.
    later = new_id()
    publish_server(publisher, "instance.create.end", later, demo, name="r-2", second=1)
    publish_server(publisher, "instance.power_off.end", first, demo, name="r-1", second=2)
    indexed(es, names, demo, {later: "ACTIVE", first: "SHUTOFF"})
    horizon()
    expect(cell(page, later, "status")).to_have_text("ACTIVE")
    expect(cell(page, first, "status")).to_have_text("SHUTOFF")
    resumes = [f for s in frames.sockets[1:] for f in s["sent"]
               if f.get("action") == "subscribe"]
    assert resumes and resumes[0]["cursor"]          # it resumed, not a full load
    assert not frames.received("resumed")[-1]["full"]


def test_screenshot_of_a_project_from_the_simulator(
        start_listener, publisher, horizon, keystone, pages, es, names):
    """The simulator's stream; the member's table in Horizon matches Elasticsearch.
    The screenshot is kept in tests/browser/artifacts/; with SF_DOCS_SCREENSHOT=1 it
    also replaces docs/images/horizon-live-table.png (the README's picture)."""
    start_listener()
    horizon()
    demo = keystone.projects["demo"]
    page, _ = pages("demo", keystone, horizon.url, width=1280, height=640)
    wait_live(page)
    sim = CloudSimulator(seed=SCREENSHOT_SEED, project_ids={
        "demo": demo, "admin": keystone.projects["admin"]})
    notes = sim.stream(24, delete_ratio=0.1, types=(SERVER,))
    notes = notes[:len(notes) * 7 // 10]      # mid-stream: some servers mid-action
    final = {}                       # server id -> the version Elasticsearch will hold
    for note in notes:
        publisher.publish_simulated(note)
        for change in SERVER_PLUGIN.changes(note.to_notification()):
            final[change.id] = max(final.get(change.id, 0), change.version)
    group = names["group"]
    wait_for(lambda: {k[1]: s[documents.VERSION_FIELD] for k, s in es_view(
        es, group, "admin", None, types=[SERVER]).items() if k[1] in final} == final, 60,
        f"the {len(final)} simulated servers to be indexed")
    expected = es_view(es, group, "user", demo, types=[SERVER], live_only=True)
    assert len(expected) >= 5
    expect(page.locator(".sf-rows tr")).to_have_count(len(expected), timeout=WAIT_MS)
    for (_, server_id), doc in expected.items():
        expect(cell(page, server_id, "status")).to_have_text(doc["status"])
        expect(cell(page, server_id, "name")).to_have_text(doc["name"])
    page.mouse.move(0, 0)
    expect(page.locator(".sf-changed")).to_have_count(0)     # the marks have faded
    page.evaluate("() => new Promise(r => setTimeout(r, 1700))")  # and their colour
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "horizon-live-table.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SF_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert page.errors == []


def test_the_search_panel_keeps_its_results_live(
        start_listener, publisher, horizon, keystone, pages, es, names, config_file):
    """Horizon's Search panel (issue 26): resource types from /v1/search/plugins and
    facets from /v1/search/facets (asked by Horizon with the user's token), free text
    and a facet as one live-search query whose results stay live."""
    start_listener()
    horizon()
    api = start_api(config_file, names, keystone, port=horizon.site.api_port)
    try:
        demo = keystone.projects["demo"]
        ids = {name: new_id() for name in ("web-1", "web-2", "db-1")}
        for name, server_id in ids.items():
            publish_server(publisher, "instance.create.end", server_id, demo, name=name,
                           second=0)
        publish_server(publisher, "instance.power_off.end", ids["web-2"], demo,
                       name="web-2", second=1)
        indexed(es, names, demo, {ids["web-1"]: "ACTIVE", ids["web-2"]: "SHUTOFF",
                                  ids["db-1"]: "ACTIVE"})
        page, frames = pages("demo", keystone, horizon.url, SEARCH_PANEL)
        wait_live(page)
        types = page.eval_on_selector_all(".sf-type option", "os => os.map(o => o.value)")
        assert types == sorted(p.resource_type for p in PLUGINS.plugins)
        assert page.locator(".sf-type").input_value() == SERVER
        expect(page.locator(".sf-rows tr")).to_have_count(3)

        # The status facet counts what this project has, written down above.
        status = page.locator('.sf-facet[data-field="status"]')
        expect(status.locator("option")).to_have_count(3)
        assert status.locator("option").all_inner_texts() == [
            "status: any", "status: ACTIVE (2)", "status: SHUTOFF (1)"]
        status.select_option("ACTIVE")
        wait_live(page)
        expect(page.locator(".sf-rows tr")).to_have_count(2)
        page.fill(".sf-filter-value", "web")
        page.press(".sf-filter-value", "Enter")
        expect(page.locator(".sf-rows tr")).to_have_count(1)
        assert row_ids(page) == [ids["web-1"]]
        assert frames.sent("subscribe")[-1]["query"] == {"bool": {"must": [
            {"prefix": {"name": "web"}}, {"term": {"status": "ACTIVE"}}]}}
        assert cell(page, ids["web-1"], "name").locator("a").get_attribute("href") == \
            f"/project/instances/{ids['web-1']}/"

        # Live: a new match enters, a match that stops matching leaves.
        newcomer = new_id()
        publish_server(publisher, "instance.create.end", newcomer, demo, name="web-3",
                       second=2)
        publish_server(publisher, "instance.power_off.end", ids["web-1"], demo,
                       name="web-1", second=2)
        expect(cell(page, newcomer, "name")).to_have_text("web-3")
        expect(page.locator(".sf-rows tr")).to_have_count(1)
        assert row_ids(page) == [newcomer]

        # Another type: its own facets and rows (none here).
        page.select_option(".sf-type", "OS::Cinder::Volume")
        wait_live(page)
        expect(page.locator(".sf-rows tr")).to_have_count(0)
        assert frames.sent("subscribe")[-1]["resource_types"] == ["OS::Cinder::Volume"]
        assert page.errors == []
    finally:
        api.stop()


def test_a_long_table_is_paged_as_horizon_pages_and_every_page_stays_live(
        horizon, keystone, pages, writer):
    """More rows than a page (100): the DOM holds one page, the footer says which,
    Prev/Next move; a change to a row on another page is there when it is shown."""
    horizon()
    demo = keystone.projects["demo"]
    ids = [f"srv-{n:03d}" for n in range(130)]     # names res-srv-000 ... sort as ids
    writer(demo, ids, 1)
    page, _ = pages("demo", keystone, horizon.url)
    wait_live(page)
    expect(page.locator(".sf-count")).to_have_text("Displaying 1-100 of 130 items")
    expect(page.locator(".sf-rows tr")).to_have_count(100)
    assert row_ids(page)[:2] == ids[:2] and row_ids(page)[-1] == ids[99]
    expect(page.locator(".sf-prev")).to_be_hidden()

    writer(demo, [ids[120]], 2, status="SHUTOFF")       # on page 2, while page 1 shows
    writer(demo, [ids[5]], 2, status="ERROR")           # on page 1
    expect(cell(page, ids[5], "status")).to_have_text("ERROR")
    page.click(".sf-next")
    expect(page.locator(".sf-count")).to_have_text("Displaying 101-130 of 130 items")
    expect(page.locator(".sf-rows tr")).to_have_count(30)
    assert row_ids(page) == ids[100:]
    expect(cell(page, ids[120], "status")).to_have_text("SHUTOFF")
    expect(page.locator(".sf-next")).to_be_hidden()
    page.click(".sf-prev")
    expect(page.locator(".sf-rows tr")).to_have_count(100)
    assert row_ids(page) == ids[:100]
