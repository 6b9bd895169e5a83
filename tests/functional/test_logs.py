"""What the real commands write to their logs: an Elasticsearch outage is a few lines
a second, not the client library's line per attempt; no line is longer than 2,000
characters; on OpenSearch, `manage` prints its answer and no request lines."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import uuid

from devtools.faultproxy import FaultProxy
from searchlight_forward import search
from tests.conftest import ES_URL, ROOT
from tests.functional.delivery_support import AUDIT_PIPELINE
from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.test_dead_letters import image_payload
from tests.functional.test_poison import publish_image, set_options
from tests.functional.test_status_endpoints import free_port, ready
from tests.functional.test_subscriptions import hooked, stack  # noqa: F401 - fixtures

OPENSEARCH_URL = os.environ.get("SF_OPENSEARCH_URL", "http://127.0.0.1:9201")
OUTAGE = 15.0          # seconds Elasticsearch is away
LEVEL = re.compile(r"^\S+ \S+ \d+ (WARNING|ERROR|CRITICAL) (\S+) ")


def status_of(port: int):
    try:
        return ready(port)[0]
    except OSError:            # not listening yet
        return None


def test_an_elasticsearch_outage_is_a_few_lines_a_second_per_process(
        config_file, processes, publisher):
    host, port = ES_URL.split("//")[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    try:
        listener_port, delivery_port = free_port(), free_port()
        set_options(config_file, "listener", f"status_port = {listener_port}")
        set_options(config_file, "delivery", f"status_port = {delivery_port}")
        set_options(config_file, "elasticsearch", f"hosts = {proxy.url}")
        write_pipelines(config_file, AUDIT_PIPELINE)
        procs = {"listener": processes("listener", config_file),
                 "delivery": processes("delivery", config_file)}
        for port in (listener_port, delivery_port):
            wait_for(lambda: status_of(port) == 200, 60, f"the process on {port} ready")
        seen = {name: len(p.log().splitlines()) for name, p in procs.items()}
        proxy.block()
        started = time.monotonic()
        for _ in range(5):            # work that keeps the listener retrying
            publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))
        for port in (listener_port, delivery_port):
            wait_for(lambda: status_of(port) == 503, 30, f"the process on {port} to notice")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))   # the outage itself
        during = {name: p.log().splitlines()[seen[name]:] for name, p in procs.items()}
        lasted = time.monotonic() - started
        proxy.unblock()
        for port in (listener_port, delivery_port):
            wait_for(lambda: status_of(port) == 200, 60, f"the process on {port} back")
        loud = {name: [m.group(2) for m in map(LEVEL.match, lines) if m]
                for name, lines in during.items()}
        print({name: f"{len(v)} WARNING+ lines in {lasted:.1f} s" for name, v in loud.items()})
        # Before: elastic_transport wrote 8 (listener) to 20 (delivery) WARNING lines
        # a second; now each failing loop writes its own line per retry.
        assert {name: [n for n in v if n.startswith(("elastic_transport", "opensearch"))]
                for name, v in loud.items()} == {"listener": [], "delivery": []}
        assert all(len(v) / lasted <= 2.0 for v in loud.values()), loud
        for name, proc in procs.items():
            assert max(map(len, proc.log().splitlines())) <= 2000, name
    finally:
        proxy.stop()


def manage(config_file, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forwarders.cmd.manage",
                           "--config-file", str(config_file), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_manage_on_opensearch_prints_its_answer_and_no_request_lines(config_file, names):
    set_options(config_file, "elasticsearch",
                f"backend = opensearch\nhosts = {OPENSEARCH_URL}")
    client = search.connect(OPENSEARCH_URL, "opensearch")
    try:
        created = manage(config_file, "create")
        assert created.returncode == 0, created.stderr
        listed = manage(config_file, "dead-letters", "list")
        assert listed.returncode == 0, listed.stderr
        assert "[status:" not in listed.stderr and " opensearch " not in listed.stderr, \
            listed.stderr
        assert listed.stdout == (
            "no dead letters (when there are, filter with --stage "
            "parse|plugin|index|batch|dispatch|rejected|forward or --event-type TYPE; "
            "--limit N, default 20)\n")
        filtered = manage(config_file, "dead-letters", "list", "--stage", "plugin")
        assert filtered.stdout == ("no dead letters match --stage plugin "
                                   "(`dead-letters list` without them lists every stage "
                                   "and event type)\n")
        assert "[status:" not in filtered.stderr, filtered.stderr
    finally:
        for index in (f"{names['group']}-*", names["dead_letters"]):
            client.indices.delete(index=index, ignore_unavailable=True,
                                  allow_no_indices=True)


def test_a_tenants_503_is_a_line_without_a_traceback(hooked, writer, caplog):
    # A tenant's endpoint answering 503 is the tenant's ordinary trouble: the delivery
    # service retries it and says so in one line each time, never with a traceback.
    h = hooked()
    h.receiver.status = 503
    with caplog.at_level(logging.INFO):
        writer(h.project, ["t503"], 1)
        wait_for(lambda: len(h.receiver.refused) >= 3, 30, "three refused attempts")
    h.receiver.status = 200
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("forwarders")]
    about = [m for m in lines if "answered 503" in m]
    assert about, lines
    assert not [m for m in about if "Traceback" in m or "\n" in m], about
    assert all(r.exc_info is None for r in caplog.records
               if r.name.startswith("forwarders")), [r.getMessage() for r in caplog.records]
