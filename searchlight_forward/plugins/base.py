"""The resource plugin contract: notification in, document changes out, no I/O."""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Mapping

from searchlight_forward.model import versioning
from searchlight_forward.model.change import DocumentChange, Notification, Operation, Patch


class PayloadError(ValueError):
    """The notification can never become a document change (dead-letter it)."""


class ResourcePlugin:
    """Base class for one OpenStack resource type.

    Subclasses set the class attributes and implement ``changes``. They must stay
    pure: everything they need is in the notification.
    """

    #: Heat-style resource type name, e.g. "OS::Nova::Server".
    resource_type: str = ""
    #: (exchange, topic) pairs the listener subscribes to for this plugin.
    notification_targets: tuple[tuple[str, str], ...] = ()
    #: fnmatch patterns of the event types this plugin turns into changes.
    event_types: tuple[str, ...] = ()
    #: fnmatch patterns of top-level fields only admins may see.
    admin_only_fields: tuple[str, ...] = ()
    #: Lists whose items change one by one (list field -> item key field), e.g. a
    #: security group's rules: the indexer versions and tombstones their items.
    item_lists: Mapping[str, str] = {}
    #: Elasticsearch mapping properties for this resource's searchable fields.
    mapping: Mapping[str, Any] = {}

    #: fnmatch patterns of fields kept out of the search mapping and out of every
    #: forwarded document; set from ``[resource_plugin:<name>] unsearchable_fields``.
    unsearchable_fields: tuple[str, ...] = ()

    def search_mapping(self) -> dict:
        """The mapping without the unsearchable fields."""
        return {f: spec for f, spec in self.mapping.items()
                if not any(fnmatch.fnmatchcase(f, p) for p in self.unsearchable_fields)}

    def handles(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.event_types)

    def changes(self, notification: Notification) -> list[DocumentChange]:
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------

    @staticmethod
    def require(mapping: Any, *keys: str, what: str = "payload") -> Any:
        """Walk ``keys`` into ``mapping`` or raise PayloadError naming the path."""
        node = mapping
        path = what
        for key in keys:
            if not isinstance(node, Mapping) or key not in node or node[key] is None:
                raise PayloadError(f"{path} has no {key!r}")
            node = node[key]
            path = f"{path}.{key}"
        return node

    @staticmethod
    def payload_dict(notification: Notification) -> dict:
        if not isinstance(notification.payload, Mapping):
            raise PayloadError(
                f"payload of {notification.event_type} is a "
                f"{type(notification.payload).__name__}, expected an object")
        return dict(notification.payload)

    def version(self, notification: Notification, *candidates: Any) -> int:
        """Version from the first present resource timestamp, else emission time."""
        for ts in candidates:
            if ts:
                try:
                    return versioning.version_of(ts, notification.timestamp)
                except versioning.TimestampError as exc:
                    raise PayloadError(str(exc)) from None
        if not notification.timestamp:
            raise PayloadError("no resource timestamp and no notification timestamp")
        try:
            return versioning.version_of(notification.timestamp)
        except versioning.TimestampError as exc:
            raise PayloadError(str(exc)) from None

    def index(self, notification: Notification, document: dict, version: int
              ) -> DocumentChange:
        """A full document. Adds ``resource_type``; requires ``id`` and ``updated_at``."""
        doc = dict(document)
        doc["resource_type"] = self.resource_type
        if not doc.get("id"):
            raise PayloadError(f"{notification.event_type}: document has no id")
        _string_id(notification, doc["id"])
        doc.setdefault("project_id", None)
        doc.setdefault("updated_at", None)
        return DocumentChange(
            resource_type=self.resource_type, id=str(doc["id"]),
            project_id=doc["project_id"], operation=Operation.INDEX,
            version=version, event_type=notification.event_type,
            timestamp=notification.timestamp, document=doc,
            priority=notification.priority)

    def update(self, notification: Notification, resource_id: str | None,
               project_id: str | None, patch: Patch, version: int,
               locate_by: tuple[str, str] | None = None) -> DocumentChange:
        """Some fields of a stored document (a state change, a member, a rule)."""
        if not resource_id and locate_by is None:
            raise PayloadError(f"{notification.event_type}: no resource id")
        if resource_id:
            _string_id(notification, resource_id)
        return DocumentChange(
            resource_type=self.resource_type, id=str(resource_id or ""),
            project_id=project_id, operation=Operation.UPDATE, version=version,
            event_type=notification.event_type, timestamp=notification.timestamp,
            patch=patch, locate_by=locate_by, priority=notification.priority)

    def delete(self, notification: Notification, resource_id: str | None,
               project_id: str | None, version: int) -> DocumentChange:
        if not resource_id:
            raise PayloadError(f"{notification.event_type}: no resource id")
        _string_id(notification, resource_id)
        return DocumentChange(
            resource_type=self.resource_type, id=str(resource_id),
            project_id=project_id, operation=Operation.DELETE, version=version,
            event_type=notification.event_type, timestamp=notification.timestamp,
            priority=notification.priority)


def _string_id(notification: Notification, value: Any) -> None:
    # str() would make 12345 and "12345" (and every payload saying 12345) one resource.
    if not isinstance(value, str):
        raise PayloadError(f"{notification.event_type}: the resource id "
                           f"{repr(value)[:60]} is not a string")


def exchanges_and_topics(plugins: Iterable[ResourcePlugin]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for plugin in plugins:
        for target in plugin.notification_targets:
            if target not in seen:
                seen.append(target)
    return seen
