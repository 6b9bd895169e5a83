"""Read etc/forwarders.ini into pipelines and views (PasteDeploy conventions, our
own loader).

PasteDeploy builds WSGI applications; a pipeline here ends in a sink, not an app,
so this loader keeps its conventions and nothing else: ``[filter:NAME]`` and
``[sink:NAME]`` sections with ``use = egg:<distribution>#<entry point>`` (or
``call:<module>:<class>``), found through stevedore, ordered
``[pipeline:NAME] pipeline = filter ... sink``, ``[DEFAULT]`` values inherited by
every section, and ``%(here)s`` for the file's directory. ``[view:NAME]`` sections
(``filters``, ``resource_types``, ``role``) say what the WebSocket server, search,
feeds and subscriptions serve (``forwarders.pipeline.view``). Values are parsed with
oslo.config's types; any mistake stops start-up with the file, section and option
at fault.

Older files ended a pipeline in the ``websocket`` or ``subscriptions`` "sink", which
delivered nothing: such a pipeline is read as a view of the same name, with a
deprecation warning that prints the lines replacing it (docs/forwarding.md,
"Upgrading").
"""
from __future__ import annotations

import configparser
import dataclasses
import importlib
import logging
import os
import re
from importlib import metadata

import stevedore

from forwarders.filters import base as filters_mod
from forwarders.filters.base import Filter, FilterContext
from forwarders.options import (ConfigError, Float, Integer, OptionError, SectionOptions,
                                split_list)
from forwarders.pipeline.opts import pipelines_path
from forwarders.pipeline.pipeline import (BEGINNING, ON_FAILURE, START_FROM,
                                          FailurePolicy, Pipeline)
from forwarders.pipeline.view import (CALLER, ROLE_RULES, SUBSCRIPTIONS, WEBSOCKET,
                                      View, ViewChoiceError, choose)
from forwarders.sinks import base as sinks_mod
from forwarders.sinks.base import POLICY_OPTIONS, Sink, SinkContext
from searchlight_forward.retry import Policy
from searchlight_forward.model.priority import PRIORITIES

LOG = logging.getLogger(__name__)

PIPELINE_OPTIONS = frozenset({"pipeline", "resource_types", "event_types", "priorities",
                              "start_from"})
VIEW_OPTIONS = frozenset({"filters", "resource_types", "role"})
#: the marker "sinks" of older files (they delivered nothing): entry point name ->
#: the way out that served the pipeline ending in one
OLD_MARKERS = {"websocket": WEBSOCKET, "subscriptions": SUBSCRIPTIONS}
OLD_MARKER_CLASSES = {"call:forwarders.websocket.sink:WebSocketSink": WEBSOCKET,
                      "call:forwarders.subscriptions.sink:SubscriptionsSink": SUBSCRIPTIONS}


class ForwardingConfigError(ConfigError):
    def __init__(self, path: str, section: str, option: str | None, message: str):
        where = f"{path} [{section}]" + (f" {option}" if option else "")
        super().__init__(f"{where}: {message}")
        self.path, self.section, self.option = path, section, option


@dataclasses.dataclass
class Forwarding:
    """What forwarders.ini defines: the pipelines the delivery service runs (those
    listed in ``[forwarding] pipelines``) and every ``[view:...]``."""
    path: str
    pipelines: list[Pipeline] = dataclasses.field(default_factory=list)
    views: dict[str, View] = dataclasses.field(default_factory=dict)
    #: way out -> the views read from old-form pipelines that ended in its marker
    #: sink (``view.choose`` keeps their old automatic choice)
    upgraded: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def view_for(self, way: str, wanted: str = "") -> View | None:
        """The view ``way`` serves (``view.choose``; ``ViewChoiceError``)."""
        view = choose(self.views, way, wanted, self.upgraded, self.path)
        if way == SUBSCRIPTIONS and view is not None and view.resource_types is not None:
            raise ViewChoiceError(
                f"{self.path} [view:{view.name}] resource_types: each subscription and "
                f"feed selects its own resource types; the view subscriptions serve "
                f"gives only filters and role. Remove resource_types, or set "
                f"[subscriptions] view to another view")
        return view


