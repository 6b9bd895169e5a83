"""[view:...] sections of forwarders.ini: what the WebSocket server, search, feeds and
subscriptions serve (filters, resource types, role rule), which view each way out
takes, and the old marker sinks (``websocket``, ``subscriptions``) read as views
with a warning that gives the replacement lines."""
import logging
import pathlib
import re

import pytest

from forwarders.filters.base import FilterContext
from forwarders.pipeline.loader import ForwardingConfigError, load
from forwarders.pipeline.view import ViewChoiceError
from forwarders.sinks.base import SinkContext
from searchlight_forward.model.documents import ADMIN, USER

SERVER = "OS::Nova::Server"
CONTEXT = FilterContext(admin_only={SERVER: ("OS-EXT-SRV-ATTR:*",)},
                        resource_types=(SERVER, "OS::Glance::Image"))
COMMON = """
[pipeline:audit]
pipeline = logger

[filter:admin_only]
use = egg:searchlight-forward#admin_only_fields

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = (?i)password

[sink:logger]
use = egg:searchlight-forward#logger
"""
VIEWS = """
[forwarding]
pipelines = audit

[view:websocket]
filters = secrets

[view:public]
filters = admin_only secrets
resource_types = OS::Nova::Server
role = user
""" + COMMON
OLD = """
[forwarding]
pipelines = horizon audit subs

[pipeline:horizon]
pipeline = secrets websocket
resource_types = OS::Nova::Server

[pipeline:subs]
pipeline = admin_only secrets subscriptions

[sink:websocket]
use = egg:searchlight-forward#websocket

[sink:subscriptions]
use = egg:searchlight-forward#subscriptions
""" + COMMON
DOCUMENT = {"name": "vm", "adminPassword": "x", "OS-EXT-SRV-ATTR:host": "h"}


def load_text(tmp_path, text):
    path = tmp_path / "forwarders.ini"
    path.write_text(text)
    return load(str(path), CONTEXT, SinkContext())


def test_views_are_read_beside_the_pipelines(tmp_path):
    loaded = load_text(tmp_path, VIEWS)
    assert [p.name for p in loaded.pipelines] == ["audit"]     # a view has no cursor
    assert sorted(loaded.views) == ["public", "websocket"] and loaded.upgraded == {}
    public, websocket = loaded.views["public"], loaded.views["websocket"]
    assert [f.name for f in public.filters] == ["admin_only", "secrets"]
    assert public.resource_types == {SERVER} and websocket.resource_types is None
    assert public.apply(SERVER, dict(DOCUMENT)) == {"name": "vm"}
    assert websocket.apply(SERVER, dict(DOCUMENT)) == {"name": "vm",
                                                        "OS-EXT-SRV-ATTR:host": "h"}
    # role = caller (the default): admins the admin copy; role = user: the user copy
    assert (websocket.role, websocket.copy_for(True), websocket.copy_for(False)) == \
        ("caller", ADMIN, USER)
    assert (public.role, public.copy_for(True), public.roles) == ("user", USER, (USER,))


def test_each_way_out_takes_its_named_view_or_the_only_one(tmp_path):
    loaded = load_text(tmp_path, VIEWS)
    views = loaded.views
    assert loaded.view_for("websocket") is views["websocket"]          # by its name
    assert loaded.view_for("websocket", "public") is views["public"]   # [websocket] view
    assert loaded.view_for("subscriptions", "none") is None
    with pytest.raises(ViewChoiceError) as info:
        loaded.view_for("subscriptions")
    assert "several views (public, websocket) and none is named subscriptions" in \
        str(info.value) and "[subscriptions] view = <name>" in str(info.value)
    with pytest.raises(ViewChoiceError, match=r"\[websocket\] view = nosuch: .* has no "
                                              r"\[view:nosuch\] section \(views: public, "
                                              r"websocket\)"):
        loaded.view_for("websocket", "nosuch")
    # Subscriptions and feeds select their own types: a view with types is refused.
    with pytest.raises(ViewChoiceError, match=r"\[view:public\] resource_types: each "
                                              r"subscription and feed selects"):
        loaded.view_for("subscriptions", "public")
    one = load_text(tmp_path, VIEWS.replace("[view:public]", "[filter:unused]"))
    assert one.view_for("subscriptions") is one.view_for("websocket") is \
        one.views["websocket"]
    none = load_text(tmp_path, VIEWS.replace("[view:", "[filter:x_"))
    assert none.views == {} and none.view_for("websocket") is None


