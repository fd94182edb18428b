"""One loader for every config file (tweetops/core/config_files.py): the model configs, the drift
thresholds, the promotion and the rollout policies each name the file and the field path of a wrong
type, an unknown field or a bad dotted override, in their own exception."""
from __future__ import annotations

import pytest

from ml import config as model_config, drift, promotion, shadow
from tweetops.core.config_files import ConfigFileError, parse_override

# (loader(path, overrides), its exception, a valid file, a field that takes an integer, its section path)
LOADERS = {
    "model config": (model_config.load_config, model_config.ConfigError,
                     "name: tiny\nmodel: {type: tfidf_logreg}\n", "model.params.min_df"),
    "drift thresholds": (drift.load_drift_config, drift.DriftConfigError,
                         "checks: {url_share: {method: jensenshannon, threshold: 0.1}}\n", "embeddings.sample_rows"),
    "promotion policy": (promotion.load_policy, promotion.PolicyError, "margin: 0.01\n", "recent_window.days"),
    "rollout policy": (shadow.load_rollout, shadow.RolloutError, "shadow: true\n", "flush_rows"),
}


@pytest.fixture(params=sorted(LOADERS))
def loader(request, tmp_path):
    load, error, content, integer_field = LOADERS[request.param]
    path = tmp_path / "config.yaml"
    path.write_text(content)
    return request.param, load, error, path, integer_field


def _message(load, error, path, overrides) -> str:
    with pytest.raises(error) as raised:
        load(path, overrides)
    assert isinstance(raised.value, ConfigFileError) and isinstance(raised.value, ValueError)
    return str(raised.value)


def test_a_valid_file_loads_and_an_override_applies(loader):
    _, load, _, path, integer_field = loader
    config = load(path, {integer_field: 40})
    node = config
    for part in integer_field.split("."):
        node = getattr(node, part)
    assert node == 40


def test_a_wrong_type_names_the_file_and_the_field(loader):
    what, load, error, path, integer_field = loader
    message = _message(load, error, path, {integer_field: "many"})
    assert message.startswith(f"invalid {what} {path}:")
    assert f"{integer_field}='many': expected an integer" in message
    # true is not a number in any of them
    assert f"{integer_field}=True: expected an integer" in _message(load, error, path, {integer_field: True})


def test_an_unknown_field_is_named_with_the_fields_its_section_allows(loader):
    _, load, error, path, integer_field = loader
    section, _, field = integer_field.rpartition(".")
    message = _message(load, error, path, {f"{section}.colour" if section else "colour": "red"})
    expected = f"{section} has unknown fields ['colour']" if section else "unknown fields ['colour']"
    assert expected in message and f"(allowed: " in message and field in message.split("(allowed: ")[1]


def test_a_bad_dotted_override_is_named(loader):
    _, load, error, path, integer_field = loader
    # Through a value that is not a section: no silent overwrite.
    message = _message(load, error, path, {integer_field: 3, f"{integer_field}.deeper": 1})
    assert message == f"{path}: cannot override '{integer_field}.deeper': {integer_field} is 3, not a section"
    # Into a field left at its default: the field is named with the section it was given.
    assert f"{integer_field}={{'deeper': 1}}: expected an integer" in _message(
        load, error, path, {f"{integer_field}.deeper": 1})
    # A dotted path into a section that does not exist is an unknown field, named.
    assert "unknown fields ['nowhere']" in _message(load, error, path, {"nowhere.at_all": 1})
    with pytest.raises(error, match="expected a dotted field"):
        load(path, {"budget.": 1})


def test_every_problem_is_reported_at_once(loader):
    _, load, error, path, integer_field = loader
    message = _message(load, error, path, {integer_field: "x", "colour": "red"})
    assert f"{integer_field}='x'" in message and "unknown fields ['colour']" in message


def test_missing_and_malformed_files(loader, tmp_path):
    _, load, error, path, _ = loader
    with pytest.raises(error, match="does not exist"):
        load(tmp_path / "missing.yaml", None)
    path.write_text("margin: [unclosed\n")
    with pytest.raises(error, match="not valid YAML"):
        load(path, None)
    path.write_text("- a list\n")
    with pytest.raises(error, match="expected a mapping"):
        load(path, None)


def test_override_text_is_read_as_yaml():
    assert parse_override("budget.max_steps=5") == ("budget.max_steps", 5)
    assert parse_override("data.topics=[a, b]") == ("data.topics", ["a", "b"])
    assert parse_override("shadow.min_agreement=null") == ("shadow.min_agreement", None)
    with pytest.raises(model_config.ConfigError, match="expected FIELD=VALUE"):
        model_config.parse_override("budget.max_steps")


def test_sections_still_read_like_mappings():
    config = drift.load_drift_config()
    assert config.embeddings["sample_rows"] == config.embeddings.sample_rows
    assert config.checks["text_content"]["method"] == "abs_text_content_drift"
    with pytest.raises(KeyError):
        config.embeddings["colour"]
    policy = promotion.load_policy()
    assert policy.recent_days == policy.recent_window.days and policy.behaviour_gate == policy.behaviour.gate
