"""Pure parts of the lakehouse: the SQL read-only check, output formatting, the Spark sink's schema
check, read planning and Delta stats."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from lakehouse.spark_delta import DeltaReader, DeltaWriteError, _merge_stats, _stats, conform_to_table
from lakehouse.sql import QueryError, check_read_only, format_table, parse_versions


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "  with t AS (SELECT 1 AS a) SELECT a FROM t",
    "-- how many?\nSELECT count(*) FROM silver_tweets",
    "/* yesterday */ SELECT 1",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "FROM silver_tweets LIMIT 1",
    "DESCRIBE silver_tweets",
    "PIVOT silver_tweets ON label USING count(*) GROUP BY event_date",
    "PIVOT silver_tweets ON label IN ('negative', 'positive') USING count(*)",
    "WITH p AS (PIVOT silver_tweets ON label USING count(*)) SELECT * FROM p",
    "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v",
])
def test_queries_pass_the_read_only_check(sql):
    check_read_only(sql)


@pytest.mark.parametrize("sql, kind", [
    ("INSERT INTO t VALUES (1)", "INSERT"),
    ("delete from t", "DELETE"),
    ("COPY (SELECT 1) TO 'x.csv'", "COPY"),
    ("ATTACH 'x.db'", "ATTACH"),
    ("PRAGMA version", "PRAGMA"),
    ("SET threads = 1", "SET"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("/* sneaky */ CREATE TABLE x AS SELECT 1", "CREATE"),
    ("CREATE TABLE x AS PIVOT (SELECT 1 AS a, 'b' AS c) ON c USING sum(a)", "CREATE"),
    ("INSERT INTO t PIVOT (SELECT 1 AS a, 'b' AS c) ON c USING sum(a)", "INSERT"),
])
def test_writes_and_settings_are_refused_by_name(sql, kind):
    with pytest.raises(QueryError, match=f"read-only: {kind} statements are refused"):
        check_read_only(sql)


def test_several_statements_and_bad_sql_are_refused():
    with pytest.raises(QueryError, match="one query at a time: got 2"):
        check_read_only("SELECT 1; DROP TABLE t")
    with pytest.raises(QueryError, match="bad SQL"):
        check_read_only("SELEC 1")
    with pytest.raises(QueryError, match="no SQL"):
        check_read_only("  ")


def test_a_pivot_is_still_one_query():
    with pytest.raises(QueryError, match="one query at a time"):
        check_read_only("PIVOT (SELECT 1 AS a, 'b' AS c) ON c USING sum(a); DROP TABLE t")


def test_version_flags():
    assert parse_versions(["silver_tweets=3", "bronze_tweets = 0"]) == {"silver_tweets": 3, "bronze_tweets": 0}
    with pytest.raises(QueryError, match="expected TABLE=N"):
        parse_versions(["silver_tweets=latest"])


def test_format_table_aligns_and_counts():
    table = pa.table({"label": ["negative", None], "n": [12, 3], "share": [0.8, 0.2]})
    assert format_table(table).splitlines() == [
        "label      n  share",
        "--------  --  -----",
        "negative  12    0.8",
        "NULL       3    0.2",
        "(2 rows)",
    ]
    assert format_table(table, max_rows=1).splitlines()[-1] == "(2 rows, first 1 shown; use --max-rows or --format csv)"


def test_every_duckdb_type_can_be_shown_in_every_format():
    """DuckDB's test_all_types(): extreme dates and timestamps Python cannot hold, huge integers,
    enums, nested lists, structs and maps; nothing may crash the output."""
    import io

    import duckdb

    from lakehouse.sql import write_csv, write_json

    table = duckdb.connect().execute("FROM test_all_types()").fetch_arrow_table()
    text = format_table(table).splitlines()
    assert text[0].split()[:3] == ["bool", "tinyint", "smallint"] and text[-1] == "(3 rows)"
    assert "NULL" in text[4]
    as_json = io.StringIO()
    write_json(table, as_json)
    rows = json.loads(as_json.getvalue())
    assert len(rows) == 3 and rows[0]["date"] and rows[1]["tinyint"] == 127
    as_csv = io.StringIO()
    write_csv(table, as_csv)
    assert as_csv.getvalue().splitlines()[0].startswith("bool,tinyint,")


def test_a_result_may_repeat_a_column_name():
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["x"])], names=["a", "a"])
    assert format_table(table).splitlines()[2] == "1  x"


SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("n", pa.int32()),
                    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False)])


def test_conform_orders_columns_and_normalises_time_zones():
    batch = pa.record_batch({"at": pa.array([0], pa.timestamp("us", tz="Europe/Paris")), "n": pa.array([1], pa.int32()),
                             "id": ["a"]})
    out = conform_to_table(batch, SCHEMA)
    assert out.schema == SCHEMA and out.to_pylist()[0]["id"] == "a"


def test_conform_names_every_problem_and_never_casts():
    batch = pa.record_batch({"id": pa.array([None, "b"], pa.string()), "n": pa.array([1, 2], pa.int64()),
                             "extra": [1, 2]})
    with pytest.raises(DeltaWriteError) as refused:
        conform_to_table(batch, SCHEMA)
    message = str(refused.value)
    assert "missing columns ['at']" in message and "unknown columns ['extra']" in message
    assert "'n' is int64, the table expects int32" in message and "'id' has 1 null(s)" in message


def test_read_plan_packs_small_files_and_spreads_big_ones():
    small = [(f"f{i}", {}, 1_000) for i in range(100)]
    splits = DeltaReader._plan(small, min_partitions=2)
    assert len(splits) == 2 and sorted(len(s.files) for s in splits) == [50, 50]
    big = [(f"b{i}", {}, 200 * 1024 * 1024) for i in range(3)]
    assert len(DeltaReader._plan(big, min_partitions=2)) == 3  # never two big files in one task
    assert DeltaReader._plan([], min_partitions=2) == []


def test_stats_round_timestamps_outwards_to_milliseconds():
    at = pa.array([dt.datetime(2026, 11, 1, 0, 0, 0, 1500, tzinfo=dt.timezone.utc),
                   dt.datetime(2026, 11, 1, 0, 0, 1, 2500, tzinfo=dt.timezone.utc)], pa.timestamp("us", "UTC"))
    table = pa.table({"id": ["a", "b"], "n": pa.array([3, None], pa.int32()), "at": at})
    stats = json.loads(_merge_stats([_stats(table)], SCHEMA))
    assert stats["numRecords"] == 2 and stats["nullCount"] == {"id": 0, "n": 1, "at": 0}
    assert stats["minValues"] == {"n": 3, "at": "2026-11-01T00:00:00.001Z"}
    assert stats["maxValues"] == {"n": 3, "at": "2026-11-01T00:00:01.003Z"}
