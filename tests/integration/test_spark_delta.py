"""The Spark data source for Delta: round trips on local disk and on the S3 server, one commit per
write, time travel, and refusals that leave the table exactly as it was."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.spark_delta import DeltaWriteError, DeltaWriter, WrittenFiles, _filesystem, read_table, write_table
from tweetops.core.storage import storage_options, table_uri
from tweetops.core.tables import open_table

pytestmark = pytest.mark.integration

DAY1, DAY2, DAY3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def predictions(spark, n: int, days=(DAY1, DAY2, DAY3), model_version: str = "1"):
    """n prediction rows spread over `days`, typed exactly like gold_predictions."""
    from pyspark.sql import functions as F

    day_list = ",".join(f"date'{d.isoformat()}'" for d in days)
    return spark.range(n).select(
        F.concat(F.lit(f"v{model_version}-"), F.col("id").cast("string")).alias("id"),
        F.expr(f"element_at(array({day_list}), cast(id % {len(days)} as int) + 1)").alias("event_date"),
        F.expr("element_at(array('negative','neutral','positive'), cast(id % 3 as int) + 1)").alias("label"),
        F.lit(0.5).alias("proba_negative"), F.lit(0.3).alias("proba_neutral"), F.lit(0.2).alias("proba_positive"),
        F.lit("tweetops-sentiment").alias("model_name"), F.lit(model_version).alias("model_version"),
        F.lit(dt.datetime(2026, 11, 4, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)).alias("scored_at"),
    )


def counts_by_day(df) -> dict:
    return {r["event_date"]: r["count"] for r in df.groupBy("event_date").count().collect()}


def stored_files(settings, name: str) -> set[str]:
    """Every data file under the table's folder, referenced or not."""
    from pyarrow.fs import FileSelector

    filesystem, base = _filesystem(table_uri(name, settings), storage_options(settings))
    infos = filesystem.get_file_info(FileSelector(base, recursive=True))
    return {i.path for i in infos if i.path.endswith(".parquet")}


def delta_counts_by_day(settings, version: int | None = None) -> dict:
    table = open_table("gold_predictions", settings, version=version).to_pyarrow_table(columns=["event_date"])
    return {r["event_date"]: r["count"] for r in table.group_by("event_date").aggregate([([], "count_all")])
            .rename_columns(["event_date", "count"]).to_pylist()}


def test_append_overwrite_replace_and_time_travel(spark, any_lakehouse):
    import duckdb

    settings = any_lakehouse
    assert read_table(spark, "gold_predictions").count() == 0  # created empty on first use
    assert write_table(predictions(spark, 300), "gold_predictions") == 1
    assert write_table(predictions(spark, 300), "gold_predictions") == 2
    assert delta_counts_by_day(settings) == {DAY1: 200, DAY2: 200, DAY3: 200}

    # Replace exactly one day, twice: a rerun gives the same table, not twice the rows.
    for expected_version in (3, 4):
        assert write_table(predictions(spark, 50, days=(DAY2,), model_version="2"), "gold_predictions",
                           mode="overwrite", replace_where="event_date = '2026-11-02'") == expected_version
    assert delta_counts_by_day(settings) == {DAY1: 200, DAY2: 50, DAY3: 200}

    assert write_table(predictions(spark, 30, days=(DAY3,)), "gold_predictions", mode="overwrite") == 5
    assert counts_by_day(read_table(spark, "gold_predictions")) == {DAY3: 30}

    # Time travel through Spark; the same version reads back identically with deltalake and DuckDB.
    old = read_table(spark, "gold_predictions", version=3).collect()
    # .timestamp(): Spark collects naive local times, deltalake aware UTC ones; both mean one instant.
    spark_rows = sorted((r["id"], r["event_date"], r["label"], r["model_version"], r["scored_at"].timestamp())
                        for r in old)
    assert len(spark_rows) == 450
    assert {r[3] for r in spark_rows if r[1] == DAY2} == {"2"}
    delta = open_table("gold_predictions", settings, version=3)
    from_delta = delta.to_pyarrow_table()
    assert from_delta.schema.equals(pa.schema(delta.schema().to_arrow()))
    delta_rows = zip(*(from_delta[c].to_pylist() for c in ("id", "event_date", "label", "model_version", "scored_at")))
    assert sorted((*r[:4], r[4].timestamp()) for r in delta_rows) == spark_rows
    con = duckdb.connect()
    con.register("gold_predictions", delta.to_pyarrow_dataset())
    assert con.execute("SELECT event_date, count(*) FROM gold_predictions GROUP BY ALL ORDER BY ALL"
                       ).fetchall() == [(DAY1, 200), (DAY2, 50), (DAY3, 200)]

    # One commit per write, with the stats the log needs for row counts and pruning.
    latest = open_table("gold_predictions", settings)
    assert latest.version() == 5
    actions = pa.table(latest.get_add_actions(flatten=True))
    assert sum(actions["num_records"].to_pylist()) == 30
    assert actions["min.scored_at"].to_pylist()[0] == dt.datetime(2026, 11, 4, 12, 30, 15, 123000,
                                                                   tzinfo=dt.timezone.utc)


