"""What a plugin produced, checked before anything is written (pure).

A payload of the wrong shape must become a dead letter, never a document: a list
``tenant_id`` indexed as a list ``project_id`` breaks every reader that routes by
project, and a number ``12345`` where an id belongs merges unrelated resources
into one document ``"12345"``. ``check`` raises ``PayloadError`` naming the field
and what it should be; the listener dead-letters the notification with that reason.

The rules follow the plugin's Elasticsearch mapping, as Elasticsearch itself would
read the value (it coerces numeric strings into numbers, takes a list wherever one
value goes), plus stricter ones for the fields every reader relies on: ``id`` is a
non-empty string, ``project_id`` and ``tenant_id`` a string or null.
"""
from __future__ import annotations

import ipaddress
import math
from typing import Any, Mapping

from searchlight_forward.model.change import (DocumentChange, Operation, RemoveItem,
                                              SetFields, UpsertItem)
from searchlight_forward.plugins.base import PayloadError

MAX_ID_BYTES = 512          # Elasticsearch's limit on a document _id
PROJECT_FIELDS = ("project_id", "tenant_id")
INT_RANGES = {"integer": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1),
              "short": (-2**15, 2**15 - 1), "byte": (-2**7, 2**7 - 1)}
SCALARS = (str, int, float, bool)


def check(change: DocumentChange, mapping: Mapping[str, Any]) -> None:
    """``PayloadError`` if ``change`` would store something its readers cannot trust."""
    where = change.event_type or change.resource_type
    if change.id or change.locate_by is None:
        _identifier(change.id, f"{where}: the resource id")
    if change.project_id is not None and not isinstance(change.project_id, str):
        raise PayloadError(f"{where}: the project id is {_kind(change.project_id)}, "
                           "expected a string or null")
    if change.operation is Operation.INDEX:
        fields = dict(change.document or {})
        _identifier(fields.get("id"), f"{where}: document field 'id'")
        _fields(fields, mapping, where)
    elif change.operation is Operation.UPDATE:
        for op in change.patch.ops:
            if isinstance(op, SetFields):
                _fields(dict(op.fields), mapping, where)
            elif isinstance(op, UpsertItem):
                spec = mapping.get(op.list_field) or {}
                item = dict(op.item)
                _identifier(item.get(op.key), f"{where}: {op.list_field} item's {op.key!r}")
                _fields(item, spec.get("properties") or {}, f"{where}: {op.list_field} item")
            elif isinstance(op, RemoveItem):
                _identifier(op.value, f"{where}: {op.list_field} item's {op.key!r}")


def _identifier(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{what} is {_kind(value)}, expected a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise PayloadError(f"{what} is longer than {MAX_ID_BYTES} bytes")


def _fields(fields: Mapping[str, Any], mapping: Mapping[str, Any], where: str) -> None:
    for name in PROJECT_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise PayloadError(f"{where}: field {name!r} is {_kind(value)}, expected a "
                               "string or null")
    if "id" in fields and fields["id"] is not None and not isinstance(fields["id"], str):
        raise PayloadError(f"{where}: field 'id' is {_kind(fields['id'])}, expected a "
                           "string")
    for name, value in fields.items():
        spec = mapping.get(name)
        if spec is not None and value is not None:
            _value(value, spec, f"{where}: field {name!r}")


def _value(value: Any, spec: Mapping[str, Any], what: str) -> None:
    """``value`` against one mapping entry (lists: each element, as Elasticsearch)."""
    kind = spec.get("type", "object" if "properties" in spec else None)
    if kind == "flattened" or kind is None:
        return                       # any JSON object; no rule to add
    if isinstance(value, list):
        for element in value:
            if isinstance(element, list):
                raise PayloadError(f"{what} holds a list in a list, expected "
                                   f"{_expected(kind)}")
            if element is not None:
                _value(element, spec, what)
        return
    if kind in ("object", "nested"):
        if not isinstance(value, Mapping):
            raise PayloadError(f"{what} is {_kind(value)}, expected an object")
        for name, inner in value.items():
            sub = (spec.get("properties") or {}).get(name)
            if sub is not None and inner is not None:
                _value(inner, sub, f"{what}.{name}")
        return
    if not isinstance(value, SCALARS):
        raise PayloadError(f"{what} is {_kind(value)}, expected {_expected(kind)}")
    if kind in INT_RANGES or kind in ("float", "double", "half_float", "scaled_float"):
        _number(value, kind, what)
    elif kind == "boolean":
        if not (isinstance(value, bool) or value in ("true", "false", "")):
            raise PayloadError(f"{what} is {_kind(value)} {_show(value)}, expected a "
                               "boolean")
    elif kind == "date":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PayloadError(f"{what} is {_kind(value)}, expected a date (a string)")
    elif kind == "ip":
        try:
            ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            raise PayloadError(f"{what} is {_kind(value)} {_show(value)}, expected an "
                               "IP address") from None


def _number(value: Any, kind: str, what: str) -> None:
    number: Any = value
    if isinstance(value, bool):
        number = None
    elif isinstance(value, str):
        try:
            number = float(value.strip()) if value.strip() else None
        except ValueError:
            number = None
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        raise PayloadError(f"{what} is {_kind(value)} {_show(value)}, expected "
                           f"{_expected(kind)}")
    low, high = INT_RANGES.get(kind, (None, None))
    if low is not None and not low <= number <= high:
        raise PayloadError(f"{what} is {_show(value)}, out of range for {_expected(kind)}")


def _expected(kind: str) -> str:
    if kind in INT_RANGES:
        return "an integer" if kind == "integer" else f"an integer ({kind})"
    if kind in ("object", "nested"):
        return "an object"
    return {"keyword": "a string", "text": "a string", "date": "a date",
            "boolean": "a boolean", "ip": "an IP address"}.get(kind, f"a {kind}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})" if len(repr(value)) <= 40 else "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
