"""The live tables: one panel per resource type, on the Project and Admin dashboards.

Pure data, no Django: the panels, the enabled files and the plugin's tests read it.
A table's ``detail`` names Horizon's own detail page of a row (a URL name reversed
with the row's id, or a path under ``WEBROOT``); ``None`` where Horizon has none.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LiveTable:
    slug: str               # the panel's slug, on both dashboards
    name: str               # the panel's name (translated by the panel)
    resource_type: str      # what the WebSocket subscription asks for
    project_detail: str | None = None
    admin_detail: str | None = None


TABLES = (
    LiveTable("live_instances", "Instances", "OS::Nova::Server",
              "horizon:project:instances:detail", "horizon:admin:instances:detail"),
    LiveTable("live_volumes", "Volumes", "OS::Cinder::Volume",
              "horizon:project:volumes:detail", "horizon:admin:volumes:detail"),
    LiveTable("live_snapshots", "Volume Snapshots", "OS::Cinder::Snapshot",
              "horizon:project:snapshots:detail", "horizon:admin:snapshots:detail"),
    LiveTable("live_images", "Images", "OS::Glance::Image",
              "path:ngdetails/OS::Glance::Image/{id}", "horizon:admin:images:detail"),
    LiveTable("live_networks", "Networks", "OS::Neutron::Net",
              "horizon:project:networks:detail", "horizon:admin:networks:detail"),
    LiveTable("live_ports", "Ports", "OS::Neutron::Port",
              "horizon:project:networks:ports:detail", "horizon:admin:networks:ports:detail"),
    LiveTable("live_routers", "Routers", "OS::Neutron::Router",
              "horizon:project:routers:detail", "horizon:admin:routers:detail"),
    LiveTable("live_floating_ips", "Floating IPs", "OS::Neutron::FloatingIP",
              None, "horizon:admin:floating_ips:detail"),
    LiveTable("live_security_groups", "Security Groups", "OS::Neutron::SecurityGroup",
              "horizon:project:security_groups:detail", None),
    LiveTable("live_dns_zones", "DNS Zones", "OS::Designate::Zone"),
    LiveTable("live_dns_recordsets", "DNS Record Sets", "OS::Designate::RecordSet"),
    LiveTable("live_stacks", "Stacks", "OS::Heat::Stack",
              "horizon:project:stacks:detail", None),
)

BY_SLUG = {t.slug: t for t in TABLES}

# The Search panel (Project dashboard): any resource type of /v1/search/plugins, its
# facets from /v1/search/facets, the results live through the same query's
# subscription.
SEARCH_SLUG = "live_search"

PANEL_GROUP = "live"              # on both dashboards
DASHBOARDS = ("project", "admin")

# The plugin's one setting, a dict in Horizon's settings (local_settings.d snippet).
SETTING = "SEARCHLIGHT_FORWARD"
DEFAULTS = {
    # Where the browser opens the WebSocket: ws:// or wss://, any host and port.
    "websocket_url": "ws://127.0.0.1:8765/",
    # Seconds between the page's checks that its Horizon session still holds the
    # token the socket uses (logout in another tab, project switched elsewhere).
    "session_check_interval": 30,
    # Revoke the session's scoped token in Keystone when the user logs out, so that
    # every socket opened with it closes at the WebSocket server's next re-check.
    "revoke_token_on_logout": True,
    # The search API (Searchlight's v1) the Search panel asks for resource types and
    # facets, with the user's token: None finds it in the user's catalog (service
    # type "search", Horizon's region and endpoint type), as Horizon finds any API.
    "search_url": None,
}


def options(configured: dict | None) -> dict:
    """The plugin's options: the defaults, overridden by the setting's dict.

    Raises ValueError naming the key for an unknown key or a WebSocket URL that is
    not ws:// or wss:// (Horizon then refuses to start, which is what an operator
    wants to hear about a typo).
    """
    configured = dict(configured or {})
    unknown = sorted(set(configured) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{SETTING}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(DEFAULTS))}")
    merged = {**DEFAULTS, **configured}
    url = str(merged["websocket_url"])
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"{SETTING}['websocket_url'] must start with ws:// or wss://, "
                         f"got {url!r}")
    search_url = merged["search_url"]
    if search_url is not None and not str(search_url).startswith(("http://", "https://")):
        raise ValueError(f"{SETTING}['search_url'] must be None (the catalog) or start "
                         f"with http:// or https://, got {search_url!r}")
    interval = merged["session_check_interval"]
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval < 5:
        raise ValueError(f"{SETTING}['session_check_interval'] must be a number of "
                         f"seconds, at least 5, got {interval!r}")
    return merged
