"""Remote syslog on the real servers: changes written straight through the Indexer,
read by a real searchlight-forward delivery service, sent to a real rsyslog
(Debian's, started by the test) over TCP, TLS with a client certificate, and UDP,
and read back from the file rsyslog writes. The expected messages are written down
from the changes the test makes."""
from __future__ import annotations

import pytest

from searchlight_forward.model.change import DocumentChange, Operation
from tests.functional.conftest import wait_for, write_pipelines
from devtools.rsyslog import Rsyslog
from tests.functional.websocket_support import A, B, SERVER, document_change

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory):
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    yield server
    server.stop()


def pipelines(rsyslog: Rsyslog, tag: str, extra: str = "") -> str:
    certs = rsyslog.certs
    return f"""
[forwarding]
pipelines = by_tcp by_tls by_udp {extra and 'wrong'}

[pipeline:by_tcp]
pipeline = tcp_out
[pipeline:by_tls]
pipeline = tls_out
[pipeline:by_udp]
pipeline = udp_out

[sink:tcp_out]
use = egg:searchlight-forward#syslog
url = {rsyslog.url("tcp")}
app_name = {tag}-tcp
timeout = 1

[sink:tls_out]
use = egg:searchlight-forward#syslog
url = {rsyslog.url("tls")}
ca_file = {certs.ca}
cert_file = {certs.client_cert}
key_file = {certs.client_key}
app_name = {tag}-tls
timeout = 1

[sink:udp_out]
use = egg:searchlight-forward#syslog
url = {rsyslog.url("udp")}
app_name = {tag}-udp
timeout = 1
{extra}"""


def by_app(rsyslog: Rsyslog, app: str) -> list[dict]:
    return [m for m in rsyslog.messages() if m["appname"] == app]


def test_every_change_reaches_rsyslog_over_tcp_tls_and_udp(
        config_file, names, es, writer, start_delivery, rsyslog):
    tag = names["group"][-8:]
    write_pipelines(config_file, pipelines(rsyslog, tag))
    start_delivery()
    ids = [f"sys-{i}" for i in range(5)]
    writer(A, ids, 1, status="BUILD")
    writer(B, ids[:2], 2, status="ACTIVE")
    writer.changes([document_change(ids[2], A, 3, deleted=True)])
    writer.changes([DocumentChange(SERVER, ids[3], A, Operation.INDEX, 4,
                                   "compute.instance.create.error", "2026-03-02 12:00:00",
                                   document={"id": ids[3], "resource_type": SERVER,
                                             "project_id": A, "name": "res-err",
                                             "status": "ERROR"},
                                   priority="error")])
    # Written down from the changes above: the final (version, operation, severity).
    expected = {ids[0]: (2, "index", "info", B), ids[1]: (2, "index", "info", B),
                ids[2]: (3, "delete", "info", A), ids[3]: (4, "index", "err", A),
                ids[4]: (1, "index", "info", A)}
    for transport in ("tcp", "tls", "udp"):
        app = f"{tag}-{transport}"

        def latest():
            found = {}
            for m in by_app(rsyslog, app):
                sd = m["sd"]["change@32473"]
                found[sd["id"]] = (int(sd["version"]), sd["operation"], m["severity"],
                                   sd["project"])
            return found
        wait_for(lambda: latest() == expected, 30, f"rsyslog to have every change "
                 f"over {transport}")
        versions: dict[str, int] = {}
        for m in by_app(rsyslog, app):        # in order per resource, never older
            sd = m["sd"]["change@32473"]
            assert int(sd["version"]) > versions.get(sd["id"], 0), (transport, sd)
            versions[sd["id"]] = int(sd["version"])
            assert sd["type"] == SERVER and m["facility"] == "local0"
        error = next(m for m in by_app(rsyslog, app)
                     if m["sd"]["change@32473"]["id"] == ids[3]
                     and m["sd"]["change@32473"]["version"] == "4")
        assert error["msg"] == (f"\ufeff{SERVER} {ids[3]} (res-err) updated: ERROR "
                                "(compute.instance.create.error)")


