"""What an Airflow run covers: its context turned into plain event-date intervals [start, end).

Library code never sees an Airflow context: each DAG task calls one function here and passes the
dates on (the interval rules are tweetops.core.intervals'). Only the keys of the task context are
read (params, data_interval_start/end, logical_date, dag_run, triggering_asset_events), so plain
dicts and objects shaped like them work too.

Airflow's times become whole UTC days: a bound at midnight UTC is a day boundary, a time inside a
day takes in that whole day, and an instant (a cron trigger's zero-length interval, an asset
event's timestamp) is the day it falls on. Dates in params and asset-event extras are ISO strings.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from tweetops.core.intervals import DAY, day_interval, midnight, utc_day

Interval = tuple[date, date]


def interval_from_context(context: dict, now: datetime | None = None) -> Interval:
    """The event dates [start, end) a run of the features or scoring DAG covers.

    In order: the run's `start`/`end` params (manual runs; end defaults to start + 1 day); its data
    interval; the intervals of the silver runs whose asset events triggered it; else yesterday and
    today (asset-triggered and manual runs have no data interval in Airflow 3).
    """
    params = context.get("params") or {}
    if params.get("start"):
        start = _date_param(params, "start")
        end = _date_param(params, "end") if params.get("end") else start + DAY
        try:
            return day_interval(start, end)
        except ValueError:
            raise ValueError(f"params start={start}, end={end}: end must be after start "
                             "(the end date is excluded)") from None
    if context.get("data_interval_start") and context.get("data_interval_end"):
        return _days_touched(context["data_interval_start"], context["data_interval_end"])
    bounds = [_event_interval(event) for events in (context.get("triggering_asset_events") or {}).values()
              for event in events]
    bounds = [b for b in bounds if b is not None]
    if bounds:
        return min(b[0] for b in bounds), max(b[1] for b in bounds)
    today = (now or datetime.now(timezone.utc)).date()
    return today - DAY, today + DAY


def drift_window_from_context(context: dict, now: datetime | None = None) -> Interval:
    """The event dates [start, end) a run of the drift DAG checks: as interval_from_context, except
    that a cron-triggered run (a zero-length data interval) checks the whole day before it fired."""
    params = context.get("params") or {}
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if not params.get("start") and start and end and start == end:
        day = utc_day(end)
        return day - DAY, day
    return interval_from_context(context, now)


def manual_interval(context: dict, now: datetime | None = None) -> Interval | None:
    """[start, end) of a features or scoring run given the `start` param (a rebuild of those days,
    whatever was processed before), else None: the run appends what silver gained."""
    if not (context.get("params") or {}).get("start"):
        return None
    return interval_from_context(context, now)


def gate_backfill_from_context(context: dict, now: datetime | None = None) -> Interval | None:
    """The days a quality-gate run rebuilds from bronze, or None for an incremental run.

    A run with the `date` param (YYYY-MM-DD) rebuilds that day; an Airflow backfill run its data
    interval, or, when that is zero-length (cron-trigger schedules), the whole UTC day before the run.
    """
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "").lower()
    if params.get("date"):
        day = _date_param(params, "date")
        return day, day + DAY
    if not run_type.endswith("backfill"):
        return None
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return day_interval(start, end)  # a real data interval must be whole days
    reference = end or context.get("logical_date") or getattr(dag_run, "run_after", None) \
        or now or datetime.now(timezone.utc)
    day = utc_day(reference)
    return day - DAY, day


def _date_param(params: dict, name: str) -> date:
    value = params[name]
    if isinstance(value, date):
        return utc_day(value)
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"param {name}={value!r}: expected YYYY-MM-DD") from None


def _moment(value) -> date | datetime:
    """A date or datetime as such; an ISO string (asset-event extras are JSON) parsed."""
    if isinstance(value, date):
        return value
    text = str(value)
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r}: expected an ISO date (YYYY-MM-DD) or a timezone-aware timestamp") from None


def _days_touched(start, end) -> Interval:
    """The whole UTC days the Airflow times [start, end) touch; an instant touches its own day."""
    start, end = _moment(start), _moment(end)
    first, last = utc_day(start), utc_day(end)
    at_midnight = not isinstance(end, datetime) or end == midnight(last)
    return day_interval(first, last if at_midnight and last > first else last + DAY)


def _event_interval(event) -> Interval | None:
    """What a silver asset event says it landed: its extra's interval, or its run's data interval,
    or (a manual silver run) the day of its timestamp."""
    extra = getattr(event, "extra", None) or {}
    if extra.get("interval_start") and extra.get("interval_end"):
        return _days_touched(extra["interval_start"], extra["interval_end"])
    run = getattr(event, "source_dag_run", None)
    if run is not None and getattr(run, "data_interval_start", None) and getattr(run, "data_interval_end", None):
        return _days_touched(run.data_interval_start, run.data_interval_end)
    timestamp = getattr(event, "timestamp", None)
    if timestamp is not None:
        return _days_touched(timestamp, timestamp)
    return None
