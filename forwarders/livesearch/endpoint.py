"""The search endpoint's work: a live search's first page and the stream cursor.

``POST /v1/search`` (forwarders/api/app.py) answers with what a
WebSocket live search's ``results`` frame holds: the first page of matches as of
one change-log position, redacted exactly as the WebSocket redacts (the caller's
role copy, admin-only fields out of user copies, the WebSocket pipeline's filters),
and that position as ``cursor``. A page can show the results, then subscribe over
the WebSocket with the same query and that cursor: the stream starts right after
the results, nothing missed and nothing doubled.
"""
from __future__ import annotations

from typing import Any, Mapping

from forwarders.livesearch.query import QueryError, Vocabularies, parse
from searchlight_forward import search
from searchlight_forward.changelog import snapshot
from searchlight_forward.changelog.reader import ChangeLog, NoIndex

MAX_TYPES = 32


class Searcher:
    """``renderer``: the WebSocket's ``Renderer`` (role copy redaction and the
    pipeline's filters), so both ways out send the same documents."""

    def __init__(self, es: search.Client, groups: Mapping[str, str],
                 vocabularies: Vocabularies, renderer: Any, cap: int = 5000):
        self.es = es
        self.groups = dict(groups)           # resource type -> its resource group
        self.vocabularies = vocabularies
        self.renderer = renderer
        self.cap = cap

    def search(self, body: Any, role: str, project_id: str | None) -> dict:
        """The answer to a search body; ``QueryError`` (a 400) names what is wrong,
        ``snapshot.TooBroad`` too; ``project_id`` None searches every project."""
        role = self.renderer.role_for(role)          # the view's role rule
        if not isinstance(body, Mapping):
            raise QueryError("body", "a JSON object")
        unknown = set(body) - {"resource_types", "query", "sort", "page_size",
                               "all_projects"}
        if unknown:
            raise QueryError(sorted(unknown)[0], "unknown field; known: resource_types, "
                             "query, sort, page_size, all_projects")
        types = body.get("resource_types")
        if (not isinstance(types, list) or not 1 <= len(types) <= MAX_TYPES
                or not all(isinstance(t, str) for t in types)):
            raise QueryError("resource_types", "a list of resource type names")
        wrong = sorted(t for t in types if t not in self.groups)
        if wrong:
            raise QueryError("resource_types", f"unknown resource type {wrong[0][:64]!r}; "
                             f"served here: {', '.join(sorted(self.groups))}")
        groups = {self.groups[t] for t in types}
        if len(groups) > 1:
            raise QueryError("resource_types", "types of one resource group at a time "
                             "(one cursor)")
        query = parse(body, self.vocabularies.get(role, types))
        changelog = ChangeLog(self.es, groups.pop())
        try:
            head = changelog.head().position
        except NoIndex:
            return {"hits": [], "total": 0, "cursor": None, "page_size": query.page_size}
        changelog.refresh(head.index)            # the head is searchable from here on
        found = snapshot.take(self.es, head, query.dsl(role, types, project_id),
                              query.sort_dsl(), query.page_size, self.cap)
        hits = []
        for entry in found.page:
            shared = self.renderer.shared_envelope(entry)
            if shared is not None:
                hits.append(shared[0].to_dict())
        return {"hits": hits, "total": found.total, "cursor": str(head),
                "page_size": query.page_size}
