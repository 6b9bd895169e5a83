"""GET /metrics on the listener and the delivery service, scraped while they work on
real servers: the counters move with what was published, in Prometheus's format
(parsed by prometheus_client's own parser)."""
from __future__ import annotations

import socket
import threading
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from forwarders.delivery import worker as delivery_worker
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
        wait_for(lambda: listener.processor.counters["notifications"] >= published, 60,
                 "the images to be indexed")
        got = scrape(listener_port)
        assert got[("searchlight_forward_listener_notifications_total", ())] == published
        assert got[("searchlight_forward_listener_dead_lettered_total", ())] == 0

        audit = ("searchlight_forward_delivery_pipeline_delivered_total",
                 (("group", names["group"]), ("pipeline", "audit")))
        wait_for(lambda: scrape(delivery_port).get(audit) == published, 60,
                 "the audit pipeline's counter to reach what was published")
        got = scrape(delivery_port)
        assert got[("searchlight_forward_delivery_pipeline_live",
                    (("group", names["group"]), ("pipeline", "audit")))] == 1
        # Labels are bounded: groups and pipelines of the configuration, nothing else.
        assert {dict(labels).get("pipeline") for (_, labels) in got if labels} <= {
            "tenants", "ops", "audit"}
    finally:
        service.stop()
