"""Classify a bulk's per-item answers (pure): done, retry, or rejected for good.

* An admin copy answered 200/201 won: its user copy may follow.
* 409 on an admin copy: another write came between our read and our write; the
  resource is read and planned again (a conflict, not an error).
* 408/429/5xx: Elasticsearch cannot take it now; retried later with backoff, and
  counted (``ItemAttempts``): a document answered so ``max_item_attempts`` times
  while Elasticsearch took others is the document's fault (too big for a circuit
  breaker, say) and is rejected.
* Anything else (400: a value the mapping refuses...) on an admin copy: rejected
  for good, with Elasticsearch's reason, for the dead-letter index.
* A user copy is versioned externally: 409 means a newer state's copy is there, so
  it is done too; any other failure is retried (its admin copy is already in).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from searchlight_forward.indexer.results import Key
from searchlight_forward.model.answers import TRANSIENT_STATUSES

Answer = tuple[int, dict]   # (status, the bulk item's answer)
OK = (200, 201)


@dataclasses.dataclass
class Classified:
    #: key -> the item's answer (``_seq_no``, ``_primary_term`` of what was written)
    won: dict[Key, dict] = dataclasses.field(default_factory=dict)
    #: re-read and re-plan
    conflicts: list[Key] = dataclasses.field(default_factory=list)
    #: retry later; key -> the answer (status and error), for logs and rejections
    retry_later: dict[Key, str] = dataclasses.field(default_factory=dict)
    #: rejected for good; key -> the reason
    refused: dict[Key, str] = dataclasses.field(default_factory=dict)


def classify_admin(keys: list[Key], answers: list[Answer]) -> Classified:
    """The answers to the admin copies' conditional writes, in order of ``keys``."""
    found = Classified()
    for key, (status, info) in zip(keys, answers, strict=True):
        if status in OK:
            found.won[key] = info
        elif status == 409:
            found.conflicts.append(key)
        elif status in TRANSIENT_STATUSES:
            found.retry_later[key] = answer_text(status, info)
        else:
            found.refused[key] = (f"Elasticsearch refused the document: "
                                  f"{reason(info.get('error'))}")
    return found


def classify_user(keys: list[Key], answers: list[Answer]) -> Classified:
    """The answers to the user copies' externally versioned writes."""
    found = Classified()
    for key, (status, info) in zip(keys, answers, strict=True):
        if status in OK or status == 409:      # 409: a newer state's copy is there
            found.won[key] = info
        else:                                  # the admin copy is in: next round rewrites
            found.retry_later[key] = answer_text(status, info)
    return found


class ItemAttempts:
    """Counts, for one batch, the rounds in which each document could not be read
    or written now (429/5xx), and says which to give up on.

    A document refused again while Elasticsearch took others (of any batch) since
    its last refusal is at fault; one refused while nothing is taken is waiting for
    an outage to end, however long. ``took`` is a count of rounds in which
    Elasticsearch took documents, shared by the batches of an indexer."""

    def __init__(self, max_attempts: int, took_before: int):
        self.max_attempts = max_attempts
        self._took_before = took_before
        self._counts: dict[Key, tuple[int, int]] = {}   # key -> (count, took at the last)

    def count(self, unavailable: dict[Key, str], took: int) -> dict[Key, str]:
        """Count this round's ``unavailable`` answers; the keys to reject, with the
        reason."""
        given_up: dict[Key, str] = {}
        for key, answer in unavailable.items():
            count, mark = self._counts.get(key, (0, self._took_before))
            if took > mark:
                count, mark = count + 1, took
            self._counts[key] = (count, mark)
            if count >= self.max_attempts:
                given_up[key] = (f"Elasticsearch answered {answer} {count} times while "
                                 f"it took other documents")
        return given_up


def answer_text(status: int, info: dict) -> str:
    return f"{status} {reason(info.get('error'))}"


def reason(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error)
