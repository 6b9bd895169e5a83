"""The three field filters operators ask for (pure)."""
from __future__ import annotations

import re
from typing import Any

from forwarders.filters.base import Filter, FilterConfigError
from searchlight_forward.model import documents


class AdminOnlyFields(Filter):
    """Drops each plugin's admin-only fields, plus ``fields`` (fnmatch wildcards).

    Use it on pipelines whose consumers are not all admins (a tenant's Zaqar queue).
    """

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.extra = tuple(self.options.listing("fields", []))

    def apply(self, resource_type: str, document: dict) -> dict:
        return documents.redact(document,
                               self.context.admin_only.get(resource_type, ()) + self.extra)


class UnsearchableFields(Filter):
    """Drops the fields configured unsearchable for each type.

    They are set per plugin in the main configuration
    (``[resource_plugin:<name>] unsearchable_fields``), which also keeps them out of
    the search mapping, so one list governs both.
    """

    def apply(self, resource_type: str, document: dict) -> dict:
        return documents.redact(document, self.context.unsearchable.get(resource_type, ()))


class RegexFields(Filter):
    """Drops every field whose dotted path matches one of ``patterns``.

    Paths go through nested objects and lists of objects without indices:
    ``addresses.private.OS-EXT-IPS-MAC:mac_addr``, ``security_group_rules.remote_ip_prefix``.
    A pattern matches anywhere in the path unless anchored (``re.search``).
    """

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        raw = self.options.listing("patterns", [])
        if not raw:
            raise FilterConfigError("patterns", "at least one regular expression is required")
        self.patterns = []
        for pattern in raw:
            try:
                self.patterns.append(re.compile(pattern))
            except re.error as exc:
                raise FilterConfigError("patterns", f"{pattern!r} is not a valid "
                                        f"regular expression ({exc})") from None
        self._seen: dict[str, bool] = {}   # the same paths recur in every document

    def apply(self, resource_type: str, document: dict) -> dict:
        return self._walk(document, "")

    def _matches(self, path: str) -> bool:
        hit = self._seen.get(path)
        if hit is None:
            hit = any(p.search(path) for p in self.patterns)
            if len(self._seen) < 100_000:   # bounded: metadata keys are user-chosen
                self._seen[path] = hit
        return hit

    def _walk(self, node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            kept = {}
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if not self._matches(path):
                    kept[key] = self._walk(value, path)
            return kept
        if isinstance(node, list):
            return [self._walk(item, prefix) for item in node]
        return node
