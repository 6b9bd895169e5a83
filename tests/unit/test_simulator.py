"""The simulated cloud: accepted by the plugins, ordered, deterministic, realistic."""
from __future__ import annotations

import collections
import datetime
import json

import pytest

from tests.unit.conftest import fixture_paths
from searchlight_forward.model import versioning
from searchlight_forward.model.change import Operation
from searchlight_forward.plugins._common import unwrap_nova_object
from devtools.simulator import CloudSimulator, SimulatedNotification


@pytest.fixture(scope="module")
def stream():
    return CloudSimulator(seed=5).stream(count_per_type=12, delete_ratio=0.4)


def test_every_type_and_project_appears(stream):
    assert {n.resource_type for n in stream} == set(CloudSimulator.SUPPORTED_TYPES)
    sim = CloudSimulator(seed=5)
    assert {n.payload.get("tenant_id") or n.payload.get("owner")
            for n in stream if isinstance(n.payload, dict)} >= set(sim.projects.values())


def test_every_notification_is_accepted_by_its_plugin(plugins, stream):
    for sim in stream:
        plugin = plugins.route(sim.event_type)
        assert plugin is not None, sim.event_type
        assert plugin.resource_type == sim.resource_type
        assert (sim.exchange, sim.topic) in plugin.notification_targets
        changes = plugin.changes(sim.to_notification())
        assert changes, sim.event_type
        for change in changes:
            assert change.id == sim.resource_id or (
                change.locate_by and change.locate_by[0] == "security_group_rules.id")


def test_versions_strictly_increase_along_each_lifecycle(plugins, stream):
    versions = collections.defaultdict(list)
    for sim in stream:
        for change in plugins.route(sim.event_type).changes(sim.to_notification()):
            versions[(sim.resource_type, sim.resource_id)].append(change.version)
    assert len(versions) == 12 * len(CloudSimulator.SUPPORTED_TYPES)
    for key, seq in versions.items():
        assert all(a < b for a, b in zip(seq, seq[1:])), (key, seq)


def test_stream_is_in_emission_order_and_each_lifecycle_in_its_own_order(stream):
    stamps = [versioning.parse_timestamp(n.timestamp) for n in stream]
    assert stamps == sorted(stamps)
    assert len({n.message_id for n in stream}) == len(stream)


def test_deletes_end_lifecycles(plugins, stream):
    last = {}
    for sim in stream:
        last[(sim.resource_type, sim.resource_id)] = sim
    ops = collections.Counter(
        plugins.route(s.event_type).changes(s.to_notification())[-1].operation
        for s in last.values())
    assert ops[Operation.DELETE] > 0 and ops[Operation.DELETE] < len(last)


def test_same_seed_same_stream_other_seed_other_stream():
    a = CloudSimulator(seed=3).stream(3)
    b = CloudSimulator(seed=3).stream(3)
    c = CloudSimulator(seed=4).stream(3)
    assert a == b
    assert a != c


def test_lifecycle_options():
    sim = CloudSimulator(seed=9, projects=("p1",),
                         start=datetime.datetime(2030, 1, 1, 0, 0, 0))
    kept = sim.lifecycle("OS::Cinder::Volume", "p1", delete=False)
    gone = sim.lifecycle("OS::Cinder::Volume", "p1", delete=True)
    assert kept[-1].event_type != "volume.delete.end"
    assert gone[-1].event_type == "volume.delete.end"
    assert kept[0].timestamp.startswith("2030-01-01")
    with pytest.raises(ValueError, match="unsupported resource type"):
        sim.lifecycle("OS::Swift::Object", "p1")
    with pytest.raises(ValueError, match="unknown project"):
        sim.lifecycle("OS::Cinder::Volume", "nobody")
    with pytest.raises(ValueError, match="nova_format"):
        CloudSimulator(nova_format="json")


@pytest.mark.parametrize("fmt, prefix", [("versioned", "instance."),
                                         ("unversioned", "compute.instance.")])
def test_nova_formats(fmt, prefix):
    notes = CloudSimulator(seed=2, nova_format=fmt).lifecycle("OS::Nova::Server", "demo")
    assert all(n.event_type.startswith(prefix) for n in notes)
    assert all(n.topic == ("versioned_notifications" if fmt == "versioned"
                           else "notifications") for n in notes)


def test_to_notification_copies(stream):
    sim = stream[0]
    n = sim.to_notification()
    assert (n.event_type, n.timestamp, n.publisher_id, n.message_id) == (
        sim.event_type, sim.timestamp, sim.publisher_id, sim.message_id)
    assert n.payload == sim.payload and n.payload is not sim.payload
    assert isinstance(sim, SimulatedNotification)


def test_payload_sizes_are_realistic(stream):
    sizes = [len(json.dumps(n.payload)) for n in stream]
    mean = sum(sizes) / len(sizes)
    assert 500 < mean < 2500
    assert max(sizes) < 16_000


def _shape(payload):
    """Top-level keys, and for wrapped or keyed payloads the inner object's keys."""
    payload = unwrap_nova_object(payload)
    inner = {k: sorted(v) for k, v in payload.items()
             if isinstance(v, dict) and len(payload) <= 2}
    return sorted(payload), inner


def test_simulated_payloads_have_the_fixture_shapes():
    fixtures = {}
    for path in fixture_paths():
        with open(path) as f:
            raw = json.load(f)
        fixtures[raw["event_type"]] = raw["payload"]
    seen = {}
    for note in CloudSimulator(seed=1).stream(8, delete_ratio=0.5):
        seen.setdefault(note.event_type, note.payload)
    compared = 0
    for event_type, payload in seen.items():
        if event_type in fixtures:
            compared += 1
            assert _shape(payload) == _shape(fixtures[event_type]), event_type
    assert compared >= 40


@pytest.mark.parametrize("style, has_rule", [("id_only", {False}), ("with_rule", {True}),
                                             ("mixed", {False, True})])
def test_rule_delete_payload_styles(style, has_rule):
    notes = CloudSimulator(seed=8, rule_delete_payload=style).stream(
        20, types=("OS::Neutron::SecurityGroup",))
    deletes = [n for n in notes if n.event_type == "security_group_rule.delete.end"]
    assert {"security_group_rule" in n.payload for n in deletes} == has_rule
    with pytest.raises(ValueError, match="rule_delete_payload"):
        CloudSimulator(rule_delete_payload="both")
