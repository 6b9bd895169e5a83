"""Read etc/forwarders.ini into pipelines (PasteDeploy conventions, our own loader).

PasteDeploy builds WSGI applications; a pipeline here ends in a sink, not an app,
so this loader keeps its conventions and nothing else: ``[filter:NAME]`` and
``[sink:NAME]`` sections with ``use = egg:<distribution>#<entry point>``, ordered
``[pipeline:NAME] pipeline = filter ... sink``, ``[DEFAULT]`` values inherited by
every section, and ``%(here)s`` for the file's directory. Any mistake stops
start-up with the file, section and option at fault.
"""
from __future__ import annotations

import configparser
import dataclasses
import fnmatch
import os
import re
from importlib import metadata
from typing import Mapping

from forwarders import filters as filters_mod
from forwarders import sinks as sinks_mod
from forwarders.envelope import Envelope
from forwarders.filters import Filter, FilterConfigError, FilterContext
from forwarders.filters.fields import split_list
from forwarders.sinks import Sink, SinkConfigError, SinkContext

POLICIES = ("drop", "retry", "hold")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ForwardingConfigError(ValueError):
    def __init__(self, path: str, section: str, option: str | None, message: str):
        where = f"{path} [{section}]" + (f" {option}" if option else "")
        super().__init__(f"{where}: {message}")
        self.path, self.section, self.option = path, section, option


@dataclasses.dataclass(frozen=True)
class Policy:
    on_failure: str = "retry"     # drop | retry | hold
    attempts: int = 5             # retry: tries before dropping
    backoff: float = 0.5          # first wait, seconds (doubles, with jitter)
    max_backoff: float = 30.0


@dataclasses.dataclass
class Pipeline:
    name: str
    filters: list[Filter]
    sink_name: str
    sink: Sink
    policy: Policy
    must_deliver: bool = False
    resource_types: frozenset[str] | None = None   # None: every type
    event_types: tuple[str, ...] | None = None      # fnmatch patterns; None: all

    def wants(self, envelope: Envelope) -> bool:
        if self.resource_types is not None and envelope.resource_type not in self.resource_types:
            return False
        if self.event_types is not None and not any(
                fnmatch.fnmatchcase(envelope.event_type or "", p) for p in self.event_types):
            return False
        return True

    def transform(self, envelope: Envelope) -> Envelope:
        """The envelope as this pipeline's sink receives it."""
        document = envelope.document
        if document is None:
            return envelope
        for f in self.filters:
            document = f.apply(envelope.resource_type, document)
        return envelope.with_document(document)


def load(path: str, filter_context: FilterContext, sink_context: SinkContext
         ) -> list[Pipeline]:
    """The active pipelines of ``path``; raises ForwardingConfigError."""
    parser = _read(path)
    if not parser.has_section("forwarding"):
        raise ForwardingConfigError(path, "forwarding", None,
                                    "missing section; it lists the active pipelines")
    names = split_list(parser.get("forwarding", "pipelines", fallback="").replace(" ", ","))
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
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        raise ForwardingConfigError(path, "?", None, f"not a valid ini file"
                                    f"{f' (line {line})' if line else ''}: {exc}") from None
    return parser


def _get(parser, path, section, option, fallback=None, required=False):
    try:
        value = parser.get(section, option, fallback=None)
    except configparser.InterpolationError as exc:
        raise ForwardingConfigError(path, section, option, f"bad %(...)s reference: {exc}") from None
    if value is None or (required and not value.strip()):
        if required:
            raise ForwardingConfigError(path, section, option, "missing required option")
        return fallback
    return value


def _pipeline(parser, path, name, filter_context, sink_context) -> Pipeline:
    section = f"pipeline:{name}"
    if not parser.has_section(section):
        raise ForwardingConfigError(path, "forwarding", "pipelines",
                                    f"pipeline {name!r} has no [{section}] section")
    chain = split_list(_get(parser, path, section, "pipeline", required=True).replace(" ", ","))
    if not chain:
        raise ForwardingConfigError(path, section, "pipeline", "empty pipeline")
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
    sink, policy = _sink(parser, path, sink_name, sink_context)

    resource_types = _get(parser, path, section, "resource_types")
    if resource_types is not None:
        resource_types = frozenset(split_list(resource_types))
        unknown = sorted(resource_types - set(filter_context.resource_types))
        if unknown and filter_context.resource_types:
            raise ForwardingConfigError(
                path, section, "resource_types",
                f"unknown resource type(s) {', '.join(unknown)}; enabled: "
                f"{', '.join(sorted(filter_context.resource_types))}")
    event_types = _get(parser, path, section, "event_types")
    if event_types is not None:
        event_types = tuple(split_list(event_types))
    must_deliver = _bool(parser, path, section, "must_deliver", False)
    if must_deliver and policy.on_failure != "hold":
        raise ForwardingConfigError(
            path, section, "must_deliver",
            f"a must-deliver pipeline needs its sink to hold changes durably: set "
            f"on_failure = hold in [sink:{sink_name}] (it is {policy.on_failure})")
    return Pipeline(name, built_filters, sink_name, sink, policy, must_deliver,
                    resource_types, event_types)


def _filter(parser, path, name, context) -> Filter:
    section = f"filter:{name}"
    cls = _entry_point(parser, path, section, filters_mod.NAMESPACE)
    try:
        return cls(name, _options(parser, path, section), context)
    except FilterConfigError as exc:
        option, _, message = str(exc).partition(": ")
        raise ForwardingConfigError(path, section, option if message else None,
                                    message or str(exc)) from None


def _sink(parser, path, name, context) -> tuple[Sink, Policy]:
    section = f"sink:{name}"
    cls = _entry_point(parser, path, section, sinks_mod.NAMESPACE)
    options = _options(parser, path, section)
    policy = Policy(
        on_failure=options.get("on_failure", getattr(cls, "default_policy", "retry")),
        attempts=_number(path, section, options, "attempts", int, Policy.attempts),
        backoff=_number(path, section, options, "backoff", float, Policy.backoff),
        max_backoff=_number(path, section, options, "max_backoff", float, Policy.max_backoff))
    if policy.on_failure not in POLICIES:
        raise ForwardingConfigError(path, section, "on_failure",
                                    f"{policy.on_failure!r} is not one of {', '.join(POLICIES)}")
    try:
        return cls(name, options, context), policy
    except SinkConfigError as exc:
        option, _, message = str(exc).partition(": ")
        raise ForwardingConfigError(path, section, option if message else None,
                                    message or str(exc)) from None


def _entry_point(parser, path, section, namespace):
    use = _get(parser, path, section, "use", required=True).strip()
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


def _options(parser, path, section) -> Mapping[str, str]:
    return {k: _get(parser, path, section, k) for k in parser.options(section)
            if k not in ("use", "here")}


def _number(path, section, options, option, kind, default):
    if option not in options:
        return default
    try:
        value = kind(options[option])
    except ValueError:
        raise ForwardingConfigError(path, section, option,
                                    f"{options[option]!r} is not a {kind.__name__}") from None
    if value <= 0 and option != "attempts" or value < 1 and option == "attempts":
        raise ForwardingConfigError(path, section, option, "must be positive")
    return value


def _bool(parser, path, section, option, default):
    value = _get(parser, path, section, option)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ForwardingConfigError(path, section, option, f"{value!r} is not true or false")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
