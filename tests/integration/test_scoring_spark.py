"""Scoring on Spark (ml.scoring_spark): the same gold_predictions as the one-process path, written
in one Delta commit, chosen by ml.scoring.score_interval for intervals of at least
spark_scoring_min_rows tweets. Real champion on a real MLflow server, real local[2] Spark."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.test_scoring import DAY1, DAY2, DAY3, seed_silver, with_champion

pytestmark = pytest.mark.integration


def predictions(settings):
    from tweetops.core.tables import ensure_table

    frame = ensure_table("gold_predictions", settings).to_pandas()
    return frame.sort_values(["event_date", "id"]).reset_index(drop=True)


def last_commit(settings) -> dict:
    from tweetops.core.tables import ensure_table

    return ensure_table("gold_predictions", settings).history(1)[0]


@pytest.fixture
def scored(local_lakehouse, trained_baseline, spark, monkeypatch):
    settings = with_champion(local_lakehouse, trained_baseline, monkeypatch)
    return settings, seed_silver(settings)


def test_spark_scoring_writes_the_one_process_predictions(scored):
    from ml.scoring import score_interval
    from ml.scoring_spark import score_interval_spark

    settings, rows = scored
    one_process = settings.model_copy(update=dict(spark_scoring_min_rows=10**9))
    assert score_interval(DAY1, DAY3, one_process) == sum(r["event_date"] < DAY3 for r in rows)
    expected = predictions(settings)
    assert last_commit(settings).get("engine") != "spark"

    assert score_interval_spark(DAY1, DAY3, settings) == len(expected)
    actual = predictions(settings)
    assert actual.drop(columns=["proba_negative", "proba_neutral", "proba_positive"]).equals(
        expected.drop(columns=["proba_negative", "proba_neutral", "proba_positive"]))
    for column in ("proba_negative", "proba_neutral", "proba_positive"):
        assert actual[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-12)
    commit = last_commit(settings)
    assert commit["engine"] == "spark"
    assert commit["tweetops.operation"] == "score_interval"
    assert commit["tweetops.model"] == f"{settings.model_name}/1"


def test_score_interval_hands_big_intervals_to_spark_and_reruns_replace(scored):
    from ml.scoring import score_interval
    from ml.scoring_spark import silver_rows_in

    settings, rows = scored
    day2 = sum(r["event_date"] == DAY2 for r in rows)
    assert silver_rows_in(DAY2, DAY3, settings) == day2
    spark_path = settings.model_copy(update=dict(spark_scoring_min_rows=day2))
    assert score_interval(DAY2, DAY3, spark_path) == day2
    assert last_commit(settings)["engine"] == "spark"
    first = predictions(settings)
    assert score_interval(DAY2, DAY3, spark_path) == day2  # a rerun replaces, never appends
    assert predictions(settings).equals(first)
    assert set(first["event_date"]) == {DAY2}


def test_spark_scoring_of_an_empty_interval_clears_it(scored):
    from ml.scoring_spark import score_interval_spark

    settings, _ = scored
    assert score_interval_spark(DAY1, DAY3 + timedelta(days=1), settings) == 240
    assert score_interval_spark(DAY3 + timedelta(days=5), DAY3 + timedelta(days=6), settings) == 0
    assert len(predictions(settings)) == 240
