"""Per-tenant and operator Zaqar queues fed by a real listener through filters."""
import fnmatch
import re
import uuid


from devtools.simulator import CloudSimulator
from tests.conftest import ZAQAR_URL, field_paths, zaqar_client_for
from tests.functional.conftest import wait_for
from tests.functional.test_zaqar_hold import drain

SECRET = re.compile(r"(?i)mac_addr|fingerprint|^OS-EXT-IPS")


def test_tenant_queues_hold_only_their_tenant_filtered_and_the_operator_queue_all(
        config_file, start_listener, publisher):
    suffix = uuid.uuid4().hex[:8]
    tenant_queue, ops_queue, ops_project = f"res-{suffix}", f"ops-{suffix}", f"ops-{suffix}"
    (config_file.parent / "forwarders.ini").write_text(f"""
[forwarding]
pipelines = tenants ops

[pipeline:tenants]
pipeline = admin_only secrets tenant_zaqar

[pipeline:ops]
pipeline = ops_zaqar
must_deliver = true

[filter:admin_only]
use = egg:searchlight-forward#admin_only_fields

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = {SECRET.pattern}

[sink:tenant_zaqar]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {tenant_queue}
project = {{project_id}}
on_failure = retry

[sink:ops_zaqar]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {ops_queue}
project = {ops_project}
on_failure = hold
""")
    listener = start_listener()
    simulator = CloudSimulator(seed=8)
    stream = simulator.stream(4, delete_ratio=0.3)
    for sim in stream:
        publisher.publish_simulated(sim)
    wait_for(lambda: listener.processor.counters["notifications"] >= len(stream), 60,
             "the stream")
    wait_for(lambda: all(p.get("delivered", 0) + p.get("dropped", 0) >= p["submitted"]
                         for p in listener.snapshot()["pipelines"].values()), 60,
             "both pipelines to deliver")
    pipelines = listener.snapshot()["pipelines"]
    assert pipelines["tenants"].get("dropped", 0) == 0

    admin_only = {p.resource_type: p.admin_only_fields for p in listener.deployment.plugins.plugins}
    tenant_ids = set()
    for project in simulator.projects.values():
        bodies = drain(zaqar_client_for(project), tenant_queue, timeout=1.0)
        assert bodies, f"project {project} got nothing"
        for body in bodies:
            assert body["project_id"] == project
            tenant_ids.add(body["id"])
            document = body["document"] or {}
            leaked = [k for k in document
                      if any(fnmatch.fnmatchcase(k, p) for p in admin_only[body["resource_type"]])]
            assert leaked == [], (body["resource_type"], leaked)
            assert not [p for p in field_paths(document) if SECRET.search(p)]
    operator = drain(zaqar_client_for(ops_project), ops_queue, timeout=1.0)
    operator_ids = {b["id"] for b in operator}
    assert tenant_ids <= operator_ids
    # the operator queue is unfiltered: admin-only fields are there
    assert any(k.startswith("OS-EXT-SRV-ATTR:") for b in operator
               for k in (b["document"] or {}))
    # flavors without a project only reach the operator queue
    assert {b["resource_type"] for b in operator} >= {"OS::Nova::Flavor", "OS::Nova::Server"}
