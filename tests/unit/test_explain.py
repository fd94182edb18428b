"""Explanations: the linear method is exact (contributions + intercept = the decision score), the
occlusion method measures what each word is worth, and the model card shows the influential n-grams."""
from __future__ import annotations

import random

import numpy as np
import pytest

from ml.config import load_config
from ml.contract import LABELS
from ml.explain import explain_texts, influential_features, linear_contributions, occlusion_contributions
from ml.models import TfidfLogReg
from tweetops.core.text import normalize_text
from tweetops.core.corpus import load_corpus

TEXTS = ["@united thanks for the quick rebooking, great crew today!", "my flight is delayed again, worst airline",
         "Flight 1234 departs at 5pm from gate B7 http://t.co/abc", "love the new phone but the battery is awful",
         "?", "zzzz qqqq"]


@pytest.fixture(scope="module")
def baseline():
    labelled = [t for t in load_corpus() if t.get("label") in LABELS]
    tweets = random.Random(0).sample(labelled, 3000)  # seeded: the corpus file is ordered by topic
    params = load_config("baseline").params
    return TfidfLogReg.fit([normalize_text(t["text"]) for t in tweets], [t["label"] for t in tweets], params, seed=42)


def test_linear_contributions_sum_to_the_decision_function(baseline):
    normalized = [normalize_text(t) for t in TEXTS]
    logreg = baseline.pipeline.named_steps["classifier"]
    decisions = logreg.decision_function(baseline.pipeline.named_steps["features"].transform(normalized))
    for text, explanation, decision in zip(TEXTS, linear_contributions(baseline, normalized), decisions):
        k = list(logreg.classes_).index(explanation["label"])
        total = explanation["intercept"] + sum(f["contribution"] for f in explanation["features"])
        assert total == pytest.approx(decision[k], rel=1e-5, abs=1e-5)  # scikit-learn sums in float32, text
        assert explanation["decision"] == pytest.approx(total, abs=1e-9)
        assert k == int(np.argmax(decision))  # the explained label is the predicted one


def test_top_features_and_other_add_up_and_match_the_prediction(baseline):
    explanations = explain_texts(baseline, TEXTS, top_k=3)
    proba = baseline.predict_proba([normalize_text(t) for t in TEXTS])
    for explanation, row in zip(explanations, proba):
        assert explanation["label"] == LABELS[int(np.argmax(row))]
        assert len(explanation["towards"]) <= 3 and len(explanation["away"]) <= 3
        assert all(f["contribution"] > 0 for f in explanation["towards"])
        assert all(f["contribution"] < 0 for f in explanation["away"])
        total = (explanation["intercept"] + explanation["other"]
                 + sum(f["contribution"] for f in explanation["towards"] + explanation["away"]))
        assert total == pytest.approx(explanation["decision"], abs=1e-6)
        words = explanation["intercept"] + explanation["unattributed"] + sum(w["contribution"] for w in explanation["words"])
        assert words == pytest.approx(explanation["decision"], abs=1e-6)
        assert explanation["unattributed"] == pytest.approx(0, abs=1e-9)  # word and char_wb n-grams all placed
    thanks = explanations[0]
    assert thanks["label"] == "positive"
    assert any(f["kind"] == "word" and f["feature"] in ("thanks", "great") for f in thanks["towards"]), thanks
    top_word = max(thanks["words"], key=lambda w: w["contribution"])["word"]
    assert top_word in ("thanks", "great"), thanks["words"]


class KeywordModel:
    """A transparent stand-in for a transformer: 'awful' makes a tweet negative."""

    def predict_proba(self, texts):
        return np.array([[0.9, 0.05, 0.05] if "awful" in t.split() else [0.1, 0.8, 0.1] for t in texts])


def test_occlusion_credits_the_word_that_decides():
    [explanation] = occlusion_contributions(KeywordModel(), ["the battery is awful"])
    assert explanation["label"] == "negative" and explanation["method"] == "occlusion"
    contributions = {f["feature"]: f["contribution"] for f in explanation["features"]}
    assert contributions["awful"] == pytest.approx(0.9 - 0.1)
    assert all(contributions[w] == 0 for w in ("the", "battery", "is"))
    [top] = explain_texts(KeywordModel(), ["the battery is awful"])
    assert [f["feature"] for f in top["towards"]] == ["awful"]


def test_influential_features_per_class(baseline):
    table = influential_features(baseline, top_k=10)
    assert set(table) == set(LABELS)
    positive = [feature for feature, _ in table["positive"]["towards"]]
    assert "thanks" in positive or "great" in positive or "love" in positive, positive
    assert influential_features(KeywordModel()) is None


def test_model_card_lists_influential_features_and_behaviour_failures(baseline):
    from ml.behaviour import run_behaviour_checks
    from ml.model_card import _behaviour_failures, _influential_features
    from ml.pyfunc import predict_frame

    behaviour = run_behaviour_checks(lambda texts: predict_frame(baseline, texts))
    failed = [f["text"] for check in behaviour["checks"].values() for f in check["failures"]]
    card = "\n".join(_behaviour_failures(behaviour) + _influential_features(baseline))
    assert "## Most influential features" in card and "| positive |" in card and "| negative |" in card
    assert all(text in card for text in failed)
    assert ("Failed cases:" in card) == bool(failed)
