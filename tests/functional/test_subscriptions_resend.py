"""What a webhook subscription's receiver gets after its owner or an operator acts:
a rotated secret that stops signing at its expiry (checked with the
``standardwebhooks`` reference package), and ``searchlight-forward-manage replay``
resending every resource, with counters that say what was sent."""
from __future__ import annotations

import time
import uuid

import pytest
import standardwebhooks

from tests.functional.conftest import wait_for
from tests.functional.test_replay import manage
from tests.functional.test_subscriptions import (  # noqa: F401 - fixtures
    hooked, stack)

SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


def signed_headers(delivery) -> dict:
    return {k: delivery.headers[k] for k in SIGNED}


def latest(receiver, prefix: str, since: int = 0) -> dict[str, int]:
    """id -> newest version among the receiver's changes (from the ``since``-th on)
    whose id starts with ``prefix``."""
    out: dict[str, int] = {}
    for d in receiver.changes()[since:]:
        data = d.json["data"]
        if data["id"].startswith(prefix):
            out[data["id"]] = max(out.get(data["id"], 0), data["version"])
    return out


def test_a_rotated_secret_stops_signing_at_its_expiry(hooked, writer):
    # The delivery process built this subscription's sink before the rotation.
    h = hooked()
    api, member, project, receiver, sub = h.api, h.member, h.project, h.receiver, h.sub
    rotated = api.call("POST", f"/v1/subscriptions/{sub['id']}/secret/rotate", member,
                       {"expire_previous_in": 3})
    assert rotated.status_code == 200, rotated.text
    (new, _), (old, expiry) = [(s["secret"], s["expires_at"])
                               for s in rotated.json()["secrets"]]
    assert old == sub["secret"] and new != old and expiry is not None
    wait_for(lambda: time.time() > expiry, 10, "the previous secret's expiry")

    run = uuid.uuid4().hex[:6]
    ids = [f"{run}-{i}" for i in range(5)]
    writer(project, ids, 1)
    writer(project, ids[:2], 2)
    wanted = {**{rid: 1 for rid in ids}, ids[0]: 2, ids[1]: 2}
    wait_for(lambda: latest(receiver, run) == wanted, 60,
             "every change written after the expiry")
    after = [d for d in receiver.changes() if d.json["data"]["id"].startswith(run)]
    assert len(after) >= len(ids)
    for delivery in after:
        assert int(delivery.headers["webhook-timestamp"]) >= int(expiry)
        standardwebhooks.Webhook(new).verify(delivery.body, signed_headers(delivery))
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(old).verify(delivery.body, signed_headers(delivery))
        assert len(delivery.headers["webhook-signature"].split()) == 1
    listed = api.call("GET", f"/v1/subscriptions/{sub['id']}/secret", member).json()
    assert [s["secret"] for s in listed["secrets"]] == [new]


def test_replay_to_the_start_resends_every_resource_and_counts_what_was_sent(
        hooked, writer, config_file, names):
    h = hooked()
    project, receiver, sub, service = h.project, h.receiver, h.sub, h.service
    run = uuid.uuid4().hex[:6]
    ids = [f"{run}-{i:02d}" for i in range(30)]
    writer(project, ids, 1)
    writer(project, ids[:10], 2)
    wanted = {rid: 2 if i < 10 else 1 for i, rid in enumerate(ids)}
    wait_for(lambda: latest(receiver, run) == wanted, 60, "the first deliveries")
    before = len(receiver.changes())
    pipeline = f"subscription-{sub['id']}"
    key = f"cursor:{names['group']}:{pipeline}"
    wait_for(lambda: service.stats()["pipelines"].get(key), 30, "the subscription's cursor")

    done = manage(config_file, "replay", pipeline, "--to", "start")
    assert done.returncode == 0, done.stderr + done.stdout
    # Every resource again, at its latest version (the log holds nothing else of it).
    wait_for(lambda: latest(receiver, run, since=before) == wanted, 60,
             "every resource sent again")
    resent = [d.json["data"] for d in receiver.changes()[before:]]
    assert sorted({(c["id"], c["version"]) for c in resent}) == sorted(wanted.items())
    # The consumer that took the cursor back counts what it sent, and nothing as
    # already sent.
    counters = wait_for(lambda: (lambda c: c if c and c["counters"].get("delivered")
                                 == len(ids) else None)(
        service.stats()["pipelines"].get(key)), 30, "the replay's counters")["counters"]
    assert counters.get("already_sent", 0) == 0, counters
