"""Resource plugins, found through the ``searchlight_forward.resource_plugins`` entry points."""
from __future__ import annotations

import stevedore

from searchlight_forward.plugins.base import PayloadError, ResourcePlugin

NAMESPACE = "searchlight_forward.resource_plugins"

__all__ = ["NAMESPACE", "PayloadError", "ResourcePlugin", "PluginSet", "load_plugins"]


class PluginSet:
    """The enabled plugins, with event-type routing cached per event type."""

    def __init__(self, plugins: list[ResourcePlugin]):
        self.plugins = list(plugins)
        self.by_type = {p.resource_type: p for p in self.plugins}
        self._routes: dict[str, ResourcePlugin | None] = {}

    def route(self, event_type: str) -> ResourcePlugin | None:
        try:
            return self._routes[event_type]
        except KeyError:
            found = next((p for p in self.plugins if p.handles(event_type)), None)
            self._routes[event_type] = found
            return found


def available_plugin_names() -> list[str]:
    return sorted(stevedore.ExtensionManager(NAMESPACE).names())


def load_plugins(names: list[str] | None = None) -> PluginSet:
    """Instantiate the named plugins (all installed ones when ``names`` is None)."""
    mgr = stevedore.ExtensionManager(NAMESPACE, invoke_on_load=True,
                                     on_load_failure_callback=_raise)
    found = {ext.name: ext.obj for ext in mgr}
    if names is None:
        names = sorted(found)
    missing = [n for n in names if n not in found]
    if missing:
        raise LookupError(
            f"unknown resource plugin(s) {', '.join(missing)}; installed: "
            f"{', '.join(sorted(found)) or 'none'} (is the package installed with pip -e .?)")
    return PluginSet([found[n] for n in names])


def _raise(manager, entrypoint, exc):
    raise exc
