"""The one writer every rerunnable job uses: replace a slice of a real local Delta table in one commit."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tweetops.core.delta_replace import days_predicate, equals_predicate, replace_days, replace_rows

DAY = timedelta(days=1)
D1 = date(2024, 3, 1)
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("event_date", pa.date32(), nullable=False),
                    pa.field("note", pa.string())])


def rows(*items: tuple[str, date, str]) -> pa.Table:
    return pa.Table.from_pylist([{"id": i, "event_date": d, "note": n} for i, d, n in items], schema=SCHEMA)


@pytest.fixture
def table(tmp_path):
    from deltalake import DeltaTable, write_deltalake

    uri = str(tmp_path / "events")
    write_deltalake(uri, rows(*[(f"{day}-{n}", D1 + day * DAY, "old") for day in range(5) for n in range(2)]),
                    partition_by=["event_date"])
    return DeltaTable(uri)


def by_day(table) -> dict[date, list[tuple[str, str]]]:
    table.update_incremental()
    out: dict[date, list[tuple[str, str]]] = {}
    for row in sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["id"]):
        out.setdefault(row["event_date"], []).append((row["id"], row["note"]))
    return out


def files_of(table, day: date) -> list[str]:
    table.update_incremental()
    return sorted(table.file_uris(partition_filters=[("event_date", "=", day.isoformat())]))


def test_replacing_days_touches_only_them_in_one_commit(table):
    before, version = by_day(table), table.version()
    untouched = {day: files_of(table, day) for day in (D1, D1 + 3 * DAY, D1 + 4 * DAY)}

    replace_days(table, rows(("new-a", D1 + DAY, "new"), ("new-b", D1 + 2 * DAY, "new")), D1 + DAY, D1 + 3 * DAY,
                 metadata={"tweetops.operation": "test"})

    after = by_day(table)
    assert table.version() == version + 1
    assert after[D1 + DAY] == [("new-a", "new")] and after[D1 + 2 * DAY] == [("new-b", "new")]
    assert {d: after[d] for d in untouched} == {d: before[d] for d in untouched}
    assert {day: files_of(table, day) for day in untouched} == untouched   # not even rewritten
    commit = table.history(1)[0]
    assert commit["operation"] == "WRITE" and commit["tweetops.operation"] == "test"
    assert "event_date >= '2024-03-02'" in commit["operationParameters"]["predicate"]


def test_no_rows_empties_the_days_and_a_rerun_replaces(table):
    replace_days(table, SCHEMA.empty_table(), D1, D1 + DAY)
    assert D1 not in by_day(table)
    again = rows(("x", D1 + 4 * DAY, "new"))
    replace_days(table, again, D1 + 4 * DAY, D1 + 5 * DAY)
    replace_days(table, again, D1 + 4 * DAY, D1 + 5 * DAY)
    assert by_day(table)[D1 + 4 * DAY] == [("x", "new")]


def test_rows_outside_the_days_are_refused_and_nothing_changes(table):
    before, version = by_day(table), table.version()
    with pytest.raises(Exception, match="failed validation check"):
        replace_days(table, rows(("stray", D1, "new")), D1 + DAY, D1 + 2 * DAY)
    assert table.version() == version and by_day(table) == before


def test_an_empty_interval_is_refused_before_writing(table):
    version = table.version()
    with pytest.raises(ValueError, match="empty interval"):
        replace_days(table, rows(("x", D1, "new")), D1, D1)
    assert table.version() == version


def test_replace_rows_by_equal_columns_with_app_transactions(table):
    version = table.version()
    replace_rows(table, rows(("0-0", D1, "it's new")), equals_predicate(id="0-0"),
                 app_transactions={"tweetops-test": 7})
    assert by_day(table)[D1] == [("0-0", "it's new"), ("0-1", "old")]
    assert table.transaction_version("tweetops-test") == 7 and table.version() == version + 1
    # A quote in a value cannot end the literal early.
    replace_rows(table, rows(("0-9", D1, "it's new")), equals_predicate(note="it's new"))
    assert by_day(table)[D1] == [("0-1", "old"), ("0-9", "it's new")]
    # The new rows must match the predicate too: a slice is replaced, never another one written.
    with pytest.raises(Exception, match="failed validation check"):
        replace_rows(table, rows(("0-9", D1, "newer")), equals_predicate(note="it's new"))


def test_predicates():
    assert days_predicate("event_date", D1, D1 + 2 * DAY) == \
        "event_date >= '2024-03-01' AND event_date < '2024-03-03'"
    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    assert equals_predicate(window_start=start, actor="o'brien") == \
        "window_start = '2024-03-01T00:00:00+00:00' AND actor = 'o''brien'"
    with pytest.raises(ValueError, match="whole table"):
        equals_predicate()
    with pytest.raises(TypeError, match="version=3"):
        equals_predicate(version=3)
