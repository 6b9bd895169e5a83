"""A deterministic cloud that emits realistic notification streams.

Pure and seeded: the same seed gives the same stream, byte for byte. Every resource
type a plugin handles gets a lifecycle (create, several updates or state changes,
sometimes a delete) whose payloads have the shapes the real services send (the
same shapes as ``tests/fixtures/notifications``), with resource timestamps taken
from a fake clock at the resolution each service really stamps: whole seconds for
Nova, Glance, Neutron, Designate and Heat, microseconds where Cinder has them.

Used by tests and by load generators::

    sim = CloudSimulator(seed=7)
    for note in sim.stream(count_per_type=100):
        publish(note.exchange, note.topic, note.to_notification())

Timing rules the fake clock keeps, so that one resource's versions always strictly
increase (see ``docs/plugins.md``, "Versions"): two state changes of a resource
are at least one second apart, and a notification is emitted within the second
its resource timestamp falls in. Real services can break both (two changes in the
same second, both emitted after that second) and the version scheme then cannot
tell the later one from the earlier: that is a property of second-resolution
stamps, not something a simulator should hide, so ``docs/plugins.md`` says so.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import random
import uuid
from typing import Any, Callable

from searchlight_forward.model.change import Notification

UTC = datetime.timezone.utc
NOTIFICATIONS = "notifications"
VERSIONED = "versioned_notifications"


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a resource must look like once its whole lifecycle is indexed."""
    resource_type: str
    id: str
    project_id: str | None
    deleted: bool
    fields: dict           # API field name -> final value (for live resources)


@dataclasses.dataclass(frozen=True)
class SimulatedNotification:
    exchange: str
    topic: str
    priority: str            # as oslo.messaging hands it to endpoints: "info", "error"
    event_type: str
    publisher_id: str
    payload: Any
    timestamp: str           # oslo.messaging style: "2026-03-02 12:00:00.123456"
    message_id: str
    resource_type: str       # what the notification is about, for tests
    resource_id: str

    def to_notification(self) -> Notification:
        return Notification(event_type=self.event_type,
                            payload=copy.deepcopy(self.payload),
                            publisher_id=self.publisher_id, priority=self.priority,
                            timestamp=self.timestamp, message_id=self.message_id)


# -- time formats each service really uses -----------------------------------------

def _emitted(ts: datetime.datetime) -> str:
    # str(datetime.utcnow()), but always with microseconds so strings sort.
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def _z(ts: datetime.datetime | None) -> str | None:
    """Nova versioned, Glance, Neutron, Heat: whole seconds with Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def _micro0(ts: datetime.datetime | None) -> str | None:
    """Designate and legacy Nova dates: microsecond format, second precision."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000000") if ts else None


def _str_aware(ts: datetime.datetime) -> str:
    """str() of an aware datetime, stamped to the second ("2026-03-02 12:00:01+00:00")."""
    return str(ts.replace(microsecond=0, tzinfo=UTC))


def _isoformat_aware(ts: datetime.datetime, micro: bool = False) -> str:
    ts = ts.replace(tzinfo=UTC)
    return (ts if micro else ts.replace(microsecond=0)).isoformat()


class _Clock:
    """One resource's fake clock.

    ``step`` moves to the next state change, at least one whole second later, at a
    fraction of a second that leaves room to emit within the same second; ``emit``
    gives strictly increasing emission times a few milliseconds after it.
    """

    def __init__(self, rng: random.Random, start: datetime.datetime):
        self.rng = rng
        self.now = start.replace(microsecond=self._fraction())
        self.last_emit = self.now

    def _fraction(self) -> int:
        return self.rng.randint(0, 600_000)

    def step(self, low: int = 1, high: int = 40) -> datetime.datetime:
        whole = self.now.replace(microsecond=0)
        self.now = whole + datetime.timedelta(seconds=self.rng.randint(low, high),
                                              microseconds=self._fraction())
        self.last_emit = self.now
        return self.now

    def emit(self) -> datetime.datetime:
        self.last_emit += datetime.timedelta(microseconds=self.rng.randint(2_000, 60_000))
        return self.last_emit


# -- the simulator -------------------------------------------------------------------

