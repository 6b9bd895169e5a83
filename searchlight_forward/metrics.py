"""Prometheus metrics from a process's status snapshot (prometheus_client).

Each long-running process already keeps its counters for ``/status``; a collector
turns the same snapshot into metric families at scrape time, so the two never
disagree and no counter is incremented twice. Names follow Prometheus conventions
(``searchlight_forward_<process>_<counter>_total``); labels are bounded: a pipeline
name or a resource group (both from the configuration), never a resource id.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["CounterMetricFamily", "GaugeMetricFamily", "Histogram", "counters", "gauge",
           "labelled_counters", "metric_name", "registry"]

PREFIX = "searchlight_forward"
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    return "_".join(_NOT_NAME.sub("_", p) for p in (PREFIX,) + parts if p)


def counters(process: str, values: Mapping[str, float], help_text: str,
             labels: Mapping[str, str] | None = None) -> list[CounterMetricFamily]:
    """One counter family per key of ``values`` (numbers only)."""
    return labelled_counters(process, [(labels or {}, values)], help_text)


def labelled_counters(process: str, rows: Iterable[tuple[Mapping[str, str], Mapping]],
                      help_text: str) -> list[CounterMetricFamily]:
    """Counters of several labelled rows (e.g. one per pipeline), one family per key."""
    families: dict[str, CounterMetricFamily] = {}
    for labels, values in rows:
        for key, value in sorted(values.items()):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            family = families.get(key)
            if family is None:
                family = families[key] = CounterMetricFamily(
                    metric_name(process, key), f"{help_text}: {key}", labels=list(labels))
            family.add_metric(list(labels.values()), value)
    return list(families.values())


def gauge(process: str, name: str, help_text: str, value: float,
          labels: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    labels = dict(labels or {})
    family = GaugeMetricFamily(metric_name(process, name), help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class SnapshotCollector:
    """A prometheus_client collector: ``families()`` is called at every scrape."""

    def __init__(self, families: Callable[[], list]):
        self._families = families

    def collect(self):
        yield from self._families()


def registry(families: Callable[[], list]) -> CollectorRegistry:
    """A registry of its own (no process-wide default state) for one process."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(families))
    return reg
