"""Options that locate the pipelines and what their sinks share ([forwarding])."""
from __future__ import annotations

import os

from oslo_config import cfg

GROUP = "forwarding"

opts = [
    cfg.StrOpt("config_file", default="forwarders.ini",
               help="The pipelines file (paste-like ini). A relative path is "
                    "relative to the directory of the first --config-file."),
    cfg.StrOpt("zaqar_url", default="http://127.0.0.1:8888",
               help="Zaqar endpoint for zaqar sinks that do not name a url."),
]


def list_opts():
    return [(GROUP, opts)]


def beside_config(conf: cfg.ConfigOpts, path: str) -> str:
    """``path``, relative to the directory of the first --config-file."""
    if os.path.isabs(path):
        return path
    base = os.path.dirname(os.path.abspath(conf.config_file[0])) if conf.config_file else "."
    return os.path.join(base, path)


def pipelines_path(conf: cfg.ConfigOpts) -> str:
    """[forwarding] config_file, relative to the first --config-file."""
    return beside_config(conf, conf[GROUP].config_file)
