"""The WebSub hub on the real servers, with subscribers written from the W3C spec:
real HTTP servers on 127.0.0.1 that answer the verification of intent (or echo the
wrong challenge), check X-Hub-Signature with their own HMAC, and record every
content distribution; changes written through the Indexer, delivered by a real
delivery service."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
import requests

from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.subscriptions_support import (API, SUBSCRIPTIONS_PIPELINE,
                                                     free_port, subscriptions_conf)
from tests.functional.websocket_support import SERVER

pytestmark = pytest.mark.timeout(120)


class Subscriber:
    """A WebSub subscriber (W3C WebSub 5.3 and 7-8): echoes hub.challenge (unless
    ``echo`` says otherwise), verifies the signature with ``secret``."""

    def __init__(self, secret: str = "", echo=lambda challenge: challenge):
        self.secret, self.echo = secret, echo
        self.verifications: list[dict] = []
        self.deliveries: list[dict] = []
        self.bad_signatures = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                outer.verifications.append(query)
                body = outer.echo(query.get("hub.challenge", "")).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.secret:
                    want = "sha256=" + hmac.new(outer.secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                    if not hmac.compare_digest(want, self.headers.get("X-Hub-Signature",
                                                                      "")):
                        outer.bad_signatures += 1
                feed = feedparser.parse(body)
                for entry in feed.entries:
                    outer.deliveries.append({"change": json.loads(entry.content[0].value),
                                             "link": self.headers.get("Link", ""),
                                             "type": self.headers.get("Content-Type")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cb?x=1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [d["change"]["id"] for d in self.deliveries]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def hub(api, mode: str, topic: str, callback: str, **extra) -> requests.Response:
    return requests.post(f"{api.url}/v1/websub", timeout=10, data={
        "hub.mode": mode, "hub.topic": topic, "hub.callback": callback, **extra})


def websubs(api, token) -> dict[str, dict]:
    return {s["endpoint"]: s for s in api.call("GET", "/v1/subscriptions", token)
            .json()["subscriptions"] if s["protocol"] == "websub"}


def hub_api(config_file, names, keystone) -> API:
    """The API (the hub) and the subscriptions pipeline, with a lease longer than
    twice a callback's timeout (the delivery service checks)."""
    port = free_port()
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(text + subscriptions_conf(names, keystone, port))
    return API(config_file, port)


def test_websub_verifies_intent_signs_and_delivers_in_order(
        config_file, names, keystone, es, writer, start_delivery):
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    api = hub_api(config_file, names, keystone)
    good, liar, brief = Subscriber("s3cret"), Subscriber(echo=lambda c: c[::-1]), \
        Subscriber()
    try:
        token = keystone.token("demo")
        feed = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "feed", "resource_types": [SERVER]}).json()["subscription"]
        topic = feed["feed_url"]
        assert hub(api, "subscribe", f"{api.url}/v1/feeds/x/y", good.url).status_code == 400
        assert hub(api, "subscribe", topic, good.url, **{
            "hub.secret": "s3cret", "hub.lease_seconds": "3600"}).status_code == 202
        assert hub(api, "subscribe", topic, liar.url).status_code == 202
        assert hub(api, "subscribe", topic, brief.url,
                   **{"hub.lease_seconds": "3"}).status_code == 202
        wait_for(lambda: good.url in websubs(api, token) and brief.url in websubs(
            api, token) and liar.verifications, 30, "the verifications")
        check = good.verifications[0]
        assert check["hub.mode"] == "subscribe" and check["hub.topic"] == topic
        assert check["hub.lease_seconds"] == "3600" and len(check["hub.challenge"]) >= 16
        assert liar.url not in websubs(api, token)        # wrong echo: never active

        start_delivery()
        run = uuid.uuid4().hex[:6]
        wait_for(lambda: websubs(api, token)[brief.url]["state"] == "disabled", 30,
                 "the brief lease to end")
        assert websubs(api, token)[brief.url]["state_reason"] == "lease expired"
        for version in (1, 2, 3):
            writer(demo, [f"{run}-a", f"{run}-b"], version)
        writer(alt, [f"{run}-theirs"], 1)
        writer(demo, [f"{run}-last"], 1)
        wait_for(lambda: f"{run}-last" in good.ids(), 30, "the last change at the callback")
        got = [d["change"] for d in good.deliveries if d["change"]["id"].startswith(run)]
        assert {c["id"] for c in got} == {f"{run}-a", f"{run}-b", f"{run}-last"}
        for rid in (f"{run}-a", f"{run}-b"):
            versions = [c["version"] for c in got if c["id"] == rid]
            assert versions == sorted(versions) and versions[-1] == 3
        assert good.bad_signatures == 0
        assert all(d["type"].startswith("application/atom+xml") and 'rel="hub"' in d["link"]
                   and f'<{topic}>; rel="self"' in d["link"] for d in good.deliveries)
        assert liar.deliveries == [] and brief.deliveries == []

        # Unsubscribing is verified the same way, then nothing more arrives.
        assert hub(api, "unsubscribe", topic, good.url).status_code == 202
        wait_for(lambda: good.url not in websubs(api, token), 30, "the unsubscription")
        assert good.verifications[-1]["hub.mode"] == "unsubscribe"
    finally:
        for s in (good, liar, brief):
            s.stop()
        api.stop()


def test_a_subscription_whose_sink_cannot_be_built_is_disabled_and_the_rest_go_on(
        config_file, names, keystone, es, writer, start_delivery):
    """A stored subscription the delivery service cannot make a sink for (here a
    WebSub record without its topic URL) is disabled with the reason; a sound one
    made at the same time delivers."""
    from forwarders.subscriptions.model import ACTIVE, WEBSUB, Subscription
    from forwarders.subscriptions.store import SubscriptionStore
    demo = keystone.users["demo"]["project_id"]
    api = hub_api(config_file, names, keystone)
    good = Subscriber()
    try:
        token = keystone.token("demo")
        topic = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "feed"}).json()["subscription"]["feed_url"]
        assert hub(api, "subscribe", topic, good.url).status_code == 202
        wait_for(lambda: good.url in websubs(api, token), 30, "the sound subscription")
        store = SubscriptionStore(es, f"{names['state']}-subscriptions")
        feed_id = websubs(api, token)[good.url]["websub_topic"]
        now = time.time()
        broken = store.create(Subscription(            # no topic URL: no sink can be made
            id=str(uuid.uuid4()), project_id=demo, protocol=WEBSUB,
            endpoint="http://127.0.0.1:9/cb", role="user", created_by="test",
            created_at=now, updated_at=now, state=ACTIVE, lease_expires_at=now + 600,
            websub_topic=feed_id,
            websub_feed_hash=store.get(feed_id).subscription.feed_token_hash,
            start_positions={})).subscription
        start_delivery()

        def reason():
            return store.get(broken.id).subscription.state_reason or ""
        wait_for(lambda: reason().startswith("cannot be delivered"), 30,
                 "the broken subscription to be disabled")
        assert "topic" in reason()
        run = uuid.uuid4().hex[:6]
        writer(demo, [f"{run}-x"], 1)
        wait_for(lambda: f"{run}-x" in good.ids(), 30, "the sound one to deliver")
    finally:
        good.stop()
        api.stop()
