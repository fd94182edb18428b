"""Which event dates a run of the scoring DAG scores, from each kind of Airflow run context."""
from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace

from ml.scoring import interval_from_context

NOW = datetime(2024, 3, 10, 15, 0, tzinfo=timezone.utc)


def test_manual_params_win():
    context = {"params": {"start": "2024-03-01", "end": "2024-03-03"},
               "data_interval_start": NOW, "data_interval_end": NOW}
    assert interval_from_context(context, NOW) == (date(2024, 3, 1), date(2024, 3, 3))
    assert interval_from_context({"params": {"start": "2024-03-01", "end": None}}, NOW) == \
        (date(2024, 3, 1), date(2024, 3, 2))


def test_a_scheduled_run_scores_its_data_interval():
    context = {"params": {}, "data_interval_start": datetime(2024, 3, 8, tzinfo=timezone.utc),
               "data_interval_end": datetime(2024, 3, 9, tzinfo=timezone.utc)}
    assert interval_from_context(context, NOW) == (date(2024, 3, 8), date(2024, 3, 9))


def test_an_asset_triggered_run_scores_what_the_silver_runs_landed():
    by_extra = SimpleNamespace(extra={"interval_start": "2024-03-05", "interval_end": "2024-03-06"},
                               source_dag_run=None, timestamp=NOW)
    by_run = SimpleNamespace(extra={}, timestamp=NOW, source_dag_run=SimpleNamespace(
        data_interval_start=datetime(2024, 3, 7, tzinfo=timezone.utc),
        data_interval_end=datetime(2024, 3, 8, tzinfo=timezone.utc)))
    context = {"params": {}, "data_interval_start": None, "data_interval_end": None,
               "triggering_asset_events": {"silver_tweets": [by_extra, by_run]}}
    assert interval_from_context(context, NOW) == (date(2024, 3, 5), date(2024, 3, 8))


def test_without_any_interval_it_scores_yesterday_and_today():
    assert interval_from_context({"params": {}}, NOW) == (date(2024, 3, 9), date(2024, 3, 11))


def test_days_become_contiguous_ranges():
    from datetime import date

    from lakehouse.freshness import as_ranges

    d = date(2024, 3, 1)
    days = [d, date(2024, 3, 2), date(2024, 3, 3), date(2024, 3, 7), date(2024, 3, 3)]
    assert as_ranges(days) == [(d, date(2024, 3, 4)), (date(2024, 3, 7), date(2024, 3, 8))]
    assert as_ranges([]) == []
