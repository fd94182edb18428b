"""Behavioural checks: structure of the result, and that they separate a sensible model from a
broken one (models here are small keyword rules, real functions of the text)."""
from __future__ import annotations

import pandas as pd

from ml.behaviour import run_behaviour_checks

POSITIVE = ("love", "great", "thank", "best", "awesome", "happy", "good", "nice", "enjoy", "wonderful")
NEGATIVE = ("worst", "hate", "cancelled", "terrible", "rude", "awful", "lost", "ridiculous", "crashing",
            "delayed", "annoying", "disappointing")


def keyword_model(texts):
    labels = []
    for text in texts:
        words = text.lower()
        negated = any(n in words for n in (" not ", "n't ", " no "))
        if any(w in words for w in NEGATIVE):
            labels.append("negative")
        elif any(w in words for w in POSITIVE):
            labels.append("negative" if negated else "positive")
        else:
            labels.append("neutral")
    return labels


def test_a_sensible_model_passes_and_the_result_is_structured():
    result = run_behaviour_checks(keyword_model)
    assert set(result["checks"]) == {"minimum_functionality", "negation", "invariance"}
    for check in result["checks"].values():
        assert {"passed", "pass_rate", "threshold", "gating", "n", "failures"} <= set(check)
    assert result["passed"] is True, result
    assert result["checks"]["negation"]["pass_rate"] == 1.0


def test_negation_is_reported_but_does_not_gate():
    def ignores_negation(texts):
        return ["positive" if label == "negative" and any(w in t.lower() for w in POSITIVE) else label
                for t, label in zip(texts, keyword_model(texts))]

    result = run_behaviour_checks(ignores_negation)
    negation = result["checks"]["negation"]
    assert negation["passed"] is False and negation["gating"] is False and negation["pass_rate"] == 0.0
    assert result["passed"] is True


def test_a_constant_model_fails():
    result = run_behaviour_checks(lambda texts: ["negative"] * len(texts))
    assert result["passed"] is False
    assert result["checks"]["minimum_functionality"]["passed"] is False
    assert result["checks"]["negation"]["n"] == 0  # it never calls anything positive
    assert result["checks"]["invariance"]["passed"] is True  # constant is invariant, but not useful


def test_a_model_that_reads_mentions_fails_invariance():
    def mention_sensitive(texts):
        return ["negative" if "@" in t else label for t, label in zip(texts, keyword_model(texts))]

    result = run_behaviour_checks(mention_sensitive)
    assert result["checks"]["invariance"]["passed"] is False
    assert any(f["perturbation"] == "mention" for f in result["checks"]["invariance"]["failures"])


def test_predict_fn_may_return_a_pyfunc_dataframe():
    result = run_behaviour_checks(lambda texts: pd.DataFrame({"label": keyword_model(texts)}))
    assert result["passed"] is True
