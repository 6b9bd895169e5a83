"""The telco consumer's pure part: envelopes in, decisions and lines out (no network).

The consumer (``telco_consumer.consumer``) claims messages from a Zaqar queue;
everything it decides about them is here, on plain data:

* ``parse(body)``: the message body as an ``Envelope``, or ``Malformed`` with the
  reason (see docs/zaqar.md, "The message");
* ``decide(known, version)``: apply a change only if its version is higher than the
  last one applied for that resource id (``duplicate`` if equal, ``stale`` if lower);
  a ``delete`` is applied the same way and leaves a tombstone, so a late ``index``
  cannot bring the resource back;
* ``State.plan(messages)`` -> ``Batch``: the decisions for one claimed batch, in
  order, without changing the state; ``State.commit(batch)`` once the batch's state
  is durable (so a failed write leaves the state as it was);
* ``resync_begin`` ... ``resync_end`` (a resynchronisation: the queue's cursor was
  older than the service's tombstone retention, or its index was rebuilt): every
  resource sent in between is current; a live resource known here that was not sent
  is gone, and is marked deleted at ``resync_end`` (a ``GONE`` line);
* ``format_line``: one readable line per applied change;
* ``dumps_state`` / ``loads_state`` and ``save_state`` / ``load_state``: the state
  file (``{id: version}`` plus a small summary per resource), written atomically
  (temporary file, fsync, rename, fsync of the directory).

State file (JSON)::

    {"format": 2,
     "resources": {"<id>": {"version": 1772452807000000270,
                            "resource_type": "OS::Nova::Server", "name": "vm-1",
                            "project_id": "6f70...", "status": "ACTIVE",
                            "deleted": false, "timestamp": "2026-03-02 12:00:07.270156"}},
     "resync": null}           # or the ids sent since a resync_begin

Format 1 (without ``resync``) is read too.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import tempfile
from typing import Any, Iterable

from searchlight_forward.model.envelope import (CONTROL, DELETE, INDEX, RESYNC_BEGIN,
                                                 Envelope, control)

STATE_FORMAT = 2
READABLE_FORMATS = (1, 2)

APPLY = "apply"
DUPLICATE = "duplicate"       # same version as the last one applied
STALE = "stale"               # older than the last one applied
MALFORMED = "malformed"       # not an envelope
RESYNC = "resync"             # resync_begin or resync_end

#: document fields shown as the resource's name / status, first present wins
NAME_FIELDS = ("name", "stack_name", "display_name", "floating_ip_address")
STATUS_FIELDS = ("status", "stack_status")
SHORT = 8                     # characters of an id / project shown before "…"
MAX_NAME = 40

_CLOCK_RE = re.compile(r"(?:^|[ T])(\d{2}:\d{2}:\d{2})")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


class Malformed(ValueError):
    """A message body that is not an envelope; the text says why."""


class StateFileError(Exception):
    """The state file cannot be read or written; the text says which and why."""


# ---------------------------------------------------------------------------------
# Envelopes and decisions.

def parse(body: Any) -> Envelope:
    """The envelope a message body carries; ``Malformed`` if it is not one.

    Strict on what identifies and orders a change (``id``, ``resource_type``,
    ``version``, ``operation``, and a ``document`` object for ``index``), lenient on
    the rest (``event_type`` / ``timestamp`` may be missing; a ``delete``'s document
    is ignored).
    """
    if not isinstance(body, dict):
        raise Malformed(f"body is {_kind(body)}, not an envelope object")
    if body.get("operation") in CONTROL:
        reason = (body.get("document") or {}).get("reason") \
            if isinstance(body.get("document"), dict) else None
        return control(body["operation"], str(reason or ""))
    for field in ("id", "resource_type"):
        value = body.get(field)
        if not isinstance(value, str) or not value:
            raise Malformed(f"{field} is {_kind(value)}, expected a non-empty string")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise Malformed(f"version is {_kind(version)}, expected a non-negative integer")
    operation = body.get("operation")
    if operation not in (INDEX, DELETE):
        raise Malformed(f"operation is {_kind(operation)}, expected 'index', 'delete', "
                        f"'resync_begin' or 'resync_end'")
    document = body.get("document")
    if operation == INDEX and not isinstance(document, dict):
        raise Malformed(f"document is {_kind(document)}, expected an object for 'index'")
    for field in ("project_id", "event_type", "timestamp"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise Malformed(f"{field} is {_kind(value)}, expected a string or null")
    return Envelope(resource_type=body["resource_type"], id=body["id"],
                    project_id=body.get("project_id"), version=version,
                    operation=operation, event_type=body.get("event_type"),
                    timestamp=body.get("timestamp"),
                    document=document if operation == INDEX else None)


def decide(known: int | None, version: int) -> str:
    """``apply`` if ``version`` is newer than ``known`` (None: never seen), else
    ``duplicate`` (same version) or ``stale`` (older)."""
    if known is None or version > known:
        return APPLY
    return DUPLICATE if version == known else STALE


def summarize(envelope: Envelope, previous: dict | None = None) -> dict:
    """What the state file keeps about a resource after applying ``envelope``.

    A delete keeps the name and project last seen (its document is null) and marks
    the resource deleted: the tombstone that makes a late ``index`` stale.
    """
    previous = previous or {}
    document = envelope.document or {}
    deleted = envelope.operation == DELETE
    return {
        "version": envelope.version,
        "resource_type": envelope.resource_type,
        "name": _first(document, NAME_FIELDS) if not deleted else previous.get("name"),
        "project_id": envelope.project_id if envelope.project_id is not None
        else previous.get("project_id"),
        "status": None if deleted else _first(document, STATUS_FIELDS),
        "deleted": deleted,
        "timestamp": envelope.timestamp,
    }


def format_line(envelope: Envelope, summary: dict | None = None) -> str:
    """``12:00:07 UPDATE OS::Nova::Server vm-1 (8e7c1f0a…) project 6f70a1b2… status
    ACTIVE v1772452807000000270``; deletes say ``DELETE`` and carry no status.

    The time is the change's own (the envelope's timestamp, else its version), UTC.
    """
    summary = summary if summary is not None else summarize(envelope)
    operation = "DELETE" if envelope.operation == DELETE else "UPDATE"
    name = _clean(summary.get("name")) or "-"
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 1] + "…"
    parts = [clock(envelope), operation, _clean(envelope.resource_type), name,
             f"({short(envelope.id)})", "project",
             short(summary.get("project_id")) or "-"]
    status = _clean(summary.get("status"))
    if status and envelope.operation != DELETE:
        parts += ["status", status]
    parts.append(f"v{envelope.version}")
    return " ".join(parts)


def clock(envelope: Envelope) -> str:
    """HH:MM:SS of the change: from its timestamp, else from its version
    (nanoseconds since the epoch, see searchlight_forward.model.versioning), else '--:--:--'."""
    match = _CLOCK_RE.search(envelope.timestamp or "")
    if match:
        return match.group(1)
    seconds = envelope.version // 1_000_000_000
    if 946684800 <= seconds < 7258118400:         # 2000 .. 2200: a plausible version
        return datetime.datetime.fromtimestamp(
            seconds, datetime.timezone.utc).strftime("%H:%M:%S")
    return "--:--:--"


def short(value: str | None) -> str:
    if not value:
        return ""
    value = _clean(value)
    return value if len(value) <= SHORT else value[:SHORT] + "…"


# ---------------------------------------------------------------------------------
# One claimed batch.

@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one message: ``decision`` is apply/duplicate/stale/malformed."""
    message_id: str
    decision: str
    envelope: Envelope | None = None
    line: str | None = None
    reason: str | None = None


