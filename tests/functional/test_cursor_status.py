"""What `searchlight-forward-manage cursors` and the delivery service's /status say
about a pipeline, on real servers: a sink's error is shown while it fails and gone
once it delivers again; an operator's replay is a move, not an error; a subscription
shows its protocol, project and state, and one disabled by 410 Gone is owned by
nobody; `explain --subscription` says tenants receive it."""
from __future__ import annotations

import uuid

import pytest

from devtools.faultproxy import FaultProxy
from forwarders.delivery.cursors import cursor_id
from tests.conftest import ZAQAR_URL
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import drain, pipelines_ini, wait_caught_up
from tests.functional.test_dead_letters import image_payload
from tests.functional.test_poison import publish_image
from tests.functional.test_replay import manage
from tests.functional.test_subscriptions import (  # noqa: F401 - fixtures
    disabled_after_answering, hooked, stack)


@pytest.fixture
def zaqar_proxy():
    host, port = ZAQAR_URL.split("//")[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


def cursor_doc(es, names, consumer: str) -> dict:
    return es.get(index=names["state"], id=cursor_id(names["group"], consumer))["_source"]


def lines_of(listing: str, group: str, consumer: str) -> str:
    """The lines `cursors` printed for one cursor (its line and the indented ones)."""
    out, inside = [], False
    for line in listing.splitlines():
        if not line.startswith("    "):
            inside = line.startswith(f"{group} {consumer}: ")
        if inside:
            out.append(line)
    return "\n".join(out)


def test_a_sinks_error_is_shown_while_it_fails_and_a_replay_is_no_error(
        config_file, names, start_listener, start_delivery, publisher, es, zaqar_proxy):
    ops, queue = f"{names['zaqar']}-ops", f"q-{uuid.uuid4().hex[:8]}"
    write_pipelines(config_file, pipelines_ini(ops, queue, f"{names['zaqar']}-t",
                                               ops_url=zaqar_proxy.url))
    listener = start_listener()
    service = start_delivery()
    key, group = f"cursor:{names['group']}:ops", names["group"]

    def publish(count: int, done: int):
        for _ in range(count):
            publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))
        wait_for(lambda: listener.processor.counters["notifications"] >= done, 60,
                 "indexing")

    publish(2, 2)
    wait_caught_up(es, names["state"], group, ["ops"])

    # The operator's Zaqar goes away: the error is shown, in /status and `cursors`.
    zaqar_proxy.block()
    publish(2, 4)
    wait_for(lambda: service.stats()["pipelines"][key]["last_error"], 60,
             "the ops pipeline to fail")
    wait_for(lambda: cursor_doc(es, names, "ops").get("last_error"), 30,
             "the error in the cursor")
    failing = manage(config_file, "cursors")
    assert failing.returncode == 0, failing.stderr
    assert "last error" in lines_of(failing.stdout, group, "ops"), failing.stdout

    # Back: once it delivers again, no error is shown any more.
    zaqar_proxy.unblock()
    wait_caught_up(es, names["state"], group, ["ops"])
    wait_for(lambda: service.stats()["pipelines"][key]["last_error"] is None, 30,
             "the error to be gone from /status")
    wait_for(lambda: cursor_doc(es, names, "ops").get("last_error") is None, 30,
             "the error to be gone from the cursor")
    recovered = manage(config_file, "cursors").stdout
    assert "last error" not in lines_of(recovered, group, "ops"), recovered
    assert {m["id"] for m in drain(ops, queue)} and \
        service.stats()["pipelines"][key]["counters"]["failures"] > 0

    # An operator's replay is a move, shown as such, never as an error.
    done = manage(config_file, "replay", "ops", "--to", "start")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: (service.stats()["pipelines"].get(key) or {}).get("last_move"), 60,
             "the ops pipeline to be owned again after the move")
    wait_caught_up(es, names["state"], group, ["ops"])
    moved = lines_of(manage(config_file, "cursors").stdout, group, "ops")
    assert "last moved" in moved and "moved to start" in moved, moved
    assert "last error" not in moved, moved
    assert service.stats()["pipelines"][key]["last_error"] is None
    assert "moved to start" in service.stats()["pipelines"][key]["last_move"]


def test_a_subscription_is_shown_by_protocol_project_and_state_and_410_frees_it(
        hooked, writer, names, es, config_file):
    h = hooked()
    name = f"subscription-{h.sub['id']}"
    key = cursor_id(names["group"], name)
    wait_for(lambda: key in h.service.stats()["pipelines"], 60, "the subscription's cursor")
    assert h.service.stats()["pipelines"][key]["subscription"] == {
        "id": h.sub["id"], "protocol": "webhook", "project_id": h.project,
        "state": "active"}
    shown = lines_of(manage(config_file, "cursors").stdout, names["group"], name)
    assert f"subscription: webhook, project {h.project}, active" in shown, shown
    assert f"owner {h.service.store.owner}" in shown

    explained = manage(config_file, "explain", "--subscription", h.sub["id"])
    assert explained.returncode == 0, explained.stderr
    heads = [line for line in explained.stdout.splitlines() if not line.startswith(" ")]
    assert heads and all("(tenants)" in line for line in heads), explained.stdout

    # 410 Gone: disabled, and its cursor is owned by nobody (this process stopped
    # delivering it), as `cursors` shows with the reason.
    disabled_after_answering(410, h, writer)
    wait_for(lambda: cursor_doc(es, names, name).get("owner") is None, 30,
             "the disabled subscription's cursor to be released")
    shown = lines_of(manage(config_file, "cursors").stdout, names["group"], name)
    assert "no owner" in shown and "subscription: webhook" in shown, shown
    assert "disabled (" in shown and "410" in shown, shown
    assert key not in h.service.stats()["pipelines"]