class CloudSimulator:
    SUPPORTED_TYPES = (
        "OS::Nova::Server", "OS::Nova::Flavor", "OS::Glance::Image",
        "OS::Neutron::Net", "OS::Neutron::Port", "OS::Neutron::Subnet",
        "OS::Neutron::Router", "OS::Neutron::FloatingIP",
        "OS::Neutron::SecurityGroup", "OS::Cinder::Volume", "OS::Cinder::Snapshot",
        "OS::Designate::Zone", "OS::Designate::RecordSet", "OS::Heat::Stack",
    )

    def __init__(self, seed: int = 0, projects=("demo", "alt_demo", "admin"),
                 start: datetime.datetime = datetime.datetime(2026, 3, 2, 12, 0, 0),
                 nova_format: str = "mixed", spread_seconds: int = 3600,
                 rule_delete_payload: str = "mixed",
                 project_ids: dict[str, str] | None = None):
        """``project_ids`` pins project names to ids (e.g. the ids a token file
        grants); other projects get random ids from the seed.

        ``nova_format``: "versioned", "unversioned" or "mixed" (each server
        picks one, as each Nova deployment does).

        ``rule_delete_payload``: what ``security_group_rule.delete.end`` carries:
        "id_only" (older Neutron: the rule id, no group), "with_rule" (newer
        Neutron: the rule too) or "mixed" (either, at random).
        """
        if nova_format not in ("versioned", "unversioned", "mixed"):
            raise ValueError(f"unknown nova_format {nova_format!r}")
        if rule_delete_payload not in ("id_only", "with_rule", "mixed"):
            raise ValueError(f"unknown rule_delete_payload {rule_delete_payload!r}")
        self.rule_delete_payload = rule_delete_payload
        self.rng = random.Random(seed)
        self.start = start.replace(tzinfo=None)
        self.nova_format = nova_format
        self.spread_seconds = spread_seconds
        self.projects = {name: self._hex() for name in projects}
        self.projects.update({n: pid for n, pid in (project_ids or {}).items()
                              if n in self.projects})
        self.users = {name: self._hex() for name in projects}
        #: (resource_type, id) -> Expected, for every lifecycle made so far
        self.expected: dict[tuple[str, str], Expected] = {}
        self._builders: dict[str, Callable] = {
            "OS::Nova::Server": self._server, "OS::Nova::Flavor": self._flavor,
            "OS::Glance::Image": self._image, "OS::Neutron::Net": self._network,
            "OS::Neutron::Port": self._port, "OS::Neutron::Subnet": self._subnet,
            "OS::Neutron::Router": self._router,
            "OS::Neutron::FloatingIP": self._floatingip,
            "OS::Neutron::SecurityGroup": self._security_group,
            "OS::Cinder::Volume": self._volume, "OS::Cinder::Snapshot": self._snapshot,
            "OS::Designate::Zone": self._zone, "OS::Designate::RecordSet": self._recordset,
            "OS::Heat::Stack": self._stack,
        }

    # -- public API -------------------------------------------------------------

    def lifecycle(self, resource_type: str, project: str, delete: bool | None = None,
                  delete_ratio: float = 0.2) -> list[SimulatedNotification]:
        """One resource's notifications, in emission order."""
        try:
            build = self._builders[resource_type]
        except KeyError:
            raise ValueError(f"unsupported resource type {resource_type!r}; "
                             f"supported: {', '.join(self.SUPPORTED_TYPES)}") from None
        if project not in self.projects:
            raise ValueError(f"unknown project {project!r}; known: {sorted(self.projects)}")
        if delete is None:
            delete = self.rng.random() < delete_ratio
        begin = self.start + datetime.timedelta(
            seconds=self.rng.uniform(0, self.spread_seconds))
        life = _Life(self, resource_type, project, _Clock(self.rng, begin))
        build(life, delete)
        return life.notes

    def stream(self, count_per_type: int, delete_ratio: float = 0.2,
               types: tuple[str, ...] | None = None) -> list[SimulatedNotification]:
        """Every type's lifecycles, interleaved by emission time."""
        notes: list[SimulatedNotification] = []
        names = list(self.projects)
        for resource_type in types or self.SUPPORTED_TYPES:
            for i in range(count_per_type):
                notes.extend(self.lifecycle(resource_type, names[i % len(names)],
                                            delete_ratio=delete_ratio))
        # A stable sort keeps each resource's own order for equal timestamps.
        notes.sort(key=lambda n: n.timestamp)
        return notes

    # -- ids --------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hex(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def _mac(self) -> str:
        return "fa:16:3e:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(3))

    def _name(self, kind: str) -> str:
        words = ("web", "db", "cache", "api", "batch", "edge", "ci", "vpn", "lb", "mq")
        return f"{self.rng.choice(words)}-{kind}-{self.rng.randrange(1000):03d}"

    # -- Nova --------------------------------------------------------------------

    def _server(self, life: "_Life", delete: bool) -> None:
        fmt = self.nova_format
        if fmt == "mixed":
            fmt = "versioned" if self.rng.random() < 0.75 else "unversioned"
        (self._server_versioned if fmt == "versioned" else self._server_legacy)(life, delete)

    def _server_state(self, life: "_Life") -> dict:
        rng = self.rng
        flavor = rng.choice(_FLAVORS)
        return {
            "uuid": self._uuid(), "name": self._name("vm"), "flavor": flavor,
            "image": self._uuid(), "host": f"compute-{rng.randrange(1, 40):02d}",
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 250)}",
            "mac": self._mac(), "port": self._uuid(), "volume": self._uuid(),
            "created": life.clock.now, "launched": None, "terminated": None,
            "deleted": None, "key": rng.choice(["mykey", "deploy", "ops"]),
            "metadata": {"purpose": rng.choice(["web", "db", "batch"]),
                         "owner": rng.choice(["team-a", "team-b"])},
            "tags": [], "label": rng.choice(["private", "tenant-net", "shared-net"]),
        }

    def _server_versioned(self, life: "_Life", delete: bool) -> None:
        s = self._server_state(life)

        def send(event, state, task, power, cls="InstanceActionPayload", **extra):
            data = _instance_data(life, s, state, task, power)
            if cls == "InstanceCreatePayload":
                keypair = dict(_KEYPAIR, user_id=life.user, name=s["key"])
                data.update(fault=None, tags=list(s["tags"]),
                            trusted_image_certificates=None,
                            keypairs=[_novaobj("KeypairPayload", "1.0", keypair)])
            elif cls == "InstanceUpdatePayload":
                data.update(extra, tags=list(s["tags"]))
            else:
                data["fault"] = None
            life.send(event, _novaobj(cls, _VERSIONS[cls], data), s["uuid"],
                      exchange="nova", topic=VERSIONED,
                      publisher=f"nova-compute:{s['host']}")

        send("instance.create.start", "building", None, "pending", "InstanceCreatePayload")
        life.clock.step(2, 8)
        send("instance.update", "building", "spawning", "pending", "InstanceUpdatePayload",
             **_state_update(life, "building", "block_device_mapping", "building",
                             "spawning"))
        life.clock.step(3, 20)
        s["launched"] = life.clock.now
        send("instance.create.end", "active", None, "running", "InstanceCreatePayload")
        state, power = "active", "running"
        for _ in range(self.rng.randint(1, 4)):
            life.clock.step(5, 600)
            action = self.rng.choice(["power", "pause", "reboot", "rename", "tag"])
            if action == "power" and state == "active":
                send("instance.power_off.start", "active", "powering-off", "running")
                life.clock.step(1, 10)
                state, power = "stopped", "shutdown"
                send("instance.power_off.end", state, None, power)
            elif action == "power" and state == "stopped":
                send("instance.power_on.start", "stopped", "powering-on", "shutdown")
                life.clock.step(1, 10)
                state, power = "active", "running"
                send("instance.power_on.end", state, None, power)
            elif action == "pause" and state == "active":
                send("instance.pause.start", "active", "pausing", "running")
                life.clock.step(1, 5)
                send("instance.pause.end", "paused", None, "paused")
                life.clock.step(30, 600)
                send("instance.unpause.start", "paused", "unpausing", "paused")
                life.clock.step(1, 5)
                send("instance.unpause.end", "active", None, "running")
            elif action == "reboot" and state == "active":
                send("instance.reboot.start", "active", "reboot_pending", "running")
                life.clock.step(5, 40)
                send("instance.reboot.end", "active", None, "running")
            else:
                old = s["name"]
                if action == "tag":
                    s["tags"].append(self.rng.choice(["prod", "blue", "green", "canary"]))
                else:
                    s["name"] = self._name("vm")
                send("instance.update", state, None, power, "InstanceUpdatePayload",
                     **_state_update(life, state, None, state, None,
                                     old_display_name=old if action == "rename" else None))
        if delete:
            life.clock.step(60, 3600)
            send("instance.delete.start", state, "deleting", power)
            life.clock.step(1, 8)
            s["terminated"] = s["deleted"] = life.clock.now
            s["deleting"] = True
            send("instance.delete.end", "deleted", None, "pending")
        life.expect(s["uuid"], delete, name=s["name"],
                    status={"active": "ACTIVE", "stopped": "SHUTOFF"}[state])

    def _server_legacy(self, life: "_Life", delete: bool) -> None:
        s = self._server_state(life)

        def send(event, state, task, with_ips=False, **extra):
            payload = _legacy_instance(life, s, state, task, with_ips)
            payload.update(extra)
            life.send(event, payload, s["uuid"], exchange="nova", topic=NOTIFICATIONS,
                      publisher=f"compute.{s['host']}")

        def update(old_state, old_task, state, task):
            payload = _legacy_instance(life, s, state, task)
            audit_start = life.clock.now.replace(day=1, hour=0, minute=0, second=0,
                                                 microsecond=0)
            payload.update(old_state=old_state, old_task_state=old_task,
                           new_task_state=task,
                           audit_period_beginning=audit_start.strftime(
                               "%Y-%m-%dT%H:%M:%S.%f"),
                           audit_period_ending=life.clock.now.strftime(
                               "%Y-%m-%dT%H:%M:%S.%f"),
                           bandwidth={}, old_display_name=None)
            life.send("compute.instance.update", payload, s["uuid"], exchange="nova",
                      topic=NOTIFICATIONS, publisher=f"compute.{s['host']}")

        update("building", "scheduling", "building", "networking")
        life.clock.step(1, 5)
        send("compute.instance.create.start", "building", "spawning")
        life.clock.step(3, 20)
        s["launched"] = life.clock.now
        send("compute.instance.create.end", "active", None, with_ips=True,
             message="Success")
        state = "active"
        for _ in range(self.rng.randint(1, 3)):
            life.clock.step(5, 600)
            if state == "active":
                send("compute.instance.power_off.start", "active", "powering-off")
                life.clock.step(1, 10)
                state = "stopped"
                send("compute.instance.power_off.end", state, None)
            else:
                send("compute.instance.power_on.start", "stopped", "powering-on")
                life.clock.step(1, 10)
                state = "active"
                send("compute.instance.power_on.end", state, None)
        if delete:
            life.clock.step(60, 3600)
            send("compute.instance.delete.start", state, "deleting")
            life.clock.step(1, 8)
            s["terminated"] = s["deleted"] = life.clock.now
            send("compute.instance.delete.end", "deleted", None)
        life.expect(s["uuid"], delete, name=s["name"],
                    status={"active": "ACTIVE", "stopped": "SHUTOFF"}[state])

    def _flavor(self, life: "_Life", delete: bool) -> None:
        vcpus, ram, disk = self.rng.choice([(1, 512, 1), (1, 2048, 20), (2, 4096, 40),
                                            (4, 8192, 80), (8, 16384, 160)])
        flavor = {"name": self._name("flavor"), "memory_mb": ram, "ephemeral_gb": 0,
                  "disabled": False, "vcpus": vcpus, "extra_specs": {},
                  "projects": [], "swap": 0, "rxtx_factor": 1.0, "is_public": True,
                  "root_gb": disk, "vcpu_weight": 0, "flavorid": self._uuid(),
                  "description": None}

        def send(event, **changes):
            flavor.update(changes)
            life.send(event, _novaobj("FlavorPayload", "1.4", copy.deepcopy(flavor)),
                      flavor["flavorid"], exchange="nova", topic=VERSIONED,
                      publisher="nova-api:controller")

        send("flavor.create")
        for _ in range(self.rng.randint(1, 3)):
            life.clock.step(10, 900)
            if self.rng.random() < 0.5:
                send("flavor.update", is_public=False, projects=[life.project_id])
            else:
                specs = dict(flavor["extra_specs"])
                specs[self.rng.choice(["hw:cpu_policy", "hw:mem_page_size",
                                       "quota:disk_read_iops_sec"])] = \
                    self.rng.choice(["dedicated", "large", "500"])
                send("flavor.update", extra_specs=specs)
        if delete:
            life.clock.step(60, 3600)
            send("flavor.delete", extra_specs=None, projects=None)
        life.expect(flavor["flavorid"], delete, project_id=None, name=flavor["name"],
                    ram=flavor["memory_mb"], vcpus=flavor["vcpus"])

    # -- Glance -----------------------------------------------------------------

    def _image(self, life: "_Life", delete: bool) -> None:
        image_id = self._uuid()
        created = life.clock.now
        size = self.rng.randrange(12_000_000, 2_000_000_000)
        image = {
            "id": image_id, "name": self._name("image"), "status": "queued",
            "created_at": _z(created), "updated_at": _z(created), "min_disk": 0,
            "min_ram": 0, "protected": False, "checksum": None,
            "owner": life.project_id, "disk_format": "qcow2",
            "container_format": "bare", "size": None, "virtual_size": None,
            "is_public": False, "visibility": "shared",
            "properties": {"hw_disk_bus": "virtio",
                           "os_distro": self.rng.choice(["ubuntu", "centos", "cirros"])},
            "tags": [], "deleted": False, "deleted_at": None,
        }

        def send(event, payload=None):
            life.send(event, copy.deepcopy(payload or image), image_id, exchange="glance",
                      topic=NOTIFICATIONS, publisher="image.controller")

        send("image.create")
        life.clock.step(2, 120)
        image.update(status="active", updated_at=_z(life.clock.now),
                     checksum=f"{self.rng.getrandbits(128):032x}", size=size,
                     virtual_size=size * self.rng.randint(2, 5))
        send("image.upload", dict(image, os_glance_importing_to_stores=[],
                                  os_glance_failed_import=[]))
        send("image.activate")  # same updated_at, emitted a few ms later
        for _ in range(self.rng.randint(1, 2)):
            life.clock.step(5, 900)
            image["tags"] = image["tags"] + [self.rng.choice(["gold", "base", "lts"])]
            image["properties"] = dict(image["properties"],
                                       os_version=str(self.rng.randint(18, 24)))
            image["updated_at"] = _z(life.clock.now)
            send("image.update")
        members = [p for p in self.projects.values() if p != life.project_id]
        for member in self.rng.sample(members, k=min(len(members), self.rng.randint(0, 2))):
            life.clock.step(5, 600)
            created_member = life.clock.now
            row = {"image_id": image_id, "member_id": member, "status": "pending",
                   "created_at": _z(created_member), "updated_at": _z(created_member),
                   "deleted": False, "deleted_at": None}
            send("image.member.create", row)
            life.clock.step(5, 600)
            row = dict(row, status=self.rng.choice(["accepted", "rejected"]),
                       updated_at=_z(life.clock.now))
            send("image.member.update", row)
            if self.rng.random() < 0.3:
                life.clock.step(5, 600)
                send("image.member.delete", dict(row, deleted=True,
                                                 deleted_at=_z(life.clock.now)))
        if delete:
            life.clock.step(60, 3600)
            image.update(status="deleted", deleted=True, deleted_at=_z(life.clock.now))
            send("image.delete")
        life.expect(image_id, delete, name=image["name"], status="active",
                    tags=sorted(image["tags"]))

    # -- Neutron -----------------------------------------------------------------

    def _neutron(self, life: "_Life", key: str, resource: dict, updates: list[dict],
                 delete: bool) -> None:
        resource.update(created_at=_z(life.clock.now), updated_at=_z(life.clock.now),
                        revision_number=resource.get("revision_number", 0),
                        project_id=life.project_id, tenant_id=life.project_id,
                        tags=[], description=resource.get("description", ""))
        rid = resource["id"]

        def send(event, payload):
            life.send(event, copy.deepcopy(payload), rid, exchange="neutron",
                      topic=NOTIFICATIONS, publisher="network.controller")

        send(f"{key}.create.end", {key: resource})
        for change in updates:
            life.clock.step(1, 300)
            resource.update(change, updated_at=_z(life.clock.now),
                            revision_number=resource["revision_number"] + 1)
            send(f"{key}.update.end", {key: resource})
        if delete:
            life.clock.step(30, 3600)
            send(f"{key}.delete.end", {f"{key}_id": rid, key: resource})
        life.expect(rid, delete, **{f: resource[f] for f in ("name", "status",
                                                             "floating_ip_address")
                                    if f in resource})

    def _network(self, life: "_Life", delete: bool) -> None:
        net = {"id": self._uuid(), "name": self._name("net"), "admin_state_up": True,
               "availability_zone_hints": [], "availability_zones": [],
               "ipv4_address_scope": None, "ipv6_address_scope": None,
               "l2_adjacency": True, "mtu": 1450, "port_security_enabled": True,
               "provider:network_type": "vxlan", "provider:physical_network": None,
               "provider:segmentation_id": self.rng.randrange(1, 16_000_000),
               "router:external": False, "qos_policy_id": None, "shared": False,
               "status": "ACTIVE", "subnets": [], "vlan_transparent": None,
               "is_default": False, "dns_domain": "", "revision_number": 1}
        updates = [{"subnets": [self._uuid()], "availability_zones": ["nova"]}]
        updates += [{"name": self._name("net")} for _ in range(self.rng.randint(0, 2))]
        self._neutron(life, "network", net, updates, delete)

    def _subnet(self, life: "_Life", delete: bool) -> None:
        third = self.rng.randrange(256)
        subnet = {"id": self._uuid(), "name": self._name("subnet"),
                  "network_id": self._uuid(), "ip_version": 4,
                  "cidr": f"10.{third}.0.0/24", "gateway_ip": f"10.{third}.0.1",
                  "allocation_pools": [{"start": f"10.{third}.0.2",
                                        "end": f"10.{third}.0.254"}],
                  "dns_nameservers": [], "host_routes": [], "enable_dhcp": True,
                  "ipv6_address_mode": None, "ipv6_ra_mode": None,
                  "subnetpool_id": None, "segment_id": None, "service_types": [],
                  "dns_publish_fixed_ip": False}
        updates = [{"dns_nameservers": ["8.8.8.8", "1.1.1.1"]}]
        updates += [{"name": self._name("subnet")} for _ in range(self.rng.randint(0, 2))]
        self._neutron(life, "subnet", subnet, updates, delete)

    def _port(self, life: "_Life", delete: bool) -> None:
        ip = f"10.{self.rng.randrange(256)}.0.{self.rng.randrange(2, 250)}"
        port = {"id": self._uuid(), "name": "", "network_id": self._uuid(),
                "mac_address": self._mac(), "admin_state_up": True, "status": "DOWN",
                "device_id": "", "device_owner": "",
                "fixed_ips": [{"subnet_id": self._uuid(), "ip_address": ip}],
                "allowed_address_pairs": [], "extra_dhcp_opts": [],
                "security_groups": [self._uuid()], "port_security_enabled": True,
                "dns_name": "", "dns_assignment": [{
                    "ip_address": ip, "hostname": "host-" + ip.replace(".", "-"),
                    "fqdn": "host-" + ip.replace(".", "-") + ".openstacklocal."}],
                "qos_policy_id": None, "qos_network_policy_id": None,
                "propagate_uplink_status": False, "resource_request": None,
                "binding:host_id": "", "binding:profile": {},
                "binding:vif_details": {}, "binding:vif_type": "unbound",
                "binding:vnic_type": "normal", "revision_number": 1}
        host = f"compute-{self.rng.randrange(1, 40):02d}"
        updates = [{"device_id": self._uuid(), "device_owner": "compute:nova",
                    "binding:host_id": host, "binding:vif_type": "ovs",
                    "binding:vif_details": {"port_filter": True, "connectivity": "l2",
                                            "bridge_name": "br-int",
                                            "datapath_type": "system"}},
                   {"status": "ACTIVE"}]
        if self.rng.random() < 0.5:
            updates.append({"name": self._name("port")})
        self._neutron(life, "port", port, updates, delete)

    def _router(self, life: "_Life", delete: bool) -> None:
        router = {"id": self._uuid(), "name": self._name("router"),
                  "admin_state_up": True, "status": "ACTIVE",
                  "external_gateway_info": None, "routes": [], "distributed": False,
                  "ha": False, "availability_zone_hints": [],
                  "availability_zones": ["nova"], "flavor_id": None,
                  "enable_ndp_proxy": False, "revision_number": 1}
        gateway = {"network_id": self._uuid(), "enable_snat": True,
                   "external_fixed_ips": [{
                       "subnet_id": self._uuid(),
                       "ip_address": f"172.24.4.{self.rng.randrange(2, 250)}"}]}
        updates = [{"external_gateway_info": gateway}]
        if self.rng.random() < 0.5:
            updates.append({"routes": [{"destination": "192.168.50.0/24",
                                        "nexthop": "10.0.0.254"}]})
        self._neutron(life, "router", router, updates, delete)

    def _floatingip(self, life: "_Life", delete: bool) -> None:
        fip = {"id": self._uuid(),
               "floating_ip_address": f"172.24.4.{self.rng.randrange(2, 250)}",
               "floating_network_id": self._uuid(), "router_id": None, "port_id": None,
               "fixed_ip_address": None, "status": "DOWN", "port_details": None,
               "dns_domain": "", "dns_name": "", "qos_policy_id": None,
               "port_forwardings": []}
        port_id, router_id = self._uuid(), self._uuid()
        associated = {"port_id": port_id, "router_id": router_id, "status": "ACTIVE",
                      "fixed_ip_address": f"10.0.0.{self.rng.randrange(2, 250)}",
                      "port_details": {"name": "", "network_id": self._uuid(),
                                       "mac_address": self._mac(),
                                       "admin_state_up": True, "status": "ACTIVE",
                                       "device_id": self._uuid(),
                                       "device_owner": "compute:nova"}}
        updates = [associated]
        if self.rng.random() < 0.5:
            updates.append({"port_id": None, "router_id": None, "status": "DOWN",
                            "fixed_ip_address": None, "port_details": None})
        self._neutron(life, "floatingip", fip, updates, delete)

    def _security_group(self, life: "_Life", delete: bool) -> None:
        sg_id = self._uuid()
        sg = {"id": sg_id, "name": self._name("sg"), "description": "managed by sim",
              "stateful": True, "shared": False, "revision_number": 1,
              "created_at": _z(life.clock.now), "updated_at": _z(life.clock.now),
              "project_id": life.project_id, "tenant_id": life.project_id, "tags": []}

        def rule(direction, ethertype, protocol=None, port=None, prefix=None):
            return {"id": self._uuid(), "security_group_id": sg_id,
                    "direction": direction, "ethertype": ethertype, "protocol": protocol,
                    "port_range_min": port, "port_range_max": port,
                    "remote_ip_prefix": prefix, "remote_group_id": None,
                    "remote_address_group_id": None, "normalized_cidr": prefix,
                    "description": "", "tenant_id": life.project_id,
                    "project_id": life.project_id, "created_at": _z(life.clock.now),
                    "updated_at": _z(life.clock.now), "revision_number": 0, "tags": [],
                    "belongs_to_default_sg": False}

        def send(event, payload):
            life.send(event, copy.deepcopy(payload), sg_id, exchange="neutron",
                      topic=NOTIFICATIONS, publisher="network.controller")

        sg["security_group_rules"] = [rule("egress", "IPv4"), rule("egress", "IPv6")]
        send("security_group.create.end", {"security_group": sg})
        for _ in range(self.rng.randint(1, 3)):
            life.clock.step(1, 120)
            new = rule("ingress", "IPv4", self.rng.choice(["tcp", "udp"]),
                       self.rng.choice([22, 80, 443, 8080, 5432]),
                       self.rng.choice(["0.0.0.0/0", "10.0.0.0/8"]))
            sg["security_group_rules"].append(new)
            sg.update(updated_at=_z(life.clock.now),
                      revision_number=sg["revision_number"] + 1)
            send("security_group_rule.create.end", {"security_group_rule": new})
        life.clock.step(1, 600)
        sg.update(name=self._name("sg"), updated_at=_z(life.clock.now),
                  revision_number=sg["revision_number"] + 1)
        send("security_group.update.end", {"security_group": sg})
        if len(sg["security_group_rules"]) > 2:
            life.clock.step(1, 600)
            gone = sg["security_group_rules"].pop()
            sg.update(updated_at=_z(life.clock.now),
                      revision_number=sg["revision_number"] + 1)
            payload = {"security_group_rule_id": gone["id"]}
            style = self.rule_delete_payload
            if style == "mixed":
                style = "with_rule" if self.rng.random() < 0.5 else "id_only"
            if style == "with_rule":  # newer Neutron adds the rule itself
                payload["security_group_rule"] = gone
            send("security_group_rule.delete.end", payload)
        if delete:
            life.clock.step(30, 3600)
            send("security_group.delete.end",
                 {"security_group_id": sg_id, "security_group": sg})
        life.expect(sg_id, delete, name=sg["name"],
                    rules=sorted(r["id"] for r in sg["security_group_rules"]))

    # -- Cinder -------------------------------------------------------------------

    def _volume(self, life: "_Life", delete: bool) -> None:
        volume_id = self._uuid()
        created = life.clock.now
        host = f"storage-{self.rng.randrange(1, 9)}@lvmdriver-1#lvmdriver-1"
        volume = {"tenant_id": life.project_id, "host": host, "user_id": life.user,
                  "availability_zone": "nova", "volume_id": volume_id,
                  "volume_type": self.rng.choice(_VOLUME_TYPES),
                  "display_name": self._name("vol"),
                  "launched_at": None, "created_at": _isoformat_aware(created),
                  "status": "creating", "snapshot_id": None,
                  "size": self.rng.choice([1, 10, 20, 50, 100]),
                  "replication_status": None, "replication_extended_status": None,
                  "replication_driver_data": None, "metadata": [],
                  "volume_attachment": []}
        publisher = f"volume.{host.split('#')[0]}"

        def send(event, **changes):
            volume.update(changes)
            life.send(event, copy.deepcopy(volume), volume_id, exchange="cinder",
                      topic=NOTIFICATIONS, publisher=publisher)

        life.clock.step(1, 5)
        send("volume.create.end", status="available",
             launched_at=_isoformat_aware(life.clock.now, micro=True))
        for _ in range(self.rng.randint(1, 3)):
            life.clock.step(5, 900)
            action = self.rng.choice(["rename", "attach", "resize", "retype"])
            if action == "rename":
                send("volume.update.end", display_name=self._name("vol"), metadata=[{
                    "key": "purpose", "value": self.rng.choice(["db", "logs", "scratch"]),
                    "id": self.rng.randrange(1, 10_000), "volume_id": volume_id,
                    "deleted": False, "created_at": _micro0(life.clock.now),
                    "updated_at": None, "deleted_at": None}])
            elif action == "attach":
                attached = life.clock.now
                send("volume.attach.end", status="in-use", volume_attachment=[{
                    "id": self._uuid(), "volume_id": volume_id,
                    "instance_uuid": self._uuid(), "attached_host": None,
                    "mountpoint": "/dev/vdb", "attach_time": _micro0(attached),
                    "detach_time": None, "attach_status": "attached",
                    "attach_mode": "rw", "deleted": False,
                    "created_at": _micro0(attached), "updated_at": _micro0(attached),
                    "deleted_at": None, "connection_info": None, "connector": None}])
                life.clock.step(30, 900)
                send("volume.detach.end", status="available", volume_attachment=[])
            elif action == "resize":
                send("volume.resize.end", size=volume["size"] * 2)
            else:
                send("volume.retype", volume_type=self.rng.choice(_VOLUME_TYPES))
        if delete:
            life.clock.step(30, 3600)
            send("volume.delete.end", status="deleting")
        life.expect(volume_id, delete, name=volume["display_name"], status=volume["status"],
                    size=volume["size"])

    def _snapshot(self, life: "_Life", delete: bool) -> None:
        snapshot_id = self._uuid()
        snapshot = {"tenant_id": life.project_id, "user_id": life.user,
                    "availability_zone": "nova", "volume_id": self._uuid(),
                    "volume_size": self.rng.choice([1, 10, 20]),
                    "snapshot_id": snapshot_id, "display_name": self._name("snap"),
                    "created_at": _str_aware(life.clock.now), "status": "available",
                    "deleted": "", "metadata": ""}

        def send(event, **changes):
            snapshot.update(changes)
            life.send(event, copy.deepcopy(snapshot), snapshot_id, exchange="cinder",
                      topic=NOTIFICATIONS, publisher="snapshot.storage-1@lvmdriver-1")

        life.clock.step(1, 30)
        send("snapshot.create.end")
        for _ in range(self.rng.randint(1, 2)):
            life.clock.step(5, 900)
            send("snapshot.update.end", display_name=self._name("snap"),
                 metadata=repr({"purpose": self.rng.choice(["backup", "clone"])}))
        if delete:
            life.clock.step(30, 3600)
            send("snapshot.delete.end", status="deleting")
        life.expect(snapshot_id, delete, name=snapshot["display_name"])

    # -- Designate ----------------------------------------------------------------

    def _zone(self, life: "_Life", delete: bool) -> None:
        zone_id = self._uuid()
        serial = int(life.clock.now.replace(tzinfo=UTC).timestamp())
        zone = {"shard": self.rng.randrange(4096), "minimum": 3600, "ttl": 3600,
                "serial": serial, "deleted_at": None, "id": zone_id,
                "parent_zone_id": None, "retry": 600, "transferred_at": None,
                "version": 1, "type": "PRIMARY", "email": "hostmaster@example.org",
                "status": "PENDING", "description": None, "deleted": "0",
                "updated_at": None, "expire": 86400, "masters": [],
                "name": f"{self._name('zone')}.example.org.",
                "tenant_id": life.project_id, "created_at": _micro0(life.clock.now),
                "pool_id": "794ccc2c-d751-44fe-b57f-8894c9f5c842", "refresh": 3588,
                "delayed_notify": False, "action": "CREATE", "attributes": []}

        def send(event, **changes):
            zone.update(changes)
            life.send(event, copy.deepcopy(zone), zone_id, exchange="designate",
                      topic=NOTIFICATIONS, publisher="central.controller")

        def bump(**changes):
            life.clock.step(1, 60)
            send("dns.zone.update", updated_at=_micro0(life.clock.now),
                 version=zone["version"] + 1,
                 serial=int(life.clock.now.replace(tzinfo=UTC).timestamp()), **changes)

        send("dns.zone.create")
        bump(status="ACTIVE", action="NONE")
        for _ in range(self.rng.randint(0, 2)):
            bump(ttl=self.rng.choice([300, 1800, 7200]), status="PENDING", action="UPDATE")
            bump(status="ACTIVE", action="NONE")
        if delete:
            life.clock.step(30, 3600)
            send("dns.zone.delete", updated_at=_micro0(life.clock.now),
                 version=zone["version"] + 1, status="PENDING", action="DELETE")
        life.expect(zone_id, delete, name=zone["name"], status="ACTIVE", ttl=zone["ttl"])

    def _recordset(self, life: "_Life", delete: bool) -> None:
        rs_id, zone_id = self._uuid(), self._uuid()
        zone_name = f"{self._name('zone')}.example.org."

        def record(data, version=1, action="CREATE"):
            now = _micro0(life.clock.now)
            return {"status": "PENDING", "zone_id": zone_id, "managed": False,
                    "managed_resource_id": None, "managed_resource_type": None,
                    "tenant_id": life.project_id, "created_at": now,
                    "managed_extra": None, "updated_at": None,
                    "managed_plugin_type": None, "version": version,
                    "managed_plugin_name": None, "managed_tenant_id": None,
                    "action": action, "hash": f"{self.rng.getrandbits(128):032x}",
                    "managed_resource_region": None, "recordset_id": rs_id,
                    "data": data, "id": self._uuid(),
                    "serial": int(life.clock.now.replace(tzinfo=UTC).timestamp()),
                    "description": None}

        rs = {"zone_id": zone_id, "zone_name": zone_name,
              "tenant_id": life.project_id, "created_at": _micro0(life.clock.now),
              "description": None, "updated_at": None,
              "records": [record(f"10.0.{self.rng.randrange(256)}.{i}") for i in (1, 2)],
              "version": 1, "ttl": None, "type": "A", "id": rs_id,
              "name": f"{self._name('www')}.{zone_name}", "status": "PENDING",
              "action": "CREATE"}

        def send(event, **changes):
            rs.update(changes)
            life.send(event, copy.deepcopy(rs), rs_id, exchange="designate",
                      topic=NOTIFICATIONS, publisher="central.controller")

        send("dns.recordset.create")
        for _ in range(self.rng.randint(1, 3)):
            life.clock.step(1, 600)
            records = rs["records"] + [record(f"10.1.{self.rng.randrange(256)}.9",
                                              action="UPDATE")]
            send("dns.recordset.update", records=records,
                 updated_at=_micro0(life.clock.now), version=rs["version"] + 1,
                 ttl=self.rng.choice([None, 300, 3600]), action="UPDATE")
        if delete:
            life.clock.step(30, 3600)
            send("dns.recordset.delete", updated_at=_micro0(life.clock.now),
                 version=rs["version"] + 1, action="DELETE")
        life.expect(rs_id, delete, name=rs["name"], ttl=rs["ttl"])

    # -- Heat ---------------------------------------------------------------------

    def _stack(self, life: "_Life", delete: bool) -> None:
        stack_id = self._uuid()
        name = self._name("stack")
        created = _z(life.clock.now)
        stack = {"tenant_id": life.project_id, "user_id": life.project_name,
                 "user_identity": life.user, "username": life.project_name,
                 "stack_identity": stack_id, "stack_name": name, "state": None,
                 "state_reason": None, "create_at": created,
                 "tags": self.rng.sample(["prod", "web", "db", "blue"], k=2),
                 "updated_at": None,
                 "description": "Two web servers behind a load balancer"}

        def send(action, phase, status, reason, priority="info"):
            stack.update(state=f"{action.upper()}_{status}", state_reason=reason)
            life.send(f"orchestration.stack.{action}.{phase}", copy.deepcopy(stack),
                      stack_id, exchange="heat", topic=NOTIFICATIONS,
                      publisher="orchestration.controller", priority=priority)

        def run(action, fail=False):
            send(action, "start", "IN_PROGRESS", f"Stack {action.upper()} started")
            life.clock.step(5, 300)
            if fail:
                send(action, "error", "FAILED", "Resource CREATE failed: "
                     "ResourceInError: resources.server: Went to status ERROR due to "
                     "\"Message: No valid host was found. , Code: 500\"", "error")
            else:
                send(action, "end", "COMPLETE",
                     f"Stack {action.upper()} completed successfully")

        failed = self.rng.random() < 0.1
        run("create", fail=failed)
        if not failed:
            for action in self.rng.sample(["update", "suspend", "check"], k=2):
                life.clock.step(30, 1800)
                if action == "update":
                    stack["updated_at"] = _z(life.clock.now)
                run(action)
                if action == "suspend":
                    life.clock.step(30, 1800)
                    run("resume")
        if delete or failed:
            life.clock.step(30, 3600)
            run("delete")
        life.expect(stack_id, delete or failed, name=name, stack_status=stack["state"])


