"""Property: no notification that is valid JSON can give readers an entry they choke on.

Any JSON value put anywhere in a real-shaped notification (tests/fixtures) either
is refused by the plugin or by ``plugins.validation`` (a dead letter with its
reason), or becomes stored role copies that every reader can route and render: a
hashable project and key for the WebSocket fan-out, a frame for live tables, an
envelope a pipeline prepares and a sink serialises. Before the listener validated
plugins' output, a list ``tenant_id`` became a list ``project_id`` and the
WebSocket fan-out raised on it (issue 23).
"""
from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from forwarders.filters.base import FilterContext
from forwarders.filters.fields import RegexFields
from forwarders.pipeline.pipeline import Pipeline
from forwarders.pipeline.render import Renderer
from forwarders.websocket.protocol import Subscription
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.indexer import merge
from searchlight_forward.model import documents
from searchlight_forward.model.change import Notification
from searchlight_forward.plugins import PayloadError, load_plugins, validation
from devtools.hostile import paths
from tests.unit.conftest import fixture_paths

PLUGINS = load_plugins()
ADMIN_ONLY = {p.resource_type: tuple(p.admin_only_fields) for p in PLUGINS.plugins}
FIXTURES = [json.loads(p.read_text()) for p in fixture_paths()]
# The fields readers route by, and the ids plugins read them from, drawn more often.
HOT_KEYS = ["tenant_id", "project_id", "id", "instance_id", "uuid", "resource_id",
            "owner", "stack_identity", "volume_id", "snapshot_id", "zone_id"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                 inner, max_size=3),
    max_leaves=8)


def put(node, path, value):
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


@st.composite
def hostile_notifications(draw):
    raw = draw(st.sampled_from(FIXTURES))
    payload = copy.deepcopy(raw["payload"])
    for _ in range(draw(st.integers(1, 3))):
        every = list(paths(payload))
        hot = [p for p in every if p[-1] in HOT_KEYS]
        if not every:
            break
        path = draw(st.sampled_from(hot if hot and draw(st.booleans()) else every))
        put(payload, path, draw(json_values))
    return Notification(event_type=raw["event_type"], payload=payload,
                        publisher_id=raw["publisher_id"], priority=raw["priority"].lower(),
                        timestamp=raw["timestamp"])


def what_listener_stores(notification: Notification) -> list[dict]:
    """The role copies the listener would write for ``notification`` (none if it is
    dead-lettered), through the plugin, the validation and the indexer's fold."""
    plugin = PLUGINS.route(notification.event_type)
    if plugin is None:
        return []
    try:
        changes = plugin.changes(notification)
        for change in changes:
            validation.check(change, plugin.mapping)
    except PayloadError:
        return []
    sources = []
    for change in changes:
        if not change.id:
            continue          # located by the indexer from a stored document
        state, _, _ = merge.fold(None, [change])
        if state is not None:
            sources += documents.es_sources(state, ADMIN_ONLY[change.resource_type]).values()
    return sources


REGEX = RegexFields("secrets", {"patterns": "(?i)password, ^OS-EXT-SRV-ATTR:"},
                    FilterContext(ADMIN_ONLY))
RENDERER = Renderer([REGEX], ADMIN_ONLY)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_notifications())
def test_every_stored_entry_is_one_every_reader_can_hand_on(notification):
    for source in what_listener_stores(notification):
        entry = Entry("index", 0, 7, source)
        entry.after = None
        assert entry.problem is None, (entry.problem, notification.payload)
        hash(entry.project_id)           # the WebSocket fan-out's routing key
        hash(entry.key)                  # live searches' holders
        assert RENDERER.render(entry) is not None
        sub = Subscription(frozenset({entry.resource_type}), False, None, entry.role,
                           entry.project_id or "p")
        assert sub.wants(source) in (True, False)
        envelope = entry.envelope(ADMIN_ONLY[entry.resource_type])
        prepared = Pipeline("p", [REGEX], "s", sink=None).prepare(envelope)
        json.loads(prepared.to_json())   # what every sink sends


def test_the_issue_reproduction_is_refused_with_its_reason():
    raw = next(f for f in FIXTURES if f["event_type"] == "compute.instance.update")
    payload = dict(raw["payload"], tenant_id=["a", "b"])
    plugin = PLUGINS.route(raw["event_type"])
    changes = plugin.changes(Notification(raw["event_type"], payload,
                                          timestamp=raw["timestamp"]))
    try:
        for change in changes:
            validation.check(change, plugin.mapping)
    except PayloadError as exc:
        assert "project id is a list, expected a string or null" in str(exc)
    else:
        raise AssertionError("a list tenant_id was accepted")


def test_a_number_id_is_not_merged_into_a_string_id():
    raw = next(f for f in FIXTURES if f["event_type"] == "compute.instance.update")
    payload = dict(raw["payload"], instance_id=12345)
    plugin = PLUGINS.route(raw["event_type"])
    try:
        plugin.changes(Notification(raw["event_type"], payload, timestamp=raw["timestamp"]))
    except PayloadError as exc:
        assert "12345 is not a string" in str(exc)
    else:
        raise AssertionError("a number id was accepted")