@pytest.mark.parametrize("old, new, section, option, message", [
    ("role = user", "role = user\npipeline = secrets logger", "view:public", "pipeline",
     "unknown option; a view takes filters, resource_types, role (a view has no sink"),
    ("filters = admin_only secrets", "filters = admin_only secrets logger", "view:public",
     "filters", "[sink:logger] is a sink; a view has only filters"),
    ("filters = admin_only secrets", "filters = admin_only nosuch", "view:public",
     "filters", "'nosuch' has no [filter:nosuch] section"),
    ("role = user", "role = admin", "view:public", "role",
     "'admin' is not one of caller, user (caller: admins get the admin copy"),
    ("resource_types = OS::Nova::Server", "resource_types = OS::Nova::Sever",
     "view:public", "resource_types", "unknown resource type(s) OS::Nova::Sever"),
    ("pipelines = audit", "pipelines = audit\nviews = public", "forwarding", "views",
     "unknown option; [forwarding] takes pipelines"),
])
def test_a_bad_view_names_the_file_section_and_option(tmp_path, old, new, section, option,
                                                      message):
    assert old in VIEWS
    with pytest.raises(ForwardingConfigError) as info:
        load_text(tmp_path, VIEWS.replace(old, new))
    error = str(info.value)
    assert error.startswith(f"{tmp_path / 'forwarders.ini'} [{section}] {option}: "), error
    assert message in error, error


def test_an_old_marker_pipeline_is_read_as_a_view_with_its_replacement(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="forwarders.pipeline.loader"):
        loaded = load_text(tmp_path, OLD)
    assert [p.name for p in loaded.pipelines] == ["audit"]     # never delivered
    horizon, subs = loaded.views["horizon"], loaded.views["subs"]
    assert [f.name for f in horizon.filters] == ["secrets"]
    assert horizon.resource_types == {SERVER} and horizon.role == "caller"
    assert [f.name for f in subs.filters] == ["admin_only", "secrets"]
    # The old automatic choice: the pipeline that ended in each marker sink.
    assert loaded.upgraded == {"websocket": ["horizon"], "subscriptions": ["subs"]}
    assert loaded.view_for("websocket") is horizon
    assert loaded.view_for("subscriptions") is subs
    # The warning gives the exact lines that replace each old pipeline ...
    warnings = {r.getMessage().split("]", 1)[0].rsplit("[", 1)[1]: r.getMessage()
                for r in caplog.records if r.levelno == logging.WARNING}
    assert set(warnings) == {"pipeline:horizon", "pipeline:subs"}
    text = warnings["pipeline:horizon"]
    assert "is deprecated; it is read as a view" in text
    assert "replace [pipeline:horizon] and [sink:websocket] with\n\n    [view:horizon]\n" \
           "    filters = secrets\n    resource_types = OS::Nova::Server\n\n" \
           "remove horizon from [forwarding] pipelines" in text
    assert "[websocket]\n    view = horizon" in warnings["pipeline:horizon"]
    assert "[subscriptions]\n    view = subs" in warnings["pipeline:subs"]
    # ... and those lines build the same views.
    new = OLD.replace("pipelines = horizon audit subs", "pipelines = audit")
    for name, marker in (("horizon", "websocket"), ("subs", "subscriptions")):
        block = re.search(r"with\n\n((?:    .*\n)+)\n", warnings[f"pipeline:{name}"])[1]
        new = re.sub(rf"\[pipeline:{name}\]\n(?:\w.*\n)+", "", new)
        new = re.sub(rf"\[sink:{marker}\]\n(?:\w.*\n)+", "", new)
        new += "\n" + block.replace("    ", "")
    caplog.clear()
    rewritten = load_text(tmp_path, new)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for name in ("horizon", "subs"):
        assert rewritten.views[name].resource_types == loaded.views[name].resource_types
        assert [f.name for f in rewritten.views[name].filters] == \
            [f.name for f in loaded.views[name].filters]
    assert rewritten.view_for("websocket", "horizon") is rewritten.views["horizon"]


def test_an_old_file_without_a_subscriptions_marker_delivers_no_subscriptions(tmp_path):
    """As before views: subscriptions were delivered only through the pipeline ending
    in the subscriptions sink (the only view does not become theirs)."""
    old = OLD.replace("pipelines = horizon audit subs", "pipelines = horizon audit")
    loaded = load_text(tmp_path, old)
    assert sorted(loaded.views) == ["horizon"]
    assert loaded.view_for("subscriptions") is None
    assert loaded.view_for("websocket") is loaded.views["horizon"]


