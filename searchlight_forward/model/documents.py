"""How a resource state is laid out in Elasticsearch (pure).

Every resource is stored twice, Searchlight-style: an admin copy with every field and
a user copy without the admin-only fields, so a query made for the user role cannot
match, sort on or return an admin-only field. Both copies carry the same external
version. A deleted resource keeps a tombstone (``sf_deleted``) that the ``-search``
alias filters out and whose version outranks every late update of the resource.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Iterable

ROLE_FIELD = "sf_role"
DELETED_FIELD = "sf_deleted"
INCOMPLETE_FIELD = "sf_incomplete"
BASE_VERSION_FIELD = "sf_base_version"
FIELD_VERSIONS_FIELD = "sf_field_versions"
EVENT_TYPE_FIELD = "sf_event_type"      # the event of the newest change folded in
CHANGED_AT_FIELD = "sf_changed_at"      # that notification's emission time
VERSION_FIELD = "sf_version"            # the external version, readable in _source
PRIORITY_FIELD = "sf_priority"          # that notification's priority (info, error...)
ALERT_FIELD = "sf_alert"                # the newest warn/error/critical one, while it
                                        # rides on later changes (model.priority)
WRITTEN_AT_FIELD = "sf_written_at"      # when it was indexed (ms since the epoch, the
                                        # listener's clock): tombstone retention
INTERNAL_FIELDS = (ROLE_FIELD, DELETED_FIELD, INCOMPLETE_FIELD, BASE_VERSION_FIELD,
                   FIELD_VERSIONS_FIELD, EVENT_TYPE_FIELD, CHANGED_AT_FIELD,
                   VERSION_FIELD, PRIORITY_FIELD, ALERT_FIELD, WRITTEN_AT_FIELD)

ADMIN = "admin"
USER = "user"
ROLES = (ADMIN, USER)

INTERNAL_MAPPING = {
    ROLE_FIELD: {"type": "keyword"},
    DELETED_FIELD: {"type": "boolean"},
    INCOMPLETE_FIELD: {"type": "boolean"},
    BASE_VERSION_FIELD: {"type": "long", "index": False},
    FIELD_VERSIONS_FIELD: {"type": "object", "enabled": False},
    EVENT_TYPE_FIELD: {"type": "keyword"},
    CHANGED_AT_FIELD: {"type": "keyword", "index": False},
    VERSION_FIELD: {"type": "long"},
    PRIORITY_FIELD: {"type": "keyword"},
    ALERT_FIELD: {"type": "object", "enabled": False},
    WRITTEN_AT_FIELD: {"type": "long"},
}


def doc_id(resource_id: str, role: str) -> str:
    return f"{resource_id}_{role.upper()}"


@dataclasses.dataclass
class ResourceState:
    """A resource as the indexer knows it: its API-shaped document and version."""

    resource_type: str
    id: str
    project_id: str | None
    version: int                # the newest change folded in
    document: dict              # API-shaped, no internal fields
    deleted: bool = False
    base_version: int = 0       # version of the last full document (0: none yet)
    field_versions: dict = dataclasses.field(default_factory=dict)
    # ^ fields set by partial notifications newer than the base, with their versions
    event_type: str = ""        # of the newest change folded in
    changed_at: str = ""        # its notification's emission time
    priority: str = "info"      # its notification's priority
    alert: dict | None = None   # the alert riding on it (model.priority)

    @property
    def incomplete(self) -> bool:
        """Built from partial notifications only: no full document seen yet."""
        return self.base_version == 0 and not self.deleted

    def copy(self) -> "ResourceState":
        """A copy that may be changed without touching this one.

        Documents are treated as immutable values: the fold builds a new dict for
        every change and never edits a document in place, so sharing them is safe
        and saves a deep copy per change on the hot path.
        """
        return dataclasses.replace(self, field_versions=dict(self.field_versions))


def redact(document: dict, patterns: Iterable[str]) -> dict:
    """Drop top-level fields matching any fnmatch pattern."""
    patterns = tuple(patterns)
    if not patterns:
        return dict(document)
    return {k: v for k, v in document.items()
            if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def es_sources(state: ResourceState, admin_only: Iterable[str],
               written_at: int = 0) -> dict[str, dict]:
    """The two stored copies of a state, keyed by role (``written_at``: when, in ms
    since the epoch)."""
    base = {DELETED_FIELD: state.deleted, INCOMPLETE_FIELD: state.incomplete,
            EVENT_TYPE_FIELD: state.event_type, CHANGED_AT_FIELD: state.changed_at,
            VERSION_FIELD: state.version, PRIORITY_FIELD: state.priority,
            ALERT_FIELD: state.alert,
            WRITTEN_AT_FIELD: written_at}
    admin = dict(state.document, **base, **{ROLE_FIELD: ADMIN,
                                           BASE_VERSION_FIELD: state.base_version,
                                           FIELD_VERSIONS_FIELD: state.field_versions})
    user = dict(redact(state.document, admin_only), **base, **{ROLE_FIELD: USER})
    return {ADMIN: admin, USER: user}


def state_from_source(source: dict, version: int | None = None) -> ResourceState:
    """Rebuild a state from the admin copy Elasticsearch returned (its version is
    the one in ``_source``; ``version`` serves documents written without it)."""
    doc = {k: v for k, v in source.items() if k not in INTERNAL_FIELDS}
    stored = source.get(VERSION_FIELD)
    return ResourceState(
        resource_type=doc.get("resource_type", ""), id=str(doc.get("id", "")),
        project_id=doc.get("project_id"),
        version=int(stored) if isinstance(stored, int) else int(version or 0), document=doc,
        deleted=bool(source.get(DELETED_FIELD)),
        base_version=int(source.get(BASE_VERSION_FIELD) or 0),
        field_versions=dict(source.get(FIELD_VERSIONS_FIELD) or {}),
        event_type=source.get(EVENT_TYPE_FIELD) or "",
        changed_at=source.get(CHANGED_AT_FIELD) or "",
        priority=source.get(PRIORITY_FIELD) or "info",
        alert=source.get(ALERT_FIELD) or None)
