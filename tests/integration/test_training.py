"""Training against a real MLflow server on real corpus tweets: registration, lineage, aliases,
the pyfunc contract, the model card and metrics, a budgeted transformer run, and reproduce."""
from __future__ import annotations

import json
import subprocess

import mlflow
import pandas as pd
import pytest

from ml import contract, registry
from tests.conftest import TWEETOPS, unique

pytestmark = pytest.mark.integration


def test_baseline_is_registered_as_champion_with_full_lineage(trained_baseline):
    settings, result = trained_baseline
    client = registry.client(settings)  # also points mlflow's global URIs at this server

    assert result.model_version == "1" and result.alias == contract.CHAMPION
    version = client.get_model_version_by_alias(settings.model_name, contract.CHAMPION)
    assert version.version == "1"
    run = client.get_run(result.run_id)
    for tags in (version.tags, run.data.tags):
        assert set(contract.LINEAGE_TAGS) <= set(tags)
        assert tags[contract.TAG_CONFIG_NAME] == "baseline"
        assert tags[contract.TAG_CONFIG_HASH] == result.config_hash
        assert tags[contract.TAG_FEATURES_TABLE] == "gold_features"
        assert tags[contract.TAG_FEATURES_VERSION] == str(result.features_version)
        assert tags[contract.TAG_GIT_COMMIT]
    assert run.data.metrics[contract.METRIC_TEST_MACRO_F1] == pytest.approx(result.metrics["test_macro_f1"])
    assert 0.45 < run.data.metrics[contract.METRIC_TEST_MACRO_F1] <= 1.0   # well above chance on 2,000 tweets
    assert run.data.params["model.C"] and run.data.params["features_version"] == str(result.features_version)

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"confusion_matrix.png", "model_card.md", "config.yaml", "behaviour.json",
            "classification_report.json"} <= artifacts
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card.md")
    for section in ("## Purpose", "## Data", "## Metrics", "## Limits", "## Known biases"):
        assert section in card
    assert version.description.startswith(f"# Model card: {settings.model_name} version 1")
    behaviour = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/behaviour.json"))
    assert set(behaviour["checks"]) == {"minimum_functionality", "negation", "invariance"}


def test_champion_loads_and_predicts_per_the_contract(trained_baseline):
    settings, _ = trained_baseline
    registry.client(settings)  # the tracking and registry URIs models:/ resolves against
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{contract.CHAMPION}")
    texts = ["@united thank you, the crew was amazing!", "Worst flight ever, cancelled again http://t.co/x", None]
    out = model.predict(pd.DataFrame({"text": texts}))
    assert list(out.columns) == list(contract.PREDICTION_COLUMNS)
    assert len(out) == 3 and set(out["label"]) <= set(contract.LABELS)
    assert out[list(contract.PROBA_COLUMNS)].sum(axis=1).round(6).eq(1).all()
    assert out.loc[1, "label"] == "negative"
    # The model normalises raw text itself: a mention or URL does not change the prediction.
    again = model.predict(pd.DataFrame({"text": ["@someone Worst flight ever, cancelled again"]}))
    assert again.loc[0, "label"] == "negative"
    requirements = open(mlflow.pyfunc.get_model_dependencies(f"models:/{settings.model_name}/1")).read()
    assert "scikit-learn==" in requirements and "torch" not in requirements  # explicit, not inferred


def test_metrics_land_in_gold_model_metrics(trained_baseline):
    from tweetops.core.tables import open_table

    settings, result = trained_baseline
    rows = open_table("gold_model_metrics", settings).to_pandas()
    mine = rows[(rows["model_name"] == settings.model_name) & (rows["model_version"] == "1")]
    test_f1 = mine[(mine["dataset"] == "test") & (mine["metric"] == contract.METRIC_TEST_MACRO_F1)]
    assert test_f1["value"].tolist() == [pytest.approx(result.metrics["test_macro_f1"])]
    assert (mine["run_id"] == result.run_id).all()


