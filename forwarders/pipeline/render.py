"""A view's documents as every way out that serves readers sends them (pure).

The WebSocket server, live search (WebSocket and ``POST /v1/search``) and the Atom
feeds render a stored role copy the same way: internal fields out, admin-only
fields out of user copies (again), the view's filters applied, and the result as
compact JSON, built once per entry and shared by every reader that may see it. An
entry that cannot be rendered is withheld (never sent unfiltered) and reported.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

import orjson

from searchlight_forward.changelog.entry import Entry
from searchlight_forward.model.documents import USER
from searchlight_forward.model.envelope import Envelope

LOG = logging.getLogger(__name__)


class Renderer:
    """Turns a stored role copy into a ``change`` frame: internal fields out,
    admin-only fields out of user copies (again), the pipeline's filters applied.

    The frame depends only on the change (its role copy), so it is built once and
    shared by every connection that may see it.
    """

    def __init__(self, filters: Sequence[Any] = (),
                 admin_only: Mapping[str, Iterable[str]] | None = None,
                 on_failure: Callable[[Entry, str], None] | None = None,
                 admin_copies: bool = True):
        self.filters = list(filters)
        self.admin_only = {k: tuple(v) for k, v in (admin_only or {}).items()}
        #: the view's role rule: False (role = user) serves admins the user copy
        self.admin_copies = admin_copies
        self.failures = 0
        #: told of each entry withheld because a filter or its document failed
        self.on_failure = on_failure

    def role_for(self, role: str) -> str:
        """The role copy served to a reader entitled to ``role``'s."""
        return role if self.admin_copies else USER

    def _failed(self, entry: Entry, exc: Exception) -> None:
        self.failures += 1
        if self.on_failure is None:
            LOG.exception("withholding %r: a filter or the document failed", entry)
        elif entry.problem is not None:
            self.on_failure(entry, entry.problem)
        else:
            self.on_failure(entry, f"a filter or the document failed: "
                                   f"{type(exc).__name__}: {str(exc)[:300]}")

    def envelope(self, entry: Entry) -> Envelope:
        problem = entry.problem
        if problem is not None:
            raise ValueError(problem)       # withheld and recorded, never sent
        envelope = entry.envelope(self.admin_only.get(entry.resource_type, ()))
        document = envelope.document
        if document is not None:
            for f in self.filters:
                document = f.apply(envelope.resource_type, document)
            envelope = envelope.with_document(document)
        return envelope

    def shared_envelope(self, entry: Entry) -> tuple[Envelope, str] | None:
        """The role copy's envelope after the filters and its JSON text, built once
        per entry for every live search that sees it; None if a filter failed."""
        if entry.shared is None:
            try:
                envelope = self.envelope(entry)
                entry.shared = (envelope, dumps(envelope.to_dict()))
            except Exception as exc:  # noqa: BLE001 - a filter bug must not leak or kill
                self._failed(entry, exc)
                entry.shared = False
        return entry.shared or None

    def render(self, entry: Entry) -> str | None:
        """The frame text, or None if a filter failed (the change is then withheld)."""
        if entry.memo is None:
            try:
                envelope = self.envelope(entry)
                entry.memo = dumps(
                    {"type": "change", "cursor": str(entry.after) if entry.after else None,
                     "envelope": envelope.to_dict()})
            except Exception as exc:  # noqa: BLE001 - a filter bug must not leak or kill
                self._failed(entry, exc)
                entry.memo = False
        return entry.memo or None


def dumps(data: dict) -> str:
    """Compact JSON text; orjson (frames are most of the server's work), or json for
    what orjson will not take (non-string keys)."""
    try:
        return orjson.dumps(data, default=str).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"), default=str)