def load_from_conf(conf, deployment, required: bool = False) -> Forwarding:
    """The pipelines and views of ``[forwarding] config_file`` for a ``Deployment``;
    none if the file does not exist (unless ``required``)."""
    path = pipelines_path(conf)
    if not os.path.exists(path) and not required:
        return Forwarding(path)
    return load(path, FilterContext(admin_only=deployment.admin_only,
                                    resource_types=deployment.resource_types,
                                    unsearchable=deployment.unsearchable),
                SinkContext(zaqar_url=conf.forwarding.zaqar_url))


def view_from_conf(conf, deployment, way: str) -> View | None:
    """The view ``way`` (``websocket``: the WebSocket server and search;
    ``subscriptions``: subscriptions and feeds) serves, as ``[<way>] view`` says;
    raises ForwardingConfigError or view.ViewChoiceError (both ValueErrors)."""
    wanted = (conf[way].view or "").strip()
    if wanted.lower() == "none":
        return None
    return load_from_conf(conf, deployment, required=bool(wanted)).view_for(way, wanted)


def load(path: str, filter_context: FilterContext, sink_context: SinkContext
         ) -> Forwarding:
    """The active pipelines and the views of ``path``; raises ForwardingConfigError."""
    parser = _read(path)
    if not parser.has_section("forwarding"):
        raise ForwardingConfigError(path, "forwarding", None,
                                    "missing section; it lists the active pipelines")
    unknown = sorted(set(_own_options(parser, "forwarding")) - {"pipelines"})
    if unknown:
        raise ForwardingConfigError(path, "forwarding", unknown[0],
                                    "unknown option; [forwarding] takes pipelines (every "
                                    "[view:...] section is a view)")
    names = split_list(parser.get("forwarding", "pipelines", fallback="").replace(" ", ","))
    if len(set(names)) != len(names):
        raise ForwardingConfigError(path, "forwarding", "pipelines",
                                    "a pipeline is listed twice")
    found = Forwarding(path)
    for section in parser.sections():
        if section.startswith("view:"):
            view = _view(parser, path, section[len("view:"):], filter_context)
            found.views[view.name] = view
    for name in names:
        old = _old_marker_pipeline(parser, path, name)
        if old is None:
            found.pipelines.append(_pipeline(parser, path, name, filter_context,
                                             sink_context))
            continue
        if name in found.views:
            raise ForwardingConfigError(
                path, f"pipeline:{name}", "pipeline",
                f"it ends in the {old} sink, which is read as [view:{name}], and "
                f"[view:{name}] exists: remove {name} from [forwarding] pipelines and "
                f"[pipeline:{name}]")
        found.views[name] = _old_view(parser, path, name, old, filter_context)
        found.upgraded.setdefault(old, []).append(name)
    return found


def _read(path: str) -> configparser.ConfigParser:
    if not os.path.exists(path):
        raise ForwardingConfigError(path, "forwarding", None, "file not found")
    parser = configparser.ConfigParser(
        defaults={"here": os.path.dirname(os.path.abspath(path))},
        interpolation=configparser.BasicInterpolation())
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as exc:
        raise ForwardingConfigError(path, exc.section, getattr(exc, "option", None),
                                    f"given twice (line {exc.lineno})") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ForwardingConfigError(path, "?", None, f"not a valid ini file"
                                    f"{f' (line {line})' if line else ''}: {exc}") from None
    return parser


def _options(parser, path, section) -> SectionOptions:
    values = {}
    for key in parser.options(section):
        if key in ("use", "here"):
            continue
        try:
            values[key] = parser.get(section, key)
        except configparser.InterpolationError as exc:
            raise ForwardingConfigError(path, section, key,
                                        f"bad %(...)s reference: {exc}") from None
    return SectionOptions(values)


def _own_options(parser, section) -> set[str]:
    """Options set in the section itself, not inherited from [DEFAULT]."""
    defaults = parser.defaults()
    return {k for k in parser.options(section) if k not in ("use", "here") and
            (k not in defaults or parser.get(section, k, raw=True) != defaults[k])}


def _checked(path, section, fn):
    try:
        return fn()
    except OptionError as exc:
        raise ForwardingConfigError(path, section, exc.option, exc.message) from None


