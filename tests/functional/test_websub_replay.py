"""An operator's replay of a WebSub subscription: the subscriber (written from the
W3C spec, tests/functional/test_websub.py) receives every resource again."""
from __future__ import annotations

import uuid

import pytest

from tests.functional.conftest import wait_for
from tests.functional.test_replay import manage
from tests.functional.test_websub import Subscriber, hub, hub_api, websubs
from tests.functional.websocket_support import SERVER

pytestmark = pytest.mark.timeout(180)


def test_replay_to_the_start_distributes_every_resource_again(
        config_file, names, keystone, es, writer, start_delivery):
    demo = keystone.users["demo"]["project_id"]
    api = hub_api(config_file, names, keystone)
    subscriber = Subscriber("s3cret")
    try:
        token = keystone.token("demo")
        topic = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "feed", "resource_types": [SERVER]}).json()["subscription"][
            "feed_url"]
        assert hub(api, "subscribe", topic, subscriber.url, **{
            "hub.secret": "s3cret", "hub.lease_seconds": "3600"}).status_code == 202
        sub = wait_for(lambda: websubs(api, token).get(subscriber.url), 30,
                       "the verification")
        service = start_delivery()
        run = uuid.uuid4().hex[:6]
        ids = [f"{run}-{i:02d}" for i in range(12)]
        writer(demo, ids, 1)
        writer(demo, ids[:4], 2)
        newest = {rid: 2 if i < 4 else 1 for i, rid in enumerate(ids)}

        def received(since: int = 0) -> list[tuple[str, int]]:
            return [(d["change"]["id"], d["change"]["version"])
                    for d in subscriber.deliveries[since:]
                    if d["change"]["id"].startswith(run)]
        wait_for(lambda: dict(sorted(received())) == newest, 60, "the first deliveries")
        before = len(subscriber.deliveries)
        done = manage(config_file, "replay", f"subscription-{sub['id']}", "--to", "start")
        assert done.returncode == 0, done.stderr + done.stdout
        wait_for(lambda: sorted(received(before)) == sorted(newest.items()), 60,
                 "every resource distributed again, at its newest version")
        assert subscriber.bad_signatures == 0
        key = f"cursor:{names['group']}:subscription-{sub['id']}"
        counters = wait_for(lambda: (lambda c: c if c.get("delivered") == len(ids) else
                                     None)((service.stats()["pipelines"].get(key) or {})
                                           .get("counters", {})), 30, "the counters")
        assert counters.get("already_sent", 0) == 0, counters
    finally:
        subscriber.stop()
        api.stop()
