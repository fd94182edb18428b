"""Which days of a derived table are behind their source, by comparing row counts per event date.

Airflow can deliver a silver asset event late (two events committed at the same moment, or
while the downstream DAG is at max_active_runs: apache/airflow#54659, #56050), so downstream
jobs do not trust events alone: each run also rebuilds every day whose row count differs
between silver and the table it derives from it (one row per silver tweet by construction).
"""
from __future__ import annotations

from datetime import date, timedelta

from tweetops.core.settings import Settings, load_settings


def days_behind(target: str, source: str = "silver_tweets", settings: Settings | None = None,
                source_version: int | None = None) -> list[date]:
    """Event dates whose row count in `target` differs from `source` (missing days included), as of
    `source_version` of the source (default: its latest): a job compares with the snapshot it read,
    not with rows that landed since."""
    settings = settings or load_settings()
    wanted, have = rows_per_day(source, settings, source_version), rows_per_day(target, settings)
    return sorted(day for day in set(wanted) | set(have) if wanted.get(day, 0) != have.get(day, 0))


def rows_per_day(name: str, settings: Settings | None = None, version: int | None = None) -> dict[date, int]:
    """event_date -> rows of the table (creating it empty if it does not exist yet), at `version`
    (default: the latest)."""
    import pyarrow.compute as pc

    from tweetops.core.tables import ensure_table, open_table

    settings = settings or load_settings()
    table = ensure_table(name, settings) if version is None else open_table(name, settings, version=version)
    dates = table.to_pyarrow_dataset().to_table(columns=["event_date"])["event_date"]
    counted = pc.value_counts(dates).to_pylist() if len(dates) else []
    return {item["values"]: item["counts"] for item in counted}


def as_ranges(days: list[date] | set[date]) -> list[tuple[date, date]]:
    """Contiguous [start, end) ranges covering the days: [d1, d2, d3, d7] -> [(d1, d4), (d7, d8)]."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges
