"""Nova servers and flavors.

Servers arrive two ways, both on exchange ``nova``:

* versioned ``instance.*`` on topic ``versioned_notifications``: every payload is an
  InstancePayload (wrapped as ``nova_object``) carrying the whole server, so each is
  an INDEX (or a DELETE once the instance is deleted);
* legacy ``compute.instance.*`` on topic ``notifications``: a flat dict without
  ``updated_at``, power state, key name or block devices, so each is an UPDATE
  patch of the fields it does carry.

Nova's versioned payloads stamp dates to the second (``2012-10-29T13:42:11Z``).
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

from searchlight_forward.model.change import DocumentChange, Notification, set_fields
from searchlight_forward.plugins import _common as c
from searchlight_forward.plugins.base import PayloadError

NOVA = "nova"

# vm_state -> {task_state: API status}, as nova/api/openstack/common.py maps them.
_RESIZING = {"resize_prep": "RESIZE", "resize_migrating": "RESIZE",
             "resize_migrated": "RESIZE", "resize_finish": "RESIZE"}
_REBUILDING = {"rebuilding": "REBUILD", "rebuild_block_device_mapping": "REBUILD",
               "rebuild_spawning": "REBUILD"}
_STATUS_BY_STATE: dict[str, tuple[str, dict[str, str]]] = {
    "active": ("ACTIVE", {
        "rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT",
        "rebooting_hard": "HARD_REBOOT", "reboot_pending_hard": "HARD_REBOOT",
        "reboot_started_hard": "HARD_REBOOT", "updating_password": "PASSWORD",
        "migrating": "MIGRATING", **_REBUILDING, **_RESIZING}),
    "building": ("BUILD", {}),
    "stopped": ("SHUTOFF", {**_RESIZING, **_REBUILDING}),
    "resized": ("VERIFY_RESIZE", {"resize_reverting": "REVERT_RESIZE"}),
    "paused": ("PAUSED", {"migrating": "MIGRATING"}),
    "suspended": ("SUSPENDED", {}),
    "rescued": ("RESCUE", {}),
    "error": ("ERROR", dict(_REBUILDING)),
    "deleted": ("DELETED", {}),
    "soft-delete": ("SOFT_DELETED", {}),
    "shelved": ("SHELVED", {}),
    "shelved_offloaded": ("SHELVED_OFFLOADED", {}),
}

# Versioned payloads name the power state; the API shows Nova's integer.
_POWER_STATE = {"pending": 0, "running": 1, "paused": 3, "shutdown": 4,
                "crashed": 6, "suspended": 7}


def api_status(vm_state: str | None, task_state: str | None) -> str:
    """The server status the API would show for this vm_state/task_state."""
    default, by_task = _STATUS_BY_STATE.get(vm_state or "", ("UNKNOWN", {}))
    return by_task.get(task_state or "", default)


def host_id(project_id: str | None, host: str | None) -> str:
    """The API's obfuscated ``hostId``: sha224(project_id + host), "" when unplaced."""
    if not host:
        return ""
    return hashlib.sha224(f"{project_id or ''}{host}".encode()).hexdigest()


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


_IMAGE_URL_ID = re.compile(r"([0-9a-fA-F-]{32,36})/?$")


def _image_id_from_url(url: Any) -> str:
    """Legacy payloads give ``image_ref_url`` (http://glance/images/<id>) only."""
    if not url or not isinstance(url, str):
        return ""
    match = _IMAGE_URL_ID.search(url)
    return match.group(1) if match else ""


