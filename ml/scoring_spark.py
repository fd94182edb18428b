"""Scoring on Spark: the champion's predictions for a big interval, computed on every executor core.

`score_interval_spark` does what ml.scoring.score_interval does (same rows, same values, one Delta
commit replacing the interval's gold_predictions) but predicts inside `mapInPandas`, so a cluster
scales it. Each executor's Python process loads the champion once and keeps it, keyed by its
model URI, for every later task and batch. ml.scoring.score_interval hands an interval over here
when it holds at least `spark_scoring_min_rows` tweets (TWEETOPS_SPARK_SCORING_MIN_ROWS): below that,
Spark's start-up costs more than one process spends predicting (see infra/scaling.md).
"""
from __future__ import annotations

import os
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Iterator

from tweetops.core.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

SOURCE_TABLE = "silver_tweets"
TABLE = "gold_predictions"

MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
# model URI -> loaded pyfunc, per executor Python process (Spark reuses its Python workers).
_LOADED_MODELS: dict[str, object] = {}


def silver_rows_in(start: date, end: date, settings: Settings) -> int:
    """How many silver tweets have event_date in [start, end) (from the Delta log: no file read)."""
    from tweetops.core.tables import rows_in_dates

    return rows_in_dates(SOURCE_TABLE, start, end, settings)


def prefers_spark(start: date, end: date, settings: Settings) -> bool:
    """Whether the interval is big enough for Spark scoring to beat the one-process path."""
    return silver_rows_in(start, end, settings) >= settings.spark_scoring_min_rows


def score_interval_spark(start: date, end: date, settings: Settings | None = None) -> int:
    """Score the silver tweets with event_date in [start, end) on Spark; return the rows written."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from lakehouse.spark import spark_session, spread_over_cores
    from lakehouse.spark_delta import read_table, write_table
    from tweetops.core.delta_replace import days_predicate
    from tweetops.core.intervals import midnight
    from tweetops.core.tables import ensure_table, spec
    from ml import model_access

    settings = settings or load_settings()
    ensure_table(SOURCE_TABLE, settings)
    ensure_table(TABLE, settings)
    champion = model_access.resolve(settings)  # on the driver: an interval is scored by ONE version
    model_access.require_trusted(champion)  # the executors load it: only a version the pipeline registered
    spark = spark_session(settings, app_name="tweetops-scoring")
    silver = (read_table(spark, SOURCE_TABLE, settings=settings)
              .where((F.col("event_date") >= F.lit(start)) & (F.col("event_date") < F.lit(end)))
              .select("id", "event_date", "text"))
    # An MLflow server with authentication: executors sign in with the account the driver used
    # (ml.registry exports it to the environment); a cluster's executors do not inherit that.
    credentials = {k: os.environ[k] for k in MLFLOW_CREDENTIALS if os.environ.get(k)}
    predict = partial(_predict_batches, tracking_uri=settings.mlflow_tracking_uri, credentials=credentials,
                      model_uri=f"models:/{champion.name}/{champion.version}", model_name=champion.name,
                      model_version=str(champion.version),
                      scored_at=midnight(end))
    predictions = (spread_over_cores(silver)
                   .mapInPandas(predict, schema=from_arrow_schema(spec(TABLE).schema))
                   .sortWithinPartitions("event_date", "id"))  # a rerun writes rows in the same order
    predictions = predictions.persist()
    try:
        rows = predictions.count()
        write_table(predictions, TABLE, mode="overwrite", settings=settings,
                    replace_where=days_predicate("event_date", start, end),
                    commit_metadata={"tweetops.operation": "score_interval",
                                     "tweetops.interval": f"{start.isoformat()}/{end.isoformat()}",
                                     "tweetops.model": f"{champion.name}/{champion.version}"})
    finally:
        predictions.unpersist()
    return rows


def _champion_model(tracking_uri: str, model_uri: str, credentials: dict[str, str]):
    key = f"{tracking_uri}|{model_uri}"
    if key not in _LOADED_MODELS:
        from ml import model_access

        os.environ.update(credentials)
        _LOADED_MODELS[key] = model_access.pyfunc(tracking_uri, model_uri)
    return _LOADED_MODELS[key]


def _predict_batches(batches: Iterator[pd.DataFrame], tracking_uri: str, credentials: dict[str, str],
                     model_uri: str, model_name: str, model_version: str,
                     scored_at: datetime) -> Iterator[pd.DataFrame]:
    # Runs on the executors' Python workers: the same predict_arrays (contract checks) as serving.
    from ml.contract import PROBA_COLUMNS
    from ml.model_access import predict_arrays

    model = None
    for batch in batches:
        if batch.empty:
            continue
        model = model or _champion_model(tracking_uri, model_uri, credentials)
        labels, probabilities = predict_arrays(model, batch["text"].tolist())
        out = batch[["id", "event_date"]].copy()
        out["label"] = labels
        for i, column in enumerate(PROBA_COLUMNS):
            out[column] = probabilities[:, i]
        out["model_name"] = model_name
        out["model_version"] = model_version
        out["scored_at"] = scored_at
        yield out
