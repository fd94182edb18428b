"""Features and scoring process only the silver rows added since they last ran (lakehouse/downstream.py):
real Delta tables, a real champion on a real MLflow server. An append to silver computes exactly the
new rows; a rerun changes nothing; rows already in the target are never computed twice; a silver
day that lost files (an erasure, a rewrite) is rebuilt whole."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.test_features import DAY1, DAY2, DAY3, add_to_silver, silver_rows
from tests.integration.test_scoring import with_champion

pytestmark = pytest.mark.integration

FEATURES_DAG = Path(__file__).resolve().parents[2] / "dags" / "features.py"
SCORING_DAG = Path(__file__).resolve().parents[2] / "dags" / "scoring.py"


def table(name: str, settings) -> pd.DataFrame:
    from tweetops.core.tables import ensure_table

    return ensure_table(name, settings).to_pandas().sort_values("id").reset_index(drop=True)


def version(name: str, settings) -> int:
    from tweetops.core.tables import ensure_table

    return ensure_table(name, settings).version()


def silver_ids(settings) -> list[str]:
    return sorted(table("silver_tweets", settings)["id"])


@pytest.fixture
def features_lakehouse(local_lakehouse, monkeypatch):
    for name, value in local_lakehouse.as_env().items():
        monkeypatch.setenv(name, value)
    add_to_silver(local_lakehouse, silver_rows(200))
    return local_lakehouse


def test_features_compute_only_the_rows_silver_added_and_a_rerun_changes_nothing(features_lakehouse):
    from lakehouse.downstream import processed_version
    from ml.features import feature_frame, update_features

    settings = features_lakehouse
    first = update_features(settings)
    assert first.silver_from is None and first.computed == 200 and first.rebuilt == []
    assert processed_version("gold_features", settings) == version("silver_tweets", settings)

    new = silver_rows(60, skip=200)
    add_to_silver(settings, new)
    second = update_features(settings)
    assert second.computed == len(new)                      # only the new rows were computed
    assert second.silver_from == first.silver_to and second.rebuilt == []
    assert sum(second.appended.values()) == len(new)
    assert set(second.appended) == {r["event_date"].isoformat() for r in new}
    assert processed_version("gold_features", settings) == second.silver_to

    gold = table("gold_features", settings)
    assert list(gold["id"]) == silver_ids(settings)         # every tweet once
    silver = table("silver_tweets", settings)
    expected = feature_frame(silver[["id", "text", "event_date", "label"]]).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(gold, expected, check_dtype=False)

    before = version("gold_features", settings)
    rerun = update_features(settings)
    assert rerun.computed == 0 and rerun.rebuilt == [] and rerun.days == []
    assert version("gold_features", settings) == before    # not even an empty commit


def test_rows_already_in_the_target_are_not_computed_again(features_lakehouse):
    """A crash after rows reached gold_features but before the version was recorded (here: a manual
    rebuild of day 1 in between): the next run computes only the rows gold does not hold yet."""
    from ml.features import rebuild_features, update_features

    settings = features_lakehouse
    update_features(settings)
    new = silver_rows(90, skip=200)
    add_to_silver(settings, new)
    rebuild_features(DAY1, DAY2, settings)                  # day 1's new rows are in gold already
    done = update_features(settings)
    assert done.computed == sum(r["event_date"] != DAY1 for r in new)
    assert list(table("gold_features", settings)["id"]) == silver_ids(settings)


def test_a_silver_day_that_lost_files_is_rebuilt_whole(features_lakehouse):
    from tweetops.core.tables import ensure_table
    from ml.features import update_features

    settings = features_lakehouse
    update_features(settings)
    silver = table("silver_tweets", settings)
    gone = silver.loc[silver["event_date"] == DAY2, "id"].iloc[0]
    ensure_table("silver_tweets", settings).delete(f"id = '{gone}'")   # an erasure rewrites day 2's file
    new = [r for r in silver_rows(60, skip=200) if r["event_date"] == DAY3]
    add_to_silver(settings, new)

    done = update_features(settings)
    assert done.rebuilt == [DAY2.isoformat()]
    assert done.computed == len(new) and set(done.appended) == {DAY3.isoformat()}
    gold = table("gold_features", settings)
    assert gone not in set(gold["id"])
    assert list(gold["id"]) == silver_ids(settings)


def test_the_features_dag_appends_what_silver_gained(features_lakehouse, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    settings = features_lakehouse
    dag = DagBag(dag_folder=str(FEATURES_DAG)).dags["tweetops_features"]
    first = dag.test(run_conf={})
    assert first.state == "success"
    assert list(table("gold_features", settings)["id"]) == silver_ids(settings)
    second = dag.test(run_conf={})                           # nothing new: skipped, no event
    assert {ti.task_id: ti.state for ti in second.get_task_instances()} == {"build_gold_features": "skipped"}


# --- scoring ----------------------------------------------------------------------------------

@pytest.fixture
def scoring_lakehouse(local_lakehouse, trained_baseline, monkeypatch):
    settings = with_champion(local_lakehouse, trained_baseline, monkeypatch)
    add_to_silver(settings, silver_rows(200))
    return settings


def test_scoring_predicts_only_the_new_rows_reruns_change_nothing_and_rewrites_rescore(scoring_lakehouse,
                                                                                        trained_baseline):
    from lakehouse.downstream import midnight_after, processed_version
    from tweetops.core.tables import ensure_table
    from ml.scoring import score_interval, score_new_silver

    settings = scoring_lakehouse
    _, trained = trained_baseline
    assert score_new_silver(settings).computed == 200
    new = silver_rows(70, skip=200)
    add_to_silver(settings, new)
    done = score_new_silver(settings)
    assert done.computed == len(new) and done.rebuilt == []
    assert processed_version("gold_predictions", settings) == version("silver_tweets", settings)
    commit = ensure_table("gold_predictions", settings).history(1)[0]
    assert commit["tweetops.model"] == f"{settings.model_name}/{trained.model_version}"

    scored = table("gold_predictions", settings)
    assert list(scored["id"]) == silver_ids(settings)
    # The appended rows are what scoring their days whole writes (scored_at: the day's next midnight).
    assert (scored["scored_at"] == [midnight_after(d) for d in scored["event_date"]]).all()
    score_interval(DAY3, DAY3 + timedelta(days=1), settings)
    rescored = table("gold_predictions", settings)
    on_day3 = scored["event_date"] == DAY3
    pd.testing.assert_frame_equal(rescored[on_day3].reset_index(drop=True), scored[on_day3].reset_index(drop=True))

    before = version("gold_predictions", settings)
    rerun = score_new_silver(settings)
    assert rerun.computed == 0 and rerun.days == [] and version("gold_predictions", settings) == before

    silver = table("silver_tweets", settings)
    gone = silver.loc[silver["event_date"] == DAY1, "id"].iloc[0]
    ensure_table("silver_tweets", settings).delete(f"id = '{gone}'")
    again = score_new_silver(settings)
    assert again.rebuilt == [DAY1.isoformat()] and again.computed == 0
    assert list(table("gold_predictions", settings)["id"]) == silver_ids(settings)


def test_the_scoring_dag_appends_and_says_what_it_covered(scoring_lakehouse, airflow_db, caplog):
    from airflow.dag_processing.dagbag import DagBag

    settings = scoring_lakehouse
    dag = DagBag(dag_folder=str(SCORING_DAG)).dags["tweetops_scoring"]
    run = dag.test(run_conf={})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["score_silver_interval"] == "success", states
    assert list(table("gold_predictions", settings)["id"]) == silver_ids(settings)
    add_to_silver(settings, silver_rows(30, skip=200))
    run = dag.test(run_conf={})
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["score_silver_interval"] == "success"
    assert list(table("gold_predictions", settings)["id"]) == silver_ids(settings)


def test_the_safety_net_compares_with_the_silver_snapshot_the_run_read(features_lakehouse):
    """Silver keeps growing while a run works: rows that landed after the snapshot it diffed are the
    next run's, not a reason to rebuild their days whole."""
    from lakehouse.freshness import days_behind
    from ml.features import update_features

    settings = features_lakehouse
    done = update_features(settings)
    new = silver_rows(40, skip=200)
    add_to_silver(settings, new)
    assert days_behind("gold_features", settings=settings, source_version=done.silver_to) == []
    assert days_behind("gold_features", settings=settings) == sorted({r["event_date"] for r in new})


def test_a_big_append_takes_the_spark_rebuild_path(features_lakehouse, spark):
    """At least spark_scoring_min_rows new rows: the days are rebuilt on Spark (build_features)
    instead of computed in the task; same rows, and the silver version is recorded all the same."""

    from lakehouse.downstream import processed_version
    from tweetops.core.tables import ensure_table
    from ml.features import update_features

    settings = features_lakehouse.model_copy(update=dict(spark_master="local[2]", spark_scoring_min_rows=100))
    done = update_features(settings)
    assert done.computed == 0 and done.rebuilt == [DAY1.isoformat(), DAY2.isoformat(), DAY3.isoformat()]
    assert any(c.get("engine") == "spark" for c in ensure_table("gold_features", settings).history(3))
    assert list(table("gold_features", settings)["id"]) == silver_ids(settings)
    assert processed_version("gold_features", settings) == version("silver_tweets", settings)
    add_to_silver(settings, silver_rows(30, skip=200))            # small again: in the task
    assert update_features(settings).computed == 30
