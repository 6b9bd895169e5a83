"""Shared start-up for the console scripts: options, config files, logging."""
from __future__ import annotations

import sys

from oslo_config import cfg
from oslo_log import log

from searchlight_forward import logs
from searchlight_forward import opts as core_opts

PROJECT = "searchlight-forward"

# Client libraries that log every request at INFO (and every failed attempt).
QUIET = logs.LIBRARY_LEVELS


def register(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """The core's options (the forwarders' commands add theirs: forwarders.cmd)."""
    core_opts.register(conf)
    return conf


def setup(argv: list[str] | None, conf: cfg.ConfigOpts | None = None,
          cli_opts=(), logs_to_stderr: bool = False,
          register=register) -> cfg.ConfigOpts:
    """Parse the command line and config files, set up oslo.log.

    ``logs_to_stderr`` keeps stdout for the command's own output; ``register`` adds
    the command's options.
    """
    conf = conf or cfg.ConfigOpts()
    log.register_options(conf)
    log.set_defaults(default_log_levels=log.get_default_log_levels() + QUIET)
    if logs_to_stderr:
        conf.set_default("use_stderr", True)
    register(conf)
    if cli_opts:
        conf.register_cli_opts(cli_opts)
    try:
        conf(sys.argv[1:] if argv is None else argv, project=PROJECT)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFileParseError,
            cfg.ConfigFileValueError, cfg.RequiredOptError) as exc:
        sys.exit(f"{PROJECT}: configuration error: {exc}")
    log.setup(conf, PROJECT)
    logs.install_hygiene()    # libraries' tracebacks too: short, once per interval
    return conf


def fail(command: str, message: str):
    sys.exit(f"{command}: {message}")
