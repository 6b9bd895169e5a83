"""Atom feeds on the real servers: a feed subscription made through the API with a
real Keystone token, read without a token through its secret URL, parsed with
feedparser; paging while changes keep coming; the same redaction as every way out;
revoked and expired URLs answered clearly."""
from __future__ import annotations

import json
import time
import uuid

import feedparser
import pytest
import requests

from tests.functional.atom_schema import validate
from tests.functional.conftest import write_pipelines
from tests.functional.subscriptions_support import (API, SUBSCRIPTIONS_PIPELINE,
                                                     free_port, subscriptions_conf)
from tests.functional.websocket_support import SERVER, document_change

pytestmark = pytest.mark.timeout(120)
ADMIN_FIELD = "OS-EXT-SRV-ATTR:host"


@pytest.fixture
def api(config_file, names, keystone, es):
    port = free_port()
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(config_file.read_text() + subscriptions_conf(names, keystone,
                                                                        port))
    server = API(config_file, port)
    yield server
    server.stop()
    es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


def read(url: str, **params) -> tuple[feedparser.FeedParserDict, bytes]:
    resp = requests.get(url, params=params, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(resp.content)
    assert not parsed.bozo, parsed.bozo_exception
    validate(resp.content)             # RFC 4287's RELAX NG schema
    return parsed, resp.content


def changes(parsed) -> list[dict]:
    return [json.loads(e.content[0].value) for e in parsed.entries]


def test_a_secret_feed_url_pages_through_every_change_redacted(api, keystone, writer, es):
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    run = uuid.uuid4().hex[:6]
    ids = [f"{run}-{i}" for i in range(7)]
    writer(demo, ids, 1, **{ADMIN_FIELD: "compute-1", "secret_pw": "x"})
    writer(alt, [f"{run}-alt"], 1)
    token = keystone.token("demo")
    created = api.call("POST", "/v1/subscriptions", token, {
        "protocol": "feed", "resource_types": [SERVER], "name": "my servers"})
    assert created.status_code == 201, created.text
    sub = created.json()["subscription"]
    url = sub["feed_url"]
    assert sub["state"] == "active" and "feed_token_hash" not in sub

    # Page back three at a time while changes keep coming: each change seen once.
    first, _ = read(url, limit=3)
    assert [l.rel for l in first.feed.links].count("hub") == 1
    seen = [(c["id"], c["version"]) for c in changes(first)]
    page = first
    writer(demo, [ids[0]], 2)                        # arrives on the first page later
    while any(l.rel == "next" for l in page.feed.links):
        nxt = next(l.href for l in page.feed.links if l.rel == "next")
        page, _ = read(nxt)
        seen += [(c["id"], c["version"]) for c in changes(page)]
    assert len(seen) == len(set(seen))
    # Every resource, no other project's: the one changed meanwhile left the older
    # pages and is on top of the first page now.
    latest, _ = read(url)
    assert {i for i, _ in seen} | {c["id"] for c in changes(latest)} == set(ids)
    assert (ids[0], 2) not in seen
    assert changes(latest)[0]["id"] == ids[0] and changes(latest)[0]["version"] == 2
    for change in changes(latest):
        assert change["project_id"] == demo
        assert ADMIN_FIELD not in change["document"] and "secret_pw" not in change["document"]
    assert latest.entries[0].title.startswith(f"{SERVER} {ids[0]} (res-{ids[0]}) updated")

    # The same with a Keystone token, without a subscription.
    keyed = requests.get(f"{api.url}/v1/feeds", params={"resource_type": SERVER},
                         headers={"X-Auth-Token": token}, timeout=10)
    assert keyed.status_code == 200
    assert {c["id"] for c in changes(feedparser.parse(keyed.content))} >= set(ids)
    assert requests.get(f"{api.url}/v1/feeds", params={"resource_type": SERVER},
                        timeout=10).status_code == 401

    # Rotating ends the old URL at once; disabling answers 410; deleting 404.
    rotated = api.call("POST", f"/v1/subscriptions/{sub['id']}/secret/rotate", token)
    new_url = rotated.json()["feed_url"]
    assert requests.get(url, timeout=10).status_code == 404
    read(new_url)
    api.call("PATCH", f"/v1/subscriptions/{sub['id']}", token, {"state": "disabled"})
    gone = requests.get(new_url, timeout=10)
    assert gone.status_code == 410 and "disabled" in gone.json()["error"]["message"]
    api.call("DELETE", f"/v1/subscriptions/{sub['id']}", token)
    assert requests.get(new_url, timeout=10).status_code == 404


def test_an_expired_feed_url_says_so(api, keystone, writer):
    token = keystone.token("demo")
    sub = api.call("POST", "/v1/subscriptions", token, {
        "protocol": "feed", "expires_in": 60}).json()["subscription"]
    read(sub["feed_url"])
    # Sixty seconds later, as the store would hold it (the test does not wait).
    _expire(api, sub["id"])
    resp = requests.get(sub["feed_url"], timeout=10)
    assert resp.status_code == 410 and "expired at" in resp.json()["error"]["message"]
    assert "rotate" in resp.json()["error"]["message"]


def _expire(api, sub_id: str) -> None:
    """Move a feed's expiry into the past through the API process's own store."""
    app = api.app
    while not hasattr(app, "store"):
        app = app._app                       # auth_token wraps the application
    app.store.change(sub_id, lambda s: s.replace(expires_at=time.time() - 1))
