"""`tweetops sql` and `tweetops tables` on a local and an S3 lakehouse; nothing can write through them."""
from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import date, datetime, timezone

import pyarrow as pa
import pytest

from lakehouse.listing import describe_tables
from lakehouse.sql import QueryError, query
from tweetops.core.storage import ensure_bucket
from tweetops.core.tables import TABLES, ensure_table, open_table
from tests.conftest import TWEETOPS

pytestmark = pytest.mark.integration

YESTERDAY = date(2026, 11, 1)


def land_silver(settings, day: date, labels: list[str], first_id: int = 0) -> int:
    """Append silver tweets (one commit); returns the new version."""
    from deltalake import write_deltalake

    now = datetime(2026, 11, 2, tzinfo=timezone.utc)
    rows = [{"id": f"t{first_id + i}", "text": f"{'@united' if i % 2 else '@delta'} flight {i}",
             "created_at": datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc), "user": "u",
             "lang": "en", "label": label, "extra": None, "event_date": day, "validated_at": now,
             "bronze_version": 1} for i, label in enumerate(labels)]
    ensure_bucket(settings)  # a fresh S3 root: ensure_table needs the bucket to exist
    table = ensure_table("silver_tweets", settings)
    write_deltalake(table, pa.Table.from_pylist(rows, schema=TABLES["silver_tweets"].schema), mode="append")
    return table.version()


NEGATIVE_ABOUT_UNITED = ("SELECT count(*) AS n FROM silver_tweets WHERE label = 'negative' "
                         "AND text ILIKE '%@united%' AND event_date = DATE '2026-11-01'")


def test_sql_reads_every_table_by_name_with_time_travel(any_lakehouse):
    settings = any_lakehouse
    land_silver(settings, YESTERDAY, ["negative"] * 6 + ["positive"] * 2)
    v2 = land_silver(settings, YESTERDAY, ["negative"] * 4, first_id=100)

    assert query(NEGATIVE_ABOUT_UNITED, settings).to_pylist() == [{"n": 5}]
    assert query(NEGATIVE_ABOUT_UNITED, settings, versions={"silver_tweets": v2 - 1}).to_pylist() == [{"n": 3}]
    by_label = query("SELECT label, count(*) AS n FROM silver_tweets GROUP BY label ORDER BY label", settings)
    assert by_label.to_pylist() == [{"label": "negative", "n": 10}, {"label": "positive", "n": 2}]
    # A table never written reads as empty, with its schema, and is not created by reading it.
    empty = query("SELECT * FROM gold_predictions", settings)
    assert empty.num_rows == 0 and empty.column_names == TABLES["gold_predictions"].schema.names
    with pytest.raises(LookupError):
        open_table("gold_predictions", settings)
    # Joins across tables work like any SQL.
    joined = query("SELECT count(*) AS n FROM silver_tweets s LEFT JOIN gold_predictions p USING (id)", settings)
    assert joined.to_pylist() == [{"n": 12}]

    with pytest.raises(QueryError, match="unknown table 'silver_tweetz'; known tables: bronze_dead_letters"):
        query("SELECT * FROM silver_tweetz", settings)
    with pytest.raises(QueryError, match="bad SQL"):
        query("SELEC * FROM silver_tweets", settings)
    with pytest.raises(QueryError, match="no such version"):
        query("SELECT 1 FROM silver_tweets", settings, versions={"silver_tweets": 99})

    listing = {t["table"]: t for t in describe_tables(settings)}
    assert (listing["silver_tweets"]["version"], listing["silver_tweets"]["rows"], listing["silver_tweets"]["files"]) \
        == (v2, 12, 2)
    assert listing["gold_predictions"]["version"] is None


def test_sql_and_tables_commands(any_lakehouse, cli_env):
    settings = any_lakehouse
    version = land_silver(settings, YESTERDAY, ["negative", "neutral", "negative"])

    def tweetops(*args):
        return subprocess.run([*TWEETOPS, *args], capture_output=True, text=True, env=cli_env(), timeout=120)

    table = tweetops("sql", "SELECT label, count(*) AS n FROM silver_tweets GROUP BY label ORDER BY label")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == ["label     n", "--------  -", "negative  2", "neutral   1", "(2 rows)"]

    as_csv = tweetops("sql", "--format", "csv", "SELECT id, event_date FROM silver_tweets ORDER BY id")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {"id": f"t{i}", "event_date": "2026-11-01"} for i in range(3)]
    as_json = tweetops("sql", "--format", "json", "--version", f"silver_tweets={version - 1}",
                       "SELECT count(*) AS n FROM silver_tweets")
    assert json.loads(as_json.stdout) == [{"n": 0}]

    unknown = tweetops("sql", "SELECT * FROM tweets")
    assert unknown.returncode == 1 and "unknown table 'tweets'" in unknown.stderr

    listed = tweetops("tables")
    assert listed.returncode == 0, listed.stderr
    silver = next(line for line in listed.stdout.splitlines() if line.startswith("silver_tweets "))
    assert silver.split()[:5] == ["silver_tweets", "silver", str(version), "3", "1"]
    assert "not created" in next(line for line in listed.stdout.splitlines() if line.startswith("gold_features "))


