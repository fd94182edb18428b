"""The drift scenario on real tweets, in one process: train on airline tweets, then tweets about
other topics arrive; drift is detected, a challenger is retrained and the promotion gate decides.

This is the loop the tweetops_drift -> tweetops_training -> tweetops_promotion DAGs run through
Airflow (`tweetops demo` drives that version through the real scheduler), without the scheduler:
tweets are written straight to silver_tweets and gold_features, as the quality gate and the features
job would. Use it on a scratch lakehouse and registry (the drift benchmark does).
"""
from __future__ import annotations

import time
from datetime import date, timedelta

from tweetops.settings import Settings

TRAINED_ON, SAME_TOPIC_DAY, NEW_TOPICS_DAY = date(2024, 2, 1), date(2024, 3, 4), date(2024, 3, 5)


def _write(settings: Settings, tweets, day: date, features: bool) -> None:
    import pandas as pd
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.tables import ensure_table, spec
    from ml.features import feature_frame

    at = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=12)
    tweets = tweets.assign(event_date=day)
    silver = tweets.assign(created_at=at, lang="en", extra=None, validated_at=at, bronze_version=0)
    write_deltalake(ensure_table("silver_tweets", settings),
                    pa.Table.from_pandas(silver[spec("silver_tweets").schema.names],
                                         schema=spec("silver_tweets").schema, preserve_index=False), mode="append")
    if features:
        write_deltalake(ensure_table("gold_features", settings),
                        pa.Table.from_pandas(feature_frame(tweets), schema=spec("gold_features").schema,
                                             preserve_index=False), mode="append")


def run_drift_scenario(settings: Settings, trained_rows: int = 4000, new_rows: int = 3000,
                       config: str = "baseline", drift_config=None, log=print) -> dict:
    """Run the scenario on `settings` (a scratch lakehouse and registry); returns what happened
    and how long each step took (seconds)."""
    import pandas as pd

    from ml.drift import check_drift
    from ml.promotion import decide_promotion
    from ml.train import train_model
    from streaming.corpus import load_corpus

    figures: dict = {}
    started = time.perf_counter()
    corpus = pd.DataFrame(load_corpus()).sort_values("id", kind="stable").reset_index(drop=True)
    airline, other = corpus[corpus["topic"] == "airline"], corpus[corpus["topic"] != "airline"]
    same_topic = airline.iloc[trained_rows:trained_rows + new_rows]
    new_topics = other.iloc[:new_rows]

    log(f"1. champion: {config} trained on {trained_rows} airline tweets")
    _write(settings, airline.iloc[:trained_rows], TRAINED_ON, features=True)
    t = time.perf_counter()
    champion = train_model(config, settings, log=lambda *a: None)
    figures["train_champion_s"] = round(time.perf_counter() - t, 1)

    log(f"2. {len(same_topic)} unseen airline tweets arrive on {SAME_TOPIC_DAY}: a drift check")
    _write(settings, same_topic, SAME_TOPIC_DAY, features=True)
    t = time.perf_counter()
    same = check_drift(SAME_TOPIC_DAY, SAME_TOPIC_DAY + timedelta(days=1), settings, drift_config)
    figures["check_same_topic_s"] = round(time.perf_counter() - t, 1)
    log(same.summary())

    log(f"3. {len(new_topics)} tweets about other topics arrive on {NEW_TOPICS_DAY}: a drift check")
    _write(settings, new_topics, NEW_TOPICS_DAY, features=True)
    t = time.perf_counter()
    drifted = check_drift(NEW_TOPICS_DAY, NEW_TOPICS_DAY + timedelta(days=1), settings, drift_config)
    figures["check_new_topics_s"] = round(time.perf_counter() - t, 1)
    log(drifted.summary())

    decision = None
    if drifted.drifted:
        log("4. drift: retraining on the new gold_features version, then the promotion gate")
        t = time.perf_counter()
        challenger = train_model(config, settings, log=lambda *a: None)
        figures["retrain_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        decision = decide_promotion(challenger.model_version, settings, actor="scenario:run_drift_scenario")
        figures["decide_promotion_s"] = round(time.perf_counter() - t, 1)
        log(decision.message())
    figures.update(
        champion_version=champion.model_version,
        same_topic_drifted=same.drifted, same_topic_scores={c.name: c.value for c in same.checks},
        new_topics_drifted=drifted.drifted, new_topics_drifted_checks=[c.name for c in drifted.drifted_checks],
        new_topics_scores={c.name: c.value for c in drifted.checks},
        check_seconds={"same_topic": same.seconds, "new_topics": drifted.seconds},
        decision=decision.action if decision else None,
        decision_metrics=decision.metrics if decision else None,
        total_s=round(time.perf_counter() - started, 1))
    return figures