@dataclasses.dataclass
class Batch:
    outcomes: list[Outcome]
    #: id -> summary, for the applied changes (the last one per id wins)
    updates: dict[str, dict]
    #: id -> latest document (None once deleted)
    documents: dict[str, dict | None]
    #: the ids sent since a resync_begin once the batch is applied (None: no resync)
    resync: set[str] | None = None

    @property
    def lines(self) -> list[str]:
        return [o.line for o in self.outcomes if o.decision in (APPLY, RESYNC) and o.line]

    @property
    def malformed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.decision == MALFORMED]

    def count(self, decision: str) -> int:
        return sum(1 for o in self.outcomes if o.decision == decision)


class State:
    """The consumer's view: per resource id, the summary of the last change applied
    (its ``version`` decides what comes next), and in memory the latest document."""

    def __init__(self, resources: dict[str, dict] | None = None,
                 resync: Iterable[str] | None = None):
        self.resources: dict[str, dict] = dict(resources or {})
        self.documents: dict[str, dict | None] = {}
        self.resync: set[str] | None = set(resync) if resync is not None else None

    def version_of(self, resource_id: str) -> int | None:
        entry = self.resources.get(resource_id)
        return None if entry is None else entry["version"]

    def versions(self) -> dict[str, int]:
        return {rid: entry["version"] for rid, entry in self.resources.items()}

    def plan(self, messages: Iterable[tuple[str, Any]]) -> Batch:
        """Decide a batch of ``(message_id, body)`` in order, without changing the
        state: later messages of the batch see the earlier ones' changes."""
        outcomes: list[Outcome] = []
        updates: dict[str, dict] = {}
        documents: dict[str, dict | None] = {}
        resync = set(self.resync) if self.resync is not None else None
        for message_id, body in messages:
            try:
                envelope = parse(body)
            except Malformed as exc:
                outcomes.append(Outcome(message_id, MALFORMED, reason=str(exc)))
                continue
            if envelope.is_control:
                if envelope.operation == RESYNC_BEGIN:
                    resync = set()
                    outcomes.append(Outcome(message_id, RESYNC, envelope, line=(
                        f"{clock(envelope)} RESYNC begin: "
                        f"{_clean((envelope.document or {}).get('reason'))}")))
                    continue
                gone = self._gone(resync or set(), updates)
                for rid, summary in gone.items():
                    updates[rid] = summary
                    documents[rid] = None
                    outcomes.append(Outcome(message_id, RESYNC, envelope, line=(
                        f"{clock(envelope)} GONE {_clean(summary['resource_type'])} "
                        f"{_clean(summary.get('name')) or '-'} ({short(rid)}) not in the "
                        f"resynchronisation")))
                outcomes.append(Outcome(message_id, RESYNC, envelope, line=(
                    f"{clock(envelope)} RESYNC end: {len(gone)} gone")))
                resync = None
                continue
            if resync is not None:
                resync.add(envelope.id)
            previous = updates.get(envelope.id) or self.resources.get(envelope.id)
            known = None if previous is None else previous["version"]
            decision = decide(known, envelope.version)
            if decision != APPLY:
                outcomes.append(Outcome(message_id, decision, envelope))
                continue
            summary = summarize(envelope, previous)
            updates[envelope.id] = summary
            documents[envelope.id] = envelope.document
            outcomes.append(Outcome(message_id, APPLY, envelope,
                                    line=format_line(envelope, summary)))
        return Batch(outcomes, updates, documents, resync)

    def _gone(self, sent: set[str], updates: dict[str, dict]) -> dict[str, dict]:
        """Live resources known here that a resynchronisation did not send."""
        known = {**self.resources, **updates}
        return {rid: dict(entry, deleted=True, status=None)
                for rid, entry in sorted(known.items())
                if not entry.get("deleted") and rid not in sent}

    def with_batch(self, batch: Batch) -> dict:
        """The state as it is once ``batch`` is committed (for saving first)."""
        return {"resources": {**self.resources, **batch.updates},
                "resync": sorted(batch.resync) if batch.resync is not None else None}

    def commit(self, batch: Batch) -> None:
        self.resync = set(batch.resync) if batch.resync is not None else None
        self.resources.update(batch.updates)
        for rid, document in batch.documents.items():
            if document is None:
                self.documents.pop(rid, None)
            else:
                self.documents[rid] = document