class ServerPlugin(c.ServicePlugin):
    resource_type = "OS::Nova::Server"
    notification_targets = ((NOVA, "versioned_notifications"), (NOVA, "notifications"))
    event_types = ("instance.*", "compute.instance.*")
    # Audit records: usage accounting, not resource state. instance.exists is
    # also sent for instances deleted during the audit period.
    ignored_event_types = ("instance.exists", "compute.instance.exists")
    admin_only_fields = ("OS-EXT-SRV-ATTR:*",)
    mapping = c.mapping_with(**{
        "image": {"properties": {"id": c.KEYWORD}},
        "flavor": {"properties": {"id": c.KEYWORD, "original_name": c.KEYWORD,
                                  "vcpus": c.INTEGER, "ram": c.INTEGER,
                                  "disk": c.INTEGER, "ephemeral": c.INTEGER,
                                  "swap": c.INTEGER}},
        "addresses": c.FLATTENED,
        "metadata": c.FLATTENED,
        "key_name": c.KEYWORD,
        "hostId": c.KEYWORD,
        "locked": c.BOOLEAN,
        "created": c.DATE,
        "updated": c.DATE,
        "OS-EXT-AZ:availability_zone": c.KEYWORD,
        "OS-EXT-STS:vm_state": c.KEYWORD,
        "OS-EXT-STS:task_state": c.KEYWORD,
        "OS-EXT-STS:power_state": c.INTEGER,
        "OS-EXT-SRV-ATTR:host": c.KEYWORD,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": c.KEYWORD,
        "OS-EXT-SRV-ATTR:instance_name": c.KEYWORD,
        "OS-SRV-USG:launched_at": c.DATE,
        "OS-SRV-USG:terminated_at": c.DATE,
    })

    def _changes(self, n: Notification) -> list[DocumentChange]:
        payload = self.payload_dict(n)
        if n.event_type.startswith("compute.instance."):
            return [self._legacy(n, payload)]
        return [self._versioned(n, payload)]

    # -- versioned: the whole server --------------------------------------------

    def _versioned(self, n: Notification, payload: dict) -> DocumentChange:
        if "nova_object.data" not in payload:
            raise PayloadError(
                f"{n.event_type}: payload is not a nova_object (no 'nova_object.data')")
        data = c.as_dict(c.unwrap_nova_object(payload), "payload.nova_object.data")
        server_id = self.require(data, "uuid", what="payload.nova_object.data")
        project_id = data.get("tenant_id")
        if n.event_type == "instance.delete.end" or data.get("state") == "deleted":
            version = self.version(n, data.get("deleted_at"), data.get("updated_at"),
                                   c.emitted_second(n))
            return self.delete(n, server_id, project_id, version)
        # Older InstancePayloads (< 1.6 or so) have no updated_at: fall back to the
        # emission second so versions stay comparable with the stamped ones.
        version = self.version(n, data.get("updated_at"), c.emitted_second(n))
        return self.index(n, self._server_document(n, data), version)

    def _server_document(self, n: Notification, p: Mapping[str, Any]) -> dict:
        project_id = p.get("tenant_id")
        flavor = c.as_dict(p.get("flavor"), "flavor")
        updated = c.iso(p.get("updated_at"), "updated_at") or c.emitted_iso(n)
        created = c.iso(p.get("created_at"), "created_at")
        doc = {
            "id": p["uuid"],
            "name": p.get("display_name"),
            "description": p.get("display_description"),
            "status": api_status(p.get("state"), p.get("task_state")),
            "tenant_id": project_id,
            "project_id": project_id,
            "user_id": p.get("user_id"),
            # Boot-from-volume servers show "" for image in the API; "" cannot be
            # indexed into an object field, so the document says null.
            "image": {"id": p["image_uuid"]} if p.get("image_uuid") else None,
            "flavor": _api_flavor(flavor),
            "addresses": _addresses_from_ip_payloads(
                c.as_list(p.get("ip_addresses"), "ip_addresses")),
            "key_name": p.get("key_name"),
            "metadata": c.as_dict(p.get("metadata"), "metadata"),
            "tags": c.as_list(p.get("tags"), "tags"),
            "locked": p.get("locked"),
            "locked_reason": p.get("locked_reason"),
            "progress": p.get("progress"),
            "hostId": host_id(project_id, p.get("host")),
            "created": created,
            "updated": updated,
            "created_at": created,
            "updated_at": updated,
            "OS-DCF:diskConfig": p.get("auto_disk_config"),
            "OS-EXT-AZ:availability_zone": p.get("availability_zone"),
            "OS-EXT-STS:vm_state": p.get("state"),
            "OS-EXT-STS:task_state": p.get("task_state"),
            "OS-EXT-STS:power_state": _POWER_STATE.get(p.get("power_state")),
            "OS-EXT-SRV-ATTR:host": p.get("host"),
            "OS-EXT-SRV-ATTR:hypervisor_hostname": p.get("node"),
            "OS-EXT-SRV-ATTR:hostname": p.get("host_name"),
            "OS-EXT-SRV-ATTR:reservation_id": p.get("reservation_id"),
            "OS-EXT-SRV-ATTR:kernel_id": p.get("kernel_id"),
            "OS-EXT-SRV-ATTR:ramdisk_id": p.get("ramdisk_id"),
            "OS-SRV-USG:launched_at": c.iso(p.get("launched_at"), "launched_at"),
            "OS-SRV-USG:terminated_at": c.iso(p.get("terminated_at"), "terminated_at"),
            "os-extended-volumes:volumes_attached": [
                {"id": bdm.get("volume_id"),
                 "delete_on_termination": bdm.get("delete_on_termination", False)}
                for bdm in c.as_list(p.get("block_devices"), "block_devices")],
        }
        fault = p.get("fault")
        if isinstance(fault, Mapping):
            # The traceback stays out: the API shows fault details to admins only.
            doc["fault"] = {"message": fault.get("exception_message"),
                            "exception": fault.get("exception")}
        return doc

    # -- legacy: a patch of the fields the payload carries ----------------------

    def _legacy(self, n: Notification, p: dict) -> DocumentChange:
        server_id = self.require(p, "instance_id")
        project_id = p.get("tenant_id")
        if n.event_type == "compute.instance.delete.end" or p.get("state") == "deleted":
            version = self.version(n, p.get("deleted_at"), p.get("terminated_at"),
                                   c.emitted_second(n))
            return self.delete(n, server_id, project_id, version)
        # No updated_at in legacy payloads: the emission second stands in.
        version = self.version(n, c.emitted_second(n))
        return self.update(n, server_id, project_id,
                           set_fields(self._legacy_fields(n, p)), version)

    def _legacy_fields(self, n: Notification, p: Mapping[str, Any]) -> dict:
        project_id = p.get("tenant_id")
        fields: dict[str, Any] = {
            "id": p["instance_id"], "resource_type": self.resource_type,
            "updated_at": c.emitted_iso(n),
        }
        if "tenant_id" in p:
            fields.update(tenant_id=project_id, project_id=project_id)
        rename = {"display_name": "name", "user_id": "user_id",
                  "availability_zone": "OS-EXT-AZ:availability_zone",
                  "host": "OS-EXT-SRV-ATTR:host",
                  "node": "OS-EXT-SRV-ATTR:hypervisor_hostname",
                  "hostname": "OS-EXT-SRV-ATTR:hostname",
                  "reservation_id": "OS-EXT-SRV-ATTR:reservation_id",
                  "kernel_id": "OS-EXT-SRV-ATTR:kernel_id",
                  "ramdisk_id": "OS-EXT-SRV-ATTR:ramdisk_id",
                  "access_ip_v4": "accessIPv4", "access_ip_v6": "accessIPv6"}
        for src, dst in rename.items():
            if src in p:
                fields[dst] = _none_if_empty(p[src])
        if "metadata" in p:
            fields["metadata"] = c.as_dict(p["metadata"], "metadata")
        if "progress" in p:
            fields["progress"] = p["progress"] if p["progress"] != "" else 0
        for src, dst in (("created_at", "created"), ("launched_at", "OS-SRV-USG:launched_at"),
                         ("terminated_at", "OS-SRV-USG:terminated_at")):
            if src in p:
                fields[dst] = c.iso(p[src], src)
        if "created" in fields:
            fields["created_at"] = fields["created"]
        if "state" in p:
            # compute.instance.update says new_task_state; every other event puts
            # the current task state in state_description ("" when none).
            task = p["new_task_state"] if "new_task_state" in p \
                else _none_if_empty(p.get("state_description"))
            fields.update({"OS-EXT-STS:vm_state": p["state"],
                           "OS-EXT-STS:task_state": task,
                           "status": api_status(p["state"], task)})
        if "image_ref_url" in p:
            image_id = _image_id_from_url(p["image_ref_url"])
            fields["image"] = {"id": image_id} if image_id else None
        if "instance_flavor_id" in p or "instance_type" in p:
            fields["flavor"] = {
                "id": p.get("instance_flavor_id"), "original_name": p.get("instance_type"),
                "vcpus": p.get("vcpus"), "ram": p.get("memory_mb"),
                "disk": p.get("root_gb"), "ephemeral": p.get("ephemeral_gb")}
        if "fixed_ips" in p:
            fields["addresses"] = _addresses_from_fixed_ips(
                c.as_list(p["fixed_ips"], "fixed_ips"))
        if "host" in p:
            fields["hostId"] = host_id(project_id, p.get("host"))
        return fields