def test_unpartitioned_table_round_trip(spark, local_lakehouse):
    from pyspark.sql import functions as F

    metrics = spark.range(4).select(
        F.lit("tweetops-sentiment").alias("model_name"), F.col("id").cast("string").alias("model_version"),
        F.lit("run-1").alias("run_id"), F.lit("test").alias("dataset"), F.lit("macro_f1").alias("metric"),
        (F.col("id") / 10).alias("value"), F.current_timestamp().alias("logged_at"))
    assert write_table(metrics, "gold_model_metrics") == 1
    assert sorted(r["value"] for r in read_table(spark, "gold_model_metrics").collect()) == [0.0, 0.1, 0.2, 0.3]


def test_failed_job_leaves_table_unchanged(spark, any_lakehouse):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    settings = any_lakehouse
    write_table(predictions(spark, 100), "gold_predictions")
    files_before = stored_files(settings, "gold_predictions")

    @F.udf(StringType())
    def explode_on_77(label, row_id):
        if row_id.endswith("-77"):
            raise RuntimeError("scoring crashed")
        return label

    broken = predictions(spark, 200).withColumn("label", explode_on_77("label", "id")).repartition(2)
    with pytest.raises(Exception, match="scoring crashed"):
        write_table(broken, "gold_predictions", mode="overwrite")

    assert open_table("gold_predictions", settings).version() == 1
    assert sum(delta_counts_by_day(settings).values()) == 100
    assert stored_files(settings, "gold_predictions") == files_before  # nothing left behind


def test_schema_mismatch_is_refused_before_commit(spark, local_lakehouse):
    from pyspark.sql import functions as F

    settings = local_lakehouse
    write_table(predictions(spark, 10), "gold_predictions")
    files_before = stored_files(settings, "gold_predictions")

    with pytest.raises(DeltaWriteError, match="missing columns \\['label'\\]"):
        write_table(predictions(spark, 10).drop("label"), "gold_predictions")
    with pytest.raises(DeltaWriteError, match="'proba_negative' is float, the table expects double"):
        write_table(predictions(spark, 10).withColumn("proba_negative", F.lit(0.5).cast("float")), "gold_predictions")
    # A NULL in a NOT NULL column is only visible in the data: refused by the writing task.
    with pytest.raises(DeltaWriteError, match="'label' has 1 null"):
        write_table(predictions(spark, 10).withColumn("label", F.expr("IF(id = 'v1-3', NULL, label)")), "gold_predictions")
    # A replace that would write rows outside the replaced range is refused.
    with pytest.raises(DeltaWriteError, match="outside replace_where"):
        write_table(predictions(spark, 10), "gold_predictions", mode="overwrite",
                    replace_where="event_date = '2026-11-01'")

    assert open_table("gold_predictions", settings).version() == 1
    assert stored_files(settings, "gold_predictions") == files_before


def test_commit_validates_the_written_files(local_lakehouse):
    """The driver reads every written file's schema before committing: delta-rs itself would
    commit a file of any schema."""
    from tweetops.core.tables import ensure_table

    settings = local_lakehouse
    table = ensure_table("gold_model_metrics", settings)
    uri = table_uri("gold_model_metrics", settings)
    rogue = "part-rogue.snappy.parquet"
    pq.write_table(pa.table({"model_name": ["m"], "value": [1]}), f"{uri}/{rogue}")
    writer = DeltaWriter(uri, {}, table, overwrite=False, replace_where=None, write_id="test")
    message = WrittenFiles([{"path": rogue, "size": 10, "partition_values": {}, "stats": '{"numRecords": 1}'}])
    with pytest.raises(DeltaWriteError, match="refusing to commit part-rogue"):
        writer.commit([message])
    assert open_table("gold_model_metrics", settings).version() == 0
    assert stored_files(settings, "gold_model_metrics") == set()
