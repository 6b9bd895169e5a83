"""Bad input is answered, not fatal: dead letters with reasons, nothing else lost."""
import json
import subprocess
import sys

from tests.functional.conftest import wait_for

IMAGE_ID = "5f0a4a27-6d2b-4b9a-9a6f-0f2d3c8e9b10"


def image_payload(image_id=IMAGE_ID, **overrides):
    payload = {"id": image_id, "name": "cirros", "status": "active", "owner": "proj-a",
               "visibility": "private", "size": 13287936, "disk_format": "qcow2",
               "container_format": "bare", "checksum": "ee1eca47dc88f4879d8a229cc70a07c6",
               "min_disk": 0, "min_ram": 0, "protected": False, "tags": [],
               "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:05Z",
               "properties": {}}
    payload.update(overrides)
    return payload


def test_bad_notifications_are_dead_lettered_with_reasons_and_good_ones_indexed(
        start_listener, publisher, es, names, config_file):
    listener = start_listener()
    good = image_payload()
    bad = [
        ("image.update", "this is not json {", "not JSON"),
        ("image.update", [1, 2, 3], "expected an object"),
        ("image.update", image_payload(id=None), "id"),
        # The wrong type for its mapping: refused before anything is written.
        ("image.update", image_payload(image_id="8c3b1b0e-0000-4000-8000-000000000001",
                                       size="very big"),
         "field 'size' is a string 'very big', expected an integer (long)"),
        # Right type, but Elasticsearch will not take it (a keyword over 32 KB).
        ("image.update", image_payload(image_id="8c3b1b0e-0000-4000-8000-000000000002",
                                       name="x" * 40000), "Elasticsearch refused"),
    ]
    for event_type, payload, _ in bad[:2]:
        publisher.publish("glance", "notifications", "image.localhost", event_type, payload)
    publisher.publish("glance", "notifications", "image.localhost", "image.update", good)
    for event_type, payload, _ in bad[2:]:
        publisher.publish("glance", "notifications", "image.localhost", event_type, payload)
    # An event no plugin is about is ignored, not an error.
    publisher.publish("glance", "notifications", "image.localhost", "image.send",
                      {"image_id": IMAGE_ID, "bytes_sent": 10})

    wait_for(lambda: listener.processor.counters["notifications"] >= 7, 30,
             "the listener to take all seven notifications")
    es.indices.refresh(index=names["dead_letters"])
    records = [h["_source"] for h in es.search(index=names["dead_letters"], size=10)["hits"]["hits"]]
    assert len(records) == len(bad)
    reasons = sorted(r["reason"] for r in records)
    for _, _, expected in bad:
        assert any(expected in reason for reason in reasons), (expected, reasons)
    assert {r["stage"] for r in records} == {"parse", "plugin", "index"}
    assert listener.processor.counters["ignored"] == 1

    # The good one is indexed, and the listener still serves the next batch.
    es.indices.refresh(index=f"{names['group']}-search")
    assert es.get(index=f"{names['group']}-listener", id=f"{IMAGE_ID}_ADMIN")["found"]
    publisher.publish("glance", "notifications", "image.localhost", "image.update",
                      image_payload(updated_at="2026-11-21T10:00:09Z", name="cirros-2"))
    wait_for(lambda: es.get(index=f"{names['group']}-listener",
                            id=f"{IMAGE_ID}_ADMIN")["_source"]["name"] == "cirros-2",
             30, "the next notification to be indexed")

    # Operators read them with the manage command.
    out = subprocess.run(
        [sys.executable, "-m", "forwarders.cmd.manage", "--config-file",
         str(config_file), "dead-letters", "list"], capture_output=True, text=True,
        timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(bad) and all("image.update" in line for line in lines)
    record_id = out.stdout.split()[0]
    shown = subprocess.run(
        [sys.executable, "-m", "forwarders.cmd.manage", "--config-file",
         str(config_file), "dead-letters", "show", record_id], capture_output=True,
        text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["notification"]["event_type"] == "image.update"
