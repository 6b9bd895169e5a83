"""Prometheus metrics from a process's status snapshot (prometheus_client).

Each long-running process already keeps its counters for ``/status``; a collector
turns the same snapshot into metric families at scrape time, so the two never
disagree and no counter is incremented twice. Names follow Prometheus conventions
(``searchlight_forward_<process>_<counter>_total``); labels are bounded: a pipeline
name or a resource group (both from the configuration), never a resource id.
Counters and label values that are known in advance (a dead-letter stage, a close
code, a pipeline's counters) are exported at 0 before they are first counted, so
that an alert on them sees 0, not "no data".
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["CounterMetricFamily", "GaugeMetricFamily", "Histogram", "by_label", "counters",
           "gauge", "labelled_counters", "labelled_gauge", "metric_name", "registry"]

PREFIX = "searchlight_forward"
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    return "_".join(_NOT_NAME.sub("_", p) for p in (PREFIX,) + parts if p)


def counters(process: str, values: Mapping[str, float], help_text: str,
             labels: Mapping[str, str] | None = None,
             known: Iterable[str] = ()) -> list[CounterMetricFamily]:
    """One counter family per key of ``values`` (numbers only); every key of
    ``known`` is exported too, at 0 until it is counted."""
    return labelled_counters(process, [(labels or {}, values)], help_text, known)


def labelled_counters(process: str, rows: Iterable[tuple[Mapping[str, str], Mapping]],
                      help_text: str, known: Iterable[str] = ()) -> list[CounterMetricFamily]:
    """Counters of several labelled rows (e.g. one per pipeline), one family per key.

    A counter kept in a ``collections.Counter`` exists only once counted, and an
    alert on a series that does not exist sees "no data", not 0: every key of
    ``known`` is exported for every row, at 0 until it is counted."""
    known = tuple(known)
    families: dict[str, CounterMetricFamily] = {}
    for labels, values in rows:
        values = {**dict.fromkeys(known, 0), **values}
        for key, value in sorted(values.items()):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            family = families.get(key)
            if family is None:
                family = families[key] = CounterMetricFamily(
                    metric_name(process, key), f"{help_text}: {key}", labels=list(labels))
            family.add_metric(list(labels.values()), value)
    return list(families.values())


def by_label(process: str, name: str, help_text: str, label: str,
             counts: Mapping, known: Iterable = ()) -> CounterMetricFamily:
    """One counter family labelled by one bounded label (a stage, a close code, a
    status code): every value of ``known`` at 0 until counted, then what was counted."""
    values = {**{str(k): 0 for k in known}, **{str(k): v for k, v in counts.items()}}
    family = CounterMetricFamily(metric_name(process, name), help_text, labels=[label])
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


def labelled_gauge(process: str, name: str, help_text: str, label: str,
                   values: Mapping, known: Iterable = ()) -> GaugeMetricFamily:
    """A gauge family by one bounded label, every value of ``known`` present (0)."""
    merged = {**{str(k): 0 for k in known}, **{str(k): v for k, v in values.items()}}
    family = GaugeMetricFamily(metric_name(process, name), help_text, labels=[label])
    for value, n in sorted(merged.items()):
        family.add_metric([value], n)
    return family


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
