"""Where the delivery service's pipelines come from (pure).

The delivery service runs every pipeline its sources offer and knows nothing else
of them: the pipelines of forwarders.ini (``FixedPipelines``, read once) and
tenants' subscriptions (``forwarders.subscriptions.source``, read again every
``refresh_interval``) are two sources. A new revision of an offer replaces the
running pipeline; an offer that disappears is stopped and its cursor given back.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Iterable, Mapping

from forwarders.pipeline.pipeline import Pipeline
from searchlight_forward.model.documents import ADMIN


@dataclasses.dataclass(frozen=True)
class Offer:
    """One pipeline a source wants delivered."""
    revision: Hashable              # another revision replaces the running pipeline
    groups: tuple[str, ...]         # the resource groups it reads
    build: Callable[[], Pipeline]   # may raise: the source is told (``refused``)
    info: Mapping[str, Any] | None = None   # shown beside its counters in /status


class PipelineSource:
    #: the role copies its pipelines read (the service's feeds read these)
    roles: tuple[str, ...] = (ADMIN,)
    #: seconds between two reads of ``offers``; None: read once, at start
    refresh_interval: float | None = None
    #: tenants' pipelines: one failing is not the service's health, and their
    #: counters are summed (their number is the tenants' choice)
    tenants: bool = False

    def ensure(self) -> None:
        """Create what the source is stored in (at set-up, retried)."""

    def offers(self) -> dict[str, Offer]:
        """Pipeline name -> offer, for every pipeline to deliver now."""
        raise NotImplementedError

    def refused(self, name: str, reason: str) -> None:
        """Pipeline ``name`` could not be built or started, or its sink is gone."""

    def lead(self, forget_cursors: Callable[[str, set[str]], None]) -> None:
        """Duties of the live delivery process with the smallest id, after a read
        of ``offers``; ``forget_cursors(prefix, existing)`` deletes the cursors
        named ``prefix...`` that are not in ``existing``."""

    def close(self) -> None:
        """The service stops."""


class FixedPipelines(PipelineSource):
    """The pipelines of forwarders.ini, each in the groups whose list holds it."""

    def __init__(self, by_group: Mapping[str, Iterable[Pipeline]]):
        groups: dict[str, list[str]] = {}
        self.pipelines: dict[str, Pipeline] = {}
        for group, pipelines in by_group.items():
            for pipeline in pipelines:
                self.pipelines[pipeline.name] = pipeline
                groups.setdefault(pipeline.name, []).append(group)
        self._offers = {name: Offer(0, tuple(groups[name]), lambda p=p: p)
                        for name, p in self.pipelines.items()}

    def offers(self) -> dict[str, Offer]:
        return dict(self._offers)