def _check_pipeline_section(parser, path, name) -> None:
    section = f"pipeline:{name}"
    if not parser.has_section(section):
        raise ForwardingConfigError(path, "forwarding", "pipelines",
                                    f"pipeline {name!r} has no [{section}] section")
    own = _own_options(parser, section)
    if "must_deliver" in own:
        raise ForwardingConfigError(
            path, section, "must_deliver",
            "no longer exists: searchlight-forward-delivery reads every change from "
            "the index with a durable cursor, so a sink with on_failure = hold never "
            "loses one. Remove must_deliver and set on_failure = hold in the "
            "pipeline's [sink:...] section")
    unknown = sorted(own - PIPELINE_OPTIONS)
    if unknown:
        raise ForwardingConfigError(path, section, unknown[0],
                                    f"unknown option; a pipeline takes "
                                    f"{', '.join(sorted(PIPELINE_OPTIONS))}")


def _chain(parser, path, name) -> list[str]:
    """``[pipeline:NAME] pipeline``: filters, then one sink (checked)."""
    section = f"pipeline:{name}"
    _check_pipeline_section(parser, path, name)
    options = _options(parser, path, section)
    chain = _checked(path, section, lambda: options.listing("pipeline"))
    chain = [c for item in chain or [] for c in item.split()]
    if not chain:
        raise ForwardingConfigError(path, section, "pipeline", "missing or empty")
    *filter_names, sink_name = chain
    for position, item in enumerate(chain):
        is_sink = parser.has_section(f"sink:{item}")
        if not is_sink and not parser.has_section(f"filter:{item}"):
            raise ForwardingConfigError(path, section, "pipeline",
                                        f"{item!r} has no [filter:{item}] or [sink:{item}] section")
        if is_sink and position != len(chain) - 1:
            raise ForwardingConfigError(path, section, "pipeline",
                                        f"sink {item!r} must be last (filters come first)")
    if not parser.has_section(f"sink:{sink_name}"):
        raise ForwardingConfigError(path, section, "pipeline",
                                    f"the last element {sink_name!r} must be a sink")
    return chain


def _resource_types(options, path, section, filter_context) -> frozenset[str] | None:
    resource_types = _checked(path, section, lambda: options.listing("resource_types"))
    if resource_types is not None:
        resource_types = frozenset(resource_types)
        unknown = sorted(resource_types - set(filter_context.resource_types))
        if unknown and filter_context.resource_types:
            raise ForwardingConfigError(
                path, section, "resource_types",
                f"unknown resource type(s) {', '.join(unknown)}; enabled: "
                f"{', '.join(sorted(filter_context.resource_types))}")
    return resource_types


def _pipeline(parser, path, name, filter_context, sink_context) -> Pipeline:
    section = f"pipeline:{name}"
    *filter_names, sink_name = _chain(parser, path, name)
    options = _options(parser, path, section)
    built_filters = [_filter(parser, path, f, filter_context) for f in filter_names]
    sink, failure = _sink(parser, path, sink_name, sink_context)
    resource_types = _resource_types(options, path, section, filter_context)
    event_types = options.listing("event_types")
    priorities = options.listing("priorities")
    if priorities is not None:
        priorities = frozenset(p.lower() for p in priorities)
        wrong = sorted(priorities - set(PRIORITIES))
        if wrong:
            raise ForwardingConfigError(path, section, "priorities",
                                        f"unknown priority {wrong[0]!r}; oslo.messaging's "
                                        f"are {', '.join(PRIORITIES)}")
    start_from = options.get("start_from", BEGINNING).strip()
    if start_from not in START_FROM:
        raise ForwardingConfigError(path, section, "start_from",
                                    f"{start_from!r} is not one of {', '.join(START_FROM)}")
    return Pipeline(name, built_filters, sink_name, sink, failure, resource_types,
                    tuple(event_types) if event_types is not None else None, priorities,
                    start_from)


