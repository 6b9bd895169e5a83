"""Which fields each pipeline's sink receives, and whether a tenant-facing sink could
receive an admin-only field (pure: computed from the plugins and the filters, no
server is asked).

A probe document per resource type holds every field the plugin's mapping names, and
every admin-only field named literally, each with a placeholder value; the pipeline's
own filters run on it exactly as they run on real documents. Delivery pipelines read
the admin copy (their filters redact); the WebSocket pipeline serves each connection
its role's copy, so it is explained for both roles. Fields a mapping does not name
(free-form metadata) go through the same filters but cannot be listed here.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Iterable, Mapping

from forwarders.pipeline.pipeline import Pipeline
from searchlight_forward.model import documents

ADMIN, USER = "admin", "user"
PLACEHOLDER = "x"


@dataclasses.dataclass(frozen=True)
class Received:
    pipeline: str
    sink: str
    tenant_facing: bool
    resource_type: str
    role: str
    fields: tuple[str, ...]        # dotted paths the sink receives
    leaks: tuple[str, ...]         # admin-only fields a tenant-facing sink receives


def probe_document(mapping: Mapping[str, Any], admin_only: Iterable[str] = ()) -> dict:
    """A document with every mapped field (objects and nested lists followed) and
    every literally named admin-only field."""
    document = _probe(mapping)
    for pattern in admin_only:
        if not any(c in pattern for c in "*?["):
            document.setdefault(pattern, PLACEHOLDER)
    return document


def _probe(properties: Mapping[str, Any]) -> dict:
    document: dict = {}
    for name, spec in properties.items():
        inner = spec.get("properties") if isinstance(spec, Mapping) else None
        if inner:
            value = _probe(inner)
            document[name] = [value] if spec.get("type") == "nested" else value
        else:
            document[name] = PLACEHOLDER
    return document


def field_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of a document's leaves (list items without indices)."""
    if isinstance(node, list):
        return sorted({p for item in node for p in field_paths(item, prefix)})
    if isinstance(node, dict):
        if not node:
            return [prefix] if prefix else []
        out: list[str] = []
        for key, value in node.items():
            out += field_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return sorted(out)
    return [prefix]


def _admin_only(path: str, patterns: Iterable[str]) -> bool:
    top = path.split(".", 1)[0]
    return any(fnmatch.fnmatchcase(top, p) for p in patterns)


def explain(pipelines: Iterable[Pipeline], mappings: Mapping[str, Mapping[str, Any]],
            admin_only: Mapping[str, tuple[str, ...]]) -> list[Received]:
    """Per pipeline, resource type it selects and role: what its sink receives."""
    out = []
    for pipeline in pipelines:
        # A tenant's subscription (its project's changes, to its own endpoint) and
        # the pipeline subscriptions are made from are read by tenants too.
        subscription = pipeline.project_id is not None or \
            bool(getattr(pipeline.sink, "serves_subscriptions", False))
        queue_per_tenant = bool(getattr(pipeline.sink, "tenant_facing", False))
        tenant_facing = queue_per_tenant or subscription
        roles = (pipeline.role,) if pipeline.delivered else (ADMIN, USER)
        for rtype in sorted(mappings):
            if pipeline.resource_types is not None and rtype not in pipeline.resource_types:
                continue
            patterns = admin_only.get(rtype, ())
            for role in roles:
                document = probe_document(mappings[rtype], patterns)
                if role == USER:          # the user copy: the indexer left these out
                    document = documents.redact(document, patterns)
                for f in pipeline.filters:
                    document = f.apply(rtype, document)
                fields = tuple(field_paths(document))
                # (A subscription's admin copy goes to an admin who subscribed.)
                checked = queue_per_tenant or (subscription and role == USER)
                leaks = tuple(p for p in fields if _admin_only(p, patterns)) \
                    if checked else ()
                out.append(Received(pipeline.name, pipeline.sink_name, tenant_facing,
                                    rtype, role, fields, leaks))
    return out


def leaks(received: Iterable[Received]) -> list[Received]:
    """The rows where a tenant-facing sink receives an admin-only field."""
    return [r for r in received if r.leaks]
