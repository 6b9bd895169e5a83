"""E-mail subscriptions on a real SMTP server (aiosmtpd): a mailbox the server
refuses for good (550) ends the confirmation at once with a reason a person reads,
and an operator's replay mails every resource again."""
from __future__ import annotations

import uuid

import pytest
from aiosmtpd.controller import Controller

from tests.functional.conftest import wait_for
from tests.functional.subscriptions_support import free_port
from tests.functional.test_replay import manage
from tests.functional.test_subscriptions_email import (  # noqa: F401 - fixtures
    Mailbox, changes_in, confirm_by_mail, stack)

NOBODY = "nobody@example.com"


class RefusingMailbox(Mailbox):
    """Refuses ``NOBODY`` at RCPT with a permanent 550, counting each time."""

    def __init__(self):
        super().__init__()
        self.refused = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == NOBODY:
            with self.lock:
                self.refused += 1
            return "550 5.1.1 <nobody@example.com>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def smtp():
    mailbox = RefusingMailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


def test_a_permanent_550_ends_the_confirmation_at_once_with_a_plain_reason(
        stack, start_delivery, keystone):
    api, mailbox = stack
    token = keystone.token("demo")
    resp = api.call("POST", "/v1/subscriptions", token,
                    {"protocol": "email", "endpoint": NOBODY})
    assert resp.status_code == 201, resp.text
    sub_id = resp.json()["subscription"]["id"]
    start_delivery()            # confirmation_interval 0.5 s, 5 attempts by default
    shown = wait_for(lambda: (lambda s: s if s["state"] == "disabled" else None)(
        api.call("GET", f"/v1/subscriptions/{sub_id}", token).json()["subscription"]),
        30, "the subscription to be disabled")
    assert shown["confirmation_attempts"] == 1, shown
    assert mailbox.refused == 1
    reason = shown["state_reason"]
    assert reason.startswith("the confirmation request could not be delivered: "), reason
    assert "550 5.1.1 <nobody@example.com>: Recipient address rejected" in reason
    assert "permanently" in reason
    for text in (reason, shown["confirmation_error"]):
        assert "SinkGone" not in text and "(550, b'" not in text, text


def test_replay_to_the_start_mails_every_resource_again(stack, start_delivery, writer,
                                                       keystone, config_file, names):
    api, mailbox = stack
    token = keystone.token("demo")
    project = keystone.users["demo"]["project_id"]
    service = start_delivery()
    address = "ops@example.com"
    sub = confirm_by_mail(api, token, mailbox, address)
    run = uuid.uuid4().hex[:6]
    ids = [f"{run}-{i}" for i in range(5)]
    writer(project, ids, 1)

    def mailed(since: int = 1) -> list[tuple[str, int]]:
        return [(c["id"], c["version"]) for m in mailbox.to(address)[since:]
                for c in changes_in(m)]
    wait_for(lambda: len(mailed()) >= len(ids), 60, "one mail per change")
    assert sorted(mailed()) == [(rid, 1) for rid in ids]
    before = len(mailbox.to(address))
    done = manage(config_file, "replay", f"subscription-{sub['id']}", "--to", "start")
    assert done.returncode == 0, done.stderr + done.stdout
    wait_for(lambda: sorted(mailed(before)) == [(rid, 1) for rid in ids], 60,
             "every resource mailed again")
    key = f"cursor:{names['group']}:subscription-{sub['id']}"
    wait_for(lambda: ((service.stats()["pipelines"].get(key) or {}).get("counters", {})
                      .get("delivered") == len(ids)), 30, "the replay's counters")
