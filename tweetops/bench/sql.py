"""SQL: a GROUP BY over 1M synthetic tweets in silver_tweets, through `tweetops sql`.

Builds a temporary lakehouse with N synthetic silver tweets (one Delta commit, one file per day),
then times (a) two GROUP BY queries through lakehouse.sql.query() in this process: counts only,
and counts plus text functions (open the Delta table, register it in DuckDB, run, fetch: all that
`tweetops sql` does after start-up), best and median of several runs; and (b) the whole
`tweetops sql` command running the counting query as a subprocess, start-up and imports included.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The headline figure: a GROUP BY over every row. The second query also reads every tweet's text.
GROUP_BY = "SELECT event_date, label, count(*) AS tweets FROM silver_tweets GROUP BY ALL ORDER BY ALL"
TEXT_GROUP_BY = ("SELECT event_date, label, count(*) AS tweets, avg(length(text)) AS avg_chars, "
                 "count(*) FILTER (WHERE text ILIKE '%@united%') AS about_united "
                 "FROM silver_tweets GROUP BY ALL ORDER BY ALL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic tweets (default 1000000)")
    parser.add_argument("--days", type=int, default=10, help="event_date partitions (default 10)")
    parser.add_argument("--repeat", type=int, default=7, help="timed in-process runs (default 7)")
    parser.add_argument("--cli-repeat", type=int, default=3, help="timed `tweetops sql` runs (default 3)")


def synthetic_tweets(rows: int, days: int = 10, seed: int = 7):
    """`rows` silver tweets: airline mentions, three labels, spread over `days` days."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from tweetops.core.tables import TABLES

    rng = np.random.default_rng(seed)
    airlines = np.array(["@united", "@delta", "@AmericanAir", "@SouthwestAir", "@JetBlue", "@VirginAmerica"])
    phrases = np.array(["my flight was delayed again", "thanks for the upgrade", "lost my bag",
                        "great crew today", "still on hold after an hour", "boarding now", "worst service ever",
                        "love the new seats", "cancelled with no notice", "on time for once"])
    text = pc.binary_join_element_wise(pa.array(airlines[rng.integers(0, len(airlines), rows)]),
                                       pa.array(phrases[rng.integers(0, len(phrases), rows)]), " ")
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    seconds = rng.integers(0, days * 86400, rows)
    created = pa.array((np.datetime64(start.replace(tzinfo=None), "us")
                        + seconds.astype("timedelta64[s]")).astype("datetime64[us]"), pa.timestamp("us", "UTC"))
    labels = np.array(["negative", "neutral", "positive"])[rng.choice(3, rows, p=[0.6, 0.25, 0.15])]
    columns = {
        "id": pa.array(np.char.add("t", np.arange(rows).astype(str))),
        "text": text,
        "created_at": created,
        "user": pa.array(np.char.add("user", rng.integers(0, 50_000, rows).astype(str))),
        "lang": pa.array(np.full(rows, "en")),
        "label": pa.array(labels),
        "extra": pa.nulls(rows, pa.string()),
        "event_date": pc.cast(created, pa.date32()),
        "validated_at": pa.array(np.full(rows, np.datetime64(start.replace(tzinfo=None), "us")),
                                 pa.timestamp("us", "UTC")),
        "bronze_version": pa.array(np.ones(rows, dtype=np.int64)),
        "gate_run_id": pa.nulls(rows, pa.string()),
    }
    schema = TABLES["silver_tweets"].schema
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


def build_lakehouse(root: Path, rows: int, days: int) -> dict[str, str]:
    """A temporary lakehouse with `rows` synthetic silver tweets; returns its environment."""
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table
    from tweetops.core.settings import load_settings

    env = {**os.environ, "TWEETOPS_HOME": str(root / "home"), "TWEETOPS_LAKEHOUSE_URI": str(root / "lakehouse")}
    settings = load_settings(env)
    started = time.perf_counter()
    write_deltalake(ensure_table("silver_tweets", settings), synthetic_tweets(rows, days), mode="append")
    print(f"wrote {rows:,} synthetic tweets to silver_tweets in {time.perf_counter() - started:.1f} s", flush=True)
    return env


def measure(args: argparse.Namespace) -> dict:
    from lakehouse.sql import query
    from tweetops.core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="tweetops-bench-sql-") as tmp:
        env = build_lakehouse(Path(tmp), args.rows, args.days)
        settings = load_settings(env)
        figures = {"rows": args.rows}
        for key, sql in (("group_by", GROUP_BY), ("text_group_by", TEXT_GROUP_BY)):
            result = query(sql, settings)  # warm-up: file cache, DuckDB start
            assert sum(result["tweets"].to_pylist()) == args.rows, "the GROUP BY lost rows"
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                query(sql, settings)
                times.append(time.perf_counter() - started)
            best, median = min(times), statistics.median(times)
            print(f"(a) {key}: {result.num_rows} groups over {args.rows:,} tweets via lakehouse.sql.query: "
                  f"best {best * 1000:.0f} ms, median {median * 1000:.0f} ms "
                  f"({args.rows / median / 1e6:.1f}M rows/s)", flush=True)
            figures.update({f"{key}_best_ms": round(best * 1000, 1), f"{key}_median_ms": round(median * 1000, 1)})

        cli_times = []
        for _ in range(args.cli_repeat):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "tweetops.cli", "sql", GROUP_BY], env=env,
                                  capture_output=True, text=True)
            cli_times.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"tweetops sql failed: {done.stderr}")
        cli_best, cli_median = min(cli_times), statistics.median(cli_times)
        print(f"(b) the whole `tweetops sql` command (start-up included): best {cli_best:.2f} s, "
              f"median {cli_median:.2f} s", flush=True)
    return {**figures, "cli_best_s": round(cli_best, 3), "cli_median_s": round(cli_median, 3)}
