"""Read etc/forwarders.ini into pipelines (PasteDeploy conventions, our own loader).

PasteDeploy builds WSGI applications; a pipeline here ends in a sink, not an app,
so this loader keeps its conventions and nothing else: ``[filter:NAME]`` and
``[sink:NAME]`` sections with ``use = egg:<distribution>#<entry point>`` (or
``call:<module>:<class>``), ordered
``[pipeline:NAME] pipeline = filter ... sink``, ``[DEFAULT]`` values inherited by
every section, and ``%(here)s`` for the file's directory. Values are parsed with
oslo.config's types; any mistake stops start-up with the file, section and option
at fault.
"""
from __future__ import annotations

import configparser
import importlib
import os
import re
from importlib import metadata

from forwarders.filters import base as filters_mod
from forwarders.filters.base import Filter, FilterContext
from forwarders.options import Float, Integer, OptionError, SectionOptions, split_list
from forwarders.pipeline.opts import pipelines_path
from forwarders.pipeline.pipeline import (BEGINNING, ON_FAILURE, START_FROM,
                                          FailurePolicy, Pipeline)
from forwarders.sinks import base as sinks_mod
from forwarders.sinks.base import Sink, SinkContext
from searchlight_forward.retry import Policy
from searchlight_forward.model.priority import PRIORITIES

PIPELINE_OPTIONS = frozenset({"pipeline", "resource_types", "event_types", "priorities",
                              "start_from"})


class ForwardingConfigError(ValueError):
    def __init__(self, path: str, section: str, option: str | None, message: str):
        where = f"{path} [{section}]" + (f" {option}" if option else "")
        super().__init__(f"{where}: {message}")
        self.path, self.section, self.option = path, section, option


def load_from_conf(conf, deployment, required: bool = False) -> list[Pipeline]:
    """The pipelines of ``[forwarding] config_file`` for a ``Deployment``; none if
    the file does not exist (unless ``required``)."""
    path = pipelines_path(conf)
    if not os.path.exists(path) and not required:
        return []
    return load(path, FilterContext(admin_only=deployment.admin_only,
                                    resource_types=deployment.resource_types,
                                    unsearchable=deployment.unsearchable),
                SinkContext(zaqar_url=conf.forwarding.zaqar_url))


def load(path: str, filter_context: FilterContext, sink_context: SinkContext
         ) -> list[Pipeline]:
    """The active pipelines of ``path``; raises ForwardingConfigError."""
    parser = _read(path)
    if not parser.has_section("forwarding"):
        raise ForwardingConfigError(path, "forwarding", None,
                                    "missing section; it lists the active pipelines")
    names = split_list(parser.get("forwarding", "pipelines", fallback="").replace(" ", ","))
    if len(set(names)) != len(names):
        raise ForwardingConfigError(path, "forwarding", "pipelines",
                                    "a pipeline is listed twice")
    return [_pipeline(parser, path, name, filter_context, sink_context) for name in names]


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


def _pipeline(parser, path, name, filter_context, sink_context) -> Pipeline:
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
    built_filters = [_filter(parser, path, f, filter_context) for f in filter_names]
    sink, failure = _sink(parser, path, sink_name, sink_context)

    resource_types = options.listing("resource_types")
    if resource_types is not None:
        resource_types = frozenset(resource_types)
        unknown = sorted(resource_types - set(filter_context.resource_types))
        if unknown and filter_context.resource_types:
            raise ForwardingConfigError(
                path, section, "resource_types",
                f"unknown resource type(s) {', '.join(unknown)}; enabled: "
                f"{', '.join(sorted(filter_context.resource_types))}")
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
    if sink.serves_subscriptions and (resource_types or event_types or priorities):
        raise ForwardingConfigError(path, section, "resource_types" if resource_types else
                                    "event_types" if event_types else "priorities",
                                    "each subscription selects its own changes; this "
                                    "pipeline gives only the filters they all pass")
    if sink.served_by_websocket and (event_types or priorities):
        raise ForwardingConfigError(path, section, "event_types" if event_types else
                                    "priorities", "WebSocket clients get every change of "
                                    "the resources they may see; select with "
                                    "resource_types only")
    return Pipeline(name, built_filters, sink_name, sink, failure, resource_types,
                    tuple(event_types) if event_types is not None else None, priorities,
                    start_from)


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
    found = [ep for ep in metadata.entry_points(group=namespace)
             if ep.name == match["name"]]
    if match["dist"]:
        wanted = _normalise(match["dist"])
        found = [ep for ep in found if ep.dist and _normalise(ep.dist.name) == wanted]
    if not found:
        available = sorted({ep.name for ep in metadata.entry_points(group=namespace)})
        raise ForwardingConfigError(path, section, "use",
                                    f"no {namespace} entry point {use!r}; installed: "
                                    f"{', '.join(available) or 'none'}")
    try:
        return found[0].load()
    except Exception as exc:  # noqa: BLE001 - a third-party plugin failing to import
        raise ForwardingConfigError(path, section, "use",
                                    f"cannot load {use!r}: {exc}") from None


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
