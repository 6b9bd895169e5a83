"""Field filters: pure functions from a document to a document.

A filter is found through the ``searchlight_forward.filters`` entry points and built
from its ini section's options (``forwarders.options.SectionOptions``). It must not
do I/O: the same filter runs in the delivery service and in the WebSocket server, on
documents read back from Elasticsearch, and every path out must give the same
result.
"""
from __future__ import annotations

from typing import Mapping

from forwarders.options import OptionError, SectionOptions

NAMESPACE = "searchlight_forward.filters"


class FilterConfigError(OptionError):
    """An option of a filter section is missing or invalid."""


class Filter:
    """Base class. Subclasses read ``options`` in ``__init__`` and implement ``apply``."""

    def __init__(self, name: str, options: Mapping[str, str], context: "FilterContext"):
        self.name = name
        self.options = SectionOptions(options, error=FilterConfigError)
        self.context = context

    def apply(self, resource_type: str, document: dict) -> dict:
        """Return the document to forward (a new dict; never mutate the input)."""
        raise NotImplementedError


class FilterContext:
    """What filters may know about the deployment, without I/O."""

    def __init__(self, admin_only: Mapping[str, tuple[str, ...]] | None = None,
                 resource_types: tuple[str, ...] = (),
                 unsearchable: Mapping[str, tuple[str, ...]] | None = None):
        #: resource_type -> fnmatch patterns of its admin-only fields (plugins + config)
        self.admin_only = dict(admin_only or {})
        #: resource_type -> fnmatch patterns of its unsearchable fields (config)
        self.unsearchable = dict(unsearchable or {})
        #: every resource type the enabled plugins provide
        self.resource_types = tuple(resource_types)
