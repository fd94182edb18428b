"""Replace a slice of a Delta table in one commit: how every rerunnable job writes.

A job that derives rows for an interval (the quality gate, features, scoring, drift) or records one
decision (promotion, training metrics) must be able to run again without appending twice. It does
not delete then append (two commits: a crash in between loses the slice); it writes the new rows
with a predicate, and delta-rs removes the files the predicate matches and adds the new ones in ONE
commit. Readers see the old slice or the new one, never neither. Writing no rows still commits: the
slice is emptied (a rerun over a day whose tweets are gone must not keep their old results).

delta-rs refuses rows outside the predicate ("rows failed validation check"), so a job cannot
replace one day and write into another by mistake. The Spark writer (lakehouse.spark_delta,
`replace_where`) takes the same predicates.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from tweetops.core.intervals import day_interval

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


def days_predicate(column: str, start: date | datetime, end: date | datetime) -> str:
    """SQL predicate of the event dates [start, end) on a date column (the interval rules of
    tweetops.core.intervals): "event_date >= '2026-11-01' AND event_date < '2026-11-03'"."""
    first, stop = day_interval(start, end)
    return f"{column} >= '{first.isoformat()}' AND {column} < '{stop.isoformat()}'"


def equals_predicate(**values: str | date | datetime) -> str:
    """SQL predicate of rows whose columns equal the values: "actor = 'airflow:x' AND to_version = '3'".
    Values become SQL string literals (quotes doubled); dates and timestamps in ISO form."""
    if not values:
        raise ValueError("equals_predicate needs at least one column: without one it would replace the whole table")
    terms = []
    for column, value in values.items():
        if isinstance(value, (date, datetime)):
            value = value.isoformat()
        if not isinstance(value, str):
            raise TypeError(f"{column}={value!r}: give a string, a date or a datetime")
        terms.append(f"{column} = '{value.replace(chr(39), chr(39) * 2)}'")
    return " AND ".join(terms)


def replace_rows(table: DeltaTable, rows: pa.Table | pa.RecordBatchReader, where: str,
                 metadata: dict[str, str] | None = None,
                 app_transactions: dict[str, int] | None = None) -> None:
    """Replace the rows of `table` matching the SQL predicate `where` with `rows` (which must match
    it too), in one Delta commit.

    `metadata`: custom commit metadata (what the commit did, shown in the table's history);
    `app_transactions`: app id -> version recorded in the same commit (exactly-once bookkeeping).
    """
    from deltalake import CommitProperties, Transaction, write_deltalake

    properties = None
    if metadata or app_transactions:
        properties = CommitProperties(custom_metadata=metadata or None, app_transactions=[
            Transaction(app, version) for app, version in (app_transactions or {}).items()] or None)
    write_deltalake(table, rows, mode="overwrite", predicate=where, commit_properties=properties)


def replace_days(table: DeltaTable, rows: pa.Table | pa.RecordBatchReader, start: date | datetime,
                 end: date | datetime, column: str = "event_date", metadata: dict[str, str] | None = None,
                 app_transactions: dict[str, int] | None = None) -> None:
    """Replace the rows of the event dates [start, end) of a date column (the partitions of a table
    partitioned by it) with `rows`, in one Delta commit. See replace_rows."""
    replace_rows(table, rows, days_predicate(column, start, end), metadata, app_transactions)
