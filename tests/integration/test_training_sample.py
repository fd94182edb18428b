"""Training reads a bounded, seeded sample of gold_features, stratified by label and day, and
records it in the lineage tags; below the bound it reads every row as before."""
from __future__ import annotations

import json
from collections import Counter

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def features(local_lakehouse):
    from ml.features import seed_features_from_corpus

    seed_features_from_corpus(local_lakehouse, limit=3000)
    return local_lakehouse


def strata(frame) -> Counter:
    return Counter(zip(frame["label"], frame["event_date"]))


def test_a_big_table_is_sampled_in_proportion_to_label_and_day(features):
    from tweetops.core.tables import open_table
    from ml.training_sample import read_training_rows

    table = open_table("gold_features", features)
    columns = ["id", "event_date", "text_normalized", "topic", "label", "split"]
    everything, info = read_training_rows(table, columns, max_rows=10**9, seed=7)
    assert info["sampled"] is False and len(everything) == 3000

    sample, info = read_training_rows(table, columns, max_rows=600, seed=7)
    assert len(sample) == 600 and info["sampled"] and info["rows_labelled"] == 3000
    assert set(sample["id"]) <= set(everything["id"]) and sample["id"].is_unique
    full, part = strata(everything), strata(sample)
    for key, n in full.items():   # each stratum gets its share, to within one row
        assert abs(part[key] - n * 600 / 3000) < 1, key
    again, _ = read_training_rows(table, columns, max_rows=600, seed=7)
    assert again.equals(sample)   # seeded: the same version and seed give the same rows
    other, _ = read_training_rows(table, columns, max_rows=600, seed=8)
    assert set(other["id"]) != set(sample["id"])


def test_training_records_the_sample_in_its_lineage(features):
    from ml.config import load_config
    from ml.train import lineage_tags, prepare_data

    config = load_config("baseline")
    data = prepare_data(config, features.model_copy(update=dict(train_max_rows=1000)))
    assert data.summary["rows_read"] == 1000
    tag = json.loads(lineage_tags(config, data)["tweetops.training_sample"])
    assert tag["sampled"] and tag["max_rows"] == 1000 and tag["seed"] == config.seed
    assert tag["strata"] == "label+event_date"
    unsampled = prepare_data(config, features)
    assert json.loads(lineage_tags(config, unsampled)["tweetops.training_sample"])["sampled"] is False
