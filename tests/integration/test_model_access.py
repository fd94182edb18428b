"""ml.model_access against a real MLflow server (with authentication on): resolving the champion,
saying plainly when there is none, refusing a model that breaks ml.contract, predicting in batches
exactly what the registered pyfunc says, and reading what a version was trained on."""
from __future__ import annotations

import pytest

from ml import contract, model_access
from tests.conftest import unique
from tests.integration.test_serving import BROKEN_MODEL, register_code_model

pytestmark = pytest.mark.integration

TWEETS = ["@united thanks for the quick rebooking, great crew!", "My flight got cancelled again. Worst airline ever",
          "Flight 1234 departs at 5pm from gate B7", "lost my bag and nobody answers the phone",
          "the new iphone camera is amazing"]


def test_the_champion_resolves_by_alias_and_by_number(trained_baseline):
    settings, trained = trained_baseline
    champion = model_access.resolve(settings)
    assert champion.name == settings.model_name and str(champion.version) == trained.model_version
    assert contract.CHAMPION in champion.aliases
    for ref in ("@champion", trained.model_version, int(trained.model_version)):
        assert str(model_access.resolve(settings, ref).version) == trained.model_version


def test_no_champion_yet_is_a_no_champion_error_that_says_what_to_do(trained_baseline, tmp_path):
    base, _ = trained_baseline
    never_registered = base.model_copy(update=dict(model_name=unique("nothing")))
    with pytest.raises(model_access.NoChampionError,
                       match=f"has no version of {never_registered.model_name!r} with alias 'champion' yet; "
                             "train and promote a model first"):
        model_access.resolve(never_registered)

    # A model with a version but no champion alias yet (what training registers before a promotion).
    no_alias = base.model_copy(update=dict(model_name=unique("no-alias")))
    version = register_code_model(no_alias, tmp_path, "unpromoted", BROKEN_MODEL)
    with pytest.raises(model_access.NoChampionError, match="with alias 'champion' yet"):
        model_access.resolve(no_alias)
    assert str(model_access.resolve(no_alias, version).version) == version

    # A version number that does not exist is a plain LookupError, not "no champion".
    with pytest.raises(LookupError, match=f"has no version 99 in the registry") as missing:
        model_access.resolve(no_alias, 99)
    assert not isinstance(missing.value, model_access.NoChampionError)


def test_a_version_that_breaks_the_contract_is_refused_at_load(trained_baseline, tmp_path):
    base, _ = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("broken")))
    version = register_code_model(settings, tmp_path, "broken", BROKEN_MODEL)
    with pytest.raises(model_access.ContractError,
                       match=f"{settings.model_name} version {version} breaks ml.contract: .*columns"):
        model_access.load(settings, model_access.resolve(settings, version))


def test_batches_predict_what_the_registered_pyfunc_says(trained_baseline):
    import mlflow
    import pandas as pd

    settings, trained = trained_baseline
    loaded = model_access.load(settings, model_access.resolve(settings))
    assert (loaded.name, loaded.version) == (settings.model_name, trained.model_version)

    labels, probabilities = model_access.predict_batches(loaded, TWEETS, batch_rows=2)  # 3 model calls
    one_call = model_access.predict_batches(loaded, TWEETS)
    assert labels == one_call[0] and probabilities == pytest.approx(one_call[1])

    mlflow.set_registry_uri(settings.mlflow_tracking_uri)  # an independent load, straight from MLflow
    expected = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{contract.CHAMPION}").predict(
        pd.DataFrame({"text": TWEETS}))
    assert labels == expected["label"].tolist()
    assert probabilities == pytest.approx(expected[list(contract.PROBA_COLUMNS)].to_numpy())
    no_labels, no_probabilities = model_access.predict_batches(loaded, [])
    assert no_labels == [] and no_probabilities.shape == (0, len(contract.LABELS))


def test_a_loaded_version_carries_its_metrics_and_lineage_and_is_cached_on_request(trained_baseline):
    settings, trained = trained_baseline
    version = model_access.resolve(settings)
    loaded = model_access.load(settings, version)
    assert loaded.info["version"] == trained.model_version and loaded.info["run_id"] == trained.run_id
    assert loaded.info["metrics"][contract.METRIC_TEST_MACRO_F1] == pytest.approx(
        trained.metrics[contract.METRIC_TEST_MACRO_F1])
    assert loaded.info["lineage"][contract.TAG_CONFIG_HASH] == trained.config_hash
    assert loaded.info["lineage"][contract.TAG_FEATURES_VERSION] == str(trained.features_version)

    cached = model_access.load(settings, version, cached=True)
    assert model_access.load(settings, version, cached=True) is cached
    assert model_access.load(settings, version) is not cached  # the API loads afresh


def test_lineage_and_training_reference_name_the_data_and_config(trained_baseline):
    settings, trained = trained_baseline
    tags = model_access.lineage(settings)
    assert tags["version"] == trained.model_version and tags["run_id"] == trained.run_id
    assert tags[contract.TAG_CONFIG_NAME] == "baseline" and tags[contract.TAG_GIT_COMMIT]

    reference = model_access.training_reference(settings, trained.model_version)
    assert (reference.model_name, reference.version, reference.run_id) == (
        settings.model_name, trained.model_version, trained.run_id)
    assert reference.features_table == "gold_features"
    assert reference.features_version == trained.features_version
    assert reference.config.name == "baseline" and reference.config.hash == trained.config_hash
    assert reference.logged_config["name"] == "baseline"


def test_trace_shows_the_features_version_a_prediction_s_model_was_trained_on(trained_baseline):
    from tweetops.app.trace import model_features_version

    settings, trained = trained_baseline
    assert model_features_version(settings.model_name, trained.model_version, settings) == str(trained.features_version)
    assert model_features_version(settings.model_name, "999", settings) is None  # deleted or never registered


def test_lineage_of_a_hand_made_version_is_refused_unless_partial_is_enough(trained_baseline, tmp_path):
    import mlflow

    from ml import registry

    base, _ = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("handmade")))
    registry.client(settings)
    code = tmp_path / "handmade_model.py"
    code.write_text(BROKEN_MODEL)
    mlflow.set_experiment(settings.model_name)
    with mlflow.start_run():  # a run without the pipeline's lineage tags
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code), pip_requirements=["mlflow"])
    version = str(mlflow.register_model(info.model_uri, settings.model_name,
                                        tags={contract.TAG_FEATURES_VERSION: "7"}).version)
    with pytest.raises(LookupError, match="has no lineage tags"):
        model_access.lineage(settings, version)
    with pytest.raises(LookupError, match="has no lineage tags"):
        model_access.training_reference(settings, version)
    assert model_access.lineage(settings, version, complete=False)[contract.TAG_FEATURES_VERSION] == "7"