@pytest.mark.parametrize("old, new, section, option, message", [
    ("resource_types = OS::Nova::Server", "event_types = instance.*", "pipeline:horizon",
     "event_types", "WebSocket clients get every change of the resources they may see"),
    ("pipeline = admin_only secrets subscriptions",
     "pipeline = admin_only secrets subscriptions\nresource_types = OS::Nova::Server",
     "pipeline:subs", "resource_types", "each subscription selects its own changes"),
    ("use = egg:searchlight-forward#subscriptions",
     "use = egg:searchlight-forward#subscriptions\nwebhook_timeout = 3",
     "sink:subscriptions", "webhook_timeout",
     "subscriptions' settings are options of [subscriptions] and [smtp]"),
    ("[pipeline:audit]", "[view:horizon]\nfilters = secrets\n\n[pipeline:audit]",
     "pipeline:horizon", "pipeline", "which is read as [view:horizon], and [view:horizon] "
     "exists: remove horizon from [forwarding] pipelines and [pipeline:horizon]"),
])
def test_an_old_file_that_cannot_be_read_as_views_says_why(tmp_path, old, new, section,
                                                           option, message):
    assert old in OLD
    with pytest.raises(ForwardingConfigError) as info:
        load_text(tmp_path, OLD.replace(old, new, 1))
    error = str(info.value)
    assert error.startswith(f"{tmp_path / 'forwarders.ini'} [{section}] {option}: "), error
    assert message in error, error


def test_the_marker_sinks_are_gone_as_sinks(tmp_path):
    """A marker used as a sink elsewhere than last is no sink any more: start-up says
    where it went."""
    text = VIEWS.replace(
        "[sink:logger]\nuse = egg:searchlight-forward#logger",
        "[sink:logger]\nuse = egg:searchlight-forward#websocket")
    loaded = load_text(tmp_path, text)          # the old form: audit is a view now
    assert "audit" in loaded.views and loaded.pipelines == []
    with pytest.raises(ForwardingConfigError, match=r"\[sink:logger\] use: no "
                                                    r"searchlight_forward.sinks entry point "
                                                    r"'egg:someone#websocket'"):
        load_text(tmp_path, text.replace("egg:searchlight-forward#websocket",
                                         "egg:someone#websocket"))


def test_no_module_outside_a_sinks_package_implements_deliver():
    root = pathlib.Path(__file__).resolve().parents[2]
    found = sorted(str(p.relative_to(root)) for top in ("forwarders", "searchlight_forward")
                   for p in (root / top).rglob("*.py")
                   if re.search(r"^\s+def deliver\(", p.read_text(), re.M))
    assert found and all(p.startswith("forwarders/sinks/") for p in found), found


def test_a_subscription_made_by_an_admin_reads_the_copy_its_view_gives(tmp_path):
    """The subscriptions' view's role rule: role = caller keeps an admin's subscription
    on the admin copy, role = user puts it on the user copy (and a user's stays
    there whatever the rule); its filters are the subscription pipeline's."""
    import base64

    from forwarders.subscriptions.catalog import Catalog, CatalogSettings
    from forwarders.subscriptions.model import ACTIVE, WEBHOOK, Secret, Subscription
    loaded = load_text(tmp_path, VIEWS.replace("resource_types = OS::Nova::Server\n", ""))

    def subscription(role):
        return Subscription(id="s1", project_id=None, protocol=WEBHOOK,
                            endpoint="https://hooks.example.com/x", role=role,
                            created_by="u", created_at=0.0, updated_at=0.0, state=ACTIVE,
                            secrets=(Secret("whsec_" + base64.b64encode(b"k" * 24).decode()),))
    got = {}
    for view in ("websocket", "public"):
        catalog = Catalog(None, loaded.views[view], CatalogSettings(public_url="https://api"), {})
        try:
            for role in (ADMIN, USER):
                pipeline = catalog.pipeline_for(subscription(role))
                got[view, role] = pipeline.role
                pipeline.sink.close()
            assert [f.name for f in pipeline.filters] == \
                [f.name for f in loaded.views[view].filters]
        finally:
            catalog.close()
    assert got == {("websocket", ADMIN): ADMIN, ("websocket", USER): USER,
                   ("public", ADMIN): USER, ("public", USER): USER}


def test_search_reads_the_copy_the_views_role_rule_gives():
    """POST /v1/search asks the view's Renderer for the copy to read: with role = user
    an admin's search reads the user copy's vocabulary (and documents)."""
    from forwarders.livesearch.endpoint import Searcher
    from forwarders.pipeline.render import Renderer

    class Vocabularies:
        def get(self, role, types):
            asked.append(role)
            raise RuntimeError("stop here")
    for admin_copies, expected in ((True, ADMIN), (False, USER)):
        asked = []
        searcher = Searcher(None, {SERVER: "g"}, Vocabularies(),
                            Renderer((), admin_copies=admin_copies))
        with pytest.raises(RuntimeError, match="stop here"):
            searcher.search({"resource_types": [SERVER]}, ADMIN, None)
        assert asked == [expected]