# -- payload shapes shared by several events ------------------------------------------

_VERSIONS = {"InstanceActionPayload": "1.8", "InstanceCreatePayload": "1.10",
             "InstanceUpdatePayload": "2.0"}
_FLAVORS = [("m1.tiny", "1", 1, 512, 1), ("m1.small", "2", 1, 2048, 20),
            ("m1.medium", "3", 2, 4096, 40), ("m1.large", "4", 4, 8192, 80)]
_KEYPAIR = {"user_id": None, "name": None,
            "fingerprint": "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c",
            "public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDx8nkQv Generated-by-Nova",
            "type": "ssh"}
_VOLUME_TYPES = ["3706aa72-cb65-4971-83e8-48e1477efd1d",
                 "a16c8514-616f-4d40-baf7-eb8c8fb18677"]


def _novaobj(name: str, version: str, data: dict) -> dict:
    return {"nova_object.name": name, "nova_object.namespace": "nova",
            "nova_object.version": version, "nova_object.data": data}


def _state_update(life, old_state, old_task, state, task, old_display_name=None):
    now = life.clock.now
    return {
        "audit_period": _novaobj("AuditPeriodPayload", "1.0", {
            "audit_period_beginning": _z(now.replace(day=1, hour=0, minute=0, second=0)),
            "audit_period_ending": _z(now)}),
        "bandwidth": [], "old_display_name": old_display_name,
        "state_update": _novaobj("InstanceStateUpdatePayload", "1.0", {
            "new_task_state": task, "old_state": old_state,
            "old_task_state": old_task, "state": state}),
    }


