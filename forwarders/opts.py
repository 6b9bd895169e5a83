"""Every option of the ways out, for oslo-config-generator and the commands;
gathered from the library modules that own them."""
from __future__ import annotations

from oslo_config import cfg

from forwarders.delivery import opts as delivery_opts
from forwarders.pipeline import opts as pipeline_opts
from forwarders.subscriptions import opts as subscriptions_opts
from forwarders.websocket import keystone
from forwarders.websocket import opts as websocket_opts

_MODULES = (pipeline_opts, delivery_opts, websocket_opts, subscriptions_opts)


def list_opts():
    found = []
    for module in _MODULES:
        found.extend(module.list_opts())
    return found + [(keystone.GROUP, keystone.list_opts())]


def register(conf: cfg.ConfigOpts) -> None:
    for module in _MODULES:
        for group, options in module.list_opts():
            conf.register_opts(options, group)
