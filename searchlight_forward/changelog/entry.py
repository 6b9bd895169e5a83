"""One entry of the change log: a stored role copy as read at its ``_seq_no`` (pure)."""
from __future__ import annotations

from typing import Any, Mapping

from searchlight_forward.changelog.position import Position
from searchlight_forward.model import documents
from searchlight_forward.model.documents import (DELETED_FIELD, ROLE_FIELD,
                                                 VERSION_FIELD)
from searchlight_forward.model.envelope import Envelope, from_source


class Entry:
    """A role copy (``source``) of one resource, written at ``seq_no`` of ``shard``.

    ``resync`` marks entries read for a full re-read (a new index, a cursor older
    than the tombstone horizon): a tombstone among them is news only to a consumer
    that had the resource. ``memo`` lets a consumer cache what it makes of the
    entry (a WebSocket frame shared by every connection; ``shared`` the filtered
    envelope every live search shares). ``after`` is the reader's
    position right after this entry: a cursor from which reading on misses nothing
    (set by ``ChangeLog.pages``).
    """

    __slots__ = ("index", "shard", "seq_no", "source", "version", "resync", "memo", "after",
                 "shared", "_problem")

    def __init__(self, index: str, shard: int, seq_no: int, source: Mapping[str, Any],
                 version: int | None = None, resync: bool = False):
        self.index = index
        self.shard = shard
        self.seq_no = seq_no
        self.source = source
        stored = source.get(VERSION_FIELD)
        self.version = int(stored if isinstance(stored, int) else (version or 0))
        self.resync = resync
        self.memo: Any = None
        self.shared: Any = None
        self.after: Position | None = None
        self._problem: str | None | bool = False    # False: not checked yet

    @classmethod
    def from_hit(cls, hit: Mapping[str, Any], shard: int, resync: bool = False) -> "Entry":
        return cls(hit["_index"], shard, hit["_seq_no"], hit.get("_source") or {},
                   hit.get("_version"), resync)

    @property
    def key(self) -> tuple:
        """(resource_type, id): the resource, whichever role copy this is."""
        return (self.source.get("resource_type"), str(self.source.get("id")))

    @property
    def role(self) -> str | None:
        return self.source.get(ROLE_FIELD)

    @property
    def deleted(self) -> bool:
        return bool(self.source.get(DELETED_FIELD))

    @property
    def project_id(self) -> str | None:
        return self.source.get("project_id")

    @property
    def resource_type(self) -> str:
        return self.source.get("resource_type") or ""

    @property
    def problem(self) -> str | None:
        """Why no reader can hand this entry on, or None: the fields every reader
        routes by (type, id, project, role) are not what the indexer writes. The
        listener refuses such documents; one written before it did (or by another
        writer) is recorded as a dead letter by each reader, which goes on. Checked
        once per entry: every reader of a page shares it."""
        if self._problem is False:
            self._problem = self._check()
        return self._problem

    def _check(self) -> str | None:
        source = self.source
        for field, ok, expected in (
                ("resource_type", _text, "a non-empty string"),
                ("id", _text, "a non-empty string"),
                ("project_id", _text_or_null, "a string or null"),
                (ROLE_FIELD, _text, "a non-empty string")):
            value = source.get(field)
            if not ok(value):
                return (f"stored field {field!r} is {type(value).__name__} "
                        f"{repr(value)[:80]}, expected {expected}")
        return None

    @property
    def where(self) -> str:
        """Where it was read: index[shard]:seq_no."""
        return f"{self.index}[{self.shard}]:{self.seq_no}"

    def within(self, position: Position | None) -> bool:
        """Was this entry read already by a reader at ``position``?"""
        return (position is not None and position.index == self.index
                and position.covers(self.shard, self.seq_no))

    def envelope(self, admin_only: tuple[str, ...] = ()) -> Envelope:
        """The envelope for this role copy, without internal fields; ``admin_only``
        patterns are removed again from a user copy (written before a pattern was
        added)."""
        source = self.source
        if self.role != documents.ADMIN and admin_only:
            source = documents.redact(source, admin_only)
        return from_source(source, self.version)

    def __repr__(self) -> str:
        return (f"Entry({self.index}[{self.shard}]:{self.seq_no} {self.key} "
                f"v{self.version} {self.role}{' deleted' if self.deleted else ''})")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _text_or_null(value: Any) -> bool:
    return value is None or isinstance(value, str)
