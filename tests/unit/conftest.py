"""Fixture loading for the plugin tests: real-shaped notifications as plain data."""
from __future__ import annotations

import copy
import json
import pathlib

import pytest

from searchlight_forward.model.change import Notification
from searchlight_forward.plugins import load_plugins

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "notifications"


def fixture_paths():
    return sorted(FIXTURES.glob("*/*.json"))


def load_fixture(service: str, event_type: str) -> dict:
    with open(FIXTURES / service / f"{event_type}.json") as f:
        return json.load(f)


def as_notification(raw: dict, **overrides) -> Notification:
    fields = dict(event_type=raw["event_type"], payload=copy.deepcopy(raw["payload"]),
                  publisher_id=raw["publisher_id"], priority=raw["priority"],
                  timestamp=raw["timestamp"])
    fields.update(overrides)
    return Notification(**fields)


@pytest.fixture
def note():
    """note(service, event_type, **overrides) -> Notification from a fixture file."""
    def make(service: str, event_type: str, /, **overrides) -> Notification:
        return as_notification(load_fixture(service, event_type), **overrides)
    return make


@pytest.fixture(scope="session")
def plugins():
    return load_plugins()


@pytest.fixture
def one_change(plugins):
    """Route a notification and return its single change."""
    def run(notification: Notification):
        plugin = plugins.route(notification.event_type)
        assert plugin is not None, f"no plugin for {notification.event_type}"
        changes = plugin.changes(notification)
        assert len(changes) == 1, changes
        return changes[0]
    return run


def apply(change, document: dict | None = None) -> dict:
    """What the indexer does with an UPDATE: the patch on a copy of the stored doc."""
    return change.patch(copy.deepcopy(document) if document is not None else {})
