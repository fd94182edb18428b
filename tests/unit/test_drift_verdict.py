"""The drift verdict's thresholds know the window's size and the false-alarm budget; the reference
is matched to the window's topics; live quality needs every class and a significant drop."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import drift


@pytest.fixture
def config():
    return drift.load_drift_config(None, {"embeddings.enabled": False, "verdict.permutations": 200})


def _frame(rng, n, mention_rate=0.3, length_mean=15.0, topic="airline"):
    return pd.DataFrame({
        "text": [f"tweet {i}" for i in range(n)],
        "text_length": rng.poisson(length_mean, n).astype(float),
        "oov_share": rng.beta(1, 12, n),
        "url_share": (rng.random(n) < 0.1).astype(int),
        "mention_share": (rng.random(n) < mention_rate).astype(int),
        "hashtag_share": (rng.random(n) < 0.15).astype(int),
        "emoji_share": (rng.random(n) < 0.05).astype(int),
        "predicted_label": rng.choice(["negative", "neutral", "positive"], n, p=[0.5, 0.3, 0.2]),
        "topic": topic,
    })


def test_noise_floors_shrink_with_the_window_and_never_go_below_the_effect_size(config):
    rng = np.random.default_rng(0)
    reference = _frame(rng, 1000)
    small = drift.calibrated_thresholds(reference, _frame(rng, 60), config)
    large = drift.calibrated_thresholds(reference, _frame(rng, 3000), config)
    assert small["mention_share"].noise > large["mention_share"].noise
    assert small["text_content"].noise > large["text_content"].noise
    for name, threshold in large.items():
        assert threshold.value >= config.checks[name]["threshold"]
        assert threshold.alpha == pytest.approx(0.05 / len(config.checks))
    assert small["mention_share"].value > config.checks["mention_share"]["threshold"]   # 60 tweets: noise wins
    assert "noise floor" in small["mention_share"].explain()


def test_same_distribution_windows_rarely_cross_and_a_real_shift_does(config):
    """The calibration's promise on synthetic data: <= 5% of same-distribution windows of any size
    cross a threshold; a shift in @mentions of 0.3 -> 0.7 crosses at 150 tweets."""
    rng = np.random.default_rng(1)
    reference = _frame(rng, 800)
    crossed = 0
    for size in rng.integers(100, 1500, 40):
        current = _frame(rng, int(size))
        thresholds = drift.calibrated_thresholds(reference, current, config)
        crossed += any(drift.DISTANCES[config.checks[n]["method"]](*_pair(reference, current, n, config))
                       >= t.value for n, t in thresholds.items() if n in ("text_length", "oov_share", "url_share",
                                                                            "mention_share", "hashtag_share",
                                                                            "emoji_share", "predicted_label"))
    assert crossed <= 2
    shifted = _frame(rng, 150, mention_rate=0.7)
    threshold = drift.calibrated_thresholds(reference, shifted, config)["mention_share"]
    assert drift.DISTANCES["jensenshannon"](*_pair(reference, shifted, "mention_share", config)) >= threshold.value


def _pair(reference, current, name, config):
    ref, cur = reference[name].to_numpy(), current[name].to_numpy()
    if config.checks[name]["method"] == "jensenshannon":
        codes = np.unique(np.concatenate([ref, cur]).astype(str), return_inverse=True)[1]
        return codes[:len(ref)], codes[len(ref):]
    return ref, cur


def test_the_reference_is_matched_to_the_window_topics():
    rng = np.random.default_rng(2)
    reference = pd.concat([_frame(rng, 600, topic="airline"), _frame(rng, 900, mention_rate=0.8, topic="apple")],
                          ignore_index=True)
    matched, note = drift._matched_reference(reference, pd.Series(["airline"] * 200), seed=0)
    assert set(matched["topic"]) == {"airline"} and len(matched) == 600 and "airline 100%" in note
    mixed = pd.Series(["airline"] * 150 + ["apple"] * 50 + ["google"] * 30)
    matched, note = drift._matched_reference(reference, mixed, seed=0)
    shares = matched["topic"].value_counts(normalize=True)
    assert shares["airline"] == pytest.approx(0.75, abs=0.01) and "never saw: google" in note
    matched, note = drift._matched_reference(reference, pd.Series(["google"] * 10), seed=0)
    assert len(matched) == len(reference) and "no tweet of the window" in note


def test_wilson_interval():
    low, high = drift.wilson_interval(0, 10)
    assert low == 0 and 0.25 < high < 0.35
    low, high = drift.wilson_interval(80, 100)
    assert low < 0.8 < high and high - low < 0.2


TEST_METRICS = {"test_recall_negative": 0.85, "test_recall_neutral": 0.70, "test_recall_positive": 0.65,
                "test_macro_f1": 0.72}


@pytest.fixture
def baseline(config):
    """Test-split recalls (a reference without labels falls back to them)."""
    return drift.baseline_recalls(pd.DataFrame({"predicted_label": []}), TEST_METRICS, config)


def _labelled(counts: dict[str, tuple[int, int]]):
    """{label: (tweets, correctly predicted)} -> (labels, predictions)."""
    labels, predicted = [], []
    for label, (n, right) in counts.items():
        wrong = "neutral" if label != "neutral" else "negative"
        labels += [label] * n
        predicted += [label] * right + [wrong] * (n - right)
    return labels, predicted


def test_live_quality_skips_single_class_and_thin_windows(config, baseline):
    checks, why = drift.live_quality(*_labelled({"negative": (4000, 3400)}), baseline, config)
    assert checks == [] and "neutral (0)" in why and "positive (0)" in why
    checks, why = drift.live_quality(*_labelled({"negative": (200, 170), "neutral": (200, 140), "positive": (10, 2)}),
                                     baseline, config)
    assert checks == [] and "positive (10)" in why


def test_live_quality_triggers_only_on_a_significant_material_drop(config, baseline):
    steady, _ = drift.live_quality(*_labelled({"negative": (300, 252), "neutral": (200, 138), "positive": (60, 37)}),
                                   baseline, config)
    assert [c.name for c in steady] == ["live_recall_negative", "live_recall_neutral", "live_recall_positive",
                                        "live_macro_f1"]
    assert not any(c.drifted for c in steady)
    # positive recall 0.525 on 40 tweets: 0.125 below the test recall, but the interval still reaches 0.65
    noisy, _ = drift.live_quality(*_labelled({"negative": (300, 252), "neutral": (200, 138), "positive": (40, 21)}),
                                  baseline, config)
    assert not any(c.drifted for c in noisy)
    dropped, _ = drift.live_quality(*_labelled({"negative": (300, 252), "neutral": (200, 138),
                                                "positive": (400, 160)}), baseline, config)
    assert [c.name for c in dropped if c.drifted] == ["live_recall_positive"]
    recall = next(c for c in dropped if c.name == "live_recall_positive")
    assert recall.value == pytest.approx(0.4) and recall.threshold == pytest.approx(0.55) and "interval" in recall.detail


def test_the_baseline_is_the_champion_recall_on_the_matched_reference(config):
    """A mixed-topic champion may be weaker on one topic than on its whole test split: the window is
    held to what the champion does on the reference's tweets of the same topics."""
    reference = pd.DataFrame({"label": ["neutral"] * 100 + ["negative"] * 10,
                              "predicted_label": ["neutral"] * 40 + ["negative"] * 60 + ["negative"] * 10})
    baseline = drift.baseline_recalls(reference, TEST_METRICS, config)
    assert baseline["neutral"].recall == pytest.approx(0.40) and baseline["neutral"].low < 0.40
    assert baseline["negative"].source == "test-split recall" and baseline["negative"].recall == 0.85
    checks, _ = drift.live_quality(*_labelled({"negative": (300, 255), "neutral": (120, 42), "positive": (60, 40)}),
                                   baseline, config)
    assert not any(c.drifted for c in checks)   # 0.35 on neutral is what it does on these topics
