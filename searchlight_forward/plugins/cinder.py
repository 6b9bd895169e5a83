"""Cinder volumes and snapshots.

Cinder's usage payloads (cinder/volume/volume_utils.py _usage_from_volume and
_usage_from_snapshot) carry the whole resource but no ``updated_at``: only
``created_at`` (and ``launched_at`` for volumes), so every version here comes from
the emission time. Names differ from the API: ``volume_id``/``snapshot_id`` for
``id``, ``display_name`` for ``name``, ``volume_type`` holds the type's *id*,
``volume_attachment`` rows for ``attachments``, and snapshot ``metadata`` is
``str(dict)`` ("" when empty).

Cinder historically did not set ``control_exchange``, so depending on release and
configuration its notifications are on exchange ``cinder`` or the oslo.messaging
default ``openstack``: subscribe to both.
"""
from __future__ import annotations

import ast
from typing import Any, Mapping

from searchlight_forward.model.change import DocumentChange, Notification
from searchlight_forward.plugins import _common as c
from searchlight_forward.plugins.base import PayloadError

CINDER_TARGETS = (("cinder", "notifications"), ("openstack", "notifications"))


class _CinderPlugin(c.ServicePlugin):
    #: "volume" or "snapshot"
    kind: str = ""
    notification_targets = CINDER_TARGETS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            cls.event_types = (f"{cls.kind}.*",)
            # .start events precede the change; .exists/.usage are periodic audits
            # that are also sent for resources deleted during the audit period.
            cls.ignored_event_types = (f"{cls.kind}.*.start", f"{cls.kind}.exists",
                                       f"{cls.kind}.usage")

    def _changes(self, n: Notification) -> list[DocumentChange]:
        payload = self.payload_dict(n)
        resource_id = self.require(payload, f"{self.kind}_id")
        project_id = payload.get("tenant_id")
        # No resource timestamp moves with a change: the emission time orders them.
        version = self.version(n)
        if n.event_type == f"{self.kind}.delete.end":
            return [self.delete(n, resource_id, project_id, version)]
        # .end and .error events carry the resource as it now is.
        if not (n.event_type.endswith((".end", ".error"))
                or n.event_type in self.state_events):
            raise PayloadError(f"{n.event_type}: not a {self.kind} event this plugin knows")
        return [self.index(n, self.document(n, payload), version)]

    state_events: tuple[str, ...] = ()

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        raise NotImplementedError


class VolumePlugin(_CinderPlugin):
    resource_type = "OS::Cinder::Volume"
    kind = "volume"
    # Sent once, after the retype, without .start/.end.
    state_events = ("volume.retype",)
    admin_only_fields = ("os-vol-host-attr:*", "os-vol-mig-status-attr:*",
                         "os-vol-tenant-attr:*", "os-volume-replication:*",
                         "migration_status")
    mapping = c.mapping_with(**{
        "size": c.LONG,
        "availability_zone": c.KEYWORD,
        "volume_type_id": c.KEYWORD,
        "snapshot_id": c.KEYWORD,
        "replication_status": c.KEYWORD,
        "launched_at": c.DATE,
        "metadata": c.FLATTENED,
        "volume_image_metadata": c.FLATTENED,
        "attachments": {"type": "nested", "properties": {
            "server_id": c.KEYWORD, "attachment_id": c.KEYWORD,
            "host_name": c.KEYWORD, "device": c.KEYWORD, "attached_at": c.DATE}},
        "os-vol-host-attr:host": c.KEYWORD,
        "os-vol-tenant-attr:tenant_id": c.KEYWORD,
    })

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        volume_id = p["volume_id"]
        project_id = p.get("tenant_id")
        doc = {
            "id": volume_id,
            "name": p.get("display_name"),
            "description": p.get("display_description"),
            "status": p.get("status"),
            "size": p.get("size"),
            "availability_zone": p.get("availability_zone"),
            "volume_type_id": p.get("volume_type"),
            "snapshot_id": p.get("snapshot_id"),
            "user_id": p.get("user_id"),
            "project_id": project_id,
            "tenant_id": project_id,
            "metadata": c.key_value_rows(p.get("metadata"), "metadata"),
            "attachments": [_attachment(volume_id, row) for row in
                            c.as_list(p.get("volume_attachment"), "volume_attachment")],
            "replication_status": p.get("replication_status"),
            "created_at": c.iso(p.get("created_at"), "created_at"),
            "launched_at": c.iso(p.get("launched_at"), "launched_at"),
            # The moment this state was reported: Cinder sends no updated_at.
            "updated_at": c.emitted_iso(n),
            "os-vol-tenant-attr:tenant_id": project_id,
            "os-vol-host-attr:host": p.get("host"),
            "os-volume-replication:extended_status": p.get("replication_extended_status"),
            "os-volume-replication:driver_data": p.get("replication_driver_data"),
        }
        if "glance_metadata" in p:
            doc["volume_image_metadata"] = c.key_value_rows(p["glance_metadata"],
                                                            "glance_metadata")
        return doc


def _attachment(volume_id: str, row: Any) -> dict:
    """A volume_attachment DB row -> the API's attachment (whose id is the volume's)."""
    row = c.as_dict(row, "volume_attachment[]")
    return {"id": volume_id, "volume_id": volume_id,
            "attachment_id": row.get("id"), "server_id": row.get("instance_uuid"),
            "host_name": row.get("attached_host"), "device": row.get("mountpoint"),
            "attached_at": c.iso(row.get("attach_time"), "attach_time")}


class SnapshotPlugin(_CinderPlugin):
    resource_type = "OS::Cinder::Snapshot"
    kind = "snapshot"
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "size": c.LONG,
        "volume_id": c.KEYWORD,
        "metadata": c.FLATTENED,
        "os-extended-snapshot-attributes:project_id": c.KEYWORD,
    })

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        project_id = p.get("tenant_id")
        return {
            "id": p["snapshot_id"],
            "name": p.get("display_name"),
            "description": p.get("display_description"),
            "status": p.get("status"),
            "size": p.get("volume_size"),
            "volume_id": p.get("volume_id"),
            "user_id": p.get("user_id"),
            "project_id": project_id,
            "tenant_id": project_id,
            "metadata": _snapshot_metadata(p.get("metadata")),
            "created_at": c.iso(p.get("created_at"), "created_at"),
            "updated_at": c.emitted_iso(n),
            "os-extended-snapshot-attributes:project_id": project_id,
        }


def _snapshot_metadata(value: Any) -> dict:
    """Snapshot metadata arrives as ``str(dict)`` ("{'k': 'v'}", or "" when empty)."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)  # a Python literal, never code
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise PayloadError(f"metadata is not a dict literal: {value[:80]!r}") from None
        if isinstance(parsed, dict):
            return parsed
    raise PayloadError(f"metadata is a {type(value).__name__}, expected a dict")
