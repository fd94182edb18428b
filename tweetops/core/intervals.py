"""Days and half-open intervals [start, end) of event dates: how every job names the data it covers.

One rule set for every job (quality gate, features, scoring, drift):
- An interval is whole UTC days, [start, end) of event dates: the end day is excluded.
- A bound is a date, or a timezone-aware datetime at midnight UTC. Any other time of day is refused,
  not rounded: rounding would silently add or drop hours of data. A naive datetime is refused too.
- The end must be after the start. An empty interval [d, d) is an error, never widened to a day:
  the day d alone is [d, d + 1 day).
Turning Airflow's run times (hourly triggers, asset events) into days is orchestration's job:
tweetops.orchestration.context.
"""
from __future__ import annotations

import argparse
from datetime import date, datetime, time, timedelta, timezone

DAY = timedelta(days=1)


def day_interval(start: date | datetime, end: date | datetime) -> tuple[date, date]:
    """The event dates [start, end) of an interval, checked against the rules above."""
    first, stop = _day(start, "start"), _day(end, "end")
    if stop <= first:
        raise ValueError(f"empty interval [{first}, {stop}): the end date is excluded, so end must be after "
                         f"start (one day d is [d, d + 1 day))")
    return first, stop


def day_bounds(start: date | datetime, end: date | datetime) -> tuple[datetime, datetime]:
    """The same interval as midnight-UTC datetimes (what the quality gate records)."""
    first, stop = day_interval(start, end)
    return midnight(first), midnight(stop)


def days_of(start: date | datetime, end: date | datetime) -> list[date]:
    """Every event date of [start, end), in order."""
    first, stop = day_interval(start, end)
    return [first + i * DAY for i in range((stop - first).days)]


def midnight(day: date) -> datetime:
    """00:00 UTC of a day: where its interval starts."""
    return datetime.combine(day, time(0), timezone.utc)


def utc_day(moment: date | datetime) -> date:
    """The UTC calendar day a moment falls on (a date is its own day); naive datetimes are refused."""
    if not isinstance(moment, datetime):
        if isinstance(moment, date):
            return moment
        raise ValueError(f"{moment!r}: expected a date or a timezone-aware datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()}: give a timezone-aware datetime (UTC), not a naive one")
    return moment.astimezone(timezone.utc).date()


def _day(value: date | datetime, name: str) -> date:
    day = utc_day(value)
    if isinstance(value, datetime) and value != midnight(day):
        raise ValueError(f"{name}={value.isoformat()}: intervals are whole UTC days (event_date partitions); "
                         "pass a date or midnight UTC")
    return day


def iso_date(text: str) -> date:
    """argparse type for a calendar date: a bad one names the format expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date as YYYY-MM-DD") from None