def _view(parser, path, name, filter_context) -> View:
    section = f"view:{name}"
    unknown = sorted(_own_options(parser, section) - VIEW_OPTIONS)
    if unknown:
        hint = (" (a view has no sink: the WebSocket server, search, feeds and "
                "subscriptions serve it)") if unknown[0] in ("pipeline", "sink") else ""
        raise ForwardingConfigError(path, section, unknown[0],
                                    f"unknown option; a view takes "
                                    f"{', '.join(sorted(VIEW_OPTIONS))}{hint}")
    options = _options(parser, path, section)
    names = _checked(path, section, lambda: options.listing("filters")) or []
    names = [n for item in names for n in item.split()]
    for item in names:
        if not parser.has_section(f"filter:{item}"):
            what = (f"[sink:{item}] is a sink; a view has only filters"
                    if parser.has_section(f"sink:{item}") else
                    f"{item!r} has no [filter:{item}] section")
            raise ForwardingConfigError(path, section, "filters", what)
    role = options.get("role", CALLER).strip().lower()
    if role not in ROLE_RULES:
        raise ForwardingConfigError(
            path, section, "role",
            f"{role!r} is not one of {', '.join(ROLE_RULES)} (caller: admins get the "
            f"admin copy, others the user copy; user: everyone gets the user copy)")
    return View(name, tuple(_filter(parser, path, f, filter_context) for f in names),
                _resource_types(options, path, section, filter_context), role)


def _old_marker(parser, path, sink_name) -> str | None:
    """The way out an old-form marker sink section stood for, or None."""
    section = f"sink:{sink_name}"
    try:
        use = parser.get(section, "use", fallback="").strip()
    except configparser.InterpolationError:
        return None
    if use in OLD_MARKER_CLASSES:
        return OLD_MARKER_CLASSES[use]
    match = re.fullmatch(r"(?:egg:(?P<dist>[^#]+)#)?(?P<name>[\w.-]+)", use)
    if not match or match["name"] not in OLD_MARKERS:
        return None
    if match["dist"]:
        if _normalise(match["dist"]) != "searchlight-forward":
            return None
    elif match["name"] in _names(sinks_mod.NAMESPACE):
        return None            # a third party's sink of that name
    return OLD_MARKERS[match["name"]]


def _old_marker_pipeline(parser, path, name) -> str | None:
    """``websocket`` or ``subscriptions`` if pipeline ``name`` ends in the old marker
    sink of that way out, else None."""
    *_, last = _chain(parser, path, name)
    return _old_marker(parser, path, last)


def _old_view(parser, path, name, way, filter_context) -> View:
    """An old-form pipeline ending in the ``websocket`` or ``subscriptions`` sink,
    read as the view it always was (with a warning that gives the new lines)."""
    section = f"pipeline:{name}"
    *filter_names, sink_name = _chain(parser, path, name)
    sink_section = f"sink:{sink_name}"
    extra = sorted(_own_options(parser, sink_section) - POLICY_OPTIONS)
    if extra:
        where = ("the WebSocket server's settings are options of [websocket] in the "
                 "main configuration (searchlight-forward.conf)" if way == WEBSOCKET else
                 "subscriptions' settings are options of [subscriptions] and [smtp] in "
                 "the main configuration (searchlight-forward.conf)")
        raise ForwardingConfigError(path, sink_section, extra[0],
                                    f"{where}; move {', '.join(extra)} there")
    options = _options(parser, path, section)
    resource_types = _resource_types(options, path, section, filter_context)
    for option in ("event_types", "priorities") + (
            ("resource_types",) if way == SUBSCRIPTIONS else ()):
        if options.get(option) is not None:
            raise ForwardingConfigError(
                path, section, option,
                "each subscription selects its own changes; its view gives only the "
                "filters they all pass" if way == SUBSCRIPTIONS else
                "WebSocket clients get every change of the resources they may see; "
                "select with resource_types only")
    raw_types = parser.get(section, "resource_types", raw=True, fallback=None)
    lines = [f"[view:{name}]", f"filters = {' '.join(filter_names)}".rstrip()]
    if raw_types is not None and "resource_types" in _own_options(parser, section):
        lines.append(f"resource_types = {raw_types}")
    LOG.warning(
        "%s [%s]: a pipeline ending in the %s sink (%s) is deprecated; it is read as "
        "a view. In %s, replace [%s] and [%s] with\n\n    %s\n\nremove %s from "
        "[forwarding] pipelines, and set in the main configuration "
        "(searchlight-forward.conf)\n\n    [%s]\n    view = %s\n\n"
        "(docs/forwarding.md, \"Upgrading\")", path, section, way,
        parser.get(sink_section, "use", raw=True, fallback=""), path, section,
        sink_section, "\n    ".join(lines), name, way, name)
    return View(name, tuple(_filter(parser, path, f, filter_context)
                            for f in filter_names), resource_types)


