"""Fold document changes onto a stored resource state (pure).

Given what Elasticsearch holds for one resource and the changes a batch brings for
it, decide the resource's new state and what each change amounted to. The state
remembers the version of its last full document (the base) and the version of each
field a partial notification set since, so the result is the same whatever order
the changes arrive in, one batch or many:

* a full document newer than the base replaces every field that no newer partial
  notification set (an update that overtook its create is kept, not overwritten);
* a partial notification sets the fields it changes, unless a newer change already
  set them;
* a delete newer than everything leaves a tombstone that nothing older undoes, and
  no partial notification revives;
* a change carrying the state's own version is a redelivery: a harmless duplicate;
* the newest change also sets the state's priority and event type, and its alert
  (``model.priority``): a warn, error or critical notification starts one, later
  routine ones carry it while they are emitted within the alert window.
"""
from __future__ import annotations

import dataclasses
import enum
import re

from searchlight_forward.model.change import DocumentChange, Operation, SetFields
from searchlight_forward.model import priority
from searchlight_forward.model.documents import ResourceState


class Outcome(str, enum.Enum):
    APPLIED = "applied"      # changed the stored state
    DUPLICATE = "duplicate"  # same version as stored: a redelivery
    STALE = "stale"          # superseded by what is stored: dropped, newest wins


@dataclasses.dataclass
class ChangeResult:
    change: DocumentChange
    outcome: Outcome
    state: ResourceState | None  # resource state right after this change


def fold(stored: ResourceState | None, changes: list[DocumentChange]
         ) -> tuple[ResourceState | None, list[ChangeResult], bool]:
    """Returns (final state, per-change results in version order, needs write)."""
    state = stored.copy() if stored else None
    results: list[ChangeResult] = []
    dirty = False
    for change in sorted(changes, key=lambda c: c.version):
        before = state
        outcome, state = _apply(state, change)
        if outcome is Outcome.APPLIED:
            _stamp(state, before, change)
        late_alert = outcome is Outcome.STALE and _late_alert(state, change)
        dirty = dirty or outcome is Outcome.APPLIED or late_alert
        if state.deleted and not state.project_id and change.project_id:
            # A delete that overtook its resource names no project; older changes do.
            state.project_id = change.project_id
            state.document = dict(state.document, project_id=change.project_id)
            dirty = True
        results.append(ChangeResult(change, outcome,
                                    state.copy() if state is not None else None))
    return state, results, dirty


def _stamp(state: ResourceState, before: ResourceState | None,
           change: DocumentChange) -> None:
    """Set what the newest change folded in says (its event type, emission time and
    priority) and the alert; an older change applied out of order keeps them."""
    if before is not None and before is not state:
        state.event_type, state.changed_at = before.event_type, before.changed_at
        state.priority, state.alert = before.priority, before.alert
    if change.version < state.version:
        _late_alert(state, change)
        return
    state.event_type, state.changed_at = change.event_type, change.timestamp
    state.priority = change.priority
    alert = priority.alert_of(change.priority, change.event_type, change.version,
                              change.timestamp)
    if alert is not None or not priority.still_carried(state.alert, change.timestamp):
        state.alert = alert


def _late_alert(state: ResourceState, change: DocumentChange) -> bool:
    """An alert that arrives after newer changes still rides on them if they were
    emitted within its window (and it is newer than the alert they carry)."""
    alert = priority.alert_of(change.priority, change.event_type, change.version,
                              change.timestamp)
    if alert is None or (state.alert and state.alert["version"] >= alert["version"]):
        return False
    if not priority.still_carried(alert, state.changed_at):
        return False
    state.alert = alert
    return True


def _apply(state: ResourceState | None, change: DocumentChange
           ) -> tuple[Outcome, ResourceState | None]:
    if state is None:
        state = ResourceState(change.resource_type, change.id, change.project_id, 0,
                              {"id": change.id, "resource_type": change.resource_type,
                               "project_id": change.project_id})
    newer = change.version > state.version
    if state.deleted:
        if newer and change.operation is not Operation.UPDATE:
            return _APPLY[change.operation](state, change)
        return (Outcome.DUPLICATE if change.version == state.version
                else Outcome.STALE), state
    if change.operation is Operation.DELETE:
        if newer:
            return _delete(state, change)
    elif change.version > state.base_version and (newer or not _is_redelivery(state, change)):
        return _APPLY[change.operation](state, change)
    if change.version == state.version:
        return Outcome.DUPLICATE, state
    return Outcome.STALE, state


def _is_redelivery(state: ResourceState, change: DocumentChange) -> bool:
    # Same version as the newest change folded in, and it changes nothing.
    if change.version != state.version:
        return False
    if change.operation is Operation.INDEX:
        return change.version == state.base_version
    return change.patch(dict(state.document)) == state.document


def _index(state: ResourceState, change: DocumentChange):
    """A full document: the new base, under anything newer partials set."""
    document = dict(change.document)   # top-level copy: nested values are never edited
    newer = {k: v for k, v in state.field_versions.items() if v > change.version}
    for key in newer:
        item = _ITEM_KEY.match(key)
        if item is None:
            if key in state.document:
                document[key] = state.document[key]
            else:
                document.pop(key, None)
            continue
        list_field, item_key, value = item.groups()
        current = [i for i in state.document.get(list_field) or []
                   if str(i.get(item_key)) == value]
        kept = [i for i in document.get(list_field) or [] if str(i.get(item_key)) != value]
        document[list_field] = sorted(kept + current,
                                      key=lambda i: str(i.get(item_key)))
    new = ResourceState(change.resource_type, change.id,
                        document.get("project_id") or change.project_id,
                        max(state.version, change.version), document,
                        base_version=change.version, field_versions=newer)
    return Outcome.APPLIED, new


def _update(state: ResourceState, change: DocumentChange):
    """Some fields or list items: each set unless a newer change already set it."""
    document = dict(state.document)    # ops replace top-level values, never edit them
    field_versions = dict(state.field_versions)
    for op in change.patch.ops:
        if isinstance(op, SetFields):
            for field, value in op.fields.items():
                if field_versions.get(field, state.base_version) < change.version:
                    document[field] = value
                    field_versions[field] = change.version
        else:  # an item of a list, versioned on its own
            key = f"{op.list_field}[{op.key}={op.value}]"
            seen = max(field_versions.get(key, 0),
                       field_versions.get(op.list_field, state.base_version))
            if seen < change.version:
                document = op.apply(document)
                field_versions[key] = change.version
    if field_versions == state.field_versions and change.version <= state.version:
        return Outcome.STALE, state   # newer changes had already set all it carries
    document["id"], document["resource_type"] = change.id, change.resource_type
    new = ResourceState(change.resource_type, change.id,
                        document.get("project_id") or state.project_id,
                        max(state.version, change.version), document,
                        base_version=state.base_version, field_versions=field_versions)
    return Outcome.APPLIED, new


def _delete(state: ResourceState, change: DocumentChange):
    # Only what identifies the resource: the same whatever arrived before.
    tombstone = {"id": change.id, "resource_type": change.resource_type,
                 "project_id": change.project_id or state.document.get("project_id")}
    return Outcome.APPLIED, ResourceState(
        change.resource_type, change.id, tombstone["project_id"], change.version,
        tombstone, deleted=True, base_version=change.version)


_APPLY = {Operation.INDEX: _index, Operation.UPDATE: _update, Operation.DELETE: _delete}
_ITEM_KEY = re.compile(r"^(.*?)\[(.*?)=(.*)\]$")
