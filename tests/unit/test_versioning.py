"""Versions from resource timestamps: parsing, ordering, range."""
from __future__ import annotations

import datetime

import pytest

from searchlight_forward.model import versioning
from searchlight_forward.model.versioning import (TimestampError, parse_timestamp,
                                            timestamp_of, version_of)

UTC = datetime.timezone.utc
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("text, expected", [
    # Nova versioned, Glance, Neutron, Heat: whole seconds with Z
    ("2026-03-02T10:15:09Z", datetime.datetime(2026, 3, 2, 10, 15, 9, tzinfo=UTC)),
    # Cinder created_at: isoformat of an aware datetime
    ("2026-03-02T14:00:00+00:00", datetime.datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)),
    # Cinder launched_at: with microseconds
    ("2026-03-02T14:00:01.145721+00:00",
     datetime.datetime(2026, 3, 2, 14, 0, 1, 145721, tzinfo=UTC)),
    # an offset other than UTC is converted
    ("2026-03-02T05:15:09-05:00", datetime.datetime(2026, 3, 2, 10, 15, 9, tzinfo=UTC)),
    # Designate, legacy Nova: naive, microsecond format -> UTC
    ("2026-03-02T15:00:02.000000", datetime.datetime(2026, 3, 2, 15, 0, 2, tzinfo=UTC)),
    # oslo.messaging emission time: str(datetime.utcnow()), space separator
    ("2026-03-02 12:00:02.587987", datetime.datetime(2026, 3, 2, 12, 0, 2, 587987, tzinfo=UTC)),
    # legacy Nova created_at / Cinder snapshot: str() of an aware datetime
    ("2026-03-02 12:00:01+00:00", datetime.datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC)),
    ("  2026-03-02T10:15:09Z ", datetime.datetime(2026, 3, 2, 10, 15, 9, tzinfo=UTC)),
])
def test_parse_variants(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == datetime.timedelta(0)


def test_parse_accepts_datetimes_naive_means_utc():
    naive = datetime.datetime(2026, 3, 2, 10, 0, 0)
    assert parse_timestamp(naive) == naive.replace(tzinfo=UTC)
    paris = datetime.datetime(2026, 3, 2, 11, 0, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))
    assert parse_timestamp(paris) == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize("bad", [None, "", "   ", "yesterday", "2026-13-40T00:00:00Z",
                                 12345, 1.5, [], {}])
def test_parse_rejects_non_timestamps(bad):
    with pytest.raises(TimestampError):
        parse_timestamp(bad)


def test_version_grows_with_resource_time():
    assert version_of("2026-03-02T10:15:10Z") > version_of("2026-03-02T10:15:09Z")
    assert version_of("2026-03-02T10:15:09.000001Z") > version_of("2026-03-02T10:15:09Z")


def test_same_resource_second_is_ordered_by_emission():
    # Two state changes stamped to the same second; the later emission wins.
    first = version_of("2026-03-02T10:15:09Z", "2026-03-02 10:15:09.120000")
    second = version_of("2026-03-02T10:15:09Z", "2026-03-02 10:15:09.480000")
    assert first < second
    assert second - first == 360  # milliseconds between the two emissions


def test_tiebreak_never_outranks_a_later_resource_time():
    late_emission = version_of("2026-03-02T10:15:09Z", "2026-03-02 10:20:00.000000")
    next_second = version_of("2026-03-02T10:15:10Z", "2026-03-02 10:15:10.000000")
    assert late_emission < next_second
    assert late_emission % versioning.TIEBREAK_SLOTS == versioning.TIEBREAK_SLOTS - 1


def test_tiebreak_is_capped_so_two_late_emissions_tie():
    # The documented limit: both emitted >= 1 s after the shared second -> equal.
    a = version_of("2026-03-02T10:15:09Z", "2026-03-02 10:15:10.100000")
    b = version_of("2026-03-02T10:15:09Z", "2026-03-02 10:15:10.900000")
    assert a == b


def test_emission_before_resource_time_or_garbled_gives_tiebreak_zero():
    base = version_of("2026-03-02T10:15:09Z")
    assert version_of("2026-03-02T10:15:09Z", "2026-03-02 10:15:08.000000") == base
    assert version_of("2026-03-02T10:15:09Z", "not a time") == base
    assert base % versioning.TIEBREAK_SLOTS == 0


def test_no_nine_digit_truncation_and_fits_int64():
    v2026 = version_of("2026-03-02T10:15:09.123456Z", "2026-03-02 10:15:09.500000")
    assert v2026 > 10**18
    assert v2026 <= INT64_MAX
    # Searchlight kept nine digits, so versions a few years apart could compare
    # backwards; here they never do.
    assert version_of("2030-01-01T00:00:00Z") > version_of("2026-12-31T23:59:59Z")
    # The last representable year still fits.
    assert version_of("2262-04-11T00:00:00Z", "2262-04-11T00:00:00.999Z") <= INT64_MAX


def test_same_instant_in_different_notations_gives_same_version():
    forms = ["2026-03-02T10:15:09Z", "2026-03-02T10:15:09+00:00",
             "2026-03-02 10:15:09", "2026-03-02T10:15:09.000000",
             "2026-03-02T05:15:09-05:00"]
    assert len({version_of(f) for f in forms}) == 1


@pytest.mark.parametrize("text", ["2026-03-02T10:15:09Z", "2026-03-02T10:15:09.654321Z",
                                  "1970-01-01T00:00:00Z", "2262-04-11T23:47:16.854775Z"])
def test_timestamp_of_round_trip(text):
    ts = parse_timestamp(text)
    assert timestamp_of(version_of(text)) == ts
    assert timestamp_of(version_of(text, "2262-12-31T00:00:00Z")) == ts  # tiebreak ignored


def test_epoch_micros():
    assert versioning.epoch_micros(parse_timestamp("1970-01-01T00:00:01.000002Z")) == 1_000_002
