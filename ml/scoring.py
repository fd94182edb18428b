"""Scoring: the champion's prediction for every silver tweet, in gold_predictions.

`score_new_silver` (the scoring DAG's regular runs) predicts only the silver rows added since the
silver version recorded on gold_predictions and appends them with that version in one commit
(lakehouse/downstream.py): a rerun or a crash never doubles or loses a row.
`score_interval` (whole-day rebuilds, manual runs, `tweetops score`) reads the interval's
silver_tweets, predicts with the version the champion alias points at (loaded from the MLflow
registry, like the API) and replaces the interval's rows of gold_predictions in one Delta commit.

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

    from ml import model_access
    from ml.scoring_spark import prefers_spark, score_interval_spark
    from tweetops.core.delta_replace import replace_days
    from tweetops.core.intervals import day_interval, midnight
    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    start, end = day_interval(interval_start, interval_end)

    if prefers_spark(start, end, settings):  # a big interval: every executor core predicts
        return score_interval_spark(start, end, settings)
    silver = ensure_table(SOURCE_TABLE, settings)
    in_interval = (ds.field("event_date") >= pa.scalar(start, pa.date32())) & \
                  (ds.field("event_date") < pa.scalar(end, pa.date32()))
    tweets = silver.to_pyarrow_dataset().to_table(columns=["id", "event_date", "text"], filter=in_interval)
    # Sorted, so a rerun writes the same rows in the same order.
    tweets = tweets.sort_by([("event_date", "ascending"), ("id", "ascending")]).to_pandas()

    champion = model_access.load(settings, model_access.resolve(settings), cached=True)
    scored_at = midnight(end)
    table = prediction_table(tweets, champion, lambda _day: scored_at)

    replace_days(ensure_table(TABLE, settings), table, start, end, metadata={
        "tweetops.operation": "score_interval",
        "tweetops.interval": f"{start.isoformat()}/{end.isoformat()}",
        "tweetops.model": f"{champion.name}/{champion.version}",
    })
    return table.num_rows


def prediction_table(tweets, champion, scored_at):
    """gold_predictions rows (Arrow, in the table's schema) for tweets (pandas: id, event_date, text),
    predicted by `champion` in chunks of CHUNK_ROWS; `scored_at(event_date)` gives each row's scored_at."""
    import pyarrow as pa

    from ml import model_access
    from ml.contract import PROBA_COLUMNS
    from tweetops.core.tables import spec

    schema = spec(TABLE).schema
    if tweets.empty:
        return schema.empty_table()
    rows = tweets[["id", "event_date"]].copy()
    rows["label"], probabilities = model_access.predict_batches(champion, tweets["text"].tolist(), CHUNK_ROWS)
    for i, column in enumerate(PROBA_COLUMNS):
        rows[column] = probabilities[:, i]
    rows["model_name"] = champion.name
    rows["model_version"] = champion.version
    rows["scored_at"] = [scored_at(day) for day in rows["event_date"]]
    return pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)


def score_new_silver(settings: Settings | None = None):
    """Bring gold_predictions up to date with silver_tweets: predict only the rows silver added since
    the version recorded on gold_predictions and append them with that version in one commit;
    rescore whole the days silver rewrote (lakehouse/downstream.py). Returns a DownstreamResult.

    Appended rows carry scored_at = the midnight after their event day: what rescoring that day
    alone would write. The champion is loaded once, and only when there is something to predict."""
    from lakehouse.downstream import midnight_after, process_new_silver
    from ml import model_access

    settings = settings or load_settings()
    metadata: dict[str, str] = {}   # read at commit time: names the model that predicted the append

    def predict(tweets):
        champion = model_access.load(settings, model_access.resolve(settings), cached=True)
        metadata["tweetops.model"] = f"{champion.name}/{champion.version}"
        return prediction_table(tweets, champion, midnight_after)

    return process_new_silver(TABLE, ["id", "event_date", "text"], compute=predict,
                              rebuild=lambda start, end: score_interval(start, end, settings), settings=settings,
                              commit_metadata=metadata)


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
