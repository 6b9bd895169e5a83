"""Every option of the core, for oslo-config-generator and the commands; gathered
from the library modules that own them (each option is defined once, there)."""
from __future__ import annotations

from oslo_config import cfg

from searchlight_forward import search
from searchlight_forward.changelog import opts as changelog_opts
from searchlight_forward.listener import opts as listener_opts
from searchlight_forward.plugins import opts as plugin_opts

_MODULES = (listener_opts, search, changelog_opts)


def list_opts():
    found = []
    for module in _MODULES:
        found.extend(module.list_opts())
    return found + plugin_opts.list_opts()


def register(conf: cfg.ConfigOpts) -> None:
    """Register the core's options (plugin sections come with the Deployment)."""
    listener_opts.register_messaging(conf)
    for module in _MODULES:
        for group, options in module.list_opts():
            conf.register_opts(options, group)
    conf.register_opts(plugin_opts.opts, plugin_opts.GROUP)
