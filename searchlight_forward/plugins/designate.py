"""Designate zones and recordsets (exchange ``designate``, topic ``notifications``).

Central sends the whole zone or recordset object on every ``dns.zone.*`` and
``dns.recordset.*`` event. Its timestamps look microsecond-precise
(``2016-03-31T05:30:02.000000``) but are stamped to the second, and a new object
has ``updated_at: null``, so versions come from ``updated_at`` falling back to
``created_at``. ``dns.zone.delete`` is sent when deletion *starts* (action DELETE,
status PENDING, ``deleted_at`` still null); no recordset deletes follow for the
zone's recordsets.
"""
from __future__ import annotations

from typing import Any, Mapping

from searchlight_forward.model.change import DocumentChange, Notification
from searchlight_forward.plugins import _common as c
from searchlight_forward.plugins.base import PayloadError

DESIGNATE_TARGETS = (("designate", "notifications"),)


class _DesignatePlugin(c.ServicePlugin):
    #: "zone" or "recordset"
    kind: str = ""
    notification_targets = DESIGNATE_TARGETS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            cls.event_types = (f"dns.{cls.kind}.create", f"dns.{cls.kind}.update",
                               f"dns.{cls.kind}.delete")

    def _changes(self, n: Notification) -> list[DocumentChange]:
        p = self.payload_dict(n)
        resource_id = self.require(p, "id")
        project_id = c.project_of(p)
        if n.event_type == f"dns.{self.kind}.delete":
            version = self.version(n, p.get("deleted_at"), p.get("updated_at"),
                                   p.get("created_at"))
            return [self.delete(n, resource_id, project_id, version)]
        if n.event_type not in self.event_types:
            raise PayloadError(f"{n.event_type}: not a {self.kind} event this plugin knows")
        version = self.version(n, p.get("updated_at"), p.get("created_at"))
        return [self.index(n, self.document(n, p), version)]

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        raise NotImplementedError

    @staticmethod
    def dates(p: Mapping[str, Any]) -> dict:
        created = c.iso(p.get("created_at"), "created_at")
        # A new object's updated_at is null; the API shows it as null too, but
        # every document here needs one: it was last changed when created.
        return {"created_at": created,
                "updated_at": c.iso(p.get("updated_at"), "updated_at") or created}


class ZonePlugin(_DesignatePlugin):
    resource_type = "OS::Designate::Zone"
    kind = "zone"
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "email": c.KEYWORD,
        "ttl": c.INTEGER,
        "serial": c.LONG,
        "type": c.KEYWORD,
        "action": c.KEYWORD,
        "version": c.INTEGER,
        "pool_id": c.KEYWORD,
        "masters": c.KEYWORD,
        "transferred_at": c.DATE,
    })

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        project_id = c.project_of(p)
        doc = c.pick(p, "id", "name", "email", "ttl", "serial", "refresh", "retry",
                     "expire", "minimum", "status", "action", "type", "description",
                     "masters", "pool_id", "version", "attributes")
        doc.update(project_id=project_id, tenant_id=project_id,
                   transferred_at=c.iso(p.get("transferred_at"), "transferred_at"),
                   **self.dates(p))
        return doc


class RecordSetPlugin(_DesignatePlugin):
    resource_type = "OS::Designate::RecordSet"
    kind = "recordset"
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "zone_id": c.KEYWORD,
        "zone_name": c.KEYWORD,
        "type": c.KEYWORD,
        "ttl": c.INTEGER,
        "records": c.KEYWORD,
        "action": c.KEYWORD,
        "version": c.INTEGER,
    })

    def document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        project_id = c.project_of(p)
        records = c.as_list(p.get("records"), "records")
        doc = c.pick(p, "id", "name", "type", "ttl", "zone_id", "zone_name",
                     "description", "version", "status", "action")
        doc.update(
            project_id=project_id, tenant_id=project_id,
            # The API lists record data strings; the payload has Record objects.
            records=[r.get("data") if isinstance(r, Mapping) else r for r in records],
            **self.dates(p))
        if "status" not in p:
            # Older recordset payloads have no status: the records carry it.
            statuses = {r.get("status") for r in records if isinstance(r, Mapping)}
            doc["status"] = statuses.pop() if len(statuses) == 1 else \
                ("PENDING" if "PENDING" in statuses else None)
        return doc
