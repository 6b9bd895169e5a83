"""searchlight-forward-manage replay on real servers: a pipeline's cursor moved back
(to a time, to the start) makes its sink receive the latest state of what changed
since, while the other pipelines are not disturbed."""
from __future__ import annotations

import datetime
import subprocess
import sys
import uuid

from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.delivery_support import drain, pipelines_ini, wait_caught_up
from tests.functional.test_dead_letters import image_payload
from tests.functional.test_poison import publish_image


def manage(config_file, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forwarders.cmd.manage",
                           "--config-file", str(config_file), *args],
                          capture_output=True, text=True, timeout=120)


def test_replay_from_a_time_and_from_the_start(config_file, names, start_listener,
                                              start_delivery, publisher, es):
    ops, queue = f"{names['zaqar']}-ops", f"q-{uuid.uuid4().hex[:8]}"
    write_pipelines(config_file, pipelines_ini(ops, queue, f"{names['zaqar']}-t"))
    listener = start_listener()
    service = start_delivery()
    first, second = ([str(uuid.uuid4()) for _ in range(3)] for _ in range(2))

    def publish(ids, done):
        for rid in ids:
            publish_image(publisher, image_payload(image_id=rid))
        wait_for(lambda: listener.processor.counters["notifications"] >= done, 60,
                 "indexing")
        wait_caught_up(es, names["state"], names["group"], ["ops", "audit"])

    publish(first, 3)
    between = datetime.datetime.now(datetime.timezone.utc).isoformat()
    publish(second, 6)
    assert {m["id"] for m in drain(ops, queue)} == set(first) | set(second)
    audit = f"cursor:{names['group']}:audit"
    audit_before = service.stats()["pipelines"][audit]["counters"]["delivered"]

    done = manage(config_file, "replay", "ops", "--to", between)
    assert done.returncode == 0, done.stderr
    assert "moved from" in done.stdout
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    wait_for(lambda: service.stats()["pipelines"].get(f"cursor:{names['group']}:ops"),
             30, "the ops pipeline to be owned again")
    assert {m["id"] for m in drain(ops, queue)} == set(second)     # written after

    done = manage(config_file, "replay", "ops", "--to", "start")
    assert done.returncode == 0, done.stderr
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    assert {m["id"] for m in drain(ops, queue)} == set(first) | set(second)
    listing = manage(config_file, "cursors")
    assert listing.returncode == 0 and f"{names['group']} ops: at " in listing.stdout
    # The other pipelines were not touched.
    assert service.stats()["pipelines"][audit]["counters"]["delivered"] == audit_before


def test_replay_tells_what_it_accepts(config_file, names, start_listener, publisher,
                                      start_delivery, es):
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", "q-x",
                                               f"{names['zaqar']}-t"))
    listener = start_listener()
    start_delivery()
    publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))
    wait_for(lambda: listener.processor.counters["notifications"] >= 1, 60, "indexing")
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    done = manage(config_file, "replay", "ops", "--to", "yesterday")
    assert done.returncode == 2 and "use start, now, an ISO 8601 time" in done.stderr
    done = manage(config_file, "replay", "nosuch", "--to", "start")
    assert done.returncode == 1 and "'nosuch' has no cursor" in done.stderr


def test_push_sends_the_current_state_of_chosen_resources_to_one_pipeline(
        config_file, names, start_listener, start_delivery, publisher, es):
    ops, queue = f"{names['zaqar']}-ops", f"q-{uuid.uuid4().hex[:8]}"
    write_pipelines(config_file, pipelines_ini(ops, queue, f"{names['zaqar']}-t"))
    listener = start_listener()
    start_delivery()
    ids = [str(uuid.uuid4()) for _ in range(4)]
    for rid in ids:
        publish_image(publisher, image_payload(image_id=rid, name=f"image {rid[:4]}"))
    wait_for(lambda: listener.processor.counters["notifications"] >= 4, 60, "indexing")
    wait_caught_up(es, names["state"], names["group"], ["ops"])
    drain(ops, queue)

    chosen = ids[1:3]
    done = manage(config_file, "push", "ops", *[f"OS::Glance::Image:{rid}" for rid in chosen],
                  f"OS::Glance::Image:{uuid.uuid4()}")
    assert done.returncode == 1                     # one of them is not in the index
    assert "not in the index" in done.stderr and "2 resource(s) sent to ops" in done.stdout
    got = drain(ops, queue)
    assert sorted(m["id"] for m in got) == sorted(chosen)
    assert {m["id"]: m["document"]["name"] for m in got} == {
        rid: f"image {rid[:4]}" for rid in chosen}
