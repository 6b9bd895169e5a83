"""A tenant's syslog subscription on a real rsyslog (TLS): one line per version of a
resource even when the change log holds that version twice, and an operator's
replay sends every resource again, with counters that say what was sent."""
from __future__ import annotations

import re
import uuid

import pytest
import requests

from searchlight_forward.indexer import layout
from searchlight_forward.model import documents
from tests.functional.conftest import wait_for
from tests.functional.subscriptions_support import syslog_api
from devtools.rsyslog import Rsyslog
from tests.functional.test_replay import manage

pytestmark = pytest.mark.timeout(180)
SD = "change@32473"


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory):
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    yield server
    server.stop()


@pytest.fixture
def tenant_syslog(config_file, names, keystone, es, start_delivery, rsyslog):
    """A demo member's confirmed syslog subscription (TLS) delivered by a running
    delivery service: (project, subscription id, service, lines(prefix))."""
    api = syslog_api(config_file, names, keystone, rsyslog)
    token = keystone.token("demo")
    try:
        created = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "syslog", "endpoint": rsyslog.url("tls_open")})
        assert created.status_code == 201, created.text
        sub = created.json()["subscription"]
        service = start_delivery()

        def confirmation():
            for m in rsyslog.messages():
                if m["msgid"] == "subscription.confirmation" and \
                        m["sd"][SD]["id"] == sub["id"]:
                    return m
        link = re.search(r"open (http://\S+)",
                         wait_for(confirmation, 30, "the confirmation")["msg"]).group(1)
        assert requests.get(link, timeout=10).status_code == 200
        wait_for(lambda: api.call("GET", f"/v1/subscriptions/{sub['id']}", token)
                 .json()["subscription"]["state"] == "active", 30, "the subscription")

        def lines(prefix: str) -> list[tuple[str, int]]:
            """(id, version) of each line rsyslog wrote for ids starting so, in order."""
            return [(m["sd"][SD]["id"], int(m["sd"][SD]["version"]))
                    for m in rsyslog.messages()
                    if m["sd"].get(SD, {}).get("id", "").startswith(prefix)]
        yield keystone.users["demo"]["project_id"], sub["id"], service, lines
    finally:
        api.stop()
        es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


def counters_of(service, key: str) -> dict:
    return (service.stats()["pipelines"].get(key) or {}).get("counters", {})


def test_a_version_the_log_holds_twice_is_one_syslog_line(tenant_syslog, writer, es,
                                                          names):
    project, sub_id, service, lines = tenant_syslog
    run = uuid.uuid4().hex[:6]
    twice, marker = f"{run}-twice", f"{run}-marker"
    user_copy = dict(index=layout.listener_alias(names["group"]),
                     id=documents.doc_id(twice, documents.USER))
    writer(project, [twice], 1)
    first = es.get(**user_copy)["_seq_no"]
    wait_for(lambda: lines(run), 60, "the first line")
    # The same notification again (Glance's image.activate a few ms after image.upload,
    # with the same updated_at; any redelivery): a duplicate, whose user copy the
    # indexer writes again, so the change log holds version 1 a second time, after
    # the subscription was sent the first.
    writer(project, [twice], 1)
    assert es.get(**user_copy)["_seq_no"] > first
    writer(project, [marker], 1)
    wait_for(lambda: (marker, 1) in lines(run), 60, "the marker written after both")
    assert lines(run) == [(twice, 1), (marker, 1)]
    key = f"cursor:{names['group']}:subscription-{sub_id}"
    counters = wait_for(lambda: (lambda c: c if c.get("already_sent") else None)(
        counters_of(service, key)), 10, "the duplicate counted")
    assert (counters["delivered"], counters["already_sent"]) == (2, 1), counters


def test_replay_to_the_start_sends_every_resource_to_syslog_again(tenant_syslog, writer,
                                                                  config_file, names):
    project, sub_id, service, lines = tenant_syslog
    run = uuid.uuid4().hex[:6]
    ids = [f"{run}-{i:02d}" for i in range(20)]
    writer(project, ids, 1)
    writer(project, ids[:5], 2)
    newest = {rid: 2 if i < 5 else 1 for i, rid in enumerate(ids)}
    wait_for(lambda: {rid: v for rid, v in lines(run)} == newest, 60,
             "the first lines")
    before = len(lines(run))
    done = manage(config_file, "replay", f"subscription-{sub_id}", "--to", "start")
    assert done.returncode == 0, done.stderr + done.stdout
    wait_for(lambda: sorted(lines(run)[before:]) == sorted(newest.items()), 60,
             "every resource sent again, once, at its newest version")
    key = f"cursor:{names['group']}:subscription-{sub_id}"
    counters = wait_for(lambda: (lambda c: c if c.get("delivered") == len(ids) else None)(
        counters_of(service, key)), 30, "the replay's counters")
    assert counters.get("already_sent", 0) == 0, counters
