"""Which event dates a DAG run covers, from each kind of Airflow run context (plain dicts and objects
shaped like Airflow's: params, data_interval_start/end, dag_run.run_type, triggering_asset_events)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from tweetops.orchestration.context import (drift_window_from_context, gate_backfill_from_context,
                                            interval_from_context, manual_interval)

NOW = datetime(2024, 3, 10, 15, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def silver_event(extra=None, run=None, timestamp=NOW):
    return SimpleNamespace(extra=extra or {}, source_dag_run=run, timestamp=timestamp)


# --- features and scoring ------------------------------------------------------------------------

def test_manual_params_win():
    context = {"params": {"start": "2024-03-01", "end": "2024-03-03"},
               "data_interval_start": NOW, "data_interval_end": NOW}
    assert interval_from_context(context, NOW) == (date(2024, 3, 1), date(2024, 3, 3))
    assert interval_from_context({"params": {"start": "2024-03-01", "end": None}}, NOW) == \
        (date(2024, 3, 1), date(2024, 3, 2))


def test_manual_params_that_make_an_empty_interval_are_refused():
    # This used to rebuild 2024-03-03 alone: a typo silently did something else.
    with pytest.raises(ValueError, match="params start=2024-03-03, end=2024-03-01: end must be after start"):
        interval_from_context({"params": {"start": "2024-03-03", "end": "2024-03-01"}}, NOW)
    with pytest.raises(ValueError, match="param start='03/01/2024': expected YYYY-MM-DD"):
        interval_from_context({"params": {"start": "03/01/2024"}}, NOW)


def test_a_scheduled_run_covers_the_days_its_data_interval_touches():
    context = {"params": {}, "data_interval_start": datetime(2024, 3, 8, tzinfo=UTC),
               "data_interval_end": datetime(2024, 3, 9, tzinfo=UTC)}
    assert interval_from_context(context, NOW) == (date(2024, 3, 8), date(2024, 3, 9))
    hourly = {"params": {}, "data_interval_start": datetime(2024, 3, 8, 5, tzinfo=UTC),
              "data_interval_end": datetime(2024, 3, 8, 6, tzinfo=UTC)}
    assert interval_from_context(hourly, NOW) == (date(2024, 3, 8), date(2024, 3, 9))
    trigger = {"params": {}, "data_interval_start": datetime(2024, 3, 8, 5, 20, tzinfo=UTC),
               "data_interval_end": datetime(2024, 3, 8, 5, 20, tzinfo=UTC)}
    assert interval_from_context(trigger, NOW) == (date(2024, 3, 8), date(2024, 3, 9))


def test_an_asset_triggered_run_covers_what_the_silver_runs_landed():
    by_extra = silver_event({"interval_start": "2024-03-05T00:00:00+00:00", "interval_end": "2024-03-06T00:00:00+00:00"})
    by_run = silver_event(run=SimpleNamespace(data_interval_start=datetime(2024, 3, 7, tzinfo=UTC),
                                              data_interval_end=datetime(2024, 3, 8, tzinfo=UTC)))
    manual = silver_event(timestamp=datetime(2024, 3, 2, 9, 30, tzinfo=UTC))   # the day it landed
    context = {"params": {}, "data_interval_start": None, "data_interval_end": None,
               "triggering_asset_events": {"silver_tweets": [by_extra, by_run]}}
    assert interval_from_context(context, NOW) == (date(2024, 3, 5), date(2024, 3, 8))
    context["triggering_asset_events"]["silver_tweets"].append(manual)
    assert interval_from_context(context, NOW) == (date(2024, 3, 2), date(2024, 3, 8))
    dated = silver_event({"interval_start": "2024-03-05", "interval_end": "2024-03-07"})
    assert interval_from_context({"triggering_asset_events": {"x": [dated]}}, NOW) == \
        (date(2024, 3, 5), date(2024, 3, 7))


def test_without_any_interval_it_covers_yesterday_and_today():
    assert interval_from_context({"params": {}}, NOW) == (date(2024, 3, 9), date(2024, 3, 11))


def test_days_become_contiguous_ranges():
    from lakehouse.freshness import as_ranges

    d = date(2024, 3, 1)
    days = [d, date(2024, 3, 2), date(2024, 3, 3), date(2024, 3, 7), date(2024, 3, 3)]
    assert as_ranges(days) == [(d, date(2024, 3, 4)), (date(2024, 3, 7), date(2024, 3, 8))]
    assert as_ranges([]) == []


def test_only_a_run_with_the_start_param_is_a_manual_rebuild():
    assert manual_interval({"params": {"start": "2024-03-01"}}, NOW) == (date(2024, 3, 1), date(2024, 3, 2))
    assert manual_interval({"params": {"start": "2024-03-01", "end": "2024-03-04"}}, NOW) == \
        (date(2024, 3, 1), date(2024, 3, 4))
    assert manual_interval({"params": {}}, NOW) is None     # appends what silver gained
    with pytest.raises(ValueError, match="end must be after start"):
        manual_interval({"params": {"start": "2024-03-03", "end": "2024-03-01"}}, NOW)


# --- drift ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("context, expected", [
    ({"params": {"start": "2024-03-01", "end": "2024-03-04"}}, (date(2024, 3, 1), date(2024, 3, 4))),
    # A cron-triggered run has a zero-length interval: it checks the day before it fired.
    ({"params": {}, "data_interval_start": datetime(2024, 3, 5, 4, 30, tzinfo=UTC),
      "data_interval_end": datetime(2024, 3, 5, 4, 30, tzinfo=UTC)}, (date(2024, 3, 4), date(2024, 3, 5))),
    ({"params": {}, "data_interval_start": datetime(2024, 3, 1, tzinfo=UTC),
      "data_interval_end": datetime(2024, 3, 3, tzinfo=UTC)}, (date(2024, 3, 1), date(2024, 3, 3))),
    # Triggered by the scoring DAG's gold_predictions event: the days it scored.
    ({"params": {}, "triggering_asset_events": {"gold_predictions": [
        silver_event({"interval_start": "2024-03-06", "interval_end": "2024-03-08"})]}},
     (date(2024, 3, 6), date(2024, 3, 8))),
    ({"params": {}}, (date(2024, 3, 9), date(2024, 3, 11))),   # manual, no dates: yesterday and today
])
def test_drift_window_from_an_airflow_context(context, expected):
    assert drift_window_from_context(context, now=datetime(2024, 3, 10, 8, tzinfo=UTC)) == expected


# --- the quality gate ----------------------------------------------------------------------------

def test_a_gate_run_is_incremental_unless_a_date_or_a_backfill():
    assert gate_backfill_from_context({"params": {"date": None}, "dag_run": SimpleNamespace(run_type="scheduled")}) \
        is None
    assert gate_backfill_from_context({"params": {}, "dag_run": SimpleNamespace(run_type="asset_triggered")}) is None
    assert gate_backfill_from_context({"params": {"date": "2024-03-01"}}) == (date(2024, 3, 1), date(2024, 3, 2))
    with pytest.raises(ValueError, match="param date='2024-02-30': expected YYYY-MM-DD"):
        gate_backfill_from_context({"params": {"date": "2024-02-30"}})


def test_a_gate_backfill_rebuilds_the_day_before_its_run():
    backfill = SimpleNamespace(run_type="backfill", run_after=None)
    # Cron-trigger schedules: a zero-length interval at the run time; the last whole day before it.
    run_time = datetime(2024, 3, 2, tzinfo=UTC)
    context = {"params": {}, "dag_run": backfill, "data_interval_start": run_time, "data_interval_end": run_time}
    assert gate_backfill_from_context(context) == (date(2024, 3, 1), date(2024, 3, 2))
    context = {"params": {}, "dag_run": SimpleNamespace(run_type="backfill", run_after=run_time + timedelta(hours=7))}
    assert gate_backfill_from_context(context) == (date(2024, 3, 1), date(2024, 3, 2))
    assert gate_backfill_from_context({"dag_run": backfill}, now=NOW) == (date(2024, 3, 9), date(2024, 3, 10))
    # A real data interval (CronDataIntervalTimetable) is used as is, and must be whole days.
    two_days = {"dag_run": backfill, "data_interval_start": datetime(2024, 3, 1, tzinfo=UTC),
                "data_interval_end": datetime(2024, 3, 3, tzinfo=UTC)}
    assert gate_backfill_from_context(two_days) == (date(2024, 3, 1), date(2024, 3, 3))
    with pytest.raises(ValueError, match="whole UTC days"):
        gate_backfill_from_context({**two_days, "data_interval_end": datetime(2024, 3, 2, 12, tzinfo=UTC)})
