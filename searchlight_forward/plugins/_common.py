"""Pure helpers the service plugins share: timestamps, nova_object unwrapping,
the common mapping, and a safety net that turns any malformed payload into
``PayloadError``.
"""
from __future__ import annotations

import copy
import fnmatch
from typing import Any, Iterable, Mapping

from searchlight_forward.model import change, versioning
from searchlight_forward.model.change import DocumentChange, Notification
from searchlight_forward.plugins.base import PayloadError, ResourcePlugin

# -- mapping building blocks ------------------------------------------------------
# Every plugin's mapping is merged into one index mapping, so a field shared by two
# plugins must be spelled with the same block. Use these, never ad-hoc dicts.

KEYWORD = {"type": "keyword"}
TEXT = {"type": "text"}
DATE = {"type": "date"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
LONG = {"type": "long"}
IP = {"type": "ip"}
# Names are searched exactly (filters, sorting) and by words.
NAME = {"type": "keyword", "fields": {"text": {"type": "text"}}}
# Free-form key/value maps (server and volume metadata): one field in the mapping
# however many keys users invent.
FLATTENED = {"type": "flattened"}

# Every top-level field some plugin maps as an object (kept in step with the
# mappings by a unit test). Free-form user keys (Glance image properties) must not
# take these names, or Elasticsearch rejects the document.
OBJECT_FIELDS = frozenset({
    "addresses", "attachments", "external_gateway_info", "fault", "fixed_ips",
    "flavor", "image", "members", "metadata", "security_group_rules",
    "volume_image_metadata",
})

COMMON_MAPPING: dict[str, Any] = {
    "id": KEYWORD,
    "resource_type": KEYWORD,
    "project_id": KEYWORD,
    "tenant_id": KEYWORD,
    "user_id": KEYWORD,
    "name": NAME,
    "description": TEXT,
    "status": KEYWORD,
    "created_at": DATE,
    "updated_at": DATE,
    "tags": KEYWORD,
}


def mapping_with(**fields: Any) -> dict[str, Any]:
    """The common fields plus a plugin's own (which may not redefine them)."""
    clash = sorted(set(fields) & set(COMMON_MAPPING))
    if clash:
        raise ValueError(f"fields {clash} are common; do not redefine them")
    merged = copy.deepcopy(COMMON_MAPPING)
    merged.update(copy.deepcopy(fields))
    return merged


class MappingConflict(ValueError):
    pass


def merge_mappings(plugins: Iterable[ResourcePlugin]) -> dict[str, Any]:
    """One index mapping from every plugin's; a field mapped two ways is an error."""
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for plugin in plugins:
        for field, spec in plugin.mapping.items():
            if field in merged and merged[field] != spec:
                raise MappingConflict(
                    f"field {field!r} is mapped as {merged[field]} by "
                    f"{owner[field]} but as {spec} by {plugin.resource_type}")
            merged.setdefault(field, copy.deepcopy(spec))
            owner.setdefault(field, plugin.resource_type)
    return merged


# -- timestamps -------------------------------------------------------------------

def iso(value: Any, what: str = "timestamp") -> str | None:
    """Normalise any timestamp a service emits to ISO-8601 UTC with a ``Z``.

    Empty values (None, "", Nova's legacy "" for unset dates) give None; anything
    else that does not parse is a PayloadError naming the field.
    """
    if value is None or value == "":
        return None
    try:
        ts = versioning.parse_timestamp(value)
    except versioning.TimestampError as exc:
        raise PayloadError(f"{what}: {exc}") from None
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond:06d}"
    return text + "Z"


def emitted_second(notification: Notification) -> str | None:
    """The emission time floored to the second, for use as a resource timestamp.

    Services that stamp their resources to the second (Nova, Neutron) give versions
    of the form second*1000 + tie-break. When such a resource has no timestamp for
    a change (a Neutron delete, a legacy Nova notification), the emission time is
    the best stand-in; flooring it keeps its version comparable with the versions
    made from the service's own second-resolution stamps, and the tie-break still
    carries the milliseconds.
    """
    if not notification.timestamp:
        return None
    try:
        ts = versioning.parse_timestamp(notification.timestamp)
    except versioning.TimestampError:
        return None
    return ts.replace(microsecond=0).isoformat()


def emitted_iso(notification: Notification) -> str | None:
    """The emission time as a document timestamp (None when absent or garbled)."""
    try:
        return iso(notification.timestamp, "notification timestamp")
    except PayloadError:
        return None


# -- payload shapes ---------------------------------------------------------------

def unwrap_nova_object(value: Any) -> Any:
    """Replace every {"nova_object.data": {...}, "nova_object.name": ...} by its data.

    Nova's versioned payloads nest objects (flavor, ip_addresses, block_devices,
    state_update, fault, ...) in the same envelope, so unwrap recursively.
    """
    if isinstance(value, Mapping):
        if "nova_object.data" in value:
            return unwrap_nova_object(value["nova_object.data"])
        return {k: unwrap_nova_object(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_nova_object(v) for v in value]
    return value


def pick(source: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The given keys of ``source`` that are present (even when null)."""
    return {k: source[k] for k in keys if k in source}


def as_list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{what} is a {type(value).__name__}, expected a list")
    return value


def as_dict(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} is a {type(value).__name__}, expected an object")
    return dict(value)


def key_value_rows(value: Any, what: str) -> dict:
    """Cinder sends metadata as DB rows [{"key", "value", ...}] or as a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    rows = as_list(value, what)
    out = {}
    for row in rows:
        if not isinstance(row, Mapping) or "key" not in row:
            raise PayloadError(f"{what} has a row without 'key': {row!r}")
        out[str(row["key"])] = row.get("value")
    return out


# -- plugin base ------------------------------------------------------------------

class ServicePlugin(ResourcePlugin):
    """A ResourcePlugin whose ``changes`` never raises anything but PayloadError.

    Subclasses implement ``_changes``; explicit checks (``require``) give the best
    messages, and this net catches the rest (a list where an object was expected,
    a number where a string was) with the event type in the message.
    """

    #: fnmatch patterns of event types the plugin claims but deliberately turns
    #: into no change (".start" events, audits, downloads), so the listener can ack
    #: them instead of dead-lettering them as unknown.
    ignored_event_types: tuple[str, ...] = ()

    def ignores(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.ignored_event_types)

    def changes(self, notification: Notification) -> list[DocumentChange]:
        if self.ignores(notification.event_type):
            return []
        try:
            return self._changes(notification)
        except PayloadError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise PayloadError(
                f"{notification.event_type}: malformed payload "
                f"({type(exc).__name__}: {exc})") from None

    def _changes(self, notification: Notification) -> list[DocumentChange]:
        raise NotImplementedError

    def full_patch(self, document: Mapping[str, Any]) -> change.Patch:
        """A patch that writes every field of ``document`` (and the resource type).

        Used where the payload is the whole API resource but the stored document
        holds more (image members): applied to an empty document it still gives a
        complete one.
        """
        fields = dict(document)
        fields["resource_type"] = self.resource_type
        return change.set_fields(fields)


def project_of(resource: Mapping[str, Any]) -> str | None:
    """Services say project_id, tenant_id or both; prefer project_id."""
    return resource.get("project_id") or resource.get("tenant_id") or None