def _instance_data(life, s: dict, state, task, power) -> dict:
    name, flavorid, vcpus, ram, disk = s["flavor"]
    placed = state != "building" or task is not None
    deleting = bool(s.get("deleting"))
    return {
        "action_initiator_project": life.project_id, "action_initiator_user": life.user,
        "architecture": "x86_64", "auto_disk_config": "MANUAL",
        "availability_zone": "nova",
        "block_devices": [] if deleting else [_novaobj("BlockDevicePayload", "1.0", {
            "boot_index": None, "delete_on_termination": False,
            "device_name": "/dev/vdb", "tag": None, "volume_id": s["volume"]})],
        "created_at": _z(s["created"]), "deleted_at": _z(s["deleted"]),
        "display_description": s["name"], "display_name": s["name"],
        "host": s["host"] if placed else None, "host_name": s["name"],
        "image_uuid": s["image"],
        "ip_addresses": [] if (deleting or not placed) else [_novaobj("IpPayload", "1.0", {
            "mac": s["mac"], "address": s["ip"], "port_uuid": s["port"], "meta": {},
            "version": 4, "label": s["label"], "device_name": "tap" + s["port"][:11]})],
        "kernel_id": "", "key_name": s["key"], "launched_at": _z(s["launched"]),
        "locked": False, "locked_reason": None, "metadata": dict(s["metadata"]),
        "node": s["host"] if placed else None, "os_type": None,
        "power_state": power, "progress": 0, "ramdisk_id": "",
        "request_id": "req-" + str(uuid.UUID(int=life.sim.rng.getrandbits(128), version=4)),
        "reservation_id": "r-" + s["uuid"][:8], "shares": [], "state": state,
        "task_state": task, "tenant_id": life.project_id,
        "terminated_at": _z(s["terminated"]), "updated_at": _z(life.clock.now),
        "user_id": life.user, "uuid": s["uuid"],
        "flavor": _novaobj("FlavorPayload", "1.4", {
            "flavorid": flavorid, "name": name, "root_gb": disk, "vcpus": vcpus,
            "ephemeral_gb": 0, "memory_mb": ram, "disabled": False, "rxtx_factor": 1.0,
            "extra_specs": {"hw_rng:allowed": "True"}, "projects": None, "swap": 0,
            "is_public": True, "vcpu_weight": 0, "description": None}),
    }


