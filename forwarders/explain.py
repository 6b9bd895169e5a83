"""Which fields each pipeline's sink and each view's readers receive, and whether a
tenant-facing one could receive an admin-only field (pure: computed from the plugins
and the filters, no server is asked).

A probe document per resource type holds every field the plugin's mapping names, and
every admin-only field named literally, each with a placeholder value; the pipeline's
or view's own filters run on it exactly as they run on real documents. Delivery
pipelines read the admin copy (their filters redact); a view serves each reader the
role copy its role rule gives (``caller``: both roles; ``user``: the user copy), so it
is explained for those. Views are read by tenants (WebSocket, search, feeds,
subscriptions): their user rows are checked. Fields a mapping does not name
(free-form metadata) go through the same filters but cannot be listed here.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Iterable, Mapping

from forwarders.pipeline.probe import field_paths, probe_document
from forwarders.pipeline.pipeline import Pipeline
from forwarders.pipeline.view import View
from searchlight_forward.model import documents

ADMIN, USER = "admin", "user"
PIPELINE, VIEW = "pipeline", "view"


@dataclasses.dataclass(frozen=True)
class Received:
    kind: str                      # pipeline or view
    name: str                      # the pipeline's or view's name
    sink: str                      # a pipeline's sink; for a view, who serves it
    tenant_facing: bool
    resource_type: str
    role: str
    fields: tuple[str, ...]        # dotted paths the sink receives
    leaks: tuple[str, ...]         # admin-only fields a tenant-facing sink receives




def _admin_only(path: str, patterns: Iterable[str]) -> bool:
    top = path.split(".", 1)[0]
    return any(fnmatch.fnmatchcase(top, p) for p in patterns)


def explain(pipelines: Iterable[Pipeline], mappings: Mapping[str, Mapping[str, Any]],
            admin_only: Mapping[str, tuple[str, ...]], views: Iterable[View] = (),
            served_by: Mapping[str, str] | None = None) -> list[Received]:
    """Per pipeline (then view), resource type it selects and role: what its sink
    (or the view's readers) receive. ``served_by``: view name -> who serves it
    (``websocket``, ``subscriptions``), shown in the ``sink`` column."""
    out = []
    for pipeline in pipelines:
        # A tenant's subscription (its project's changes, to its own endpoint) is
        # read by tenants; so are queues in each resource's own project.
        subscription = pipeline.project_id is not None
        per_project = bool(getattr(pipeline.sink, "destination_per_project", False))
        out += _rows(PIPELINE, pipeline.name, pipeline.sink_name,
                     per_project or subscription, pipeline.resource_types,
                     pipeline.filters, (pipeline.role,), mappings, admin_only,
                     # (A subscription's admin copy goes to an admin who subscribed.)
                     lambda role: per_project or (subscription and role == USER))
    for view in views:
        who = (served_by or {}).get(view.name) or "unused"
        out += _rows(VIEW, view.name, who, True, view.resource_types, view.filters,
                     view.roles, mappings, admin_only, lambda role: role == USER)
    return out


def _rows(kind, name, sink, tenant_facing, resource_types, filters, roles, mappings,
          admin_only, checked) -> list[Received]:
    out = []
    for rtype in sorted(mappings):
        if resource_types is not None and rtype not in resource_types:
            continue
        patterns = admin_only.get(rtype, ())
        for role in roles:
            document = probe_document(mappings[rtype], patterns)
            if role == USER:          # the user copy: the indexer left these out
                document = documents.redact(document, patterns)
            for f in filters:
                document = f.apply(rtype, document)
            fields = tuple(field_paths(document))
            leaks = tuple(p for p in fields if _admin_only(p, patterns)) \
                if checked(role) else ()
            out.append(Received(kind, name, sink, tenant_facing, rtype, role, fields,
                                leaks))
    return out


def leaks(received: Iterable[Received]) -> list[Received]:
    """The rows where a tenant-facing sink receives an admin-only field."""
    return [r for r in received if r.leaks]
