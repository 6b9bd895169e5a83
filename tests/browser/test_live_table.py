"""The live table page in a real browser (headless Chromium), end to end.

Real Notifier -> RabbitMQ -> in-process listener -> Elasticsearch -> doorbell ->
WebSocket server (its own thread) -> the page it serves on the same port, which
logs in with a token, fills its table from the resume and updates it in place.

Waits are on Elasticsearch's state, never on the listener's counters: the broker
is shared, and other runs' notifications reach every listener pool.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import time
import urllib.error
import urllib.request
import uuid

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.fail("the browser tests need Playwright for Python: pip install playwright "
                "(never 'playwright install': the browser is Debian's chromium package)",
                pytrace=False)

from searchlight_forward.indexer import indices
from searchlight_forward.model import documents
from devtools.simulator import CloudSimulator
from tests.browser.conftest import ARTIFACTS
from tests.functional.conftest import wait_for
from tests.functional.websocket_support import PLUGINS, SERVER, es_view

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOVA_FIXTURES = ROOT / "tests" / "fixtures" / "notifications" / "nova"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "live-table.png"
SCREENSHOT_SEED = 2718    # a mix of states 70% into its stream; used nowhere else
HOST = "OS-EXT-SRV-ATTR:host"
WAIT_MS = 30_000          # a change from publish to the page: well under a second here
MEMBER_COLUMNS = ["name", "status", "OS-EXT-STS:task_state", "OS-EXT-STS:power_state",
                  "flavor", "addresses", "created", "updated_at"]
SERVER_PLUGIN = next(p for p in PLUGINS.plugins if p.resource_type == SERVER)


# -- helpers ---------------------------------------------------------------------------

def publish_nova(publisher, event_type: str, server_id: str, project: str,
                 name: str | None = None) -> None:
    """A fixture notification (tests/fixtures/notifications/nova) for another server."""
    raw = json.loads((NOVA_FIXTURES / f"{event_type}.json").read_text())
    payload = copy.deepcopy(raw["payload"])
    data = payload["nova_object.data"]
    data["uuid"], data["tenant_id"] = server_id, project
    if name is not None:
        data["display_name"] = data["host_name"] = name
    publisher.publish("nova", "versioned_notifications", raw["publisher_id"],
                      raw["event_type"], payload, priority=raw["priority"].lower(),
                      emitted_at=raw["timestamp"])


def indexed(es, names, project: str, expected: dict[str, str | None]) -> None:
    """Wait until Elasticsearch's user copies in ``project`` have, per server id,
    that status (None: deleted)."""
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


def page_url(server) -> str:
    return f"http://127.0.0.1:{server.port}/"


def row(page: Page, resource_id: str):
    return page.locator(f'#rows tr[data-id="{resource_id}"]')


def cell(page: Page, resource_id: str, field: str):
    return page.locator(f'#rows tr[data-id="{resource_id}"] td[data-field="{field}"]')


def header_fields(page: Page) -> list[str]:
    return page.eval_on_selector_all("#head th", "ths => ths.map(th => th.dataset.field)")


def wait_live(page: Page) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def new_id() -> str:
    return str(uuid.uuid4())


# -- tests -----------------------------------------------------------------------------

def test_static_files_are_served_with_their_types_and_nothing_else(start_listener,
                                                                   ws_server):
    start_listener()
    server = ws_server()
    base = f"http://127.0.0.1:{server.port}"
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"),
                       ("/app.css", "text/css"), ("/?x=1", "text/html")):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            assert response.status == 200
            assert response.headers.get_all("Content-Type") == [f"{kind}; charset=utf-8"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert response.read()
    for path in ("/index.html", "/static/app.js", "/../server.py", "/%2e%2e/server.py",
                 "/app.js/", "/auth.py", "/static/../server.py"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + path, timeout=10)
        assert exc.value.code != 200, path
    with urllib.request.urlopen(base + "/status", timeout=10) as response:
        assert json.load(response)["connections"] == 0


def test_a_bad_token_asks_again_and_a_good_one_is_kept_for_the_tab(start_listener,
                                                                    ws_server, open_page):
    start_listener()
    server = ws_server()
    page = open_page(page_url(server), token="forged")
    expect(page.locator("#login-error")).to_have_text(
        "authentication failed: unknown token", timeout=WAIT_MS)
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('sf-live-table.token')") is None
    page.fill("#token", "tok-a")
    page.click("#login-button")
    wait_live(page)
    expect(page.locator("#who")).to_contain_text("alice")
    page.reload()                                  # the token stays for the tab
    wait_live(page)
    expect(page.locator("#login")).to_be_hidden()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sf-live-table.token')") is None
    assert page.errors == []


def test_a_published_server_appears_in_the_table(start_listener, publisher,
                                                 ws_server, open_page, projects):
    start_listener()
    server = ws_server()
    page = open_page(page_url(server), token="tok-a")
    wait_live(page)
    expect(page.locator("#conn-text")).to_have_text("connected · live")
    expect(page.locator("#empty")).to_be_visible()
    assert page.locator("#type").input_value() == SERVER
    served = page.eval_on_selector_all("#type option", "os => os.map(o => o.value)")
    assert len(served) == 14 and SERVER in served

    server_id = new_id()
    name = '<img src=x onerror="window.sfPwned=1">web-1'     # text, never markup
    publish_nova(publisher, "instance.create.end", server_id, projects["member"], name=name)
    expect(cell(page, server_id, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    expect(cell(page, server_id, "name")).to_have_text(name)
    assert page.locator("#rows img").count() == 0
    assert page.evaluate("window.sfPwned") is None
    expect(cell(page, server_id, "flavor")).to_have_text("test_flavor")
    expect(page.locator("#count")).to_have_text("Displaying 1 item")
    expect(page.locator("#empty")).to_be_hidden()

    # Another type is another subscription: a new connection and a full load.
    page.select_option("#type", "OS::Cinder::Volume")
    wait_live(page)
    expect(page.locator("#rows tr")).to_have_count(0)
    assert header_fields(page) == []
    page.select_option("#type", SERVER)
    expect(cell(page, server_id, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    expect(page.locator("#rows tr")).to_have_count(1)
    assert page.errors == []


def test_a_status_change_updates_the_row_in_place(start_listener, publisher,
                                                  ws_server, open_page, es, names,
                                                  projects):
    start_listener()
    server = ws_server()
    project = projects["member"]
    first, second = new_id(), new_id()
    publish_nova(publisher, "instance.create.end", first, project, name="app-1")
    publish_nova(publisher, "instance.create.end", second, project, name="app-2")
    indexed(es, names, project, {first: "ACTIVE", second: "ACTIVE"})

    # Opened after the fact: the rows come from the resume.
    page = open_page(page_url(server), token="tok-a")
    wait_live(page)
    expect(page.locator("#rows tr")).to_have_count(2)
    expect(cell(page, first, "status")).to_have_text("ACTIVE")
    expect(cell(page, first, "OS-EXT-STS:power_state")).to_have_text("Running")
    # Mark the DOM elements: a rebuilt row or cell would lose the mark.
    page.evaluate("""id => {
        const tr = document.querySelector(`#rows tr[data-id="${id}"]`);
        tr.sfMark = "kept";
        tr.querySelector('td[data-field="status"]').sfMark = "kept";
    }""", first)

    publish_nova(publisher, "instance.power_off.end", first, project, name="app-1")
    expect(cell(page, first, "status")).to_have_text("SHUTOFF", timeout=WAIT_MS)
    expect(cell(page, first, "OS-EXT-STS:power_state")).to_have_text("Shut Down")
    marks = page.evaluate("""id => {
        const tr = document.querySelector(`#rows tr[data-id="${id}"]`);
        return [tr.sfMark, tr.querySelector('td[data-field="status"]').sfMark];
    }""", first)
    assert marks == ["kept", "kept"]
    expect(page.locator("#rows tr")).to_have_count(2)
    expect(cell(page, second, "status")).to_have_text("ACTIVE")

    # A delete removes the row.
    publish_nova(publisher, "instance.delete.end", second, project)
    expect(row(page, second)).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#rows tr")).to_have_count(1)
    assert page.errors == []


def row_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "trs => trs.map(tr => tr.dataset.id)")


def test_a_filtered_sorted_table_keeps_its_rows_true(start_listener, publisher, ws_server,
                                                      open_page, es, names, projects):
    """Live search from the page: a filter and a sort on the server; rows enter and
    leave as servers start and stop matching; another project never shows."""
    start_listener()
    server = ws_server()
    mine, other = projects["member"], projects["admin"]
    app1, app2, db1, theirs = new_id(), new_id(), new_id(), new_id()
    for server_id, name, project in ((app1, "app-1", mine), (app2, "app-2", mine),
                                     (db1, "db-1", mine), (theirs, "app-0", other)):
        publish_nova(publisher, "instance.create.end", server_id, project, name=name)
    indexed(es, names, mine, {app1: "ACTIVE", app2: "ACTIVE", db1: "ACTIVE"})
    indexed(es, names, other, {theirs: "ACTIVE"})

    page = open_page(page_url(server), token="tok-a")
    wait_live(page)
    expect(page.locator("#rows tr")).to_have_count(3)
    page.select_option("#filter-field", "name")
    page.fill("#filter-value", "app-")
    expect(page.locator("#rows tr")).to_have_count(2, timeout=WAIT_MS)
    assert set(row_ids(page)) == {app1, app2}

    # Sorted by the server (the name column's header), both ways.
    page.click('#head th[data-field="name"] button')
    expect(page.locator('#head th[data-field="name"]')).to_have_attribute(
        "aria-sort", "ascending", timeout=WAIT_MS)
    expect(page.locator("#rows tr")).to_have_count(2, timeout=WAIT_MS)
    assert row_ids(page) == [app1, app2]
    page.click('#head th[data-field="name"] button')
    expect(page.locator('#head th[data-field="name"]')).to_have_attribute(
        "aria-sort", "descending", timeout=WAIT_MS)
    expect(page.locator("#rows tr").first).to_have_attribute("data-id", app2,
                                                              timeout=WAIT_MS)

    # A new match enters, in its sorted place; a renamed server leaves.
    app3 = new_id()
    publish_nova(publisher, "instance.create.end", app3, mine, name="app-3")
    expect(row(page, app3)).to_have_count(1, timeout=WAIT_MS)
    assert row_ids(page) == [app3, app2, app1]
    publish_nova(publisher, "instance.power_off.end", app1, mine, name="web-1")
    expect(row(page, app1)).to_have_count(0, timeout=WAIT_MS)
    publish_nova(publisher, "instance.power_off.end", db1, mine, name="app-db")
    expect(row(page, db1)).to_have_count(1, timeout=WAIT_MS)
    assert row_ids(page) == [db1, app3, app2]
    # The other project's matching server never showed (all of this came after it).
    assert row(page, theirs).count() == 0

    # Cleared, the filter gives every row back, still sorted.
    page.fill("#filter-value", "")
    expect(page.locator("#rows tr")).to_have_count(4, timeout=WAIT_MS)
    assert row_ids(page) == [app1, db1, app3, app2]     # web-1, app-db, app-3, app-2
    assert page.errors == []


def test_admin_only_columns_only_for_admins(start_listener, publisher,
                                            ws_server, open_page, projects):
    start_listener()
    server = ws_server()
    server_id = new_id()
    project = projects["member"]
    publish_nova(publisher, "instance.create.end", server_id, project, name="db-1")

    member = open_page(page_url(server), token="tok-a")
    admin = open_page(page_url(server), token="tok-admin")
    wait_live(admin)
    expect(admin.locator("#all-projects")).to_be_visible()
    admin.check("#all-projects")                  # the server is in the member's project
    expect(cell(admin, server_id, HOST)).to_have_text("compute", timeout=WAIT_MS)
    expect(cell(member, server_id, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)

    assert header_fields(member) == MEMBER_COLUMNS
    assert member.locator(f'th[data-field="{HOST}"], td[data-field="{HOST}"]').count() == 0
    expect(member.locator("#all-projects")).to_be_hidden()
    admin_columns = header_fields(admin)
    assert HOST in admin_columns and "project_id" in admin_columns
    expect(cell(admin, server_id, "project_id")).to_have_text(project[:8])

    # The admin's own project has nothing: without "all projects" the rows go.
    admin.uncheck("#all-projects")
    wait_live(admin)
    expect(admin.locator("#rows tr")).to_have_count(0)
    assert header_fields(admin) == []
    assert member.errors == [] and admin.errors == []


def test_reconnects_and_resumes_after_a_server_restart(start_listener,
                                                       publisher, ws_server, open_page,
                                                       es, names, projects):
    start_listener()
    server = ws_server()
    port = server.port
    project = projects["member"]
    stays, changes, goes, comes = new_id(), new_id(), new_id(), new_id()
    for server_id, name in ((stays, "stays"), (changes, "changes"), (goes, "goes")):
        publish_nova(publisher, "instance.create.end", server_id, project, name=name)
    page = open_page(page_url(server), token="tok-a")
    expect(page.locator("#rows tr")).to_have_count(3, timeout=WAIT_MS)
    wait_live(page)
    page.evaluate("""id => {
        window.sfLoadMark = "first load";
        window.sfTimeOrigin = performance.timeOrigin;
        document.querySelector(`#rows tr[data-id="${id}"]`).sfMark = "kept";
    }""", changes)

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting",
                                                    timeout=WAIT_MS)
    # Meanwhile: an update, a delete and a new server.
    publish_nova(publisher, "instance.power_off.end", changes, project, name="changes")
    publish_nova(publisher, "instance.delete.end", goes, project)
    publish_nova(publisher, "instance.create.end", comes, project, name="comes")
    indexed(es, names, project,
            {stays: "ACTIVE", changes: "SHUTOFF", goes: None, comes: "ACTIVE"})
    expect(page.locator("#rows tr")).to_have_count(3)        # nothing lost meanwhile

    ws_server(port=port)                                      # the same port again
    wait_live(page)
    expect(cell(page, changes, "status")).to_have_text("SHUTOFF")
    expect(cell(page, comes, "status")).to_have_text("ACTIVE")
    expect(row(page, goes)).to_have_count(0)
    expect(cell(page, stays, "status")).to_have_text("ACTIVE")
    expect(page.locator("#rows tr")).to_have_count(3)
    conn = page.locator("#conn")
    # A resume with exactly what changed meanwhile, not a resync.
    assert conn.get_attribute("data-full") == "false"
    assert conn.get_attribute("data-count") == "3"
    expect(page.locator("#conn-text")).to_have_text("connected · resumed 3 changes")
    same_page = page.evaluate("""id => [window.sfLoadMark,
        window.sfTimeOrigin === performance.timeOrigin,
        document.querySelector(`#rows tr[data-id="${id}"]`).sfMark]""", changes)
    assert same_page == ["first load", True, "kept"]
    assert page.errors == []


def test_full_resync_after_a_rebuild_drops_what_is_gone(start_listener,
                                                        publisher, ws_server, open_page,
                                                        es, names, projects):
    start_listener()
    server = ws_server()
    port = server.port
    project = projects["member"]
    stays, goes = new_id(), new_id()
    publish_nova(publisher, "instance.create.end", stays, project, name="stays")
    publish_nova(publisher, "instance.create.end", goes, project, name="goes")
    page = open_page(page_url(server), token="tok-a")
    expect(page.locator("#rows tr")).to_have_count(2, timeout=WAIT_MS)
    wait_live(page)
    page.evaluate("window.sfLoadMark = 'first load'")

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    # The page's cursor names the old index: the new server resyncs it fully, and
    # a full resync has no tombstones, so the page must drop "goes" by itself.
    indices.rebuild(es, names["group"], PLUGINS.plugins)
    publish_nova(publisher, "instance.delete.end", goes, project)
    indexed(es, names, project, {stays: "ACTIVE", goes: None})
    ws_server(port=port)
    wait_live(page)
    expect(row(page, goes)).to_have_count(0)
    assert page.locator("#conn").get_attribute("data-full") == "true"
    expect(page.locator("#conn-text")).to_have_text("connected · full resync, 1 resource")
    expect(cell(page, stays, "status")).to_have_text("ACTIVE")
    assert page.evaluate("window.sfLoadMark") == "first load"
    assert page.errors == []


def test_screenshot_of_a_project_from_the_simulator(start_listener, publisher,
                                                    ws_server, open_page, es, names,
                                                    projects):
    """The simulator's stream for three projects; the member's table matches
    Elasticsearch. The screenshot is kept in tests/browser/artifacts/; with
    SF_DOCS_SCREENSHOT=1 it also replaces docs/images/live-table.png."""
    start_listener()
    server = ws_server()
    page = open_page(page_url(server), token="tok-a", width=1280, height=470)
    wait_live(page)
    sim = CloudSimulator(seed=SCREENSHOT_SEED, project_ids={
        "demo": projects["member"], "admin": projects["admin"]})
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

    expected = es_view(es, group, "user", projects["member"], types=[SERVER],
                       live_only=True)
    assert len(expected) >= 5
    expect(page.locator("#rows tr")).to_have_count(len(expected), timeout=WAIT_MS)
    for (_, server_id), doc in expected.items():
        expect(cell(page, server_id, "status")).to_have_text(doc["status"])
        expect(cell(page, server_id, "name")).to_have_text(doc["name"])
    assert HOST not in header_fields(page)

    page.mouse.move(0, 0)                # no hover highlight
    page.wait_for_timeout(2000)          # let the change highlights fade
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "live-table.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SF_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert page.errors == []