def _api_flavor(f: Mapping[str, Any]) -> dict:
    """The API's embedded flavor (microversion 2.47+) plus the flavor id."""
    return {"id": f.get("flavorid"), "original_name": f.get("name"),
            "vcpus": f.get("vcpus"), "ram": f.get("memory_mb"),
            "disk": f.get("root_gb"), "ephemeral": f.get("ephemeral_gb"),
            "swap": f.get("swap"), "extra_specs": f.get("extra_specs") or {}}


def _addresses_from_ip_payloads(ips: list) -> dict:
    """IpPayload list -> the API's {network label: [{addr, version, ...}]}.

    Versioned payloads carry fixed IPs only; floating IPs never appear here.
    """
    addresses: dict[str, list] = {}
    for ip in ips:
        ip = c.as_dict(ip, "ip_addresses[]")
        addresses.setdefault(ip.get("label") or "", []).append({
            "addr": ip.get("address"), "version": ip.get("version"),
            "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": ip.get("mac")})
    return addresses


def _addresses_from_fixed_ips(ips: list) -> dict:
    """Legacy fixed_ips (with nested floating_ips) -> the API's addresses."""
    addresses: dict[str, list] = {}
    for ip in ips:
        ip = c.as_dict(ip, "fixed_ips[]")
        entries = addresses.setdefault(ip.get("label") or "", [])
        mac = ip.get("vif_mac")
        entries.append({"addr": ip.get("address"), "version": ip.get("version"),
                        "OS-EXT-IPS:type": ip.get("type") or "fixed",
                        "OS-EXT-IPS-MAC:mac_addr": mac})
        for fip in c.as_list(ip.get("floating_ips"), "fixed_ips[].floating_ips"):
            fip = c.as_dict(fip, "floating_ips[]")
            entries.append({"addr": fip.get("address"), "version": fip.get("version"),
                            "OS-EXT-IPS:type": "floating",
                            "OS-EXT-IPS-MAC:mac_addr": mac})
    return addresses


