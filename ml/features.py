"""Gold features: silver tweets -> one row of model features per tweet (the gold_features table).

The Spark job (`build_features`) and the Spark-free seeder (`seed_features_from_corpus`) share
`feature_frame`, which calls tweetops.core.text: the very functions the served model calls on its input.
Each tweet's split (train/validation/test) comes from a hash of its id, so it never moves as data grows.
"""
from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import TYPE_CHECKING, Iterable, Iterator

from tweetops.core.text import tweet_features
from tweetops.core.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

TABLE = "gold_features"
SOURCE_TABLE = "silver_tweets"
SPLITS = (("train", 0.8), ("validation", 0.9), ("test", 1.0))  # upper bounds of a hash fraction
SILVER_COLUMNS = ["id", "text", "event_date", "label"]   # what features read from silver
NUMERIC_COLUMNS = ("token_count", "n_hashtags", "n_mentions", "n_urls", "n_emojis",
                   "n_exclamations", "n_questions")


def split_of(tweet_id: str) -> str:
    """train (80%), validation (10%) or test (10%), fixed forever by the tweet id alone."""
    fraction = int.from_bytes(hashlib.sha256(f"split:{tweet_id}".encode()).digest()[:8], "big") / 2**64
    return next(name for name, upper in SPLITS if fraction < upper)


def feature_frame(tweets: pd.DataFrame) -> pd.DataFrame:
    """gold_features rows (in the catalog's column order) for tweets with id, text, event_date, label."""
    import pandas as pd

    columns = [f.name for f in _gold_schema()]
    if tweets.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    derived = pd.DataFrame([tweet_features(text) for text in tweets["text"]], index=tweets.index)
    out = pd.concat([tweets[["id", "event_date"]], derived], axis=1)
    out["label"] = tweets["label"].where(tweets["label"].notna(), None) if "label" in tweets else None
    out["split"] = [split_of(i) for i in tweets["id"]]
    for column in NUMERIC_COLUMNS:
        out[column] = out[column].astype("int32")
    return out[columns]


def _gold_schema():
    from tweetops.core.tables import spec

    return spec(TABLE).schema