def _filter(parser, path, name, context) -> Filter:
    section = f"filter:{name}"
    cls = _entry_point(parser, path, section, filters_mod.NAMESPACE)
    options = _options(parser, path, section)
    return _checked(path, section, lambda: cls(name, options, context))


def _sink(parser, path, name, context) -> tuple[Sink, FailurePolicy]:
    section = f"sink:{name}"
    cls = _entry_point(parser, path, section, sinks_mod.NAMESPACE)
    options = _options(parser, path, section)

    def policy():
        on_failure = options.get("on_failure", getattr(cls, "default_policy", "retry")).strip()
        if on_failure not in ON_FAILURE:
            raise OptionError("on_failure", f"{on_failure!r} is not one of "
                              f"{', '.join(ON_FAILURE)}")
        defaults = FailurePolicy().retry
        initial = options.typed("backoff", Float(min=0.01), defaults.initial)
        return FailurePolicy(on_failure, Policy(
            initial=initial,
            maximum=options.typed("max_backoff", Float(min=initial), defaults.maximum),
            attempts=options.typed("attempts", Integer(min=1), defaults.attempts)))

    failure = _checked(path, section, policy)
    return _checked(path, section, lambda: cls(name, options, context)), failure


def _entry_point(parser, path, section, namespace):
    try:
        use = parser.get(section, "use", fallback="").strip()
    except configparser.InterpolationError as exc:
        raise ForwardingConfigError(path, section, "use", f"bad reference: {exc}") from None
    if not use:
        raise ForwardingConfigError(path, section, "use", "missing required option")
    if use.startswith("call:"):
        return _call(path, section, use)
    match = re.fullmatch(r"(?:egg:(?P<dist>[^#]+)#)?(?P<name>[\w.-]+)", use)
    if not match:
        raise ForwardingConfigError(path, section, "use",
                                    f"{use!r} is not egg:<distribution>#<name>")
    failures: list[Exception] = []

    def failed(manager, entry_point, exc):
        failures.append(exc)

    wanted = _normalise(match["dist"]) if match["dist"] else None
    manager = stevedore.NamedExtensionManager(
        namespace, names=[match["name"]], on_load_failure_callback=failed)
    found = [ext for ext in manager if wanted is None or wanted in _distributions(ext)]
    if found:
        return found[0].plugin
    if failures:            # a third-party plugin failing to import
        raise ForwardingConfigError(path, section, "use",
                                    f"cannot load {use!r}: {failures[0]}")
    hint = ""
    if match["name"] in OLD_MARKERS and namespace == sinks_mod.NAMESPACE:
        hint = (f" (the {match['name']} sink is gone: a pipeline that ended in it is "
                f"a [view:...] now; docs/forwarding.md, \"Upgrading\")")
    raise ForwardingConfigError(path, section, "use",
                                f"no {namespace} entry point {use!r}; installed: "
                                f"{', '.join(_names(namespace)) or 'none'}{hint}")


def _names(namespace: str) -> list[str]:
    """The names of the installed entry points of ``namespace`` (none imported)."""
    manager = stevedore.NamedExtensionManager(namespace, names=[])
    return sorted({ep.name for ep in manager.list_entry_points()})


def _distributions(extension) -> set[str]:
    """The (normalised) distributions that install an extension's top-level package
    (stevedore's cached entry points do not carry their distribution)."""
    top = extension.entry_point.module.split(".", 1)[0]
    return {_normalise(d) for d in metadata.packages_distributions().get(top, ())}


def _call(path, section, use):
    """PasteDeploy's ``call:package.module:Class``: a class not published as an
    entry point (a site-local filter or sink)."""
    target = use[len("call:"):]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ForwardingConfigError(path, section, "use",
                                    f"{use!r} is not call:<module>:<class>")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except Exception as exc:  # noqa: BLE001 - a site-local plugin failing to import
        raise ForwardingConfigError(path, section, "use",
                                    f"cannot load {use!r}: {exc}") from None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
