"""Glance images (exchange ``glance``, topic ``notifications``).

Image payloads (glance/notifier.py format_image_notification) carry the whole image
but not its members, which arrive separately as ``image.member.*``. So only
``image.create`` (a new image has no members) is an INDEX; the other image events
write every image field with a patch, keeping the ``members`` list the member
events maintain. Glance stamps ``created_at``/``updated_at``/``deleted_at`` to the
second (``2015-08-06T12:48:14Z``).
"""
from __future__ import annotations

from typing import Any, Mapping

from searchlight_forward.model.change import (DocumentChange, Notification, chain,
                                        remove_item, set_fields, upsert_item)
from searchlight_forward.plugins import _common as c

GLANCE = "glance"

# Payload keys that are not API fields (v1 leftovers, soft-delete markers).
_NOT_API = {"is_public", "deleted", "deleted_at", "properties", "location",
            "backend", "os_glance_importing_to_stores", "os_glance_failed_import"}


class ImagePlugin(c.ServicePlugin):
    item_lists = {"members": "member_id"}
    resource_type = "OS::Glance::Image"
    notification_targets = ((GLANCE, "notifications"),)
    event_types = ("image.create", "image.update", "image.upload", "image.activate",
                   "image.prepare", "image.delete", "image.member.create",
                   "image.member.update", "image.member.delete", "image.send")
    # image.send accounts a download (bytes_sent, receiver): no image state.
    ignored_event_types = ("image.send",)
    # Nothing in the v2 image API is admin-only; visibility is by owner/members.
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "owner": c.KEYWORD,
        "visibility": c.KEYWORD,
        "protected": c.BOOLEAN,
        "os_hidden": c.BOOLEAN,
        "checksum": c.KEYWORD,
        "os_hash_algo": c.KEYWORD,
        "os_hash_value": c.KEYWORD,
        "disk_format": c.KEYWORD,
        "container_format": c.KEYWORD,
        "size": c.LONG,
        "virtual_size": c.LONG,
        "min_ram": c.INTEGER,
        "min_disk": c.INTEGER,
        "members": {"type": "nested", "properties": {
            "member_id": c.KEYWORD, "status": c.KEYWORD,
            "created_at": c.DATE, "updated_at": c.DATE}},
    })

    def _changes(self, n: Notification) -> list[DocumentChange]:
        if n.priority.lower() == "error" and isinstance(n.payload, str):
            # A failed upload is reported as image.upload with an error *string*
            # ("Image storage media is full: ..."): the image did not change.
            return []
        payload = self.payload_dict(n)
        if n.event_type.startswith("image.member."):
            return [self._member_change(n, payload)]
        image_id = self.require(payload, "id")
        project_id = payload.get("owner")
        if n.event_type == "image.delete":
            version = self.version(n, payload.get("deleted_at"),
                                   payload.get("updated_at"), payload.get("created_at"))
            return [self.delete(n, image_id, project_id, version)]
        version = self.version(n, payload.get("updated_at"), payload.get("created_at"))
        doc = self._image_document(n, payload)
        if n.event_type == "image.create":
            doc["members"] = []
            return [self.index(n, doc, version)]
        return [self.update(n, image_id, project_id, self.full_patch(doc), version)]

    def _image_document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        # The v2 API shows custom properties as top-level fields; core fields win,
        # and a property named like another resource's object field (a "flavor"
        # property on a snapshot) stays out, or the shared index would reject it.
        doc: dict[str, Any] = {}
        for key, value in c.as_dict(p.get("properties"), "properties").items():
            if key not in c.OBJECT_FIELDS:
                doc[key] = value
        for key, value in p.items():
            if key not in _NOT_API:
                doc[key] = value
        visibility = p.get("visibility")
        if visibility is None and "is_public" in p:
            visibility = "public" if p["is_public"] else "private"
        doc.update({
            "visibility": visibility,
            "tags": c.as_list(p.get("tags"), "tags"),
            "project_id": p.get("owner"),
            "created_at": c.iso(p.get("created_at"), "created_at"),
            "updated_at": c.iso(p.get("updated_at"), "updated_at") or c.emitted_iso(n),
        })
        return doc

    def _member_change(self, n: Notification, p: dict) -> DocumentChange:
        # Member payloads name the image and the member project, never the owner.
        image_id = self.require(p, "image_id")
        member_id = self.require(p, "member_id")
        if n.event_type == "image.member.delete":
            version = self.version(n, p.get("deleted_at"), p.get("updated_at"))
            patch = remove_item("members", "member_id", member_id)
        else:
            version = self.version(n, p.get("updated_at"), p.get("created_at"))
            patch = upsert_item("members", "member_id", {
                "member_id": member_id, "status": p.get("status"),
                "created_at": c.iso(p.get("created_at"), "created_at"),
                "updated_at": c.iso(p.get("updated_at"), "updated_at")})
        # The id keeps a patch applied to an empty document recognisable.
        return self.update(n, image_id, None, chain(
            set_fields({"id": image_id, "resource_type": self.resource_type}), patch),
            version)
