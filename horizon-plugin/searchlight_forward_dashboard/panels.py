"""The panels: one per live table on each dashboard, named in the enabled files.

Every panel serves the same two URLs (``urls.py``); the view finds its table
through the panel Horizon routed the request to.
"""
from django.utils.translation import gettext_lazy as _

import horizon

from searchlight_forward_dashboard import tables, urls


class LivePanel(horizon.Panel):
    table: tables.LiveTable
    all_projects = False

    def _get_default_urlpatterns(self):
        # Horizon wraps a panel's URL patterns in place with that panel's and its
        # dashboard's checks: sharing one list would give every panel the checks of
        # the last one registered (the admin role on the Project dashboard).
        return urls.patterns()

    @classmethod
    def of(cls, slug: str, **attrs):
        table = tables.BY_SLUG[slug]
        name = "".join(part.title() for part in slug.split("_"))
        return type(f"{cls.__name__}{name}", (cls,), {
            "slug": table.slug, "name": _(table.name), "table": table,
            "__module__": __name__, **attrs})


class SearchPanel(horizon.Panel):
    """Search over any resource type, results kept live (the caller's project)."""
    slug = tables.SEARCH_SLUG
    name = _("Search")
    all_projects = False

    def _get_default_urlpatterns(self):
        return urls.search_patterns()     # a list of its own (see LivePanel)


class ProjectPanel(LivePanel):
    """The caller's project: the user copy of each resource, or the admin copy
    for an admin (what the WebSocket server decides)."""


class AdminPanel(LivePanel):
    """Every project, the admin copy (admin-only fields included): admins only,
    and the WebSocket server checks the role again."""
    permissions = ("openstack.roles.admin",)
    all_projects = True


ProjectLiveInstances = ProjectPanel.of("live_instances")
ProjectLiveVolumes = ProjectPanel.of("live_volumes")
ProjectLiveSnapshots = ProjectPanel.of("live_snapshots")
ProjectLiveImages = ProjectPanel.of("live_images")
ProjectLiveNetworks = ProjectPanel.of("live_networks")
ProjectLivePorts = ProjectPanel.of("live_ports")
ProjectLiveRouters = ProjectPanel.of("live_routers")
ProjectLiveFloatingIps = ProjectPanel.of("live_floating_ips")
ProjectLiveSecurityGroups = ProjectPanel.of("live_security_groups")
ProjectLiveDnsZones = ProjectPanel.of("live_dns_zones")
ProjectLiveDnsRecordsets = ProjectPanel.of("live_dns_recordsets")
ProjectLiveStacks = ProjectPanel.of("live_stacks")
ProjectLiveSearch = SearchPanel

AdminLiveInstances = AdminPanel.of("live_instances")
AdminLiveVolumes = AdminPanel.of("live_volumes")
AdminLiveSnapshots = AdminPanel.of("live_snapshots")
AdminLiveImages = AdminPanel.of("live_images")
AdminLiveNetworks = AdminPanel.of("live_networks")
AdminLivePorts = AdminPanel.of("live_ports")
AdminLiveRouters = AdminPanel.of("live_routers")
AdminLiveFloatingIps = AdminPanel.of("live_floating_ips")
AdminLiveSecurityGroups = AdminPanel.of("live_security_groups")
AdminLiveDnsZones = AdminPanel.of("live_dns_zones")
AdminLiveDnsRecordsets = AdminPanel.of("live_dns_recordsets")
AdminLiveStacks = AdminPanel.of("live_stacks")
