"""Shared start-up for the console scripts: options, config files, logging."""
from __future__ import annotations

import sys

from oslo_config import cfg
from oslo_log import log

from searchlight_forward import config

PROJECT = "searchlight-forward"


def setup(argv: list[str] | None, conf: cfg.ConfigOpts | None = None,
          cli_opts=()) -> cfg.ConfigOpts:
    conf = conf or cfg.ConfigOpts()
    log.register_options(conf)
    config.register(conf)
    if cli_opts:
        conf.register_cli_opts(cli_opts)
    try:
        conf(sys.argv[1:] if argv is None else argv, project=PROJECT)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFileParseError,
            cfg.ConfigFileValueError, cfg.RequiredOptError) as exc:
        sys.exit(f"searchlight-forward: configuration error: {exc}")
    log.setup(conf, PROJECT)
    return conf
