"""The listener forwards accepted changes through ini-configured pipelines."""
import json
import logging

from searchlight_forward.simulator import CloudSimulator
from tests.functional.conftest import wait_for
from tests.functional.test_dead_letters import IMAGE_ID, image_payload

INI = """
[forwarding]
pipelines = audit servers

[pipeline:audit]
pipeline = secrets log_all

[pipeline:servers]
pipeline = admin_only log_servers
resource_types = OS::Nova::Server

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = (?i)checksum, ^OS-EXT-SRV-ATTR:

[filter:admin_only]
use = egg:searchlight-forward#admin_only_fields

[sink:log_all]
use = egg:searchlight-forward#logger
fields = id, resource_type, version, operation, event_type, document

[sink:log_servers]
use = egg:searchlight-forward#logger
level = WARNING
fields = id, resource_type, version, document
"""


def changes(caplog, level):
    return [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records
            if r.name == "searchlight_forward.changes" and r.levelno == level]


def test_accepted_changes_reach_each_pipeline_filtered_stale_ones_do_not(
        config_file, start_listener, publisher, caplog):
    (config_file.parent / "forwarders.ini").write_text(INI)
    caplog.set_level(logging.INFO, logger="searchlight_forward.changes")
    listener = start_listener()
    stream = CloudSimulator(seed=5).stream(3, delete_ratio=0.5)
    for sim in stream:
        publisher.publish_simulated(sim)
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 60,
             "the stream")
    accepted = listener.indexer.counters["applied"] + listener.indexer.counters["duplicate"]
    wait_for(lambda: len(changes(caplog, logging.INFO)) >= accepted, 10, "the audit lines")
    audit = changes(caplog, logging.INFO)
    assert len(audit) == accepted
    assert {c["operation"] for c in audit} == {"index", "delete"}
    assert all(c["document"] is None for c in audit if c["operation"] == "delete")
    for c in audit:
        for key in c["document"] or {}:
            assert "checksum" not in key.lower() and not key.startswith("OS-EXT-SRV-ATTR:")
    servers = changes(caplog, logging.WARNING)
    assert servers and {c["resource_type"] for c in servers} == {"OS::Nova::Server"}
    assert all(not k.startswith("OS-EXT-SRV-ATTR:")
               for c in servers for k in c["document"] or {})
    assert listener.snapshot()["pipelines"]["servers"]["filtered_out"] > 0

    # A late, older update is stale: indexed nowhere, forwarded nowhere.
    publisher.publish("glance", "notifications", "image.localhost", "image.update",
                      image_payload(updated_at="2026-11-21T10:00:05Z"))
    wait_for(lambda: any(c["id"] == IMAGE_ID for c in changes(caplog, logging.INFO)), 30,
             "the image update to be forwarded")
    publisher.publish("glance", "notifications", "image.localhost", "image.update",
                      image_payload(updated_at="2026-11-21T10:00:01Z", name="old"))
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream) + 2, 30,
             "the late update")
    image_lines = [c for c in changes(caplog, logging.INFO) if c["id"] == IMAGE_ID]
    assert len(image_lines) == 1 and image_lines[0]["document"]["name"] == "cirros"
    assert listener.indexer.counters["stale"] >= 1
