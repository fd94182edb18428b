"""A promotion retried after a crash at any step ends with one log row, the champion alias moved
once and the decision announced: fault injection against a real MLflow server, a real lakehouse
table, and (for the DAG) real Airflow with a real HTTP receiver for Slack."""
from __future__ import annotations

import json
import pkgutil
from datetime import timedelta
from pathlib import Path

import pytest

from ml import contract, model_access, registry
from tests.conftest import unique

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"


class Crash(RuntimeError):
    """A crash injected at one step of a promotion."""


def crash_once(monkeypatch, where: str, attribute: str, when=lambda *args, **kwargs: True) -> list:
    """Make the first call of `where.attribute` that `when` accepts raise Crash; later calls run."""
    target = pkgutil.resolve_name(where)
    real = getattr(target, attribute)
    crashed = []

    def maybe_crash(*args, **kwargs):
        if not crashed and when(*args, **kwargs):
            crashed.append(attribute)
            raise Crash(f"injected crash in {attribute}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, maybe_crash)
    return crashed


def writes_the_log(table, *args, **kwargs) -> bool:
    return "gold_promotion_log" in str(getattr(table, "table_uri", table))


# Each step of applying a decision, in order: the log write, the champion alias, the challenger
# alias, the tag on the version.
CRASH_POINTS = {
    "writing the log": ("deltalake", "write_deltalake", writes_the_log),
    "moving the champion alias": ("mlflow.tracking:MlflowClient", "set_registered_model_alias", None),
    "removing the challenger alias": ("mlflow.tracking:MlflowClient", "delete_registered_model_alias", None),
    "tagging the version": ("mlflow.tracking:MlflowClient", "set_model_version_tag", None),
}


@pytest.fixture
def two_versions(trained_baseline, tmp_path):
    """A model of its own: v1 champion, v2 challenger (the same trained model twice), and a policy
    under which the challenger wins (margin 0: equal scores suffice)."""
    from ml.promotion import load_policy

    base, baseline = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("sentiment-promote")))
    client = registry.client(settings)
    client.create_registered_model(settings.model_name)
    for alias in (contract.CHAMPION, contract.CHALLENGER):
        version = client.copy_model_version(baseline.model_uri, settings.model_name)
        client.set_registered_model_alias(settings.model_name, alias, version.version)
    policy = tmp_path / "promotion.yaml"
    policy.write_text("margin: 0\n")
    load_policy(policy)
    return settings, policy


def log_rows(settings, actor: str) -> list[dict]:
    from ml.promotion import promotion_log

    frame = promotion_log(settings)
    return frame[(frame["model_name"] == settings.model_name) & (frame["actor"] == actor)].to_dict("records")


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_retry_after_a_crash_at_any_step_finishes_the_same_decision(two_versions, monkeypatch, point):
    from ml.promotion import PROMOTE, decide_promotion

    settings, policy = two_versions
    actor = f"airflow:tweetops_promotion/{unique('manual')}"
    where, attribute, when = CRASH_POINTS[point]
    with monkeypatch.context() as patch:
        crashed = crash_once(patch, where, attribute, when or (lambda *a, **k: True))
        with pytest.raises(Crash):
            decide_promotion(settings=settings, actor=actor, policy=policy)
    assert crashed == [attribute]

    decision = decide_promotion(settings=settings, actor=actor, policy=policy)
    again = decide_promotion(settings=settings, actor=actor, policy=policy)

    assert decision.action == PROMOTE and decision.challenger_version == "2"
    assert (again.action, again.challenger_version, again.at) == (decision.action, "2", decision.at)
    rows = log_rows(settings, actor)
    assert len(rows) == 1 and (rows[0]["action"], rows[0]["to_version"], rows[0]["from_version"]) == (PROMOTE, "2", "1")
    assert registry.champion(settings).version == "2"
    assert registry.challenger(settings) is None
    tag = model_access.resolve(settings, "2").tags["tweetops.promotion"]
    assert tag.startswith(f"promote at {decision.at.isoformat(timespec='seconds')} by {actor}")


def test_the_promotion_dag_retried_after_a_failed_log_write_logs_and_announces_once(
        two_versions, airflow_db, slack_receiver, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from ml import promotion

    settings, policy = two_versions
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.slack_conn_id.upper()}",
                       json.dumps({"conn_type": "slackwebhook", "password": slack_receiver.url}))
    monkeypatch.setattr(promotion, "POLICY_FILE", policy)
    crashed = crash_once(monkeypatch, "deltalake", "write_deltalake", writes_the_log)
    bag = DagBag(dag_folder=str(DAGS / "promotion.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["tweetops_promotion"]
    for task in dag.tasks:  # retry at once: dag.test() would wait out the retry delay
        task.retry_delay = timedelta(0)

    run = dag.test()

    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert crashed == ["write_deltalake"]
    assert states["promote_if_better"][0] == "success" and states["promote_if_better"][1] == 2, states
    assert states["alert_decision"][0] == "success", states
    rows = log_rows(settings, f"airflow:tweetops_promotion/{run.run_id}")
    assert len(rows) == 1 and rows[0]["action"] == "promote" and rows[0]["to_version"] == "2"
    assert registry.champion(settings).version == "2" and registry.challenger(settings) is None
    texts = [m["payload"]["text"] for m in slack_receiver.messages]
    assert len(texts) == 1 and f"Challenger promoted: {settings.model_name} v2" in texts[0], texts
