"""Real corpus tweets for the drift and promotion tests, written straight to the lakehouse as the
features job (gold_features) and the quality gate (silver_tweets) would write them."""
from __future__ import annotations

import functools
from datetime import date, datetime, time, timezone
from pathlib import Path

import pandas as pd

FAST_CONFIG = Path(__file__).with_name("word_tfidf.yaml")


@functools.lru_cache(maxsize=1)
def corpus() -> pd.DataFrame:
    """The labelled corpus sorted by id (ids are hashes: any slice is a random sample)."""
    from tweetops.core.corpus import load_corpus

    return pd.DataFrame(load_corpus()).sort_values("id", kind="stable").reset_index(drop=True)


def airline() -> pd.DataFrame:
    return corpus()[corpus()["topic"] == "airline"].reset_index(drop=True)


def other_topics() -> pd.DataFrame:
    return corpus()[corpus()["topic"] != "airline"].reset_index(drop=True)


def write_features(settings, tweets: pd.DataFrame, day: date) -> int:
    """Append the tweets' gold_features rows (event_date `day`); returns the new table version."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec
    from ml.features import feature_frame

    table = ensure_table("gold_features", settings)
    frame = feature_frame(tweets.assign(event_date=day))
    write_deltalake(table, pa.Table.from_pandas(frame, schema=spec("gold_features").schema, preserve_index=False),
                    mode="append")
    return ensure_table("gold_features", settings).version()


def write_silver(settings, tweets: pd.DataFrame, day: date) -> None:
    """Append the tweets to silver_tweets as validated tweets of `day`."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    at = datetime.combine(day, time(12), timezone.utc)
    rows = pd.DataFrame({"id": tweets["id"], "text": tweets["text"], "created_at": at, "user": tweets["user"],
                         "lang": "en", "label": tweets["label"], "extra": None, "event_date": day,
                         "validated_at": at, "bronze_version": 0, "gate_run_id": None})
    write_deltalake(ensure_table("silver_tweets", settings),
                    pa.Table.from_pandas(rows, schema=spec("silver_tweets").schema, preserve_index=False),
                    mode="append")


def write_predictions(settings, tweets: pd.DataFrame, day: date, label: str, model_version: str) -> None:
    """gold_predictions rows saying `label` for every tweet, as if the scoring DAG had run."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    probabilities = {f"proba_{name}": 1.0 if name == label else 0.0 for name in ("negative", "neutral", "positive")}
    rows = pd.DataFrame({"id": tweets["id"], "event_date": day, "label": label, **probabilities,
                         "model_name": settings.model_name, "model_version": model_version,
                         "scored_at": datetime.combine(day, time(0), timezone.utc)})
    write_deltalake(ensure_table("gold_predictions", settings),
                    pa.Table.from_pandas(rows, schema=spec("gold_predictions").schema, preserve_index=False),
                    mode="append")


def shuffled_train_labels_version(settings, seed: int = 0) -> int:
    """Commit a gold_features version whose train-split labels are shuffled (test labels stay true),
    then restore the true labels as the newest version. Returns the shuffled version, to train a
    deliberately worse model on it with full lineage."""
    import numpy as np
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from tweetops.core.tables import ensure_table, spec

    table = ensure_table("gold_features", settings)
    true_version = table.version()
    frame = table.to_pandas()
    train = frame["split"] == "train"
    frame.loc[train, "label"] = np.random.default_rng(seed).permutation(frame.loc[train, "label"].to_numpy())
    write_deltalake(table, pa.Table.from_pandas(frame, schema=spec("gold_features").schema, preserve_index=False),
                    mode="overwrite")
    shuffled = DeltaTable(table.table_uri).version()
    DeltaTable(table.table_uri).restore(true_version)
    return shuffled


def drift_config_file(directory: Path, **overrides) -> Path:
    """The default drift thresholds with dotted overrides, as a YAML file (what the DAG's param takes)."""
    import yaml

    from ml.drift import CONFIG_FILE

    raw = yaml.safe_load(CONFIG_FILE.read_text())
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = directory / "drift.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
