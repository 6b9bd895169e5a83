"""The shipped configuration builds every process (no server needed to check)."""
import pathlib

from oslo_config import cfg
from oslo_log import log

from forwarders.delivery import worker
from forwarders.websocket import service as websocket_service
from searchlight_forward.commands.common import register

ROOT = pathlib.Path(__file__).resolve().parents[2]


def shipped_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register(conf)
    conf(["--config-file", str(ROOT / "etc" / "searchlight-forward.conf")],
         project="searchlight-forward")
    return conf


def test_the_shipped_pipelines_build_a_delivery_service():
    service = worker.build(shipped_conf())
    names = {name for group in service.groups.values() for name in group.pipelines}
    assert names == {"telco", "tenants", "alerts", "audit"}      # horizon: WebSocket


def test_the_shipped_pipelines_give_the_websocket_server_its_filters():
    server = websocket_service.build(shipped_conf())
    assert [f.name for f in server.renderer.filters] == ["unsearchable", "secrets"]
    assert "OS::Nova::Server" in server.resource_types
