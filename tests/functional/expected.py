"""What the index must hold after a stream: the stream folded in emission order (pure)."""
from __future__ import annotations

import dataclasses

import elasticsearch
from elasticsearch import helpers

from searchlight_forward.indexer import documents, merge
from searchlight_forward.indexer.documents import ResourceState


def expected_states(simulated, plugins) -> dict[tuple[str, str], ResourceState]:
    states: dict[tuple[str, str], ResourceState] = {}
    for sim in simulated:
        notification = sim.to_notification()
        plugin = plugins.route(notification.event_type)
        for change in plugin.changes(notification):
            if change.locate_by is not None:
                change = _locate(states, change)
                if change is None:
                    continue
            key = (change.resource_type, change.id)
            states[key], _, _ = merge.fold(states.get(key), [change])
    return states


def _locate(states, change):
    field, value = change.locate_by
    list_field, key = field.split(".", 1)
    for (rtype, rid), state in states.items():
        if rtype == change.resource_type and not state.deleted and any(
                item.get(key) == value for item in state.document.get(list_field) or []):
            return dataclasses.replace(change, id=rid, locate_by=None)
    return None


def stored_states(es: elasticsearch.Elasticsearch, group: str
                  ) -> dict[tuple[str, str], ResourceState]:
    es.indices.refresh(index=f"{group}-listener")
    found = {}
    for hit in helpers.scan(es, index=f"{group}-listener", version=True,
                            query={"query": {"term": {documents.ROLE_FIELD: "admin"}}}):
        state = documents.state_from_source(hit["_source"], hit["_version"])
        found[(state.resource_type, state.id)] = state
    return found


def differences(expected, stored) -> list[str]:
    """Human-readable mismatches between expected and stored states (empty if none)."""
    problems = []
    for key, want in expected.items():
        got = stored.get(key)
        if got is None:
            problems.append(f"{key}: missing")
        elif want.deleted != got.deleted:
            problems.append(f"{key}: deleted={got.deleted}, expected {want.deleted}")
        elif not want.deleted and want.document != got.document:
            diff = {k for k in set(want.document) | set(got.document)
                    if want.document.get(k) != got.document.get(k)}
            detail = {k: (want.document.get(k), got.document.get(k)) for k in sorted(diff)}
            problems.append(f"{key}: fields differ (expected, stored): {detail}")
    problems += [f"{key}: unexpected" for key in set(stored) - set(expected)]
    return problems
