"""Priorities and alerts on plain data: an error is not lost when a routine change
of the same resource follows it (Nova's create.error, then instance.update)."""
import pytest

from forwarders.sinks.zaqar.config import render
from searchlight_forward.indexer import merge
from searchlight_forward.model import priority
from searchlight_forward.model.change import DocumentChange, Operation
from searchlight_forward.model.documents import es_sources, state_from_source
from searchlight_forward.model.envelope import Envelope, from_source

T = "OS::Nova::Server"


def change(version, event_type, level, timestamp, status="ACTIVE", op=Operation.INDEX):
    doc = None if op is Operation.DELETE else {
        "id": "s1", "resource_type": T, "project_id": "p1", "status": status}
    return DocumentChange(T, "s1", "p1", op, version, event_type, timestamp,
                          document=doc, priority=level)


ERROR = change(2, "compute.instance.create.error", "error", "2026-03-02 12:00:07.100000",
               "ERROR")
UPDATE = change(3, "compute.instance.update", "info", "2026-03-02 12:00:07.300000", "ERROR")


def fold(changes, stored=None):
    state, _, _ = merge.fold(stored, changes)
    return state


@pytest.mark.parametrize("batches", [[[ERROR, UPDATE]], [[ERROR], [UPDATE]],
                                     [[UPDATE], [ERROR]]])
def test_an_error_rides_on_the_update_that_follows_it_in_any_batching(batches):
    state = None
    for batch in batches:
        state = fold(batch, state)
    assert state.version == 3 and state.priority == "info"
    assert state.event_type == "compute.instance.update"
    assert state.alert == {"priority": "error", "event_type": "compute.instance.create.error",
                           "version": 2, "timestamp": "2026-03-02 12:00:07.100000"}


def test_the_alert_ends_after_the_window_and_a_newer_alert_replaces_it():
    later = change(4, "compute.instance.update", "info", "2026-03-02 12:05:07.200000")
    assert fold([ERROR, UPDATE, later]).alert is None              # 300.1 s after it
    at_edge = change(4, "compute.instance.update", "info", "2026-03-02T12:05:07.1Z")
    assert fold([ERROR, at_edge]).alert["version"] == 2            # exactly 300 s
    warn = change(5, "compute.instance.power_off.warn", "warn", "2026-03-02 12:00:09")
    assert fold([ERROR, UPDATE, warn]).alert["priority"] == "warn"
    unreadable = change(4, "compute.instance.update", "info", "yesterday")
    assert fold([ERROR, unreadable]).alert is None


def test_routine_changes_carry_no_alert_and_a_stored_alert_survives_a_round_trip():
    assert fold([UPDATE]).alert is None
    state = fold([ERROR])
    sources = es_sources(state, admin_only=())
    assert state_from_source(sources["admin"]).alert == state.alert
    envelope = from_source(sources["user"], 2)
    assert envelope.alert == state.alert and envelope.to_dict()["alert"] == state.alert
    assert "alert" not in from_source(es_sources(fold([UPDATE]), ())["user"], 3).to_dict()


def envelope(level, alert_level=None):
    alert = {"priority": alert_level, "event_type": "x.error", "version": 1,
             "timestamp": ""} if alert_level else None
    return Envelope(T, "s1", "p1", 2, "index", "compute.instance.update", "", {},
                    priority=level, alert=alert)


@pytest.mark.parametrize("level, alert, wanted, routed", [
    ("info", None, False, "info"),
    ("error", None, True, "error"),
    ("info", "error", True, "error"),
    ("info", "critical", True, "critical"),
    ("info", "warn", False, "warn"),
    ("critical", "warn", True, "critical"),
])
def test_selection_and_routing_take_the_alert(level, alert, wanted, routed):
    e = envelope(level, alert)
    assert priority.selects(frozenset({"error", "critical"}), e.priority, e.alert) is wanted
    assert e.routing_priority == routed
    assert render("openstack-{priority}", e) == f"openstack-{routed}"
