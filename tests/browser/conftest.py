"""Browser fixtures: headless Chromium (Debian's ``chromium``) driven by Playwright,
and a real Horizon 27 with the plugin (devtools/horizon.py).

The real servers and the in-process listener/WebSocket server come from the
functional fixtures; this adds a browser, a Horizon of each pytest worker's own
whose live tables open a WebSocket port fixed for that worker (each test starts its
own WebSocket server on it, validating the Horizon session's Keystone tokens), a
per-test time bound and a screenshot of every page of a failed test in
``tests/browser/artifacts/``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re

import pytest



# The functional fixtures, reused as they are (pytest finds them by name here).
from devtools.horizon import HorizonProcess, log_in
from devtools.net import free_port
from tests.functional.conftest import (broker, config_file, es, names,  # noqa: F401 (fixtures)
                                       keystone, publisher, start_listener, tokens, writer,
                                       ws_server)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"
PAGE_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "package (apt-get install -y chromium); do not run "
                    "'playwright install'")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install playwright "
                    "(the browser comes from the chromium apt package)")
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True, timeout=60_000)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)




WAIT_MS = 30_000


@pytest.fixture
def pages(browser, request):
    """pages(user, keystone, horizon_url, path) -> (Page, Frames): a browser context
    of its own, logged in as ``user`` through Horizon's login form, landed on
    ``path``. Collects the page's console lines and uncaught exceptions; after a
    failed test each page's screenshot goes to tests/browser/artifacts/."""
    opened: list = []

    def open_(user: str, keystone, horizon_url: str, path: str = "/project/live_instances/",
              width: int = 1400, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.console_lines, page.errors = [], []
        page.on("console", lambda msg: page.console_lines.append(msg.text))
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        opened.append(page)
        frames = Frames(page)
        u = keystone.users[user]
        log_in(page, horizon_url, u["name"], u["password"], next_path=path)
        return page, frames

    yield open_
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        for n, page in enumerate(opened):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}-{n}-failed.png"), full_page=True)
            except Exception:  # noqa: BLE001 - the page may be gone
                pass
    for page in opened:
        try:
            page.context.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass


class Frames:
    """Every WebSocket a page opens, with the frames it sends and receives (JSON)
    and whether it closed (Playwright's WebSocket events)."""

    def __init__(self, page):
        self.sockets: list[dict] = []
        page.on("websocket", self._opened)

    def _opened(self, ws) -> None:
        record = {"sent": [], "received": [], "closed": False}
        self.sockets.append(record)
        ws.on("framesent", lambda payload: record["sent"].append(json.loads(payload)))
        ws.on("framereceived", lambda payload: record["received"].append(json.loads(payload)))
        ws.on("close", lambda _ws: record.__setitem__("closed", True))

    def received(self, kind: str) -> list[dict]:
        return [f for s in self.sockets for f in s["received"] if f.get("type") == kind]

    def sent(self, action: str) -> list[dict]:
        return [f for s in self.sockets for f in s["sent"] if f.get("action") == action]

    def tokens_sent(self) -> list[str]:
        return [f["token"] for f in self.sent("authenticate")]

    def documents(self) -> list[dict]:
        """Every document the page received (changes, results)."""
        docs = []
        for s in self.sockets:
            for f in s["received"]:
                if f.get("envelope") and f["envelope"].get("document"):
                    docs.append(f["envelope"]["document"])
                for hit in f.get("hits") or ():
                    if hit.get("document"):
                        docs.append(hit["document"])
        return docs


# -- Horizon ------------------------------------------------------------------------------

SESSION_CHECK = 5          # s: the pages' Horizon session checks (the minimum)
TOKEN_RECHECK = 2.0        # s: the WebSocket server's token re-checks in these tests


@pytest.fixture(scope="session")
def horizon_site(tmp_path_factory):
    """This worker's Horizon; its pages open ws://127.0.0.1:<ws_port>/, its Search
    panel asks the search API at http://127.0.0.1:<api_port>."""
    ws_port, api_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("horizon") / "horizon.log"
    try:
        site = HorizonProcess(f"ws://127.0.0.1:{ws_port}/", log, session_check=SESSION_CHECK,
                              search_url=f"http://127.0.0.1:{api_port}")
        site.start()
    except RuntimeError as exc:
        pytest.fail(f"{exc} (the tests need the local servers: make test-servers)")
    site.ws_port, site.api_port = ws_port, api_port
    yield site
    site.stop()


@pytest.fixture
def horizon(horizon_site, ws_server, keystone, tmp_path):
    """horizon(**settings) -> the test's WebSocket server, validating Keystone tokens,
    on the port this worker's Horizon pages open; ``horizon.url`` is Horizon's."""
    def start(**settings):
        settings.setdefault("token_recheck_interval", TOKEN_RECHECK)
        validator = keystone.validator(tmp_path, cache_ttl=1)
        return ws_server(validator=validator, port=horizon_site.ws_port, **settings)
    start.url = horizon_site.url
    start.site = horizon_site
    return start
