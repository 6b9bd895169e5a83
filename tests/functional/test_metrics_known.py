"""Known counters and label values are exported at 0 before they are first counted
(an alert on a missing series sees "no data", not 0), on a real listener, delivery
service and WebSocket server scraped over HTTP; the WebSocket server's JSON answers
say application/json."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from forwarders.delivery import worker as delivery_worker
from tests.functional.delivery_support import AUDIT_PIPELINE
from tests.functional.conftest import load_conf, wait_for, write_pipelines
from tests.functional.test_poison import set_options
from tests.functional.test_status_endpoints import free_port, scrape

STAGES = ("parse", "plugin", "index", "batch", "dispatch", "rejected")


def test_a_fresh_listener_exports_every_stage_and_counter_at_zero(
        config_file, start_listener):
    port = free_port()
    set_options(config_file, "listener", f"status_port = {port}")
    start_listener()
    got = scrape(port)
    assert {s: got.get(("searchlight_forward_listener_dead_letters_total",
                        (("stage", s),))) for s in STAGES} == dict.fromkeys(STAGES, 0)
    for counter in ("notifications", "dead_lettered", "ignored", "stale", "conflicts",
                    "failed_batches"):
        assert got.get((f"searchlight_forward_listener_{counter}_total", ())) == 0, counter


def test_a_fresh_delivery_service_exports_each_pipelines_counters_at_zero(
        config_file, names):
    port = free_port()
    write_pipelines(config_file, AUDIT_PIPELINE)
    service = delivery_worker.build(load_conf(config_file), threading.Event(),
                                    status=("127.0.0.1", port)).start()
    try:
        audit = (("group", names["group"]), ("pipeline", "audit"))
        wait_for(lambda: ("searchlight_forward_delivery_pipeline_live", audit)
                 in scrape(port), 30, "the audit pipeline to be owned")
        got = scrape(port)
        for counter in ("delivered", "failures", "skipped", "held", "rejected",
                        "fell_behind", "resyncs"):
            assert got.get((f"searchlight_forward_delivery_pipeline_{counter}_total",
                            audit)) == 0, counter
        for counter in ("consumer_restarts", "rebalance_failures"):
            assert got.get((f"searchlight_forward_delivery_{counter}_total", ())) == 0
        for counter in ("delivered", "failures", "skipped"):
            assert got.get((f"searchlight_forward_delivery_subscriptions_{counter}_total",
                            ())) == 0, counter
    finally:
        service.stop()


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_websocket_servers_answers_are_typed_and_its_codes_at_zero(ws_server):
    server = ws_server()
    base = f"http://127.0.0.1:{server.port}"
    wait_for(lambda: fetch(base + "/readyz")[0] == 200, 30, "the server to be ready")
    for path in ("/status", "/healthz", "/readyz"):
        status, kind, body = fetch(base + path)
        assert (status, kind) == (200, "application/json"), path
        json.loads(body)
    got = scrape(server.port)
    codes = ("1001", "1011", "1013", "4001", "4002", "4005", "4006", "4008", "4029")
    assert {c: got.get(("searchlight_forward_websocket_closes_total", (("code", c),)))
            for c in codes} == dict.fromkeys(codes, 0)
    states = ("awaiting_token", "validating", "authenticated", "resuming", "live")
    assert {s: got.get(("searchlight_forward_websocket_open_connections_by_state",
                        (("state", s),))) for s in states} == dict.fromkeys(states, 0)
