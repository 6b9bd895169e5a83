"""What the tests of Searchlight's v1 API share: the view they serve (the WebSocket
view with a filter that removes ``key_name``) and the API started on the test's
config behind the local Keystone."""
from __future__ import annotations

from tests.functional.conftest import write_pipelines
from tests.functional.subscriptions_support import API, free_port, subscriptions_conf

PIPELINES = """
[forwarding]
pipelines =

[view:websocket]
filters = no_keys

[filter:no_keys]
use = egg:searchlight-forward#regex_fields
patterns = ^key_name$
"""
HOST = "OS-EXT-SRV-ATTR:host"      # admin-only (Nova's plugin)
FILTERED = "key_name"              # removed by the view's filter, for every role


def start_api(config_file, names, keystone, port: int | None = None) -> API:
    """The API on the test's group, serving the view above (stop it at the end)."""
    write_pipelines(config_file, PIPELINES)
    port = port or free_port()
    config_file.write_text(config_file.read_text()
                           + subscriptions_conf(names, keystone, port))
    return API(config_file, port)
