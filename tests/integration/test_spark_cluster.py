"""The features and scoring jobs on a real Spark standalone cluster (a master and two one-core
workers started by pyspark's own spark-class), with the lakehouse on the S3 server: their tables
equal those the same jobs write on local[2]. The jobs run as `tweetops` commands, as users run them."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.integration.test_scoring import DAY1, DAY3, seed_silver, with_champion

pytestmark = pytest.mark.integration

START, END = DAY1, DAY3 + timedelta(days=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tweetops.app.spark_cluster import LocalSparkCluster

    with LocalSparkCluster(tmp_path_factory.mktemp("spark-cluster"), workers=2) as running:
        yield running


def master_state(cluster) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{cluster.webui_url}/json/", timeout=5) as response:
        return json.load(response)


def run_jobs(settings, lakehouse_uri: str, master: str) -> str:
    """Seed silver in `lakehouse_uri`, then build features and score it there on `master`."""
    target = settings.model_copy(update=dict(lakehouse_uri=lakehouse_uri))
    seed_silver(target)
    env = {**os.environ, **target.as_env(), "TWEETOPS_SPARK_MASTER": master,
           "TWEETOPS_SPARK_SCORING_MIN_ROWS": "0"}   # score on Spark too
    output = ""
    for command in (["features", "build", "--start", str(START), "--end", str(END)],
                    ["score", "--start", str(START), "--end", str(END)]):
        done = subprocess.run([sys.executable, "-m", "tweetops.cli", *command], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        output += done.stdout + done.stderr
    return output


def table(settings, lakehouse_uri: str, name: str, key: list[str]):
    from tweetops.core.tables import open_table

    frame = open_table(name, settings.model_copy(update=dict(lakehouse_uri=lakehouse_uri))).to_pandas()
    return frame.sort_values(key).reset_index(drop=True)


def test_features_and_scoring_on_a_standalone_cluster_equal_local(s3_lakehouse, trained_baseline, cluster,
                                                                   monkeypatch):
    from tweetops.core.tables import open_table

    settings = with_champion(s3_lakehouse, trained_baseline, monkeypatch)
    local_uri, cluster_uri = settings.lakehouse_uri + "/local", settings.lakehouse_uri + "/cluster"
    run_jobs(settings, local_uri, "local[2]")
    output = run_jobs(settings, cluster_uri, cluster.master_url)

    assert "[Stage" not in output   # no console progress bar in the jobs' output
    assert {app["name"] for app in master_state(cluster)["completedapps"]} >= {
        "tweetops-features", "tweetops-scoring"}   # the jobs really ran on the cluster
    features = table(settings, cluster_uri, "gold_features", ["id"])
    assert len(features) == 240
    assert features.equals(table(settings, local_uri, "gold_features", ["id"]))
    predictions = table(settings, cluster_uri, "gold_predictions", ["id"])
    expected = table(settings, local_uri, "gold_predictions", ["id"])
    probabilities = ["proba_negative", "proba_neutral", "proba_positive"]
    assert predictions.drop(columns=probabilities).equals(expected.drop(columns=probabilities))
    for column in probabilities:
        assert predictions[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-12)
    scoring_commit = open_table("gold_predictions", settings.model_copy(update=dict(lakehouse_uri=cluster_uri))).history(1)[0]
    assert scoring_commit["engine"] == "spark" and scoring_commit["tweetops.operation"] == "score_interval"


def test_stack_up_with_spark_workers_starts_and_stops_a_cluster(tmp_path, monkeypatch):
    from tweetops.app.spark_cluster import stack_down_cluster, stack_up_cluster
    from tweetops.core.settings import load_settings
    from tweetops.app.stack import running_pid

    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path / "home"))
    settings = load_settings()
    master_url = stack_up_cluster(settings, workers=1)
    try:
        assert master_url.startswith("spark://127.0.0.1:")
        pids = [running_pid(settings, name) for name in ("spark-master", "spark-worker-1")]
        assert all(pids)
        assert stack_up_cluster(settings, workers=1) == master_url   # a second `up` keeps what runs
        assert [running_pid(settings, n) for n in ("spark-master", "spark-worker-1")] == pids
    finally:
        stopped = stack_down_cluster(settings)
    assert stopped == ["spark-worker-1", "spark-master"]
    assert running_pid(settings, "spark-master") is None and running_pid(settings, "spark-worker-1") is None
