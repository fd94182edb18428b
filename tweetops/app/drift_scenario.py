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

from tweetops.core.settings import Settings

TRAINED_ON, SAME_TOPIC_DAY, NEW_TOPICS_DAY = date(2024, 2, 1), date(2024, 3, 4), date(2024, 3, 5)


def _write(settings: Settings, tweets, day: date | None, features: bool) -> None:
    """Append the tweets to silver (and gold_features) as tweets of `day`, or of their own
    `event_date` column when day is None, in one commit per table."""
    import pandas as pd
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec
    from ml.features import feature_frame

    tweets = tweets.reset_index(drop=True)  # windows drawn from one pool may repeat a tweet
    if day is not None:
        tweets = tweets.assign(event_date=day)
    at = pd.to_datetime(tweets["event_date"]).dt.tz_localize("UTC") + pd.Timedelta(hours=12)
    silver = tweets.assign(created_at=at, lang="en", extra=None, validated_at=at, bronze_version=0,
                           gate_run_id=None)
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
    from tweetops.core.corpus import load_corpus

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


# --- the verdict's false-alarm and detection rates ----------------------------------------------------

FIRST_WINDOW_DAY = date(2025, 1, 1)  # each window gets its own days after this one


def run_verdict_benchmark(settings: Settings, windows: int = 50, trained_rows: int = 4000,
                          min_rows: int = 150, max_rows: int = 1000, config: str = "baseline",
                          drift_config=None, seed: int = 11, log=print) -> dict:
    """How often the drift verdict is wrong, on real tweets (a scratch lakehouse and registry).

    A champion trained on `trained_rows` airline tweets sees `windows` windows of unseen airline
    tweets (random sizes between min_rows and max_rows, spread over 1-3 random days): the share
    called drifted is the false-alarm rate. Then `windows` windows of each real shift: tweets about
    other topics, airline tweets with another label mix (20% negative instead of ~63%), long airline
    tweets (the longest third): the share called drifted is the detection rate. Then a challenger
    is trained on mixed topics (airline + as many other-topic tweets) and made champion, and
    `windows` windows of unseen tweets of its topics (airline, other topics, or a mix) measure the
    false-alarm rate again: the reference is matched to each window's topics.
    """
    import numpy as np
    import pandas as pd

    from ml import registry
    from ml.drift import check_drift
    from tweetops.core.text import tweet_features
    from ml.train import train_model
    from tweetops.core.corpus import load_corpus

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    corpus = pd.DataFrame(load_corpus()).sort_values("id", kind="stable").reset_index(drop=True)
    airline, other = corpus[corpus["topic"] == "airline"], corpus[corpus["topic"] != "airline"]
    trained, unseen_airline = airline.iloc[:trained_rows], airline.iloc[trained_rows:]
    retrained_other, unseen_other = other.iloc[:trained_rows], other.iloc[trained_rows:]
    tokens = unseen_airline["text"].map(lambda text: tweet_features(text)["token_count"])
    long_airline = unseen_airline[tokens >= tokens.quantile(2 / 3)]
    next_day = [FIRST_WINDOW_DAY]

    def window(pool: pd.DataFrame, label_mix: dict[str, float] | None = None) -> pd.DataFrame:
        size = int(rng.integers(min_rows, max_rows + 1))
        if label_mix is None:
            return pool.iloc[rng.choice(len(pool), size=min(size, len(pool)), replace=False)]
        parts = []
        for label, share in label_mix.items():
            rows = pool[pool["label"] == label]
            parts.append(rows.iloc[rng.choice(len(rows), size=min(len(rows), round(size * share)), replace=False)])
        return pd.concat(parts)

    def verdicts(name: str, make) -> dict:
        drifted, which, seconds, spans, batch = 0, {}, [], [], []
        for _ in range(windows):  # all windows in one commit: a long Delta log would slow every read
            tweets, days = make(), int(rng.integers(1, 4))
            first = next_day[0]
            next_day[0] = first + timedelta(days=days + 1)
            offsets = rng.integers(0, days, len(tweets))
            batch.append(tweets.assign(event_date=[first + timedelta(days=int(o)) for o in offsets]))
            spans.append((first, days))
        _write(settings, pd.concat(batch), None, features=False)
        for first, days in spans:
            t = time.perf_counter()
            result = check_drift(first, first + timedelta(days=days), settings, drift_config, write=False)
            seconds.append(time.perf_counter() - t)
            drifted += result.drifted
            for check in result.drifted_checks:
                which[check.name] = which.get(check.name, 0) + 1
        rate = drifted / windows
        log(f"   {name}: {drifted}/{windows} windows called drifted ({rate:.0%}); checks that fired: {which}")
        return {"windows": windows, "drifted": drifted, "rate": round(rate, 3), "checks_fired": which,
                "seconds_per_check": round(float(np.median(seconds)), 2)}

    figures: dict = {}
    log(f"1. champion: {config} trained on {len(trained)} airline tweets")
    _write(settings, trained, TRAINED_ON, features=True)
    first = train_model(config, settings, log=lambda *a: None)
    log(f"2. {windows} windows of unseen airline tweets ({min_rows}-{max_rows} tweets, 1-3 days each)")
    figures["same_topic_before_retrain"] = verdicts("same topic", lambda: window(unseen_airline))
    log("3. real shifts")
    figures["shift_new_topics"] = verdicts("new topics", lambda: window(unseen_other))
    figures["shift_label_mix"] = verdicts("label mix 20/40/40", lambda: window(
        unseen_airline, {"negative": 0.2, "neutral": 0.4, "positive": 0.4}))
    figures["shift_text_length"] = verdicts("longest third of tweets", lambda: window(long_airline))

    log(f"4. retrain on mixed topics: + {len(retrained_other)} tweets about other topics, made champion")
    _write(settings, retrained_other, TRAINED_ON + timedelta(days=1), features=True)
    mixed = train_model(config, settings, log=lambda *a: None)
    registry.set_alias("champion", mixed.model_version, settings)
    mixes = [lambda: window(unseen_airline), lambda: window(unseen_other),
             lambda: pd.concat([window(unseen_airline), window(unseen_other)])]
    log(f"5. {windows} windows of unseen tweets of its topics (airline, other topics or both)")
    figures["same_topics_after_mixed_retrain"] = verdicts(
        "same topics after the retrain", lambda: mixes[int(rng.integers(0, 3))]())
    figures["same_topic_airline_after_mixed_retrain"] = verdicts(
        "airline only after the retrain", lambda: window(unseen_airline))

    false_alarms = [figures[k]["rate"] for k in ("same_topic_before_retrain", "same_topics_after_mixed_retrain",
                                                  "same_topic_airline_after_mixed_retrain")]
    figures.update(
        champion_versions={"airline": first.model_version, "mixed": mixed.model_version},
        false_alarm_rate=max(false_alarms), topic_shift_detection_rate=figures["shift_new_topics"]["rate"],
        aims={"false_alarm_rate_at_most": 0.05, "topic_shift_detection_rate_at_least": 0.9},
        window_rows=[min_rows, max_rows], total_s=round(time.perf_counter() - started, 1))
    figures["aims_met"] = (figures["false_alarm_rate"] <= 0.05 and figures["topic_shift_detection_rate"] >= 0.9)
    return figures
