"""Neutron networks, ports, subnets, routers, floating IPs and security groups
(exchange ``neutron``, topic ``notifications``).

Neutron's API layer sends ``<resource>.create.end`` and ``.update.end`` with the
whole resource under the resource name ({"port": {...}}), so those are INDEXes.
``.delete.end`` carries ``<resource>_id``; newer releases add the resource as it
was before deletion, with its last ``updated_at`` but no deletion time, so deletes
are versioned from the emission time. Timestamps are stamped to the second
(``2016-03-14T00:44:57Z``). Internally created ports (DHCP, router interfaces)
and agent status changes produce no notification at all.
"""
from __future__ import annotations

from typing import Any, Mapping

from searchlight_forward.model.change import (DocumentChange, Notification, chain,
                                        remove_item, set_fields, upsert_item)
from searchlight_forward.plugins import _common as c
from searchlight_forward.plugins.base import PayloadError

NEUTRON = "neutron"


class NeutronPlugin(c.ServicePlugin):
    """One Neutron resource: ``<key>.create.end/.update.end/.delete.end``."""

    #: the payload key and event-type prefix, e.g. "port"
    key: str = ""
    notification_targets = ((NEUTRON, "notifications"),)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.key:
            cls.event_types = (f"{cls.key}.*",) + cls.extra_event_types
            # The API also announces each request as ".start" with the request
            # body only: nothing has changed yet.
            cls.ignored_event_types = (f"{cls.key}.*.start",) + cls.extra_ignored

    extra_event_types: tuple[str, ...] = ()
    extra_ignored: tuple[str, ...] = ()

    def _changes(self, n: Notification) -> list[DocumentChange]:
        payload = self.payload_dict(n)
        action = n.event_type[len(self.key) + 1:]
        if action in ("create.end", "update.end"):
            resource = c.as_dict(self.require(payload, self.key), f"payload.{self.key}")
            return [self._index(n, resource)]
        if action == "delete.end":
            return [self._delete(n, payload)]
        raise PayloadError(f"{n.event_type}: not a {self.key} event this plugin knows")

    def _index(self, n: Notification, resource: dict) -> DocumentChange:
        self.require(resource, "id", what=f"payload.{self.key}")
        version = self.version(n, resource.get("updated_at"), resource.get("created_at"),
                               c.emitted_second(n))
        return self.index(n, self.document(n, resource), version)

    def document(self, n: Notification, resource: Mapping[str, Any]) -> dict:
        """The API resource as sent, with both project fields and ISO dates."""
        doc = dict(resource)
        project_id = c.project_of(resource)
        doc["project_id"] = project_id
        doc["tenant_id"] = resource.get("tenant_id", project_id)
        doc["created_at"] = c.iso(resource.get("created_at"), "created_at")
        # Releases without the timestamp extension send no dates at all.
        doc["updated_at"] = c.iso(resource.get("updated_at"), "updated_at") \
            or c.emitted_iso(n)
        return doc

    def _delete(self, n: Notification, payload: dict) -> DocumentChange:
        before = payload.get(self.key)
        before = before if isinstance(before, Mapping) else {}
        resource_id = payload.get(f"{self.key}_id") or before.get("id")
        if not resource_id:
            raise PayloadError(f"payload has no {self.key + '_id'!r}")
        # The resource's own updated_at is that of its last update: a delete
        # versioned from it would tie with that update. Use the emission second.
        version = self.version(n, c.emitted_second(n))
        return self.delete(n, resource_id, c.project_of(before), version)


_FIXED_IPS = {"type": "nested", "properties": {"subnet_id": c.KEYWORD,
                                               "ip_address": c.IP}}


class NetPlugin(NeutronPlugin):
    resource_type = "OS::Neutron::Net"
    key = "network"
    admin_only_fields = ("provider:*", "segments")
    mapping = c.mapping_with(**{
        "admin_state_up": c.BOOLEAN,
        "shared": c.BOOLEAN,
        "router:external": c.BOOLEAN,
        "port_security_enabled": c.BOOLEAN,
        "mtu": c.INTEGER,
        "subnets": c.KEYWORD,
        "availability_zones": c.KEYWORD,
        "revision_number": c.LONG,
        "provider:network_type": c.KEYWORD,
        "provider:physical_network": c.KEYWORD,
        "provider:segmentation_id": c.INTEGER,
    })


class PortPlugin(NeutronPlugin):
    resource_type = "OS::Neutron::Port"
    key = "port"
    admin_only_fields = ("binding:*",)
    mapping = c.mapping_with(**{
        "network_id": c.KEYWORD,
        "mac_address": c.KEYWORD,
        "device_id": c.KEYWORD,
        "device_owner": c.KEYWORD,
        "admin_state_up": c.BOOLEAN,
        "port_security_enabled": c.BOOLEAN,
        "fixed_ips": _FIXED_IPS,
        "security_groups": c.KEYWORD,
        "dns_name": c.KEYWORD,
        "revision_number": c.LONG,
        "binding:host_id": c.KEYWORD,
        "binding:vif_type": c.KEYWORD,
        "binding:vnic_type": c.KEYWORD,
    })


class SubnetPlugin(NeutronPlugin):
    resource_type = "OS::Neutron::Subnet"
    key = "subnet"
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "network_id": c.KEYWORD,
        "cidr": c.KEYWORD,
        "gateway_ip": c.IP,
        "ip_version": c.INTEGER,
        "enable_dhcp": c.BOOLEAN,
        "subnetpool_id": c.KEYWORD,
        "ipv6_address_mode": c.KEYWORD,
        "ipv6_ra_mode": c.KEYWORD,
        "dns_nameservers": c.KEYWORD,
        "revision_number": c.LONG,
    })


