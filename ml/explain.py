"""`tweetops explain "text"`: why a model gave a tweet its label, feature by feature.

Two methods, chosen by the model type inside the registered pyfunc:

- **linear** (the TF-IDF + logistic regression baseline), exact. The label's decision score is
  `intercept + sum(tfidf value x coefficient)` over the tweet's n-grams, so each n-gram's
  contribution is its TF-IDF value times its coefficient for the label. `towards` lists the
  largest positive contributions, `away` the most negative, `other` the sum of all the rest:
  `intercept + sum(towards) + sum(away) + other == decision` (up to float error). `words` gives
  each word of the normalised tweet its share (its character n-grams, and its part of the word
  n-grams): `intercept + sum(words) + unattributed == decision` as well.
- **occlusion** (the transformer, and any other model): each word of the normalised text is
  left out in turn and the label's probability recomputed, all variants in one model call; a
  word's contribution is how much the probability drops without it. One forward pass of
  (words + 1) sequences per tweet; see docs/serving.md for its latency budget.

The API (`POST /predict` with `"explain": true`) and the CLI both call `explain_texts`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import numpy as np

from ml.contract import CHAMPION, LABELS

TOP_K = 5
MAX_OCCLUDED_WORDS = 64  # longer texts: the first 64 words are explained (a tweet has fewer)


def classifier_of(model: Any):
    """The ml.models classifier inside a registered pyfunc (or the classifier itself)."""
    if hasattr(model, "unwrap_python_model"):
        model = model.unwrap_python_model()
    return getattr(model, "classifier", model)


def explain_texts(model: Any, texts: Sequence[str], top_k: int = TOP_K) -> list[dict]:
    """One explanation per raw text, in order (see the module doc for its fields)."""
    from ml.models import TfidfLogReg
    from tweetops.core.text import normalize_text

    classifier = classifier_of(model)
    normalized = [normalize_text(str(text)) for text in texts]
    if isinstance(classifier, TfidfLogReg):
        return [_top(e, top_k) for e in linear_contributions(classifier, normalized)]
    return [_top(e, top_k) for e in occlusion_contributions(classifier, normalized)]


# --- linear: exact -------------------------------------------------------------------------------

def linear_contributions(classifier, normalized: Sequence[str]) -> list[dict]:
    """Every non-zero feature's contribution to the predicted label's decision score."""
    pipeline = classifier.pipeline
    features, logreg = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
    names = _feature_names(classifier, features)
    matrix = features.transform(list(normalized)).tocsr()
    decisions = np.atleast_2d(logreg.decision_function(matrix).T).T  # (n, classes) or (n, 1) if binary
    classes = list(logreg.classes_)
    coef, intercept = logreg.coef_.astype(np.float64), logreg.intercept_.astype(np.float64)
    out = []
    for i in range(matrix.shape[0]):
        row = matrix.getrow(i)
        if coef.shape[0] == 1:  # binary: one score for classes[1]; the other class is its negation
            k = int(decisions[i, 0] > 0)
            sign = 1.0 if k == 1 else -1.0
            weights, bias = sign * coef[0, row.indices], sign * intercept[0]
        else:
            k = int(np.argmax(decisions[i]))
            weights, bias = coef[k, row.indices], intercept[k]
        contributions = row.data.astype(np.float64) * weights
        # The score in float64 from the same terms: scikit-learn's own (float32 features) agrees
        # to float32 rounding, and this one makes the terms add up exactly.
        decision = float(bias + contributions.sum())
        feature_list = [{"feature": feature, "kind": kind, "value": float(v), "contribution": float(c)}
                        for (kind, feature), v, c in zip(map(_split, names[row.indices]), row.data, contributions)]
        words, unattributed = _by_word(features, normalized[i], feature_list)
        out.append({
            "label": classes[k], "method": "linear", "unit": "decision score (log-odds)",
            "intercept": float(bias), "decision": decision, "features": feature_list,
            "words": words, "unattributed": unattributed,
        })
    return out


def _by_word(features, text: str, feature_list: list[dict]) -> tuple[list[dict], float]:
    """Each whitespace-separated word's share of the contributions, in text order.

    A character n-gram belongs to the word it was cut from, a word n-gram to its tokens' words
    (a bigram half to each); an n-gram found several times is shared equally between them. So
    `intercept + sum(words) + unattributed == decision`; unattributed stays 0 unless a vectorizer
    tokenises in a way this does not know."""
    import re
    from collections import defaultdict

    chunks = text.split()
    where: dict[tuple[str, str], list[list[int]]] = defaultdict(list)  # (kind, n-gram) -> occurrences
    for kind, vectorizer in features.transformer_list:
        if getattr(vectorizer, "analyzer", "word") == "word":
            pattern = re.compile(vectorizer.token_pattern)
            tokens = [(token, ci) for ci, chunk in enumerate(chunks) for token in pattern.findall(chunk)]
            low, high = vectorizer.ngram_range
            for n in range(low, high + 1):
                for start in range(len(tokens) - n + 1):
                    gram = tokens[start:start + n]
                    where[(kind, " ".join(t for t, _ in gram))].append([ci for _, ci in gram])
        else:  # char_wb n-grams never cross words; plain `char` ones that do stay unattributed
            analyze = vectorizer.build_analyzer()
            for ci, chunk in enumerate(chunks):
                for gram in analyze(chunk):
                    where[(kind, gram)].append([ci])
    shares = [0.0] * len(chunks)
    unattributed = 0.0
    for f in feature_list:
        occurrences = where.get((f["kind"], f["feature"]))
        if not occurrences:
            unattributed += f["contribution"]
            continue
        for occurrence in occurrences:
            for ci in occurrence:
                shares[ci] += f["contribution"] / len(occurrences) / len(occurrence)
    return [{"word": w, "contribution": c} for w, c in zip(chunks, shares)], unattributed


def _feature_names(classifier, features):
    """The feature names ("word__great", "char__ gre"), computed once per loaded model."""
    cached = getattr(classifier, "_explain_feature_names", None)
    if cached is None:
        cached = classifier._explain_feature_names = features.get_feature_names_out()
    return cached


def _split(name: str) -> tuple[str, str]:
    """(kind, n-gram) of a FeatureUnion feature name."""
    kind, sep, feature = str(name).partition("__")
    return (kind, feature) if sep else ("word", kind)


# --- occlusion: any model ------------------------------------------------------------------------

def occlusion_contributions(classifier, normalized: Sequence[str]) -> list[dict]:
    """Each word's contribution: the predicted label's probability minus its probability without the word."""
    out = []
    for text in normalized:
        words = text.split()
        explained = words[:MAX_OCCLUDED_WORDS]
        variants = [text] + [" ".join(words[:j] + words[j + 1:]) for j in range(len(explained))]
        proba = np.asarray(classifier.predict_proba(variants), dtype=np.float64)
        k = int(np.argmax(proba[0]))
        full = float(proba[0, k])
        out.append({
            "label": LABELS[k], "method": "occlusion", "unit": "probability of the label",
            "intercept": None, "decision": full,
            "features": [{"feature": word, "kind": "word", "value": 1.0, "contribution": full - float(p)}
                         for word, p in zip(explained, proba[1:, k])],
            "words": [{"word": word, "contribution": full - float(p)} for word, p in zip(explained, proba[1:, k])],
            "unattributed": None,
        })
    return out


def _top(explanation: dict, top_k: int) -> dict:
    """Keep the top_k features each way; `other` holds the sum of the rest, so nothing is hidden."""
    features = explanation.pop("features")
    ranked = sorted(features, key=lambda f: f["contribution"], reverse=True)
    towards = [f for f in ranked if f["contribution"] > 0][:top_k]
    away = [f for f in reversed(ranked) if f["contribution"] < 0][:top_k]
    shown = sum(f["contribution"] for f in towards) + sum(f["contribution"] for f in away)
    total = sum(f["contribution"] for f in features)
    return {**explanation, "towards": towards, "away": away, "other": total - shown}


# --- the model card: most influential features per class ------------------------------------------

def influential_features(model: Any, top_k: int = 15) -> dict[str, dict[str, list[tuple[str, float]]]] | None:
    """Per class, the word n-grams with the largest and smallest coefficients (linear models only).

    Word n-grams only: character n-grams are parts of words and say little to a reader."""
    from ml.models import TfidfLogReg

    classifier = classifier_of(model)
    if not isinstance(classifier, TfidfLogReg):
        return None
    logreg = classifier.pipeline.named_steps["classifier"]
    names = _feature_names(classifier, classifier.pipeline.named_steps["features"])
    words = np.flatnonzero(np.char.startswith(names.astype(str), "word__"))
    if not len(words) or logreg.coef_.shape[0] != len(logreg.classes_):
        return None
    out = {}
    for k, label in enumerate(logreg.classes_):
        coef = logreg.coef_[k, words]
        order = np.argsort(coef)
        out[str(label)] = {
            "towards": [(_split(names[words[j]])[1], round(float(coef[j]), 3)) for j in order[::-1][:top_k]],
            "away": [(_split(names[words[j]])[1], round(float(coef[j]), 3)) for j in order[:top_k]],
        }
    return out


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="+", help="one or more tweet texts (quote each)")
    parser.add_argument("--model-version", default=CHAMPION,
                        help="registry version number or alias to explain (default: the champion)")
    parser.add_argument("--top", type=int, default=TOP_K, help="features shown each way (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the explanations as JSON")


def run(args: argparse.Namespace) -> int:
    from ml import model_access
    from ml.registry import UntrustedModelError
    from tweetops.core.settings import load_settings

    settings = load_settings()
    try:
        version = model_access.resolve(settings, args.model_version)
        model = model_access.load(settings, version).model
    except (LookupError, UntrustedModelError, model_access.ContractError) as exc:
        print(f"tweetops explain: {exc}", file=sys.stderr)
        return 1
    explanations = explain_texts(model, args.text, top_k=args.top)
    if args.json:
        print(json.dumps({"model_name": version.name, "model_version": str(version.version),
                          "explanations": explanations}, indent=2))
        return 0
    print(f"{version.name} version {version.version}")
    for text, e in zip(args.text, explanations):
        print(f"\n{text!r}\n  label {e['label']} ({e['method']}; {e['unit']} {e['decision']:.3f}"
              + (f", intercept {e['intercept']:+.3f}" if e["intercept"] is not None else "") + ")")
        for title, items in (("towards", e["towards"]), ("away from", e["away"])):
            shown = ", ".join(f"{f['feature']!r}{'' if f['kind'] == 'word' else ' (' + f['kind'] + ')'} "
                              f"{f['contribution']:+.3f}" for f in items) or "none"
            print(f"  {title} {e['label']}: {shown}")
        print(f"  all other features: {e['other']:+.3f}")
        by_word = sorted(e["words"], key=lambda w: abs(w["contribution"]), reverse=True)[:args.top]
        print("  by word: " + ", ".join(f"{w['word']!r} {w['contribution']:+.3f}" for w in by_word))
    return 0
