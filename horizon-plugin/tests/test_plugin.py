"""The plugin's pure parts, without Horizon: the tables, the options, and that every
enabled file names a panel that exists, one per table on each dashboard."""
import ast
import pathlib

import pytest

from searchlight_forward_dashboard import tables

PACKAGE = pathlib.Path(tables.__file__).parent
ENABLED = sorted((PACKAGE / "enabled").glob("_6*.py"))


def enabled_settings(path: pathlib.Path) -> dict:
    """The module-level constants of an enabled file (read, not imported: importing
    needs Django)."""
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:       # _('Live'): a translated name
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


def panel_classes() -> set[str]:
    tree = ast.parse((PACKAGE / "panels.py").read_text())
    return {node.targets[0].id for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def test_every_table_has_one_panel_per_dashboard_in_the_enabled_files():
    panels = {}
    for path in ENABLED:
        conf = enabled_settings(path)
        if "ADD_PANEL" in conf:
            module, cls = conf["ADD_PANEL"].rsplit(".", 1)
            assert module == "searchlight_forward_dashboard.panels"
            assert cls in panel_classes(), f"{path.name} names {cls}, which panels.py lacks"
            assert conf["PANEL_GROUP"] == tables.PANEL_GROUP
            panels[(conf["PANEL_DASHBOARD"], conf["PANEL"])] = cls
    assert set(panels) == ({(d, t.slug) for d in tables.DASHBOARDS for t in tables.TABLES}
                           | {("project", tables.SEARCH_SLUG)})
    assert panels[("project", tables.SEARCH_SLUG)] == "ProjectLiveSearch"


def test_the_group_files_come_first_and_the_first_installs_the_app_and_its_script():
    groups = [enabled_settings(p) for p in ENABLED if "PANEL_GROUP_DASHBOARD" in enabled_settings(p)]
    assert [g["PANEL_GROUP_DASHBOARD"] for g in groups] == ["project", "admin"]
    first = enabled_settings(ENABLED[0])
    assert first["ADD_INSTALLED_APPS"] == ["searchlight_forward_dashboard"]
    assert first["ADD_JS_FILES"] == ["searchlight_forward_dashboard/livetable.js"]
    for name in first["ADD_JS_FILES"] + first["ADD_SCSS_FILES"]:
        assert (PACKAGE / "static" / name).is_file()


def test_options_default_and_override():
    assert tables.options(None)["websocket_url"] == "ws://127.0.0.1:8765/"
    chosen = tables.options({"websocket_url": "wss://live.example.com:8443/",
                             "session_check_interval": 10})
    assert chosen == {"websocket_url": "wss://live.example.com:8443/",
                      "session_check_interval": 10, "revoke_token_on_logout": True,
                      "search_url": None}


@pytest.mark.parametrize("bad, says", [
    ({"websocket": "ws://x/"}, "unknown key(s) websocket"),
    ({"websocket_url": "http://x/"}, "must start with ws:// or wss://"),
    ({"session_check_interval": 1}, "at least 5"),
    ({"session_check_interval": True}, "a number of seconds"),
    ({"search_url": "ftp://x/"}, "None (the catalog) or start with http://"),
])
def test_bad_options_are_refused_naming_the_key(bad, says):
    with pytest.raises(ValueError, match=r".*") as caught:
        tables.options(bad)
    assert says in str(caught.value)


def test_the_settings_snippet_is_valid_and_uses_only_known_keys():
    snippet = PACKAGE / "local_settings.d" / "_6000_searchlight_forward.py.example"
    namespace: dict = {}
    exec(snippet.read_text(), namespace)     # noqa: S102 - our own shipped file
    assert tables.options(namespace[tables.SETTING]) == namespace[tables.SETTING]