@pytest.mark.parametrize("statement", [
    "INSERT INTO silver_tweets SELECT * FROM silver_tweets",
    "DELETE FROM silver_tweets",
    "UPDATE silver_tweets SET label = 'positive'",
    "COPY silver_tweets TO '/tmp/tweetops-stolen.csv'",
    "COPY (SELECT * FROM silver_tweets) TO '/tmp/tweetops-stolen.parquet'",
    "ATTACH '/tmp/tweetops-attached.db' AS other",
    "CREATE TABLE copy AS SELECT * FROM silver_tweets",
    "DROP TABLE silver_tweets",
    "PRAGMA database_list",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "LOAD delta",
    "CALL checkpoint()",
    "SELECT 1; DELETE FROM silver_tweets",
])
def test_sql_is_read_only(local_lakehouse, statement):
    version = land_silver(local_lakehouse, YESTERDAY, ["negative"])
    with pytest.raises(QueryError, match="read-only|one query at a time"):
        query(statement, local_lakehouse)
    assert open_table("silver_tweets", local_lakehouse).version() == version
    assert query("SELECT count(*) AS n FROM silver_tweets", local_lakehouse).to_pylist() == [{"n": 1}]


def test_queries_cannot_reach_files_or_settings(local_lakehouse, tmp_path, cli_env):
    land_silver(local_lakehouse, YESTERDAY, ["negative"])
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    for sql in (f"SELECT * FROM read_csv('{secret}')",
                f"SELECT * FROM '{secret}'",
                "SELECT * FROM read_parquet('" + str(tmp_path) + "/lakehouse/silver_tweets/**/*.parquet')"):
        with pytest.raises(QueryError, match="read-only"):
            query(sql, local_lakehouse)

    refused = subprocess.run([*TWEETOPS, "sql", "DELETE FROM silver_tweets"], capture_output=True, text=True,
                             env=cli_env(), timeout=120)
    assert refused.returncode == 1
    assert "read-only: DELETE statements are refused" in refused.stderr


def test_a_runaway_query_is_interrupted_with_a_clear_message(local_lakehouse, cli_env):
    done = subprocess.run([*TWEETOPS, "sql", "SELECT count(*) FROM range(10000000000000)"], capture_output=True,
                          text=True, env=cli_env(TWEETOPS_SQL_TIMEOUT_SECONDS="1"), timeout=120)
    assert done.returncode == 1
    assert "query interrupted after 1 s (TWEETOPS_SQL_TIMEOUT_SECONDS)" in done.stderr
    assert "Traceback" not in done.stderr


def test_queries_run_within_the_configured_memory_and_threads(local_lakehouse, monkeypatch):
    settings = local_lakehouse.model_copy(update=dict(sql_memory_limit="64MB", sql_threads=1))
    limits = query("SELECT current_setting('memory_limit') AS memory, current_setting('threads') AS threads", settings)
    assert limits.to_pylist() == [{"memory": "61.0 MiB", "threads": 1}]
    with pytest.raises(QueryError, match="read-only"):  # and no query can raise them again
        query("SET memory_limit = '100GB'", settings)
    with pytest.raises(QueryError, match="TWEETOPS_SQL_MEMORY_LIMIT"):
        query("SELECT list(range) FROM range(100000000)", settings.model_copy(update=dict(sql_memory_limit="16MB")))


def test_pivot_runs_and_every_duckdb_type_prints(local_lakehouse, cli_env):
    land_silver(local_lakehouse, YESTERDAY, ["negative", "neutral", "negative"])
    pivot = query("PIVOT silver_tweets ON label USING count(*) GROUP BY event_date", local_lakehouse)
    assert pivot.to_pylist() == [{"event_date": YESTERDAY, "negative": 2, "neutral": 1}]
    for fmt in ("table", "csv", "json"):
        done = subprocess.run([*TWEETOPS, "sql", "--format", fmt, "FROM test_all_types()"], capture_output=True,
                              text=True, env=cli_env(), timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "bool" in done.stdout.splitlines()[0] or fmt == "json"
