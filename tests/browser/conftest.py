"""Browser fixtures: headless Chromium (Debian's ``chromium``) driven by Playwright.

The real servers and the in-process listener/WebSocket server come from the
functional fixtures; this adds a browser, pages on the WebSocket server's port, a
per-test time bound and a screenshot of every page of a failed test in
``tests/browser/artifacts/``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import uuid

import pytest



# The functional fixtures, reused as they are (pytest finds them by name here).
from tests.functional.conftest import (broker, config_file, es, names,  # noqa: F401 (fixtures)
                                       keystone, publisher, start_listener, writer,
                                       ws_server)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"
PAGE_TIMEOUT_MS = 20_000


@pytest.fixture
def projects():
    """Project ids of this test alone (tokens pinned to them)."""
    return {"member": uuid.uuid4().hex, "admin": uuid.uuid4().hex}


@pytest.fixture
def tokens(tmp_path, projects):
    """The token file ``ws_server`` serves (replaces the functional one)."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({
        "tok-a": {"user_id": "alice", "project_id": projects["member"],
                  "roles": ["member", "reader"]},
        "tok-admin": {"user_id": "root", "project_id": projects["admin"],
                      "roles": ["admin", "member"]},
    }))
    return path


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




@pytest.fixture
def open_page(browser, request):
    """open_page(url, token=None) -> a logged-in Page in its own browser context.

    Collects the page's uncaught exceptions in ``page.errors`` and its console errors
    in ``page.console_errors`` (a refused WebSocket is one). After a failed test,
    each page's screenshot goes to tests/browser/artifacts/<test>-<n>-failed.png.
    """
    contexts, pages = [], []

    def open_(url: str, token: str | None = None, width: int = 1280, height: int = 720):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.errors, page.console_errors = [], []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error"
                and page.console_errors.append(msg.text))
        page.goto(url)
        if token is not None:
            page.fill("#token", token)
            page.click("#login-button")
        pages.append(page)
        return page

    yield open_
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        for n, page in enumerate(pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}-{n}-failed.png"), full_page=True)
            except Exception:  # noqa: BLE001 - the page may be gone
                pass
    for context in contexts:
        context.close()
