"""explain and check: what each pipeline's sink and each view's readers receive,
computed from the plugins and the filters, and the refusal of a tenant-facing sink
that would get admin-only fields (no server: the command only reads the
configuration)."""
import pathlib
import subprocess
import sys

from forwarders import explain
from forwarders.pipeline import loader
from searchlight_forward.deployment import Deployment
from tests.unit.test_shipped_config import ROOT, shipped_conf

SERVER = "OS::Nova::Server"
HOST = "OS-EXT-SRV-ATTR:host"          # Nova's admin-only field, as the API names it


def received(conf=None):
    conf = conf or shipped_conf()
    deployment = Deployment.from_conf(conf)
    loaded = loader.load_from_conf(conf, deployment, required=True)
    return explain.explain(loaded.pipelines,
                           {p.resource_type: p.mapping for p in deployment.plugins.plugins},
                           deployment.admin_only, loaded.views.values(),
                           {"websocket": "websocket, search"})


def row(rows, name, rtype=SERVER, role="admin"):
    return next(r for r in rows if (r.name, r.resource_type, r.role)
                == (name, rtype, role))


def test_the_shipped_pipelines_pass_the_check():
    rows = received()
    assert explain.leaks(rows) == []
    assert row(rows, "tenants").tenant_facing and not row(rows, "telco").tenant_facing
    # Views are explained as views, for the role copies they serve.
    assert {(r.kind, r.name) for r in rows} == {
        ("pipeline", n) for n in ("telco", "tenants", "alerts", "audit")} | {
        ("view", "websocket"), ("view", "subscriptions")}
    assert row(rows, "websocket", role="user").sink == "websocket, search"
    assert row(rows, "subscriptions", role="user").sink == "unused"


def test_explain_shows_each_filter_at_work():
    rows = received()
    # The operator's queue reads the admin copy: the host is there ...
    assert HOST in row(rows, "telco").fields
    # ... the tenants' queues get it redacted, and so do WebSocket users; admins not.
    assert HOST not in row(rows, "tenants").fields
    assert HOST not in row(rows, "websocket", role="user").fields
    assert HOST in row(rows, "websocket", role="admin").fields
    # A pipeline that selects types is explained for those only.
    assert {r.resource_type for r in rows if r.name == "tenants"} == {
        SERVER, "OS::Cinder::Volume", "OS::Neutron::Port", "OS::Heat::Stack"}


def config_with(tmp_path: pathlib.Path, old: str, new: str, more: str = "") -> pathlib.Path:
    """The shipped files, with one line of forwarders.ini replaced."""
    ini = (ROOT / "etc" / "forwarders.ini").read_text()
    changed = ini.replace(old, new) + more
    assert old in ini
    (tmp_path / "forwarders.ini").write_text(changed)
    path = tmp_path / "searchlight-forward.conf"
    path.write_text((ROOT / "etc" / "searchlight-forward.conf").read_text())
    return path


def leaking_config(tmp_path: pathlib.Path) -> pathlib.Path:
    """The tenants pipeline without its admin_only filter."""
    return config_with(tmp_path, "pipeline = admin_only unsearchable secrets zaqar_tenants",
                       "pipeline = unsearchable secrets zaqar_tenants")


def test_explain_runs_the_pipelines_own_regex_filters(tmp_path):
    from oslo_config import cfg
    from oslo_log import log
    from forwarders.cmd.common import register
    path = config_with(tmp_path, "pipeline = unsearchable secrets zaqar_ops",
                       "pipeline = unsearchable secrets noflavor zaqar_ops",
                       "\n[filter:noflavor]\nuse = egg:searchlight-forward#regex_fields\n"
                       "patterns = ^flavor\\.\n")
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register(conf)
    conf(["--config-file", str(path)], project="searchlight-forward")
    rows = received(conf)
    assert not any(p.startswith("flavor.") for p in row(rows, "telco").fields)
    assert {"flavor.ram", "flavor.vcpus"} <= set(row(rows, "websocket").fields)


def test_check_refuses_a_tenant_queue_without_the_admin_only_filter(tmp_path):
    path = leaking_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "forwarders.cmd.manage",
                           "--config-file", str(path), "check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pipeline tenants: sink zaqar_tenants is tenant-facing" in done.stdout
    assert f"of {SERVER}: {HOST}" in done.stdout
    assert "add the admin_only_fields filter" in done.stderr


def test_check_accepts_the_shipped_configuration():
    done = subprocess.run([sys.executable, "-m", "forwarders.cmd.manage",
                           "--config-file", str(ROOT / "etc" / "searchlight-forward.conf"),
                           "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 4 pipeline(s), 2 view(s)"), done.stdout


def test_explain_shows_views_as_views(tmp_path):
    """A view with role = user is explained for the user copy only, as a view, with
    who serves it."""
    path = config_with(tmp_path, "[view:websocket]\nfilters = unsearchable secrets\n"
                       "role = caller\n", "[view:websocket]\nfilters = unsearchable "
                       "secrets\nrole = user\n")
    tokens = ROOT / "etc" / "websocket-tokens.json"
    (tmp_path / tokens.name).write_text(tokens.read_text())
    done = subprocess.run([sys.executable, "-m", "forwarders.cmd.manage",
                           "--config-file", str(path), "explain", "--view", "websocket",
                           "--type", SERVER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    headers = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert headers == [f"view websocket (served by: websocket, search), {SERVER}, "
                       f"user copy: {headers[0].split(': ')[-1]}"], done.stdout
    assert HOST not in done.stdout