def test_later_versions_become_challenger_and_reruns_are_idempotent(trained_baseline):
    from ml.train import train_model

    settings, _ = trained_baseline
    settings = settings.model_copy(update=dict(model_name=unique("sentiment")))
    quiet = dict(settings=settings, log=lambda *a: None, overrides={"data.max_train_rows": 600})
    first = train_model("baseline", **quiet)
    second = train_model("baseline", run_key="scheduled__2026-01-05", **quiet)
    rerun = train_model("baseline", run_key="scheduled__2026-01-05", **quiet)
    assert (first.alias, second.alias) == (contract.CHAMPION, contract.CHALLENGER)
    assert (first.model_version, second.model_version) == ("1", "2")
    assert rerun.model_version == "2" and rerun.run_id == second.run_id
    client = registry.client(settings)  # also points mlflow's global URIs at this server
    assert client.get_model_version_by_alias(settings.model_name, contract.CHAMPION).version == "1"
    assert len(client.search_model_versions(f"name='{settings.model_name}'")) == 2


def test_reproduce_gives_the_same_metrics(trained_baseline, cli_env):
    settings, result = trained_baseline
    env = cli_env(**settings.as_env())
    done = subprocess.run([*TWEETOPS, "reproduce", result.model_version], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["matches"] is True
    assert report["features_version"] == result.features_version
    assert report["reproduced"] == report["original"]
    assert report["original"][contract.METRIC_TEST_MACRO_F1] == pytest.approx(result.metrics["test_macro_f1"])


def test_unknown_config_is_a_clear_error(trained_baseline, cli_env):
    settings, _ = trained_baseline
    done = subprocess.run([*TWEETOPS, "train", "--config", "no-such-variant"], env=cli_env(**settings.as_env()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown model config 'no-such-variant'" in done.stderr and "baseline" in done.stderr


def test_minilm_with_a_tiny_step_budget_registers(trained_baseline):
    from ml.train import train_model

    settings, _ = trained_baseline
    settings = settings.model_copy(update=dict(model_name=unique("sentiment-minilm")))
    result = train_model("minilm", settings, log=lambda *a: None,
                         overrides={"budget.max_steps": 4, "model.params.batch_size": 8,
                                    "model.params.device": "cpu", "data.max_train_rows": 200})
    assert result.alias == contract.CHAMPION and result.model_version == "1"
    client = registry.client(settings)  # also points mlflow's global URIs at this server
    run = client.get_run(result.run_id)
    assert run.data.tags[contract.TAG_CONFIG_NAME] == "minilm"
    assert run.data.params["budget.max_steps"] == "4"
    registry.client(settings)  # the tracking and registry URIs models:/ resolves against
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{contract.CHAMPION}")
    out = model.predict(pd.DataFrame({"text": ["I love it", "I hate it"]}))
    assert list(out.columns) == list(contract.PREDICTION_COLUMNS) and len(out) == 2


def test_the_training_dag_announces_only_challengers_and_skips_unchanged_features(trained_baseline, airflow_db,
                                                                                 monkeypatch, tmp_path):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    from ml.features import seed_features_from_corpus

    settings, _ = trained_baseline
    settings = settings.model_copy(update=dict(model_name=unique("sentiment-dag"),
                                   lakehouse_uri=str(tmp_path / "lakehouse")))   # features of its own
    seed_features_from_corpus(settings, limit=1500)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "training.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["tweetops_training"]

    def run_training() -> dict:
        run = dag.test(run_conf={"config": "baseline"})
        return {ti.task_id: ti.state for ti in run.get_task_instances()}

    # The first version becomes champion (nothing to promote).
    assert run_training() == {"train": "success", "announce_challenger": "skipped"}
    # A second request on the same features and config (one drift episode asking twice): nothing registered.
    assert run_training() == {"train": "success", "announce_challenger": "skipped"}
    client = registry.client(settings)  # also points mlflow's global URIs at this server
    assert [v.version for v in client.search_model_versions(f"name='{settings.model_name}'")] == ["1"]
    # New features: a new version, a challenger.
    seed_features_from_corpus(settings, limit=1600)
    assert run_training() == {"train": "success", "announce_challenger": "success"}
    assert client.get_model_version_by_alias(settings.model_name, contract.CHALLENGER).version == "2"


class Crash(RuntimeError):
    """A crash injected at one step of training."""


# Where a training run can die, as (object, attribute, whether the call itself happens first).
CRASH_POINTS = {
    "before the model URI tag": ("mlflow.tracking:MlflowClient", "set_tag", False),
    "before registering": ("mlflow", "register_model", False),
    "right after registering": ("mlflow", "register_model", True),
    "right after the alias": ("mlflow.tracking:MlflowClient", "set_registered_model_alias", True),
    "before the model card": ("mlflow.tracking:MlflowClient", "update_model_version", False),
    "writing gold_model_metrics": ("ml.train", "_record_metrics", False),
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_retry_after_a_crash_at_any_step_registers_once_and_completes(trained_baseline, monkeypatch, point):
    import pkgutil

    from tweetops.core.tables import open_table
    from ml.train import TAG_MODEL_VERSION, TAG_RUN_KEY, train_model

    base, baseline = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("sentiment-retry")))
    client = registry.client(settings)
    client.create_registered_model(settings.model_name)
    champion = client.copy_model_version(baseline.model_uri, settings.model_name)
    client.set_registered_model_alias(settings.model_name, contract.CHAMPION, champion.version)
    key = unique("scheduled__2026-01-05")
    quiet = dict(settings=settings, log=lambda *a: None, run_key=key,
                 overrides={"data.max_train_rows": 600, "model.params.char_ngram_range": []})

    where, attribute, call_first = CRASH_POINTS[point]
    target = pkgutil.resolve_name(where)
    real = getattr(target, attribute)
    crashed = []

    def crash_once(*args, **kwargs):
        if crashed:
            return real(*args, **kwargs)
        crashed.append(point)
        if call_first:
            real(*args, **kwargs)
        raise Crash(point)

    with monkeypatch.context() as patch:
        patch.setattr(target, attribute, crash_once)
        with pytest.raises(Crash):
            train_model("baseline", **quiet)
    result = train_model("baseline", **quiet)
    again = train_model("baseline", **quiet)

    assert crashed == [point]
    assert (result.model_version, result.alias) == ("2", contract.CHALLENGER)
    assert (again.model_version, again.run_id) == (result.model_version, result.run_id)
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    assert sorted(v.version for v in versions) == ["1", "2"], "a retry registered a second version"
    assert client.get_model_version_by_alias(settings.model_name, contract.CHALLENGER).version == "2"
    assert client.get_model_version_by_alias(settings.model_name, contract.CHAMPION).version == "1"
    ours = client.get_model_version(settings.model_name, "2")
    assert ours.run_id == result.run_id and ours.tags[contract.TAG_CONFIG_NAME] == "baseline"
    assert ours.description.startswith(f"# Model card: {settings.model_name} version 2")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`{TAG_RUN_KEY}` = '{key}'")
    assert [r.data.tags.get(TAG_MODEL_VERSION) for r in runs if TAG_MODEL_VERSION in r.data.tags] == ["2"]
    assert {r.info.status for r in runs if r.info.run_id == result.run_id} == {"FINISHED"}
    rows = open_table("gold_model_metrics", settings).to_pandas()
    rows = rows[rows["model_name"] == settings.model_name]
    expected = [m for m in result.metrics if m.split("_", 1)[0] in ("test", "validation", "behaviour")]
    assert sorted(rows["metric"]) == sorted(expected), "each metric once"
    assert set(rows["model_version"]) == {"2"} and set(rows["run_id"]) == {result.run_id}
    assert contract.METRIC_TEST_MACRO_F1 in set(rows["metric"])
