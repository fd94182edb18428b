"""Scoring: the champion's prediction for every silver tweet of a data interval, in gold_predictions.

`score_interval` reads the interval's silver_tweets, predicts with the version the champion alias
points at (loaded from the MLflow registry, like the API) and replaces the interval's rows of
gold_predictions in one Delta commit: a rerun replaces, never appends twice.

Every row names the model version that made it. When the champion changes, `rescore_stale_days`
rescores the days scored by another version, a bounded batch at a time (the scoring DAG's hourly
catch-up calls it), so gold_predictions converges to the champion's predictions.

`scored_at` is the end of the scored interval (the run's logical time), not the wall clock, so
scoring an interval twice with the same champion writes identical rows; when the scoring really
ran is in the table's history (each commit carries the model version and interval).
"""
from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

from tweetops.core.settings import Settings, load_settings

SOURCE_TABLE = "silver_tweets"
TABLE = "gold_predictions"
CHUNK_ROWS = 10_000  # tweets per predict call: bounds memory on a big interval
RESCORE_DAYS_PER_RUN = 7  # stale days one catch-up run rescores: bounds a run's time after a champion change
EXIT_EMPTY = 4  # `tweetops score`: no silver tweets in the interval


def score_interval(interval_start, interval_end, settings: Settings | None = None) -> int:
    """Score the silver tweets with event_date in [interval_start, interval_end); return the rows written."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tweetops.core.delta_replace import replace_days
    from tweetops.core.intervals import day_interval, midnight
    from tweetops.core.tables import ensure_table, spec
    from ml.contract import PROBA_COLUMNS
    from ml import model_access

    settings = settings or load_settings()
    start, end = day_interval(interval_start, interval_end)
    from ml.scoring_spark import prefers_spark, score_interval_spark

    if prefers_spark(start, end, settings):  # a big interval: every executor core predicts
        return score_interval_spark(start, end, settings)
    silver = ensure_table(SOURCE_TABLE, settings)
    in_interval = (ds.field("event_date") >= pa.scalar(start, pa.date32())) & \
                  (ds.field("event_date") < pa.scalar(end, pa.date32()))
    tweets = silver.to_pyarrow_dataset().to_table(columns=["id", "event_date", "text"], filter=in_interval)
    # Sorted, so a rerun writes the same rows in the same order.
    tweets = tweets.sort_by([("event_date", "ascending"), ("id", "ascending")]).to_pandas()

    champion = model_access.load(settings, model_access.resolve(settings), cached=True)
    schema = spec(TABLE).schema
    if tweets.empty:  # still replace: the interval's old predictions must not outlive its tweets
        table = schema.empty_table()
    else:
        rows = tweets[["id", "event_date"]].copy()
        rows["label"], probabilities = model_access.predict_batches(champion, tweets["text"].tolist(), CHUNK_ROWS)
        for i, column in enumerate(PROBA_COLUMNS):
            rows[column] = probabilities[:, i]
        rows["model_name"] = champion.name
        rows["model_version"] = champion.version
        rows["scored_at"] = midnight(end)
        table = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)

    replace_days(ensure_table(TABLE, settings), table, start, end, metadata={
        "tweetops.operation": "score_interval",
        "tweetops.interval": f"{start.isoformat()}/{end.isoformat()}",
        "tweetops.model": f"{champion.name}/{champion.version}",
    })
    return table.num_rows


def stale_days(settings: Settings | None = None, champion_version: str | None = None) -> list[date]:
    """Event dates with predictions made by another version than the champion's, oldest first."""
    import pyarrow.compute as pc

    from tweetops.core.tables import ensure_table
    from ml import model_access

    settings = settings or load_settings()
    version = champion_version or str(model_access.resolve(settings).version)
    rows = ensure_table(TABLE, settings).to_pyarrow_dataset().to_table(columns=["event_date", "model_version"])
    if not rows.num_rows:
        return []
    stale = rows.filter(pc.invert(pc.fill_null(pc.equal(rows["model_version"], version), False)))
    return sorted(set(stale["event_date"].to_pylist()))


def rescore_stale_days(settings: Settings | None = None, max_days: int = RESCORE_DAYS_PER_RUN) -> dict:
    """Rescore the oldest `max_days` stale days (see stale_days) with the champion; what was done.

    Bounded so that a champion change on a long history spreads over several runs; the newest
    days are scored by the regular runs as they land."""
    from lakehouse.freshness import as_ranges
    from ml import model_access

    settings = settings or load_settings()
    version = str(model_access.resolve(settings).version)
    days = stale_days(settings, version)
    batch = days[:max_days]
    rows = sum(score_interval(start, end, settings) for start, end in as_ranges(batch))
    return {"champion_version": version, "rescored_days": [d.isoformat() for d in batch], "rows": rows,
            "stale_days_left": len(days) - len(batch)}


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tweetops.core.intervals import iso_date

    parser.add_argument("--start", required=True, type=iso_date, metavar="YYYY-MM-DD",
                        help="first event date to score")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD",
                        help="first event date NOT scored (default: the day after --start)")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 scored, 2 bad arguments, 3 no champion, 4 no silver tweets in the interval."""
    from ml.model_access import NoChampionError

    settings = load_settings()
    end = args.end or args.start + timedelta(days=1)
    if end <= args.start:
        print(f"tweetops score: --end {end} must be after --start {args.start} (the end date is excluded)",
              file=sys.stderr)
        return 2
    try:
        rows = score_interval(args.start, end, settings)
    except NoChampionError as exc:
        print(f"tweetops score: {exc}", file=sys.stderr)
        return 3
    if rows == 0:
        print(f"tweetops score: no silver tweets with event_date in [{args.start}, {end}): nothing scored "
              "(is the quality gate behind, or the date wrong?)", file=sys.stderr)
        return EXIT_EMPTY
    print(f"scored {rows} silver tweets with event_date in [{args.start}, {end}) into {TABLE} "
          f"({settings.lakehouse_uri})")
    return 0