def _legacy_instance(life, s: dict, state, task, with_ips: bool = False) -> dict:
    """Nova adds fixed_ips only where it passes network_info (create.end)."""
    name, flavorid, vcpus, ram, disk = s["flavor"]
    placed = state != "building" or task == "spawning"
    payload = {
        "tenant_id": life.project_id, "user_id": life.user, "instance_id": s["uuid"],
        "display_name": s["name"], "reservation_id": "r-" + s["uuid"][:8],
        "hostname": s["name"], "instance_type": name, "instance_type_id": int(flavorid),
        "instance_flavor_id": flavorid, "architecture": None, "memory_mb": ram,
        "disk_gb": disk, "vcpus": vcpus, "root_gb": disk, "ephemeral_gb": 0,
        "host": s["host"] if placed else None, "node": s["host"] if placed else None,
        "availability_zone": "nova", "cell_name": "",
        "created_at": _str_aware(s["created"]),
        "terminated_at": _micro0(s["terminated"]) or "",
        "deleted_at": _micro0(s["deleted"]) or "",
        "launched_at": _micro0(s["launched"]) or "",
        "image_ref_url": f"http://controller:9292/images/{s['image']}",
        "os_type": None, "kernel_id": "", "ramdisk_id": "", "state": state,
        "state_description": task or "", "progress": "", "access_ip_v4": None,
        "access_ip_v6": None,
        "image_meta": {"min_disk": str(disk), "container_format": "bare",
                       "min_ram": "0", "disk_format": "qcow2",
                       "base_image_ref": s["image"]},
        "metadata": dict(s["metadata"]),
    }
    if with_ips:
        payload["fixed_ips"] = [{"address": s["ip"], "type": "fixed", "version": 4,
                                 "meta": {}, "label": s["label"], "vif_mac": s["mac"],
                                 "floating_ips": []}]
    return payload


class _Life:
    """One resource's lifecycle being built: its clock and its notifications."""

    def __init__(self, sim: CloudSimulator, resource_type: str, project: str,
                 clock: _Clock):
        self.sim = sim
        self.resource_type = resource_type
        self.project_name = project
        self.project_id = sim.projects[project]
        self.user = sim.users[project]
        self.clock = clock
        self.notes: list[SimulatedNotification] = []

    def expect(self, resource_id: str, deleted: bool, project_id: str | None = "",
               **fields: Any) -> None:
        """Write down the resource's final state as this lifecycle left it: the test
        oracle, in the API's own field names, made here and not by any plugin."""
        self.sim.expected[(self.resource_type, resource_id)] = Expected(
            self.resource_type, resource_id,
            self.project_id if project_id == "" else project_id, deleted, fields)

    def send(self, event_type: str, payload: Any, resource_id: str, *, exchange: str,
             topic: str, publisher: str, priority: str = "info") -> None:
        self.notes.append(SimulatedNotification(
            exchange=exchange, topic=topic, priority=priority, event_type=event_type,
            publisher_id=publisher, payload=payload,
            timestamp=_emitted(self.clock.emit()), message_id=self.sim._uuid(),
            resource_type=self.resource_type, resource_id=resource_id))
