"""Scoring silver tweets into gold_predictions with the registry's champion (trained by ml.train, on
a real MLflow server), on a real Delta lakehouse: rows per interval, idempotent reruns, and the
scoring DAG under real Airflow (dag.test())."""
from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ml.contract import LABELS, PROBA_COLUMNS

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "scoring.py"
DAY1, DAY2, DAY3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


def seed_silver(settings) -> list[dict]:
    """240 real tweets in silver_tweets over three days."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.storage import ensure_bucket
    from tweetops.core.tables import ensure_table, spec
    from tweetops.core.corpus import load_corpus

    ensure_bucket(settings)  # a fresh bucket: ensure_table only creates the table, not the bucket
    rows = []
    for tweet in itertools.islice(load_corpus(end=DAY3 + timedelta(days=1), days=3), 240):
        created = datetime.fromisoformat(tweet["created_at"])
        rows.append({"id": tweet["id"], "text": tweet["text"], "created_at": created, "user": tweet["user"],
                     "lang": tweet["lang"], "label": tweet["label"], "extra": json.dumps({"topic": tweet["topic"]}),
                     "event_date": created.date(), "validated_at": created + timedelta(minutes=1),
                     "bronze_version": 1})
    write_deltalake(ensure_table("silver_tweets", settings),
                    pa.Table.from_pylist(rows, schema=spec("silver_tweets").schema), mode="append")
    assert {r["event_date"] for r in rows} == {DAY1, DAY2, DAY3}
    return rows


def with_champion(lakehouse_settings, trained_baseline, monkeypatch):
    """The lakehouse's settings, scoring with the trained baseline's champion; also in the environment."""
    base, _ = trained_baseline
    settings = lakehouse_settings.model_copy(update=dict(mlflow_tracking_uri=base.mlflow_tracking_uri, model_name=base.model_name))
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def lakehouse(local_lakehouse, trained_baseline, monkeypatch):
    settings = with_champion(local_lakehouse, trained_baseline, monkeypatch)
    return settings, seed_silver(settings)


@pytest.fixture
def any_lakehouse_with_silver(any_lakehouse, trained_baseline, monkeypatch):
    """Once on a local root, once on the S3 server."""
    settings = with_champion(any_lakehouse, trained_baseline, monkeypatch)
    return settings, seed_silver(settings)


def predictions(settings):
    from tweetops.core.tables import open_table

    return open_table("gold_predictions", settings).to_pyarrow_table().sort_by(
        [("event_date", "ascending"), ("id", "ascending")])


def test_scoring_an_interval_twice_leaves_identical_predictions(any_lakehouse_with_silver, trained_baseline):
    from tweetops.core.tables import open_table
    from ml.scoring import score_interval

    settings, rows = any_lakehouse_with_silver
    _, trained = trained_baseline
    assert score_interval(DAY3, DAY3 + timedelta(days=1), settings) == sum(r["event_date"] == DAY3 for r in rows)
    day3_before = predictions(settings).filter(on_day(DAY3))

    in_interval = [r for r in rows if DAY1 <= r["event_date"] < DAY3]
    assert score_interval(DAY1, DAY3, settings) == len(in_interval)
    first = predictions(settings)
    assert score_interval(DAY1, DAY3, settings) == len(in_interval)
    second = predictions(settings)

    assert second.equals(first)  # every column, scored_at included
    commit = open_table("gold_predictions", settings).history(1)[0]  # each run is one commit that says what it did
    assert commit["tweetops.interval"] == "2024-03-01/2024-03-03"
    assert commit["tweetops.model"] == f"{settings.model_name}/{trained.model_version}"
    assert first.num_rows == len(rows)  # the rerun replaced the interval: nothing appended twice
    assert first.filter(on_day(DAY3)).equals(day3_before)  # outside the interval: untouched
    frame = first.to_pandas()
    assert set(frame["label"]) <= set(LABELS)
    assert frame[list(PROBA_COLUMNS)].sum(axis=1).round(6).eq(1).all()
    assert set(frame["model_version"]) == {trained.model_version}
    assert set(frame["model_name"]) == {settings.model_name}
    scored_at = frame.loc[frame["event_date"] < DAY3, "scored_at"].unique()
    assert list(scored_at) == [datetime(2024, 3, 3, tzinfo=timezone.utc)]  # the interval's end


def test_predictions_agree_with_the_champion(lakehouse):
    import mlflow
    import pandas as pd

    from ml.scoring import score_interval

    settings, rows = lakehouse
    score_interval(DAY1, DAY2, settings)
    scored = predictions(settings).to_pandas().set_index("id")
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    day1 = [r for r in rows if r["event_date"] == DAY1]
    expected = model.predict(pd.DataFrame({"text": [r["text"] for r in day1]}))
    assert list(scored.loc[[r["id"] for r in day1], "label"]) == list(expected["label"])
    assert scored.loc[[r["id"] for r in day1], "proba_negative"].to_numpy() == pytest.approx(
        expected["proba_negative"].to_numpy())


def test_an_interval_without_tweets_removes_its_stale_predictions(lakehouse):
    from tweetops.core.tables import open_table
    from ml.scoring import score_interval

    settings, rows = lakehouse
    score_interval(DAY1, DAY3 + timedelta(days=1), settings)
    silver = open_table("silver_tweets", settings)
    silver.delete(f"event_date = '{DAY2.isoformat()}'")  # e.g. the day was re-validated to nothing
    assert score_interval(DAY2, DAY3, settings) == 0
    remaining = predictions(settings).to_pandas()
    assert DAY2 not in set(remaining["event_date"])
    assert len(remaining) == sum(r["event_date"] != DAY2 for r in rows)


def test_the_scoring_dag_scores_the_requested_interval(lakehouse, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    settings, rows = lakehouse
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["tweetops_scoring"]
    run = dag.test(run_conf={"start": DAY2.isoformat(), "end": DAY3.isoformat()})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    scored = predictions(settings).to_pandas()
    assert set(scored["event_date"]) == {DAY2}
    assert sorted(scored["id"]) == sorted(r["id"] for r in rows if r["event_date"] == DAY2)


def test_a_catch_up_run_scores_every_day_behind_then_has_nothing_to_do(lakehouse, airflow_db):
    """Airflow can deliver a silver event late: a param-less run scores whatever silver day has no
    (or stale) predictions, and the next one finds nothing behind and skips."""
    from airflow.dag_processing.dagbag import DagBag

    from lakehouse.freshness import days_behind
    from ml.scoring import score_interval

    settings, rows = lakehouse
    score_interval(DAY2, DAY3, settings)
    assert days_behind("gold_predictions", settings=settings) == [DAY1, DAY3]
    dag = DagBag(dag_folder=str(DAG_FILE)).dags["tweetops_scoring"]

    first = dag.test(run_conf={})
    assert {ti.task_id: ti.state for ti in first.get_task_instances()} == {
        "score_silver_interval": "success", "rescore_for_the_champion": "skipped"}
    assert days_behind("gold_predictions", settings=settings) == []
    assert len(predictions(settings)) == len(rows)
    second = dag.test(run_conf={})
    assert {ti.task_id: ti.state for ti in second.get_task_instances()} == {
        "score_silver_interval": "skipped", "rescore_for_the_champion": "skipped"}


def test_days_scored_by_an_older_version_are_rescored_in_bounded_batches(lakehouse, trained_baseline, airflow_db):
    """After a champion change, gold_predictions still holds the old version's labels for most days:
    the catch-up rescores them, oldest first, at most RESCORE_DAYS_PER_RUN days per run."""
    import pyarrow as pa
    from airflow.dag_processing.dagbag import DagBag
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table
    from ml.scoring import rescore_stale_days, score_interval, stale_days

    settings, rows = lakehouse
    _, trained = trained_baseline
    score_interval(DAY1, DAY3 + timedelta(days=1), settings)
    old = predictions(settings).to_pandas()
    old["model_version"] = "0"   # as if the previous champion, v0, had scored every day
    table = ensure_table("gold_predictions", settings)
    write_deltalake(table, pa.Table.from_pandas(old, schema=predictions(settings).schema, preserve_index=False),
                    mode="overwrite")
    assert stale_days(settings) == [DAY1, DAY2, DAY3]

    done = rescore_stale_days(settings, max_days=2)
    assert done["rescored_days"] == [DAY1.isoformat(), DAY2.isoformat()] and done["stale_days_left"] == 1
    assert done["rows"] == sum(r["event_date"] < DAY3 for r in rows)
    assert stale_days(settings) == [DAY3]

    dag = DagBag(dag_folder=str(DAG_FILE)).dags["tweetops_scoring"]
    run = dag.test(run_conf={})
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "score_silver_interval": "skipped", "rescore_for_the_champion": "success"}
    assert stale_days(settings) == []
    scored = predictions(settings).to_pandas()
    assert len(scored) == len(rows) and set(scored["model_version"]) == {trained.model_version}


def test_score_cli_over_an_empty_interval_exits_4(lakehouse, capsys):
    from tweetops.cli import main

    assert main(["score", "--start", "2024-02-01", "--end", "2024-02-03"]) == 4
    assert "no silver tweets with event_date in [2024-02-01, 2024-02-03)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["score", "--start", "01/02/2024"])
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_a_manual_scoring_run_over_an_empty_interval_skips(lakehouse, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAG_FILE)).dags["tweetops_scoring"]
    run = dag.test(run_conf={"start": "2024-02-01", "end": "2024-02-03"})
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["score_silver_interval"] == "skipped"


def on_day(day: date):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.equal(pc.field("event_date"), pa.scalar(day, pa.date32()))
