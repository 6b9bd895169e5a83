"""The shipped configuration builds every process (no server needed to check)."""
import logging
import pathlib

from oslo_config import cfg
from oslo_log import log

from forwarders.delivery import worker
from forwarders.websocket import service as websocket_service
from forwarders.cmd.common import register

ROOT = pathlib.Path(__file__).resolve().parents[2]


def shipped_conf(path: pathlib.Path | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register(conf)
    conf(["--config-file", str(path or ROOT / "etc" / "searchlight-forward.conf")],
         project="searchlight-forward")
    return conf


def with_forwarders(tmp_path: pathlib.Path, text: str) -> cfg.ConfigOpts:
    """The shipped main configuration (and tokens) beside another forwarders.ini."""
    (tmp_path / "forwarders.ini").write_text(text)
    tokens = ROOT / "etc" / "websocket-tokens.json"
    (tmp_path / tokens.name).write_text(tokens.read_text())
    path = tmp_path / "searchlight-forward.conf"
    path.write_text((ROOT / "etc" / "searchlight-forward.conf").read_text())
    return shipped_conf(path)


def test_the_shipped_pipelines_build_a_delivery_service():
    service = worker.build(shipped_conf())
    names = {name for group in service.groups.values() for name in group.pipelines}
    assert names == {"telco", "tenants", "alerts", "audit"}      # views have no cursor
    assert service.sources[1].catalog.template.name == "subscriptions"
    assert [f.name for f in service.sources[1].catalog.template.filters] == ["unsearchable", "secrets"]


def test_the_shipped_views_give_the_websocket_server_its_filters():
    server = websocket_service.build(shipped_conf())
    assert [f.name for f in server.renderer.filters] == ["unsearchable", "secrets"]
    assert "OS::Nova::Server" in server.resource_types
    assert server.renderer.admin_copies                           # role = caller


def test_a_view_with_role_user_serves_everyone_the_user_copy(tmp_path):
    shipped = (ROOT / "etc" / "forwarders.ini").read_text()
    assert "[view:websocket]\nfilters = unsearchable secrets\nrole = caller\n" in shipped
    conf = with_forwarders(tmp_path, shipped.replace(
        "[view:websocket]\nfilters = unsearchable secrets\nrole = caller\n",
        "[view:websocket]\nfilters = unsearchable secrets\nrole = user\n"))
    server = websocket_service.build(conf)
    assert not server.renderer.admin_copies
    assert server.renderer.role_for("admin") == "user"


# The shipped file as it was before views: the WebSocket server's and the
# subscriptions' pipelines ended in marker sinks.
OLD_FORM = {
    "pipelines = telco tenants alerts audit":
        "pipelines = horizon telco tenants alerts audit subscriptions",
    "[view:websocket]\nfilters = unsearchable secrets\nrole = caller\n":
        "[pipeline:horizon]\npipeline = unsearchable secrets websocket\n",
    "[view:subscriptions]\nfilters = unsearchable secrets\n":
        "[pipeline:subscriptions]\npipeline = unsearchable secrets subscriptions\n",
    "[sink:zaqar_ops]":
        "[sink:websocket]\nuse = egg:searchlight-forward#websocket\n\n"
        "[sink:subscriptions]\nuse = egg:searchlight-forward#subscriptions\n\n"
        "[sink:zaqar_ops]",
}


def test_the_old_form_of_the_shipped_file_still_runs_every_process(tmp_path, caplog):
    """Upgrading: a file whose pipelines end in the websocket and subscriptions sinks
    builds the same processes, each old pipeline read as a view, with a warning."""
    text = (ROOT / "etc" / "forwarders.ini").read_text()
    for old, new in OLD_FORM.items():
        assert old in text
        text = text.replace(old, new)
    conf = with_forwarders(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="forwarders.pipeline.loader"):
        service = worker.build(conf)
        server = websocket_service.build(conf)
    names = {name for group in service.groups.values() for name in group.pipelines}
    assert names == {"telco", "tenants", "alerts", "audit"}
    assert service.sources[1].catalog.template.name == "subscriptions"
    assert [f.name for f in server.renderer.filters] == ["unsearchable", "secrets"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("[pipeline:horizon]: a pipeline ending in the websocket sink" in w and
               "[view:horizon]\n    filters = unsearchable secrets" in w for w in warned)


def test_websocket_compression_is_an_option_deflate_by_default():
    conf = shipped_conf()
    assert websocket_service.build(conf).settings.compression == "deflate"
    conf.set_override("compression", "none", group="websocket")
    assert websocket_service.build(conf).settings.compression is None
