"""Spark on Delta: the `deltalake` data source's read rate against spark.read.parquet, same files.

Builds a temporary lakehouse with N synthetic silver tweets (one commit, one file per day), then
in one Spark session reads every column of every row (a `noop` write forces a full scan) through
(a) read_table (the Delta snapshot, via the Python data source) and (b) spark.read.parquet on the
same table folder, alternating, best of several runs each; the figure is the ratio a/b. Then the
write side: (c) write_table overwriting the table with its own rows (one Delta commit) against
(d) Spark's own df.write.parquet of the same DataFrame.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic tweets (default 1000000)")
    parser.add_argument("--days", type=int, default=10, help="event_date partitions, one file each (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each reader (default 3)")


def _full_scan_seconds(df) -> float:
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict:
    from tweetops.bench.sql import build_lakehouse
    from lakehouse.spark import spark_session
    from lakehouse.spark_delta import read_table, write_table
    from tweetops.core.storage import table_uri
    from tweetops.core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="tweetops-bench-spark-") as tmp:
        settings = load_settings(build_lakehouse(Path(tmp), args.rows, args.days))
        started = time.perf_counter()
        spark = spark_session(settings, app_name="tweetops-bench-spark")
        print(f"Spark session on {settings.spark_master} in {time.perf_counter() - started:.1f} s", flush=True)
        try:
            delta_df = read_table(spark, "silver_tweets", settings=settings)
            parquet_df = spark.read.parquet(table_uri("silver_tweets", settings))
            assert delta_df.count() == parquet_df.count() == args.rows, "the readers disagree on the row count"
            _full_scan_seconds(delta_df)  # warm-up: Python workers, page cache
            _full_scan_seconds(parquet_df)
            delta_times, parquet_times = [], []
            for _ in range(args.repeat):
                delta_times.append(_full_scan_seconds(read_table(spark, "silver_tweets", settings=settings)))
                parquet_times.append(_full_scan_seconds(spark.read.parquet(table_uri("silver_tweets", settings))))
            delta_rate, parquet_rate = args.rows / min(delta_times), args.rows / min(parquet_times)
            print(f"(a) deltalake data source: {delta_rate / 1e6:.2f}M rows/s (best {min(delta_times):.2f} s)")
            print(f"(b) spark.read.parquet:    {parquet_rate / 1e6:.2f}M rows/s (best {min(parquet_times):.2f} s)")
            print(f"ratio a/b: {delta_rate / parquet_rate:.2f}", flush=True)

            # Writes: the same DataFrame (read through the data source) as one Delta commit, and as
            # plain parquet by Spark's own writer; a warm-up each, then best of --repeat.
            write_times, parquet_write_times = [], []
            for attempt in range(args.repeat + 1):
                started = time.perf_counter()
                # Overwrite the table with its own rows: the old files stay readable until vacuumed.
                write_table(read_table(spark, "silver_tweets", settings=settings), "silver_tweets",
                            mode="overwrite", settings=settings)
                write_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                read_table(spark, "silver_tweets", settings=settings).write.mode("overwrite").parquet(
                    str(Path(tmp) / "plain-parquet"))
                parquet_write_times.append(time.perf_counter() - started)
            write_rate, parquet_write_rate = args.rows / min(write_times[1:]), args.rows / min(parquet_write_times[1:])
            print(f"(c) write_table (one Delta commit): {write_rate / 1e6:.2f}M rows/s "
                  f"(best {min(write_times[1:]):.2f} s)")
            print(f"(d) Spark's df.write.parquet:      {parquet_write_rate / 1e6:.2f}M rows/s "
                  f"(best {min(parquet_write_times[1:]):.2f} s)")
            print(f"ratio c/d: {write_rate / parquet_write_rate:.2f}", flush=True)
        finally:
            spark.stop()
    return {"rows": args.rows, "files": args.days, "delta_rows_per_second": round(delta_rate),
            "parquet_rows_per_second": round(parquet_rate), "ratio": round(delta_rate / parquet_rate, 3),
            "write_rows_per_second": round(write_rate), "parquet_write_rows_per_second": round(parquet_write_rate),
            "write_ratio": round(write_rate / parquet_write_rate, 3), "spark_master": settings.spark_master}
