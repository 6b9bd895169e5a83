"""Start-up of the forwarders' console scripts: the core's, with every option."""
from __future__ import annotations

from oslo_config import cfg

from forwarders import opts as forwarders_opts
from searchlight_forward import opts as core_opts
from searchlight_forward.commands import common

fail = common.fail


def register(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """The core's options and the forwarders'."""
    core_opts.register(conf)
    forwarders_opts.register(conf)
    return conf


def setup(argv: list[str] | None, conf: cfg.ConfigOpts | None = None,
          cli_opts=(), logs_to_stderr: bool = False) -> cfg.ConfigOpts:
    return common.setup(argv, conf, cli_opts, logs_to_stderr, register=register)