def _feature_batches(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    # Runs on Spark's Python workers (mapInPandas): plain pandas in, plain pandas out.
    for batch in batches:
        yield feature_frame(batch)


def build_features(interval_start, interval_end, settings: Settings | None = None) -> int:
    """Rebuild gold_features for the event dates in [interval_start, interval_end) from silver_tweets.

    Idempotent: the interval's rows are replaced in one Delta commit, never appended twice.
    Returns the number of feature rows written.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import (DateType, DoubleType, IntegerType, StringType, StructField,
                                   StructType)

    from lakehouse.spark import spark_session, spread_over_cores
    from lakehouse.spark_delta import read_table, write_table
    from tweetops.core.delta_replace import days_predicate
    from tweetops.core.intervals import day_interval
    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    start, end = day_interval(interval_start, interval_end)
    ensure_table(SOURCE_TABLE, settings)
    ensure_table(TABLE, settings)
    spark = spark_session(settings, app_name="tweetops-features")

    spark_types = {"string": StringType(), "date32[day]": DateType(), "int32": IntegerType(),
                   "double": DoubleType()}
    schema = StructType([StructField(f.name, spark_types[str(f.type)], f.nullable) for f in _gold_schema()])
    silver = (read_table(spark, SOURCE_TABLE, settings=settings)
              .where((F.col("event_date") >= F.lit(start)) & (F.col("event_date") < F.lit(end)))
              .select("id", "text", "event_date", "label"))
    features = spread_over_cores(silver).mapInPandas(_feature_batches, schema=schema).persist()
    try:
        rows = features.count()
        write_table(features, TABLE, mode="overwrite", settings=settings,
                    replace_where=days_predicate("event_date", start, end))
    finally:
        features.unpersist()
    return rows


def rebuild_features(interval_start, interval_end, settings: Settings | None = None) -> int:
    """Rebuild gold_features for [interval_start, interval_end): in this process when silver holds
    fewer than TWEETOPS_SPARK_SCORING_MIN_ROWS tweets there (Spark's start-up alone costs more than
    computing a day of a few tens of thousands of tweets here), else on Spark (`build_features`).
    Same rows either way: both call `feature_frame`."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tweetops.core.delta_replace import replace_days
    from tweetops.core.intervals import day_interval
    from tweetops.core.tables import ensure_table, rows_in_dates

    settings = settings or load_settings()
    start, end = day_interval(interval_start, interval_end)
    if rows_in_dates(SOURCE_TABLE, start, end, settings) >= settings.spark_scoring_min_rows:
        return build_features(start, end, settings)
    in_interval = (ds.field("event_date") >= pa.scalar(start, pa.date32())) & \
                  (ds.field("event_date") < pa.scalar(end, pa.date32()))
    tweets = ensure_table(SOURCE_TABLE, settings).to_pyarrow_dataset().to_table(
        columns=SILVER_COLUMNS, filter=in_interval)
    table = _feature_table(tweets.sort_by([("event_date", "ascending"), ("id", "ascending")]).to_pandas())
    replace_days(ensure_table(TABLE, settings), table, start, end)
    return table.num_rows


def update_features(settings: Settings | None = None):
    """Bring gold_features up to date with silver_tweets: compute only the rows silver added since
    the version recorded on gold_features, append them with that version in one commit; rebuild
    the days silver rewrote (lakehouse/downstream.py). Returns a DownstreamResult."""
    from lakehouse.downstream import process_new_silver

    settings = settings or load_settings()
    return process_new_silver(TABLE, SILVER_COLUMNS, compute=_feature_table,
                              rebuild=lambda start, end: rebuild_features(start, end, settings), settings=settings)


def _feature_table(tweets: pd.DataFrame):
    import pyarrow as pa

    if tweets.empty:
        return _gold_schema().empty_table()
    return pa.Table.from_pandas(feature_frame(tweets), schema=_gold_schema(), preserve_index=False)


def seed_features_from_corpus(settings: Settings | None = None, limit: int | None = None,
                              topics: Iterable[str] | None = None, end: date | None = None,
                              days: int = 7) -> int:
    """Fill gold_features straight from the labelled corpus, without Spark (tests, demos, benchmarks).

    Same feature code as the Spark job. `limit` keeps a stable pseudo-random sample (the tweets with
    the smallest ids), `topics` keeps only those topics (e.g. {"airline"}). Tweets already in the
    table are skipped, so seeding twice adds nothing. Returns the number of rows written.
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    frame = corpus_features(limit=limit, topics=topics, end=end, days=days)
    table = ensure_table(TABLE, settings)
    existing = set(pa.table(table.to_pyarrow_dataset().to_table(columns=["id"]))["id"].to_pylist())
    frame = frame[~frame["id"].isin(existing)]
    if frame.empty:
        return 0
    write_deltalake(table, pa.Table.from_pandas(frame, schema=_gold_schema(), preserve_index=False),
                    mode="append")
    return len(frame)


def corpus_features(limit: int | None = None, topics: Iterable[str] | None = None,
                    end: date | None = None, days: int = 7) -> pd.DataFrame:
    """gold_features rows for the labelled corpus (tweetops.core.corpus.load_corpus), computed in pandas."""
    import pandas as pd

    from tweetops.core.corpus import load_corpus

    # limit: a seeded sample that keeps the corpus's label and day mix (see load_corpus)
    tweets = pd.DataFrame(load_corpus(end=end, days=days, topics=set(topics) if topics else None,
                                      limit=int(limit) if limit is not None else None))
    if tweets.empty:
        raise ValueError(f"the corpus has no tweets for topics {sorted(topics or [])}")
    tweets = tweets.sort_values("id", kind="stable").reset_index(drop=True)
    tweets["event_date"] = pd.to_datetime(tweets["created_at"], utc=True).dt.date
    return feature_frame(tweets)


# --- CLI: `tweetops features build|seed` ----------------------------------------------------------

def add_arguments(parser) -> None:
    from tweetops.core.intervals import iso_date

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="rebuild gold_features from silver_tweets for [start, end) with Spark")
    build.add_argument("--start", required=True, type=iso_date, metavar="YYYY-MM-DD")
    build.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD",
                       help="first event date not rebuilt (default: start + 1 day)")
    seed = sub.add_parser("seed", help="fill gold_features from the labelled corpus without Spark (demos, tests)")
    seed.add_argument("--limit", type=int, default=None, help="a seeded sample of N tweets, stratified by label and day (default: all)")
    seed.add_argument("--topics", default=None,
                      help="comma-separated topics to keep: airline, self_driving, apple, google, other")


def run(args) -> int:
    if args.action == "build":
        from tweetops.core.intervals import day_interval

        try:
            start, end = day_interval(args.start, args.end or args.start + timedelta(days=1))
        except ValueError as exc:  # --end not after --start
            print(f"tweetops features build: {exc}")
            return 2
        rows = build_features(start, end)
        print(f"gold_features: {rows} rows for event dates [{start}, {end})")
    else:
        topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
        rows = seed_features_from_corpus(limit=args.limit, topics=topics)
        print(f"gold_features: {rows} corpus tweets added")
    return 0