# ---------------------------------------------------------------------------------
# The state file.

def dumps_state(snapshot: dict) -> str:
    """The state file's text for ``State.with_batch``'s snapshot (or bare resources)."""
    if "resources" not in snapshot:
        snapshot = {"resources": snapshot, "resync": None}
    return json.dumps({"format": STATE_FORMAT, **snapshot},
                      separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def loads_state(text: str) -> State:
    """A State from the state file's text; ValueError with the reason if it is not
    one (never an empty state in its place: that would re-apply old versions)."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise ValueError(f"not a telco consumer state file (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r}, "
                         f"expected {STATE_FORMAT})")
    resources = data.get("resources")
    if not isinstance(resources, dict):
        raise ValueError("'resources' is not an object")
    for rid, entry in resources.items():
        version = entry.get("version") if isinstance(entry, dict) else None
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"resource {rid!r} has no integer version")
    resync = data.get("resync")
    if resync is not None and not (isinstance(resync, list)
                                   and all(isinstance(r, str) for r in resync)):
        raise ValueError("'resync' is not a list of ids")
    return State(resources, resync)


def load_state(path: str) -> State:
    """The saved state; an empty one if the file does not exist yet."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc}") from None
    try:
        return loads_state(text)
    except ValueError as exc:
        raise StateFileError(f"state file {path} is not usable ({exc}); fix or move it "
                             "away (without it every change still queued is applied "
                             "again, including older versions)") from None


def save_state(path: str, snapshot: dict) -> None:
    """Replace the state file atomically and durably: a temporary file in the same
    directory, fsync, rename over the old one, fsync of the directory. A crash leaves
    either the old or the new file, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    data = dumps_state(snapshot).encode("utf-8")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StateFileError(f"cannot write state file {path}: {exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    if value is None:
        return "missing or null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _first(document: dict, fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = document.get(field)
        if value not in (None, ""):
            return str(value)
    return None


def _clean(value: Any) -> str:
    """One line, no control characters (names come from tenants)."""
    if value is None:
        return ""
    return _CONTROL_RE.sub(" ", str(value)).strip()