def test_a_server_that_does_not_speak_tls_is_named_and_nothing_else_stops(
        config_file, names, es, writer, start_delivery, rsyslog):
    tag = names["group"][-8:]
    wrong = f"""
[pipeline:wrong]
pipeline = plain_port_with_tls

[sink:plain_port_with_tls]
use = egg:searchlight-forward#syslog
url = syslog+tls://127.0.0.1:{rsyslog.tcp}
ca_file = {rsyslog.certs.ca}
timeout = 1
"""
    write_pipelines(config_file, pipelines(rsyslog, tag, extra=wrong))
    service = start_delivery()
    writer(A, ["tls-1", "tls-2"], 1)

    def wrong_error():
        stats = service.stats()["pipelines"]
        return next((p["last_error"] for key, p in stats.items()
                     if key.endswith("wrong") and p["last_error"]), None)
    error = wait_for(wrong_error, 30, "the wrong pipeline to record why")
    assert "TLS handshake with syslog server" in error and "speaks TLS" in error
    # The other pipelines delivered meanwhile.
    wait_for(lambda: {m["sd"]["change@32473"]["id"] for m in by_app(rsyslog, f"{tag}-tls")}
             >= {"tls-1", "tls-2"}, 30, "the TLS pipeline to deliver")
    wait_for(lambda: {m["sd"]["change@32473"]["id"] for m in by_app(rsyslog, f"{tag}-tcp")}
             >= {"tls-1", "tls-2"}, 30, "the TCP pipeline to deliver")


def test_a_tenant_subscribes_its_own_syslog_server_and_confirms_from_the_log(
        config_file, names, keystone, es, writer, start_delivery, rsyslog):
    import re
    import uuid

    import requests

    from tests.functional.subscriptions_support import syslog_api
    demo = keystone.users["demo"]["project_id"]
    alt = keystone.users["alt"]["project_id"]
    api = syslog_api(config_file, names, keystone, rsyslog)
    token = keystone.token("demo")
    try:
        plain = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "syslog", "endpoint": rsyslog.url("tcp")})
        assert plain.status_code == 400 and "syslog+tls" in plain.json()["error"]["message"]
        created = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "syslog", "endpoint": rsyslog.url("tls_open"),
            "resource_types": [SERVER]})
        assert created.status_code == 201, created.text
        sub = created.json()["subscription"]
        assert sub["state"] == "pending_confirmation"
        start_delivery()
        run = uuid.uuid4().hex[:6]
        writer(demo, [f"{run}-early"], 1)         # before confirmation: never sent

        def confirmation():
            for m in rsyslog.messages():
                if m["msgid"] == "subscription.confirmation" and sub["id"] in \
                        m["sd"]["change@32473"]["id"]:
                    return m
        message = wait_for(confirmation, 30, "the confirmation message in the log")
        assert message["severity"] == "warning"
        link = re.search(r"open (http://\S+)", message["msg"]).group(1)
        assert requests.get(link, timeout=10).status_code == 200
        wait_for(lambda: api.call("GET", f"/v1/subscriptions/{sub['id']}", token)
                 .json()["subscription"]["state"] == "active", 30,
                 "the subscription to be active")
        writer(alt, [f"{run}-theirs"], 1)
        writer(demo, [f"{run}-mine"], 1, status="ACTIVE")
        writer(demo, [f"{run}-last"], 1)

        def ours():
            return [m["sd"]["change@32473"] for m in rsyslog.messages()
                    if m["sd"].get("change@32473", {}).get("id", "").startswith(run)]
        wait_for(lambda: any(c["id"] == f"{run}-last" for c in ours()), 30,
                 "the last change over TLS")
        assert {c["id"] for c in ours()} == {f"{run}-mine", f"{run}-last"}
        assert all(c["project"] == demo for c in ours())
    finally:
        api.stop()
