"""The whole loop under real Airflow (dag.test() on the test session's metadata DB), a real MLflow
server and a real HTTP receiver for Slack, on real tweets:

champion trained on airline tweets -> tweets about other topics land -> the drift DAG alerts and
emits a retrain_request asset event -> the training DAG registers a challenger -> the promotion DAG
promotes it because it is better; then a challenger trained on shuffled labels is refused (champion
unchanged, refusal logged), and `tweetops promote --version 1` rolls back (logged too)."""
from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from tests.integration.drift_data import (FAST_CONFIG, airline, drift_config_file, other_topics,
                                          shuffled_train_labels_version, write_features, write_silver)

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRAINED_ON, AIRLINE_DAY, NEW_TOPICS_DAY = date(2024, 2, 1), date(2024, 3, 4), date(2024, 3, 5)


@pytest.fixture(scope="module")
def dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return {name: bag.get_dag(f"tweetops_{name}") for name in ("drift", "training", "promotion")}


@pytest.fixture
def loop(mlflow_server, slack_receiver, tmp_path, monkeypatch):
    """Settings (in the environment, where DAG tasks read them) for a fresh lakehouse and model name,
    Slack pointing at the receiver, and a champion trained on 2,000 airline tweets."""
    from ml.train import train_model
    from tweetops.core.settings import load_settings

    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TWEETOPS_LAKEHOUSE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("TWEETOPS_MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("TWEETOPS_MODEL_NAME", f"loop-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "http://airflow.test:8080")
    settings = load_settings()
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.slack_conn_id.upper()}",
                       json.dumps({"conn_type": "slackwebhook", "password": slack_receiver.url}))

    write_features(settings, airline().iloc[:2000], TRAINED_ON)
    assert train_model(str(FAST_CONFIG), settings, log=lambda *a: None).alias == "champion"
    return settings, drift_config_file(tmp_path, **{"embeddings.enabled": False, "sample_rows": 1000})


def run(dag, **conf):
    dag_run = dag.test(run_conf=conf)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def asset_events(name: str, source_dag_id: str, since_run_id: str | None = None) -> list[dict]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                 .where(AssetModel.name == name, AssetEvent.source_dag_id == source_dag_id))
        if since_run_id:
            query = query.where(AssetEvent.source_run_id == since_run_id)
        return [dict(event.extra) for event in session.scalars(query)]


def queued_runs(target_dag_id: str, asset_name: str) -> int:
    from sqlalchemy import func, select

    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                              .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
                              .where(AssetModel.name == asset_name, AssetDagRunQueue.target_dag_id == target_dag_id))


@pytest.fixture
def unpause_training():
    """Unpause tweetops_training, as in production (Airflow queues asset-triggered runs only for
    unpaused DAGs); paused again afterwards. Call it once a dag.test() has written the DAG rows."""
    from sqlalchemy import update

    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    def set_paused(paused: bool) -> int:
        with create_session() as session:
            return session.execute(update(DagModel).where(DagModel.dag_id == "tweetops_training")
                                   .values(is_paused=paused)).rowcount

    yield lambda: set_paused(False)
    set_paused(True)


def aliases(settings) -> dict[str, str | None]:
    from ml import registry

    return {alias: (v.version if (v := registry.alias_version(settings.model_name, alias, settings)) else None)
            for alias in ("champion", "challenger")}