class RouterPlugin(NeutronPlugin):
    resource_type = "OS::Neutron::Router"
    key = "router"
    # router.interface.create/delete name a port the API layer never announced
    # (ports made inside the plugin send no port.create.end); the router's own
    # fields do not change.
    extra_ignored = ("router.interface.*",)
    # Neutron's policy shows these to admins only.
    admin_only_fields = ("distributed", "ha")
    mapping = c.mapping_with(**{
        "admin_state_up": c.BOOLEAN,
        "external_gateway_info": {"properties": {
            "network_id": c.KEYWORD, "enable_snat": c.BOOLEAN,
            "external_fixed_ips": _FIXED_IPS}},
        "distributed": c.BOOLEAN,
        "ha": c.BOOLEAN,
        "availability_zones": c.KEYWORD,
        "revision_number": c.LONG,
    })


class FloatingIPPlugin(NeutronPlugin):
    resource_type = "OS::Neutron::FloatingIP"
    key = "floatingip"
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "floating_ip_address": c.IP,
        "floating_network_id": c.KEYWORD,
        "fixed_ip_address": c.IP,
        "port_id": c.KEYWORD,
        "router_id": c.KEYWORD,
        "dns_name": c.KEYWORD,
        "revision_number": c.LONG,
    })


class SecurityGroupPlugin(NeutronPlugin):
    item_lists = {"security_group_rules": "id"}
    """Security groups, and their rules as a list inside the group's document.

    ``security_group_rule.create.end`` carries the rule with its
    ``security_group_id``. ``security_group_rule.delete.end`` carries
    ``security_group_rule_id``; only newer releases add the rule itself, so without
    it the indexer must find the group by ``security_group_rules.id``.
    """

    resource_type = "OS::Neutron::SecurityGroup"
    key = "security_group"
    extra_event_types = ("security_group_rule.*",)
    extra_ignored = ("security_group_rule.*.start",)
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "security_group_rules": {"type": "nested", "properties": {
            "id": c.KEYWORD, "direction": c.KEYWORD, "ethertype": c.KEYWORD,
            "protocol": c.KEYWORD, "port_range_min": c.INTEGER,
            "port_range_max": c.INTEGER, "remote_ip_prefix": c.KEYWORD,
            "remote_group_id": c.KEYWORD, "security_group_id": c.KEYWORD}},
        "stateful": c.BOOLEAN,
        "revision_number": c.LONG,
    })

    def _changes(self, n: Notification) -> list[DocumentChange]:
        if n.event_type.startswith("security_group_rule."):
            return [self._rule_change(n, self.payload_dict(n))]
        return super()._changes(n)

    def document(self, n: Notification, resource: Mapping[str, Any]) -> dict:
        doc = super().document(n, resource)
        rules = [_rule(r) for r in c.as_list(resource.get("security_group_rules"),
                                             "security_group_rules")]
        # Sorted by id, as upsert_item keeps the list, so a group reads the same
        # whether its rules came in the group's payload or one by one.
        doc["security_group_rules"] = sorted(rules, key=lambda r: str(r.get("id")))
        return doc

    def _rule_change(self, n: Notification, payload: dict) -> DocumentChange:
        if n.event_type in ("security_group_rule.create.end",
                            "security_group_rule.update.end"):
            rule = c.as_dict(self.require(payload, "security_group_rule"),
                             "payload.security_group_rule")
            rule_id = self.require(rule, "id", what="payload.security_group_rule")
            group_id = self.require(rule, "security_group_id",
                                    what="payload.security_group_rule")
            # The group's revision (and updated_at) moves with its rules.
            version = self.version(n, rule.get("updated_at"), rule.get("created_at"),
                                   c.emitted_second(n))
            changed_at = c.iso(rule.get("updated_at") or rule.get("created_at"),
                               "security_group_rule.updated_at") or c.emitted_iso(n)
            patch = chain(upsert_item("security_group_rules", "id", _rule(rule)),
                          set_fields({"updated_at": changed_at}))
            return self.update(n, group_id, c.project_of(rule), patch, version)
        if n.event_type == "security_group_rule.delete.end":
            rule = payload.get("security_group_rule")
            rule = rule if isinstance(rule, Mapping) else {}
            rule_id = payload.get("security_group_rule_id") or rule.get("id")
            if not rule_id:
                raise PayloadError("payload has no 'security_group_rule_id'")
            version = self.version(n, c.emitted_second(n))
            patch = chain(remove_item("security_group_rules", "id", rule_id),
                          set_fields({"updated_at": c.emitted_iso(n)}))
            group_id = rule.get("security_group_id")
            if group_id:
                return self.update(n, group_id, c.project_of(rule), patch, version)
            return self.update(n, None, None, patch, version,
                               locate_by=("security_group_rules.id", rule_id))
        raise PayloadError(f"{n.event_type}: not a security group rule event this "
                           f"plugin knows")


def _rule(rule: Any) -> dict:
    rule = c.as_dict(rule, "security_group_rule")
    out = dict(rule)
    for key in ("created_at", "updated_at"):
        if key in out:
            out[key] = c.iso(out[key], f"security_group_rule.{key}")
    return out
