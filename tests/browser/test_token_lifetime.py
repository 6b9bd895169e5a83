"""Token lifetime on the live table page, in a real browser, with real Keystone tokens.

The WebSocket server validates tokens against the local Keystone; changes are
written straight through the Indexer and the doorbell is rung (the ``writer``
fixture), so these tests are about tokens, not about the listener.

- A token about to expire: the page shows the renew form, a fresh token sent
  in-band keeps the very same connection live past the old token's expiry.
- A token that expires unrenewed (4005): the login form, but the rows, identity
  and cursor stay; the same user's new token resumes where the table stopped.
- A revoked token (4006, found by a re-check): logged out, the table emptied.
- A refused renewal (bad token, another user's token) leaves the token in force:
  the next reload or reconnect still uses the accepted one.

Every frame the page sends and receives is recorded (Playwright's WebSocket
events), so the tests can tell a renewal from a reconnection and a resume from a
full load.
"""
from __future__ import annotations

import datetime
import json
import time

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.fail("the browser tests need Playwright for Python: pip install playwright "
                "(never 'playwright install': the browser is Debian's chromium package)",
                pytrace=False)

from forwarders.websocket import protocol
from forwarders.websocket.keystone import KeystoneValidator

from tests.functional.websocket_support import SERVER

WAIT_MS = 20_000          # a change from the writer to the page: well under a second
SHORT_LIFE = 12           # seconds: the short tokens' life
WARNING = 8               # seconds: the server's expiry_warning for them
TOKEN_KEY = "sf-live-table.token"

# Each test here waits for a token to expire at most once (~12 s): 120 s is plenty.
pytestmark = pytest.mark.timeout(120)


# -- helpers ---------------------------------------------------------------------------

class Frames:
    """Every WebSocket the page opens, with the frames it sends and receives (JSON)
    and whether it closed. Playwright delivers these events while the test waits
    through it (expect, wait_for_timeout), in order."""

    def __init__(self, page: Page):
        self.page = page
        self.sockets: list[dict] = []
        page.on("websocket", self._opened)

    def _opened(self, ws) -> None:
        record = {"sent": [], "received": [], "closed": False}
        self.sockets.append(record)
        ws.on("framesent", lambda payload: record["sent"].append(json.loads(payload)))
        ws.on("framereceived",
              lambda payload: record["received"].append(json.loads(payload)))
        ws.on("close", lambda _ws: record.__setitem__("closed", True))

    def received(self, kind: str, socket: int | None = None) -> list[dict]:
        sockets = self.sockets if socket is None else [self.sockets[socket]]
        return [f for s in sockets for f in s["received"] if f.get("type") == kind]

    def sent(self, action: str, socket: int | None = None) -> list[dict]:
        sockets = self.sockets if socket is None else [self.sockets[socket]]
        return [f for s in sockets for f in s["sent"] if f.get("action") == action]

    def last_cursor(self, socket: int) -> str | None:
        """The cursor of the last change or resumed frame the page got on ``socket``."""
        cursor = None
        for frame in self.sockets[socket]["received"]:
            if frame.get("type") in ("change", "resumed") and frame.get("cursor"):
                cursor = frame["cursor"]
        return cursor

    def wait(self, predicate, what: str, timeout: float = WAIT_MS / 1000):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}; "
                            f"sockets: {self.summary()}")
            self.page.wait_for_timeout(100)      # lets Playwright deliver events

    def summary(self) -> list:
        return [{"sent": [f.get("action") for f in s["sent"]],
                 "received": [f.get("type") for f in s["received"]],
                 "closed": s["closed"]} for s in self.sockets]