class FlavorPlugin(c.ServicePlugin):
    """Versioned ``flavor.create/update/delete``.

    FlavorPayload has no timestamps and no owner: versions come from the emission
    time, and ``project_id`` is None (flavors are global; private ones list their
    projects in ``tenant_access``).
    """

    resource_type = "OS::Nova::Flavor"
    notification_targets = ((NOVA, "versioned_notifications"),)
    event_types = ("flavor.create", "flavor.update", "flavor.delete")
    admin_only_fields = ("tenant_access",)
    mapping = c.mapping_with(**{
        "ram": c.INTEGER, "vcpus": c.INTEGER, "disk": c.INTEGER,
        "OS-FLV-EXT-DATA:ephemeral": c.INTEGER,
        "os-flavor-access:is_public": c.BOOLEAN,
        "OS-FLV-DISABLED:disabled": c.BOOLEAN,
        "tenant_access": c.KEYWORD,
    })

    def _changes(self, n: Notification) -> list[DocumentChange]:
        payload = self.payload_dict(n)
        if "nova_object.data" not in payload:
            raise PayloadError(
                f"{n.event_type}: payload is not a nova_object (no 'nova_object.data')")
        f = c.as_dict(c.unwrap_nova_object(payload), "payload.nova_object.data")
        flavor_id = self.require(f, "flavorid", what="payload.nova_object.data")
        version = self.version(n)  # no resource timestamp at all
        if n.event_type == "flavor.delete":
            return [self.delete(n, flavor_id, None, version)]
        return [self.index(n, {
            "id": flavor_id,
            "name": f.get("name"),
            "description": f.get("description"),
            "ram": f.get("memory_mb"),
            "vcpus": f.get("vcpus"),
            "disk": f.get("root_gb"),
            "swap": f.get("swap"),
            "rxtx_factor": f.get("rxtx_factor"),
            "OS-FLV-EXT-DATA:ephemeral": f.get("ephemeral_gb"),
            "os-flavor-access:is_public": f.get("is_public"),
            "OS-FLV-DISABLED:disabled": f.get("disabled"),
            "extra_specs": f.get("extra_specs") or {},
            "tenant_access": c.as_list(f.get("projects"), "projects"),
            "project_id": None,
            "updated_at": c.emitted_iso(n),
        }, version)]
