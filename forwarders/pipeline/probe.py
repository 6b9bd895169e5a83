"""Probe documents: every field a plugin's mapping names, each with a placeholder,
so that a view's or pipeline's filters can be run on "every field" and what comes
out listed (pure). ``explain`` shows it to operators; live search builds from it the
fields a role may query (a field the filters remove cannot be queried)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

PLACEHOLDER = "x"


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
