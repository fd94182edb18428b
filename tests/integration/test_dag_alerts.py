"""A DAG without its own alerting still tells Slack when a task fails for good: the shared DAG
defaults (tweetops/orchestration/dag_defaults.py) under real Airflow (dag.test()) and a real HTTP receiver."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_a_retraining_with_mlflow_down_alerts_slack(local_lakehouse, airflow_db, slack_receiver, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(f"AIRFLOW_CONN_{local_lakehouse.slack_conn_id.upper()}",
                       json.dumps({"conn_type": "slackwebhook", "password": slack_receiver.url}))
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "http://airflow.test:8080")
    monkeypatch.setenv("TWEETOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    bag = DagBag(dag_folder=str(DAGS / "training.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["tweetops_training"]
    for task in dag.tasks:  # the alert comes after the last try; dag.test() would wait out every retry delay
        task.retries = 0

    run = dag.test(run_conf={"config": "baseline"})

    assert run.state == "failed"
    assert len(slack_receiver.messages) == 1
    text = slack_receiver.messages[0]["payload"]["text"]
    assert "Task failed: tweetops_training.train" in text
    assert "http://airflow.test:8080/dags/tweetops_training/runs/" in text
