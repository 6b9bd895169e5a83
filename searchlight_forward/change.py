"""The pure data the core passes around: notifications in, document changes out.

Nothing here does I/O. A resource plugin turns a ``Notification`` into one or more
``DocumentChange``; the indexer folds changes onto stored documents with
``merge.fold``; forwarders receive the result.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any, Callable, Mapping


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


Patch = Callable[[dict], dict]


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

    def __post_init__(self):
        if self.operation is Operation.INDEX and self.document is None:
            raise ValueError("an INDEX change needs a document")
        if self.operation is Operation.UPDATE and self.patch is None:
            raise ValueError("an UPDATE change needs a patch")
        if not self.id and self.locate_by is None:
            raise ValueError("a change needs an id or a locate_by lookup")


# -- patches: small pure building blocks plugins compose ---------------------------

def set_fields(fields: Mapping[str, Any]) -> Patch:
    """Overwrite the given top-level fields."""
    frozen = copy.deepcopy(dict(fields))

    def apply(doc: dict) -> dict:
        doc.update(copy.deepcopy(frozen))
        return doc
    return apply


def upsert_item(list_field: str, key: str, item: Mapping[str, Any]) -> Patch:
    """Add ``item`` to ``doc[list_field]``, replacing an element with the same key."""
    frozen = copy.deepcopy(dict(item))

    def apply(doc: dict) -> dict:
        items = [i for i in doc.get(list_field) or [] if i.get(key) != frozen.get(key)]
        items.append(copy.deepcopy(frozen))
        doc[list_field] = items
        return doc
    return apply


def remove_item(list_field: str, key: str, value: Any) -> Patch:
    """Remove every element of ``doc[list_field]`` whose ``key`` equals ``value``."""
    def apply(doc: dict) -> dict:
        doc[list_field] = [i for i in doc.get(list_field) or [] if i.get(key) != value]
        return doc
    return apply


def chain(*patches: Patch) -> Patch:
    def apply(doc: dict) -> dict:
        for p in patches:
            doc = p(doc)
        return doc
    return apply
