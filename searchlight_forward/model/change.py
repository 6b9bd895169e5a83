"""The pure data the core passes around: notifications in, document changes out.

Nothing here does I/O. A resource plugin turns a ``Notification`` into one or more
``DocumentChange``; the indexer folds changes onto stored documents with
``merge.fold``; forwarders receive the result.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any, Mapping


class Operation(str, enum.Enum):
    INDEX = "index"    # the notification carries the whole resource
    UPDATE = "update"  # the notification carries some fields: patch the stored document
    DELETE = "delete"  # the resource is gone; its tombstone outranks every older change


@dataclasses.dataclass(frozen=True)
class Notification:
    """One oslo.messaging notification, as the listener received it."""

    event_type: str
    payload: Any
    publisher_id: str = ""
    priority: str = "info"
    timestamp: str = ""          # oslo.messaging metadata timestamp (emission time, UTC)
    message_id: str = ""
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Patch:
    """A pure edit of a document, made of ops that each say what they touch.

    Calling a patch applies it to a document and returns it. ``ops`` lets the
    indexer version each touched field or list item on its own, so partial
    notifications commute whatever their arrival order.
    """

    ops: tuple = ()

    def __call__(self, doc: dict) -> dict:
        for op in self.ops:
            doc = op.apply(doc)
        return doc


@dataclasses.dataclass(frozen=True)
class SetFields(Patch):
    fields: Mapping[str, Any]

    @property
    def ops(self):
        return (self,)

    def apply(self, doc: dict) -> dict:
        doc.update(self.fields)   # values are shared, never edited in place
        return doc


@dataclasses.dataclass(frozen=True)
class UpsertItem(Patch):
    """Add ``item`` to ``doc[list_field]``, replacing the element with the same key."""
    list_field: str
    key: str
    item: Mapping[str, Any]

    @property
    def ops(self):
        return (self,)

    @property
    def value(self):
        return self.item.get(self.key)

    def apply(self, doc: dict) -> dict:
        items = [i for i in doc.get(self.list_field) or [] if i.get(self.key) != self.value]
        items.append(dict(self.item))
        # Sorted by key, so the list is the same whatever order items arrived in.
        doc[self.list_field] = sorted(items, key=lambda i: str(i.get(self.key)))
        return doc


@dataclasses.dataclass(frozen=True)
class RemoveItem(Patch):
    """Remove the elements of ``doc[list_field]`` whose ``key`` equals ``value``."""
    list_field: str
    key: str
    value: Any

    @property
    def ops(self):
        return (self,)

    def apply(self, doc: dict) -> dict:
        doc[self.list_field] = [i for i in doc.get(self.list_field) or []
                                if i.get(self.key) != self.value]
        return doc


@dataclasses.dataclass(frozen=True)
class Chain(Patch):
    ops: tuple = ()


def set_fields(fields: Mapping[str, Any]) -> SetFields:
    """Overwrite the given top-level fields."""
    return SetFields(copy.deepcopy(dict(fields)))


def upsert_item(list_field: str, key: str, item: Mapping[str, Any]) -> UpsertItem:
    return UpsertItem(list_field, key, copy.deepcopy(dict(item)))


def remove_item(list_field: str, key: str, value: Any) -> RemoveItem:
    return RemoveItem(list_field, key, value)


def chain(*patches: Patch) -> Chain:
    return Chain(tuple(op for p in patches for op in p.ops))


@dataclasses.dataclass(frozen=True)
class DocumentChange:
    """What one notification means for one resource document.

    ``document`` is the full API-shaped resource for INDEX, ``None`` otherwise.
    ``patch`` is a pure function applied to a copy of the stored document for UPDATE.
    ``locate_by`` names a (field, value) the indexer searches for when the
    notification does not carry the resource id (e.g. a security group rule delete
    only names the rule); ``id`` is then empty until the indexer resolves it.
    """

    resource_type: str
    id: str
    project_id: str | None
    operation: Operation
    version: int
    event_type: str
    timestamp: str
    document: dict | None = None
    patch: Patch | None = None
    locate_by: tuple[str, str] | None = None
    priority: str = "info"      # of the notification: info, warn, error, critical...

    def __post_init__(self):
        if self.operation is Operation.INDEX and self.document is None:
            raise ValueError("an INDEX change needs a document")
        if self.operation is Operation.UPDATE and self.patch is None:
            raise ValueError("an UPDATE change needs a patch")
        if not self.id and self.locate_by is None:
            raise ValueError("a change needs an id or a locate_by lookup")