def test_drift_alerts_retrains_and_promotes_only_a_better_challenger(loop, dags, unpause_training, slack_receiver):
    from ml.promotion import promotion_log

    settings, drift_config = loop

    # 1. Unseen airline tweets: no drift, so no alert and no retrain request.
    write_silver(settings, airline().iloc[2000:3000], AIRLINE_DAY)
    dag_run, states = run(dags["drift"], start=AIRLINE_DAY.isoformat(), config=str(drift_config))
    assert dag_run.state == "success", states
    assert states["drift_detected"] == "success"
    assert states["alert_drift"] == states["request_retraining"] == "skipped"
    assert slack_receiver.messages == []
    assert asset_events("retrain_request", "tweetops_drift", dag_run.run_id) == []
    assert unpause_training() == 1

    # 2. Tweets about other topics land (silver, and the features job's gold rows): drift.
    new_tweets = other_topics().iloc[:1500]
    write_silver(settings, new_tweets, NEW_TOPICS_DAY)
    write_features(settings, new_tweets, NEW_TOPICS_DAY)
    dag_run, states = run(dags["drift"], start=NEW_TOPICS_DAY.isoformat(), config=str(drift_config))
    assert dag_run.state == "success", states
    assert states["alert_drift"] == states["request_retraining"] == "success"

    alert = slack_receiver.messages[-1]["payload"]["text"]
    assert "Drift detected" in alert and "2024-03-05" in alert
    assert "text_content" in alert and "mention_share" in alert and "/tweetops/drift?start=" in alert
    assert "file://" not in alert
    events = asset_events("retrain_request", "tweetops_drift", dag_run.run_id)
    assert len(events) == 1 and "text_content" in events[0]["drifted_checks"]
    assert queued_runs("tweetops_training", "retrain_request") >= 1   # the scheduler would start training

    # 3. Retraining through the training DAG registers a challenger and announces it.
    dag_run, states = run(dags["training"], config=str(FAST_CONFIG))
    assert dag_run.state == "success", states
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    assert len(asset_events("challenger_model", "tweetops_training", dag_run.run_id)) == 1

    # 4. The promotion DAG promotes it: better on the test split and on the recent window.
    slack_receiver.messages.clear()
    dag_run, states = run(dags["promotion"])
    assert dag_run.state == "success", states
    assert aliases(settings) == {"champion": "2", "challenger": None}
    assert "Challenger promoted" in slack_receiver.messages[-1]["payload"]["text"]
    promoted = promotion_log(settings).iloc[0]
    assert (promoted["action"], promoted["from_version"], promoted["to_version"]) == ("promote", "1", "2")
    assert promoted["actor"] == f"airflow:tweetops_promotion/{dag_run.run_id}"
    metrics = json.loads(promoted["metrics"])
    assert metrics["test_split"]["challenger_macro_f1"] > metrics["test_split"]["champion_macro_f1"]
    assert metrics["recent_window"]["challenger_macro_f1"] > metrics["recent_window"]["champion_macro_f1"]

    # 5. A challenger trained on shuffled labels is never promoted; the refusal is logged.
    from ml.train import train_model

    shuffled = shuffled_train_labels_version(settings)
    worse = train_model(str(FAST_CONFIG), settings, features_version=shuffled, log=lambda *a: None)
    assert (worse.model_version, worse.alias) == ("3", "challenger")
    slack_receiver.messages.clear()
    dag_run, states = run(dags["promotion"])
    assert dag_run.state == "success", states
    assert aliases(settings) == {"champion": "2", "challenger": "3"}
    assert "Challenger refused" in slack_receiver.messages[-1]["payload"]["text"]
    refused = promotion_log(settings).iloc[0]
    assert (refused["action"], refused["from_version"], refused["to_version"]) == ("refuse", "2", "3")
    assert "test split macro-F1" in refused["reason"] and "behavioural checks" in refused["reason"]
    reasons = json.loads(refused["metrics"])
    assert reasons["test_split"]["challenger_macro_f1"] < reasons["test_split"]["champion_macro_f1"]

    # A rerun of the same promotion run replaces its log row instead of adding one.
    from ml.promotion import decide_promotion

    decide_promotion(actor=refused["actor"], settings=settings)
    assert len(promotion_log(settings)) == 2

    # 6. Rollback is one command, and it is logged with the OS user as the actor.
    from tweetops.cli import main

    assert main(["promote", "--version", "1", "--reason", "rollback drill"]) == 0
    assert aliases(settings)["champion"] == "1"
    rollback = promotion_log(settings).iloc[0]
    assert (rollback["action"], rollback["from_version"], rollback["to_version"]) == ("rollback", "2", "1")
    assert rollback["actor"].startswith("user:") and rollback["reason"] == "rollback drill"
