"""Quality gate throughput: seconds and tweets/s to validate one day of real bronze tweets.

Seeds a throwaway lakehouse (under TWEETOPS_HOME/bench/) with --rows corpus tweets on one day and
a copy on the next, then times run_quality_gate: the first call (includes importing GX), a warm
call on the second day (validate, write silver), and a rerun of that day (validate, nothing to
rewrite).
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date, datetime, timedelta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=5000, help="tweets per day (default 5000; corpus max ~38k)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's lakehouse and Data Docs")


def measure(args: argparse.Namespace) -> dict:
    import pyarrow as pa
    from deltalake import write_deltalake

    from expectations.gate import run_quality_gate
    from tweetops.core.tables import ensure_table, spec
    from tweetops.core.corpus import load_corpus
    from tweetops.core.settings import load_settings

    base = load_settings()
    home = base.home / "bench" / f"gate-{int(time.time())}"
    settings = load_settings({**os.environ, **base.as_env(), "TWEETOPS_HOME": str(home),
                              "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse")})
    first, second = date(2024, 3, 1), date(2024, 3, 2)
    tweets = [t for _, t in zip(range(args.rows), load_corpus(end=second, days=1))]
    print(f"seeding {len(tweets)} corpus tweets on {first} and {second} under {home}", flush=True)
    rows = []
    for shift, day in enumerate((first, second)):
        for i, t in enumerate(tweets):
            created = datetime.fromisoformat(t["created_at"]) + timedelta(days=shift)
            rows.append({"id": f"{t['id']}-{shift}", "text": t["text"], "created_at": created, "user": t["user"],
                         "lang": t["lang"], "label": t["label"], "extra": None, "event_date": created.date(),
                         "ingested_at": created, "kafka_topic": "tweets", "kafka_partition": 0,
                         "kafka_offset": shift * len(tweets) + i})
    write_deltalake(ensure_table("bronze_tweets", settings),
                    pa.Table.from_pylist(rows, schema=spec("bronze_tweets").schema), mode="append")

    def timed(day: date):
        started = time.perf_counter()
        result = run_quality_gate(day, day + timedelta(days=1), settings)
        return time.perf_counter() - started, result

    cold_s, _ = timed(first)
    warm_s, result = timed(second)
    rerun_s, _ = timed(second)
    figures = {
        "rows_per_day": len(tweets), "passed": result.success, "silver_rows": result.silver_rows,
        "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2), "rerun_unchanged_s": round(rerun_s, 2),
        "tweets_per_s_warm": round(len(tweets) / warm_s), "cpu_cores": os.cpu_count(),
        "data_docs": result.data_docs_url,
    }
    print(f"first day (includes GX import): {cold_s:.2f} s; second day: {warm_s:.2f} s "
          f"({len(tweets) / warm_s:,.0f} tweets/s); rerun unchanged: {rerun_s:.2f} s", flush=True)
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
        figures["data_docs"] = None
    return figures
