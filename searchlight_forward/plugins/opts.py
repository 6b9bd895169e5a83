"""Options of the resource plugins: which are enabled, and per plugin its group and
field rules ([resource_plugins], [resource_plugin:<name>])."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "resource_plugins"

opts = [
    cfg.ListOpt("enabled", default=[],
                help="Resource plugins to load (entry point names in "
                     "searchlight_forward.resource_plugins). Empty means all "
                     "installed plugins."),
    cfg.StrOpt("resource_group_name", default="searchlight",
               help="Default resource group: documents go to the index behind "
                    "the aliases <group>-listener (writes) and <group>-search (reads)."),
]

# Options every [resource_plugin:<name>] section may carry.
per_plugin_opts = [
    cfg.StrOpt("resource_group_name",
               help="Resource group for this plugin; defaults to "
                    "[resource_plugins] resource_group_name."),
    cfg.ListOpt("admin_only_fields", default=[],
                help="Extra fnmatch patterns of top-level fields only admins see, "
                     "added to the plugin's built-in ones."),
    cfg.ListOpt("unsearchable_fields", default=[],
                help="fnmatch patterns of top-level fields that are stored but not "
                     "searchable, and that the unsearchable_fields forwarding filter "
                     "removes from every forwarded document."),
]


def plugin_group(name: str) -> str:
    return f"resource_plugin:{name}"


def list_opts():
    from searchlight_forward.plugins import available_plugin_names
    return [(GROUP, opts)] + [(plugin_group(n), per_plugin_opts)
                              for n in available_plugin_names()]
