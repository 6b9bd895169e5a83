"""The listener's and the delivery service's HTTP endpoints on real servers: /metrics
moves with what was published (parsed by prometheus_client's own parser); /readyz
turns 503 when a peer goes away or a pipeline is stuck, and 200 again after."""
from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
import uuid

import pytest

from prometheus_client.parser import text_string_to_metric_families

from devtools.faultproxy import FaultProxy
from forwarders.delivery import worker as delivery_worker
from tests.conftest import ES_URL, ZAQAR_URL
from tests.functional.conftest import load_conf, wait_for, write_pipelines
from tests.functional.delivery_support import pipelines_ini
from tests.functional.test_dead_letters import image_payload
from tests.functional.test_poison import publish_image, set_options


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_listener_and_delivery_metrics_count_what_was_published(
        config_file, names, start_listener, publisher):
    listener_port, delivery_port = free_port(), free_port()
    set_options(config_file, "listener", f"status_port = {listener_port}")
    suffix = uuid.uuid4().hex[:8]
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", f"q-{suffix}",
                                               f"{names['zaqar']}-{suffix}"))
    listener = start_listener()
    service = delivery_worker.build(load_conf(config_file), threading.Event(),
                                    status=("127.0.0.1", delivery_port)).start()
    try:
        published = 7                      # seven new images, one change each
        for _ in range(published):
            publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))
        no_id = {k: v for k, v in image_payload().items() if k != "id"}
        publish_image(publisher, no_id)    # and one the plugin refuses
        wait_for(lambda: listener.processor.counters["notifications"] >= published + 1,
                 60, "the images to be indexed")
        got = scrape(listener_port)
        assert got[("searchlight_forward_listener_notifications_total", ())] == published + 1
        assert got[("searchlight_forward_listener_dead_lettered_total", ())] == 1
        assert got[("searchlight_forward_listener_dead_letters_total",
                    (("stage", "plugin"),))] == 1
        batches = got[("searchlight_forward_listener_batch_seconds_count", ())]
        assert 1 <= batches <= published
        assert got[("searchlight_forward_listener_batch_seconds_sum", ())] > 0

        audit = ("searchlight_forward_delivery_pipeline_delivered_total",
                 (("group", names["group"]), ("pipeline", "audit")))
        wait_for(lambda: scrape(delivery_port).get(audit) == published, 60,
                 "the audit pipeline's counter to reach what was published")
        got = scrape(delivery_port)
        labels = (("group", names["group"]), ("pipeline", "audit"))
        assert got[("searchlight_forward_delivery_pipeline_live", labels)] == 1
        wait_for(lambda: scrape(delivery_port).get(
            ("searchlight_forward_delivery_pipeline_lag_positions", labels)) == 0, 30,
            "the audit pipeline's lag to be 0")
        # Labels are bounded: groups and pipelines of the configuration, nothing else.
        assert {dict(labels).get("pipeline") for (_, labels) in got
                if "pipeline" in dict(labels)} <= {"tenants", "ops", "audit"}
        assert {k for (_, labels) in got for k, _ in labels} <= {"group", "pipeline", "mode"}
        assert {dict(labels)["mode"] for (_, labels) in got if "mode" in dict(labels)} <= {
            "live", "catching_up"}
    finally:
        service.stop()


def ready(port: int) -> tuple[int, list[str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as resp:
            return resp.status, json.load(resp)["problems"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)["problems"]


@pytest.fixture
def proxy_of(request):
    proxies = []

    def start(url: str) -> FaultProxy:
        host, port = url.split("//")[1].split(":")
        proxies.append(FaultProxy(host, int(port)).start())
        return proxies[-1]
    yield start
    for proxy in proxies:
        proxy.stop()


def test_listener_is_not_ready_while_elasticsearch_is_away(config_file, start_listener,
                                                          proxy_of):
    port = free_port()
    proxy = proxy_of(ES_URL)
    set_options(config_file, "listener", f"status_port = {port}")
    set_options(config_file, "elasticsearch", f"hosts = {proxy.url}")
    start_listener()
    assert ready(port) == (200, [])
    proxy.block()
    wait_for(lambda: ready(port)[0] == 503, 30, "readiness to fail")
    assert ready(port)[1][0].startswith("Elasticsearch: ")
    proxy.unblock()
    wait_for(lambda: ready(port) == (200, []), 30, "readiness to return")


def test_delivery_is_not_ready_while_a_held_pipeline_is_stuck(
        config_file, names, start_listener, publisher, proxy_of):
    port = free_port()
    proxy = proxy_of(ZAQAR_URL)
    set_options(config_file, "delivery", "stall_seconds = 1")
    suffix = uuid.uuid4().hex[:8]
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", f"q-{suffix}",
                                               f"{names['zaqar']}-{suffix}",
                                               ops_url=proxy.url))
    listener = start_listener()
    service = delivery_worker.build(load_conf(config_file), threading.Event(),
                                    status=("127.0.0.1", port)).start()
    try:
        wait_for(lambda: ready(port) == (200, []), 30, "the delivery service to be ready")
        proxy.block()                               # the operator's Zaqar goes away
        publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))
        wait_for(lambda: listener.processor.counters["notifications"] >= 1, 30, "indexing")
        wait_for(lambda: ready(port)[0] == 503, 30, "readiness to fail")
        problems = ready(port)[1]
        assert any(p.startswith(f"pipeline ops ({names['group']}): no progress")
                   for p in problems), problems
        ops = ("searchlight_forward_delivery_pipeline_lag_positions",
               (("group", names["group"]), ("pipeline", "ops")))
        assert scrape(port)[ops] > 0              # the image's writes, not read yet
        proxy.unblock()
        wait_for(lambda: ready(port) == (200, []), 30, "readiness to return")
        wait_for(lambda: scrape(port)[ops] == 0, 30, "the ops pipeline's lag to be 0")
    finally:
        service.stop()
