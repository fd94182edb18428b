"""What a table's commits did since a version (lakehouse/table_changes.py), on a local Delta table:
appended files per day, days that lost files, and the new rows read back from just those files."""
from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)


@pytest.fixture
def table(local_lakehouse):
    from tweetops.core.tables import ensure_table

    return local_lakehouse, ensure_table("gold_features", local_lakehouse)


def append(settings, ids: list[str], day: date) -> None:
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    schema = spec("gold_features").schema
    rows = [{"id": i, "event_date": day, "text_normalized": i, "token_count": 1, "n_hashtags": 0, "n_mentions": 0,
             "n_urls": 0, "n_emojis": 0, "n_exclamations": 0, "n_questions": 0, "uppercase_ratio": 0.0,
             "topic": None, "label": None, "split": "train"} for i in ids]
    write_deltalake(ensure_table("gold_features", settings), pa.Table.from_pylist(rows, schema=schema), mode="append")


def changes(settings, since):
    from lakehouse.table_changes import changes_since
    from tweetops.core.tables import ensure_table

    return changes_since("gold_features", "event_date", since, ensure_table("gold_features", settings), settings)


def test_appends_are_listed_per_day_and_read_back_alone(table):
    from lakehouse.table_changes import read_files
    from tweetops.core.tables import ensure_table

    settings, _ = table
    append(settings, ["a", "b"], D1)
    seen = ensure_table("gold_features", settings).version()
    append(settings, ["c"], D1)
    append(settings, ["d", "e"], D2)
    found = changes(settings, seen)
    assert (found.since, found.to) == (seen, seen + 2)
    assert found.added_rows == {D1: 1, D2: 2} and found.rewritten == set()
    assert found.appended_days == {D1, D2}
    rows = read_files(ensure_table("gold_features", settings), [p for ps in found.added.values() for p in ps],
                      ["id", "event_date"])
    assert sorted(rows.to_pylist(), key=lambda r: r["id"]) == [
        {"id": "c", "event_date": D1}, {"id": "d", "event_date": D2}, {"id": "e", "event_date": D2}]
    assert "2 days 2024-03-01..2024-03-02" in found.describe()

    latest = changes(settings, found.to)
    assert latest.added == {} and latest.rewritten == set()


def test_a_day_that_lost_files_is_rewritten_and_never_processed_means_everything(table):
    from tweetops.core.tables import ensure_table

    settings, _ = table
    append(settings, ["a", "b"], D1)
    append(settings, ["c"], D2)
    seen = ensure_table("gold_features", settings).version()
    ensure_table("gold_features", settings).delete("id = 'a'")   # rewrites day 1's file
    found = changes(settings, seen)
    assert found.rewritten == {D1} and found.appended_days == set()
    assert "2024-03-01 rewritten" in found.describe()

    everything = changes(settings, None)
    assert everything.since is None and everything.rewritten == set()
    assert everything.added_rows == {D1: 1, D2: 1}
