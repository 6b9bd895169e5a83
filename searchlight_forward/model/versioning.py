"""Document versions from the resource's own timestamps.

Elasticsearch external versions are signed 64-bit integers. A version here is the
resource timestamp in microseconds since the epoch, times 1000, plus a tie-break of
0-999 (the milliseconds between the resource timestamp and the notification's
emission). Searchlight truncated its versions to nine digits so they wrapped; these
do not: the largest value, in the year 2262, still fits in a signed 64-bit integer.

The tie-break matters because many services stamp ``updated_at`` to the second:
two state changes in one second carry the same resource timestamp, and the one
emitted later should win.
"""
from __future__ import annotations

import datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
TIEBREAK_SLOTS = 1000


class TimestampError(ValueError):
    pass


def parse_timestamp(value) -> datetime.datetime:
    """Parse the ISO-8601 variants OpenStack services emit; naive means UTC."""
    if isinstance(value, datetime.datetime):
        ts = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            ts = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise TimestampError(f"not an ISO-8601 timestamp: {value!r}") from None
    else:
        raise TimestampError(f"not a timestamp: {value!r}")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    return ts.astimezone(datetime.timezone.utc)


def epoch_micros(ts: datetime.datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def version_of(resource_ts, emitted_ts=None) -> int:
    """The external version for a resource state stamped ``resource_ts``.

    ``emitted_ts`` (the notification's timestamp) only orders states that share a
    resource timestamp; it never outranks a later resource timestamp.
    """
    resource_us = epoch_micros(parse_timestamp(resource_ts))
    tiebreak = 0
    if emitted_ts:
        try:
            emitted_us = epoch_micros(parse_timestamp(emitted_ts))
        except TimestampError:
            emitted_us = resource_us
        tiebreak = min(TIEBREAK_SLOTS - 1, max(0, (emitted_us - resource_us) // 1000))
    return resource_us * TIEBREAK_SLOTS + tiebreak


def timestamp_of(version: int) -> datetime.datetime:
    """The resource timestamp a version was made from (for humans and cursors)."""
    return _EPOCH + datetime.timedelta(microseconds=version // TIEBREAK_SLOTS)