def expires_at(frame: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(frame["expires_at"])


def wait_past(page: Page, moment: datetime.datetime, margin: float = 1.5) -> None:
    """Keep the page (and Playwright's event delivery) running until ``margin``
    seconds after ``moment``."""
    while True:
        left = (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        if left + margin <= 0:
            return
        page.wait_for_timeout(min(1000, (left + margin) * 1000 + 50))


def cell(page: Page, resource_id: str, field: str):
    return page.locator(f'#rows tr[data-id="{resource_id}"] td[data-field="{field}"]')


def wait_live(page: Page) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def log_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#login-button")


def watch_visibility(page: Page) -> None:
    """Count, from now on, every time the login form shows or the app hides."""
    page.evaluate("""() => {
        window.sfLoginShown = 0;
        window.sfAppHidden = 0;
        const login = document.getElementById("login");
        const app = document.getElementById("app");
        new MutationObserver(() => {
            if (!login.hidden) window.sfLoginShown += 1;
            if (app.hidden) window.sfAppHidden += 1;
        }).observe(document.body, {attributes: true, subtree: true,
                                   attributeFilter: ["hidden"]});
    }""")


def mark_rows(page: Page, ids: list[str]) -> None:
    """Mark the rows' DOM elements and the page load: a rebuilt row or a reload
    loses the mark."""
    page.evaluate("""ids => {
        window.sfLoadMark = "first load";
        window.sfTimeOrigin = performance.timeOrigin;
        for (const id of ids) {
            document.querySelector(`#rows tr[data-id="${id}"]`).sfMark = id;
        }
    }""", ids)


def marks(page: Page, ids: list[str]) -> list:
    return page.evaluate("""ids => [window.sfLoadMark,
        window.sfTimeOrigin === performance.timeOrigin,
        ...ids.map(id => { const tr = document.querySelector(`#rows tr[data-id="${id}"]`);
                           return tr ? tr.sfMark : null; })]""", ids)


def stored_token_is(page: Page, token: str) -> bool:
    """Whether the tab keeps ``token`` (compared in the page: no token in the logs)."""
    return page.evaluate(f"t => sessionStorage.getItem('{TOKEN_KEY}') === t", token)


def server_stats(server) -> dict:
    return server.call(server.server.stats)


@pytest.fixture
def keystone_server(ws_server, keystone, tmp_path):
    """A WebSocket server serving Nova servers, validating against the local Keystone."""
    def start(**settings):
        validator = keystone.validator(tmp_path, cache_ttl=10)
        assert isinstance(validator, KeystoneValidator)
        return ws_server(types=[SERVER], validator=validator, **settings)
    return start


def page_url(server) -> str:
    return f"http://127.0.0.1:{server.port}/"


# -- tests -----------------------------------------------------------------------------

def open_live(open_page, server, token):
    """The page of ``server``, logged in with ``token`` and live; its frames."""
    page = open_page(page_url(server))
    frames = Frames(page)
    log_in(page, token)
    wait_live(page)
    return page, frames


def test_renewing_in_band_keeps_the_same_connection_live_past_expiry(
        keystone_server, keystone, writer, open_page):
    project = keystone.projects["demo"]
    # Re-checks every second: after the short token expires they must check the
    # renewed one, or the connection would close with 4006.
    server = keystone_server(expiry_warning=WARNING, token_recheck_interval=1.0)
    page, frames = open_live(open_page, server, keystone.short_token("demo", SHORT_LIFE))
    expect(page.locator("#who")).to_contain_text(keystone.users["demo"]["user_id"])
    hello = frames.received("authenticated")[0]
    assert hello["project_id"] == project

    first, second = "renew-1", "renew-2"
    writer(project, [first], 10)
    expect(cell(page, first, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    mark_rows(page, [first])
    watch_visibility(page)

    # The warning: the renew form, while the table stays live.
    expect(page.locator("#renew")).to_be_visible(timeout=(SHORT_LIFE + 5) * 1000)
    expect(page.locator("#renew-text")).to_contain_text("expires")
    warning = frames.received("token_expiring")
    assert len(warning) == 1 and warning[0]["expires_at"] == hello["expires_at"]
    expect(page.locator("#login")).to_be_hidden()

    fresh = keystone.token("demo")
    page.fill("#renew-token", fresh)
    page.click("#renew-button")
    expect(page.locator("#renew")).to_be_hidden(timeout=WAIT_MS)
    renewed = frames.wait(lambda: frames.received("reauthenticated"), "reauthenticated")
    assert expires_at(renewed[0]) > expires_at(hello)
    assert page.locator("#renew-token").input_value() == ""
    # Sent on the same connection, after the first token (compared: no token in logs).
    assert [f["token"] == fresh for f in frames.sent("authenticate", 0)] == [False, True]
    assert stored_token_is(page, fresh)
    expect(page.locator("#app-error")).to_be_hidden()

    # Past the short token's expiry, and past a re-check after it.
    wait_past(page, expires_at(hello))
    rechecks = server_stats(server)["counters"].get("rechecks", 0)
    frames.wait(lambda: server_stats(server)["counters"].get("rechecks", 0) > rechecks,
                "a token re-check after the short token expired", timeout=15)

    writer(project, [second], 10)
    writer(project, [first], 11, status="SHUTOFF")
    expect(cell(page, second, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    expect(cell(page, first, "status")).to_have_text("SHUTOFF", timeout=WAIT_MS)
    expect(page.locator("#rows tr")).to_have_count(2)
    wait_live(page)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#renew")).to_be_hidden()

    # The same page, the same rows, the same connection: nothing closed or resent.
    assert marks(page, [first]) == ["first load", True, first]
    assert page.evaluate("[window.sfLoginShown, window.sfAppHidden]") == [0, 0]
    assert len(frames.sockets) == 1 and not frames.sockets[0]["closed"]
    assert len(frames.sent("subscribe")) == 1 and len(frames.received("resumed")) == 1
    assert len(frames.received("authenticated")) == 1
    stats = server_stats(server)
    assert stats["closes"] == {}, stats
    assert stats["connections"] == 1
    assert stats["counters"].get("renewed") == 1, stats
    assert stats["counters"].get("authenticated") == 1, stats
    assert "expired" not in stats["counters"] and "revoked" not in stats["counters"]
    assert page.errors == []


def test_an_expired_token_asks_to_log_in_and_the_new_token_resumes(
        keystone_server, keystone, writer, open_page):
    project = keystone.projects["demo"]
    # Re-checks every second: one that meets the expired token must leave the close
    # to the expiry (4005), not report a revocation (4006).
    server = keystone_server(expiry_warning=WARNING, token_recheck_interval=1.0)
    page, frames = open_live(open_page, server, keystone.short_token("demo", SHORT_LIFE))
    hello = frames.received("authenticated")[0]

    stays, changes, comes = "exp-stays", "exp-changes", "exp-comes"
    writer(project, [stays, changes], 10)
    expect(page.locator("#rows tr")).to_have_count(2, timeout=WAIT_MS)
    expect(cell(page, changes, "status")).to_have_text("ACTIVE")
    mark_rows(page, [stays, changes])
    expect(page.locator("#renew")).to_be_visible(timeout=(SHORT_LIFE + 5) * 1000)

    # Not renewed: at expiry, the login form with a message; the rows stay behind it.
    expect(page.locator("#login")).to_be_visible(timeout=(SHORT_LIFE + 10) * 1000)
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("expired")
    expect(page.locator("#app")).to_be_hidden()
    frames.wait(lambda: frames.sockets[0]["closed"], "the expired connection's close")
    assert datetime.datetime.now(datetime.timezone.utc) >= expires_at(hello)
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert page.locator("#rows tr").count() == 2
    stats = server_stats(server)
    assert stats["closes"] == {str(protocol.TOKEN_EXPIRED): 1}, stats
    assert stats["counters"].get("expired") == 1
    cursor = frames.last_cursor(0)
    assert cursor

    # Meanwhile: a change and a new server.
    writer(project, [changes], 11, status="SHUTOFF")
    writer(project, [comes], 11)
    page.wait_for_timeout(1000)
    assert len(frames.sockets) == 1               # no reconnection with no token

    log_in(page, keystone.token("demo"))
    expect(page.locator("#login")).to_be_hidden()
    wait_live(page)
    expect(cell(page, changes, "status")).to_have_text("SHUTOFF", timeout=WAIT_MS)
    expect(cell(page, comes, "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    expect(cell(page, stays, "status")).to_have_text("ACTIVE")
    expect(page.locator("#rows tr")).to_have_count(3)
    expect(page.locator("#renew")).to_be_hidden()

    # A resume from the cursor the table stopped at, not a full load: same rows.
    assert len(frames.sockets) == 2
    assert [f["cursor"] for f in frames.sent("subscribe", 1)] == [cursor]
    resumed = frames.received("resumed", 1)
    assert len(resumed) == 1 and resumed[0]["full"] is False and resumed[0]["count"] == 2
    expect(page.locator("#conn-text")).to_have_text("connected · resumed 2 changes")
    assert page.locator("#conn").get_attribute("data-full") == "false"
    assert marks(page, [stays, changes]) == ["first load", True, stays, changes]
    assert page.errors == []


def test_a_revoked_token_logs_out_and_empties_the_table(keystone_server, keystone, writer,
                                                        open_page):
    project = keystone.projects["demo"]
    server = keystone_server(token_recheck_interval=1.0)
    token = keystone.token("demo")
    page, frames = open_live(open_page, server, token)
    writer(project, ["rev-1"], 10)
    expect(cell(page, "rev-1", "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    expect(page.locator("#who")).to_be_visible()

    keystone.revoke(token)
    expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#login-error")).to_contain_text("no longer valid")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#who")).to_be_hidden()
    expect(page.locator("#rows tr")).to_have_count(0)
    expect(page.locator("#head th")).to_have_count(0)
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    stats = server_stats(server)
    assert stats["closes"] == {str(protocol.TOKEN_REVOKED): 1}, stats
    assert stats["counters"].get("revoked") == 1 and "expired" not in stats["counters"]
    frames.wait(lambda: frames.sockets[0]["closed"], "the revoked connection's close")
    page.wait_for_timeout(1000)
    assert len(frames.sockets) == 1               # no reconnection with the dead token

    # Logging in again is a fresh start: no cursor, a full load.
    log_in(page, keystone.token("demo"))
    wait_live(page)
    expect(cell(page, "rev-1", "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    assert [f["cursor"] for f in frames.sent("subscribe", 1)] == [None]
    assert frames.received("resumed", 1)[0]["full"] is True
    assert page.errors == []


def test_a_refused_renewal_keeps_the_token_in_force(keystone_server, keystone, writer,
                                                    open_page):
    project = keystone.projects["demo"]
    # A warning longer than the token's life: token_expiring at once, the form shows.
    server = keystone_server(expiry_warning=7200)
    good = keystone.token("demo")
    page, frames = open_live(open_page, server, good)
    expect(page.locator("#renew")).to_be_visible()

    page.fill("#renew-token", "not-a-token")
    page.click("#renew-button")
    expect(page.locator("#app-error")).to_contain_text("bad_token")
    expect(page.locator("#renew")).to_be_visible()        # still to be renewed
    writer(project, ["kept-1"], 10)
    expect(cell(page, "kept-1", "status")).to_have_text("ACTIVE", timeout=WAIT_MS)
    assert frames.received("reauthenticated") == []

    # Another user's token is refused too (identity_mismatch), via Horizon's hook.
    page.evaluate("token => window.sfLiveTable.renew(token)", keystone.token("alt"))
    expect(page.locator("#app-error")).to_contain_text("identity_mismatch")

    # The token in force is still the good one: a reload stays logged in as demo.
    assert stored_token_is(page, good), "a refused token replaced the one in force"
    page.reload()
    wait_live(page)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#who")).to_contain_text(keystone.users["demo"]["user_id"])
    expect(cell(page, "kept-1", "status")).to_have_text("ACTIVE")
    assert page.errors == []
