"""What the configuration makes of the installed plugins (no I/O).

Every process needs the same facts: which plugins are enabled, which resource
group each resource type is indexed in, and each type's admin-only and
unsearchable fields. ``Deployment.from_conf`` works them out once, in one place.
"""
from __future__ import annotations

import dataclasses

from oslo_config import cfg

from searchlight_forward.plugins import PluginSet, available_plugin_names, load_plugins
from searchlight_forward.plugins import opts as plugin_opts


@dataclasses.dataclass
class Deployment:
    plugins: PluginSet
    groups: dict[str, str]                    # resource_type -> resource group
    admin_only: dict[str, tuple[str, ...]]    # resource_type -> fnmatch patterns
    unsearchable: dict[str, tuple[str, ...]]  # resource_type -> fnmatch patterns

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> "Deployment":
        names = list(conf.resource_plugins.enabled or available_plugin_names())
        for name in names:
            group = plugin_opts.plugin_group(name)
            if group not in conf:
                conf.register_opts(plugin_opts.per_plugin_opts, group)
        plugins = load_plugins(names)
        groups, admin_only, unsearchable = {}, {}, {}
        for name, plugin in zip(names, plugins.plugins):
            section = conf[plugin_opts.plugin_group(name)]
            plugin.unsearchable_fields = tuple(section.unsearchable_fields)
            rtype = plugin.resource_type
            groups[rtype] = section.resource_group_name or conf.resource_plugins.resource_group_name
            admin_only[rtype] = tuple(plugin.admin_only_fields) + tuple(section.admin_only_fields)
            unsearchable[rtype] = plugin.unsearchable_fields
        return cls(plugins, groups, admin_only, unsearchable)

    @property
    def resource_types(self) -> tuple[str, ...]:
        return tuple(p.resource_type for p in self.plugins.plugins)

    def group_names(self) -> list[str]:
        return sorted(set(self.groups.values()))

    def types_of(self, group: str) -> frozenset[str]:
        return frozenset(t for t, g in self.groups.items() if g == group)

    def plugins_of(self, group: str) -> list:
        return [p for p in self.plugins.plugins if self.groups[p.resource_type] == group]

    @property
    def item_lists(self) -> dict[str, dict[str, str]]:
        return {p.resource_type: dict(p.item_lists) for p in self.plugins.plugins}
