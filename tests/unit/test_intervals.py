"""One rule set for every job's interval: whole UTC days [start, end), end after start."""
from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta, timezone

import pytest

from tweetops.core.intervals import (DAY, day_bounds, day_interval, days_of, iso_date, midnight,
                                     utc_day)

MARCH_1 = date(2024, 3, 1)
MIDNIGHT_1 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_dates_and_midnight_utc_datetimes_are_the_same_interval():
    assert day_interval(MARCH_1, date(2024, 3, 3)) == (MARCH_1, date(2024, 3, 3))
    assert day_interval(MIDNIGHT_1, MIDNIGHT_1 + 2 * DAY) == (MARCH_1, date(2024, 3, 3))
    # Midnight UTC written in another zone is still midnight UTC.
    paris = timezone(timedelta(hours=1))
    assert day_interval(datetime(2024, 3, 1, 1, tzinfo=paris), MARCH_1 + DAY) == (MARCH_1, MARCH_1 + DAY)
    assert day_bounds(MARCH_1, MARCH_1 + DAY) == (MIDNIGHT_1, MIDNIGHT_1 + DAY)


@pytest.mark.parametrize("start, end", [
    (MARCH_1, MARCH_1),                                   # what features used to widen to a day
    (MIDNIGHT_1, MIDNIGHT_1),
    (date(2024, 3, 3), MARCH_1),
])
def test_an_empty_interval_is_refused_not_widened(start, end):
    with pytest.raises(ValueError, match=r"empty interval \[.*\): the end date is excluded"):
        day_interval(start, end)
    with pytest.raises(ValueError, match="empty interval"):
        days_of(start, end)


def test_a_time_inside_a_day_is_refused_not_rounded():
    with pytest.raises(ValueError, match=r"end=2024-03-01T12:00:00\+00:00: intervals are whole UTC days"):
        day_interval(MIDNIGHT_1, MIDNIGHT_1 + timedelta(hours=12))
    with pytest.raises(ValueError, match="start=.*whole UTC days"):
        day_interval(datetime(2024, 3, 1, tzinfo=timezone(timedelta(hours=-5))), date(2024, 3, 2))


def test_naive_datetimes_and_strings_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        day_interval(datetime(2024, 3, 1), datetime(2024, 3, 2))
    with pytest.raises(ValueError, match="expected a date or a timezone-aware datetime"):
        day_interval("2024-03-01", "2024-03-02")


def test_day_list_helpers():
    assert days_of(MARCH_1, MARCH_1 + 3 * DAY) == [MARCH_1, MARCH_1 + DAY, MARCH_1 + 2 * DAY]
    assert midnight(MARCH_1) == MIDNIGHT_1
    assert utc_day(datetime(2024, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) == date(2024, 3, 2)
    assert utc_day(MARCH_1) == MARCH_1


def test_iso_date_names_the_format():
    assert iso_date("2024-03-01") == MARCH_1
    with pytest.raises(argparse.ArgumentTypeError, match="expected a date as YYYY-MM-DD"):
        iso_date("03/01/2024")
