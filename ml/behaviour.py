"""Behavioural checks for a sentiment model (CheckList style): what any acceptable model must do
beyond its test-set score. Training logs them; the promotion policy reuses them as a gate.

- minimum functionality: obvious positive, negative and neutral tweets get the obvious label;
- negation: negating a statement the model calls positive makes it not positive (reported, not gating);
- invariance: adding an @mention or a URL does not change the label.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

MINIMUM_FUNCTIONALITY = [
    ("I love this airline, the crew was amazing!", "positive"),
    ("Thank you so much, great service today :)", "positive"),
    ("Best flight ever, what a wonderful experience", "positive"),
    ("My new iPhone is awesome, I love it", "positive"),
    ("Great job, really happy with the support", "positive"),
    ("This is the worst airline ever, I hate it", "negative"),
    ("My flight was cancelled again and nobody helps. Terrible", "negative"),
    ("Lost my bag and the staff was rude. Awful service", "negative"),
    ("Three hours on hold, this is ridiculous and disappointing", "negative"),
    ("My phone keeps crashing, worst update ever", "negative"),
    ("The flight departs at 5pm from gate 12", "neutral"),
    ("Google announced a new office in London", "neutral"),
    ("What time does the store open tomorrow?", "neutral"),
    ("Apple will release its earnings report on Tuesday", "neutral"),
]
NEGATION = [
    ("I love this airline", "I do not love this airline"),
    ("The service was good", "The service was not good"),
    ("I like my new phone", "I don't like my new phone"),
    ("The crew was great today", "The crew was not great today"),
    ("I am happy with the flight", "I am not happy with the flight"),
    ("This is a good idea", "This is not a good idea"),
    ("I enjoyed the trip", "I did not enjoy the trip"),
    ("The new update is great", "The new update is not great"),
]
INVARIANCE_BASE = [
    "Thanks for the great flight", "My bag is lost and nobody answers", "The plane lands at 7pm",
    "I love the new camera", "Worst customer service ever", "Driverless cars are coming to town",
    "Such a nice crew, thank you", "Delayed again, so annoying", "The meeting is on Monday",
    "Apple stock went up today",
]
PERTURBATIONS = [
    ("mention", lambda t: f"@jane_doe {t}"),
    ("url", lambda t: f"{t} https://t.co/Xy12abCd"),
]
THRESHOLDS = {"minimum_functionality": 0.8, "negation": 0.5, "invariance": 0.9}
# Checks that decide "passed". Negation is reported, not gating: bag-of-n-gram models (the baseline)
# flip only about 40% of negated positives; the promotion policy can still refuse a regression on it.
GATING = ("minimum_functionality", "invariance")


def _labels(predict_fn: Callable, texts: Sequence[str]) -> list[str]:
    out = predict_fn(list(texts))
    if isinstance(out, pd.DataFrame):
        out = out["label"]
    return [str(label) for label in out]


def run_behaviour_checks(predict_fn: Callable[[list[str]], Sequence[str] | pd.DataFrame],
                         thresholds: dict[str, float] | None = None) -> dict:
    """Run every check against `predict_fn` (raw texts -> labels, or a DataFrame with a label column,
    e.g. a loaded pyfunc's predict wrapped to take a list).

    Returns {"passed": bool, "checks": {name: {"passed", "pass_rate", "threshold", "gating", "n", "failures"}}};
    "passed" is True when every gating check passes. For negation, n counts the pairs whose plain
    statement the model calls positive.
    """
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    checks: dict[str, dict] = {}

    got = _labels(predict_fn, [t for t, _ in MINIMUM_FUNCTIONALITY])
    failures = [{"text": t, "expected": e, "got": g} for (t, e), g in zip(MINIMUM_FUNCTIONALITY, got) if g != e]
    checks["minimum_functionality"] = _result("minimum_functionality", len(MINIMUM_FUNCTIONALITY), failures, thresholds)

    got = _labels(predict_fn, [t for pair in NEGATION for t in pair])
    applicable, failures = 0, []
    for i, (plain, negated) in enumerate(NEGATION):
        before, after = got[2 * i], got[2 * i + 1]
        if before != "positive":
            continue  # the model misses the positive statement itself: minimum functionality's business
        applicable += 1
        if after == "positive":
            failures.append({"text": negated, "expected": "not positive", "got": after, "original": plain})
    checks["negation"] = _result("negation", applicable, failures, thresholds)

    variants = [(name, base, perturb(base)) for name, perturb in PERTURBATIONS for base in INVARIANCE_BASE]
    got = _labels(predict_fn, [t for _, base, changed in variants for t in (base, changed)])
    failures = [{"text": changed, "expected": got[2 * i], "got": got[2 * i + 1], "perturbation": name}
                for i, (name, _, changed) in enumerate(variants) if got[2 * i] != got[2 * i + 1]]
    checks["invariance"] = _result("invariance", len(variants), failures, thresholds)

    return {"passed": all(c["passed"] for name, c in checks.items() if c["gating"]), "checks": checks}


def _result(name: str, n: int, failures: list[dict], thresholds: dict[str, float]) -> dict:
    rate = (n - len(failures)) / n if n else 0.0
    return {"passed": n > 0 and rate >= thresholds[name], "pass_rate": round(rate, 4), "threshold": thresholds[name],
            "gating": name in GATING, "n": n, "failures": failures}
