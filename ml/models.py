"""Sentiment classifiers behind every model type of ml/configs: fit, predict probabilities, save, load.

A classifier takes *normalised* texts (tweetops.core.text.normalize_text) and returns probabilities with one
column per label of ml.contract.LABELS, in that order. ml/pyfunc.py wraps one for MLflow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ml.contract import LABELS


class Classifier(Protocol):
    kind: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


class TfidfLogReg:
    """Word and character TF-IDF n-grams into a multinomial logistic regression (deterministic)."""

    kind = "tfidf_logreg"
    FILE = "pipeline.joblib"

    def __init__(self, pipeline):
        self.pipeline = pipeline

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], params: dict, seed: int,
            max_minutes: float | None = None) -> "TfidfLogReg":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        # <url>, <user>, <num> stay whole tokens; ! and ? count as words (they carry sentiment).
        word = TfidfVectorizer(ngram_range=tuple(params["word_ngram_range"]), min_df=params["min_df"],
                               max_features=params["max_features"], sublinear_tf=params["sublinear_tf"],
                               token_pattern=r"<\w+>|[\w']+|[!?]", lowercase=False, dtype=np.float32)
        parts = [("word", word)]
        if params["char_ngram_range"]:
            parts.append(("char", TfidfVectorizer(
                analyzer=params["char_analyzer"], ngram_range=tuple(params["char_ngram_range"]),
                min_df=params["min_df"], max_features=params["max_features"],
                sublinear_tf=params["sublinear_tf"], lowercase=False, dtype=np.float32)))
        pipeline = Pipeline([
            ("features", FeatureUnion(parts)),
            ("classifier", LogisticRegression(C=params["C"], class_weight=params["class_weight"],
                                              max_iter=params["max_iter"], random_state=seed)),
        ])
        pipeline.fit(list(texts), list(labels))
        return cls(pipeline)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        features, classifier = self._steps()
        if features is None:
            proba = self.pipeline.predict_proba(list(texts))
        else:  # what FeatureUnion.transform computes, without its joblib dispatch (~0.5 ms a call)
            import scipy.sparse as sp

            texts = list(texts)
            from ml import tfidf_fast

            parts = [tfidf_fast.transform(transformer, texts) for _, transformer in features.transformer_list]
            if all(sp.issparse(part) for part in parts):
                proba = _classifier_proba(classifier, _side_by_side(parts))
            else:
                proba = self.pipeline.predict_proba(texts)
        return _reorder(proba, list(self.pipeline.classes_))

    def _steps(self):
        """(FeatureUnion, classifier) when the pipeline is the plain one `fit` builds, else (None, None)."""
        from sklearn.pipeline import FeatureUnion

        steps = getattr(self.pipeline, "steps", None)
        if not steps or len(steps) != 2 or not isinstance(steps[0][1], FeatureUnion):
            return None, None
        features = steps[0][1]
        if features.transformer_weights is not None or any(
                isinstance(t, str) or not hasattr(t, "transform") for _, t in features.transformer_list):
            return None, None  # weights, "drop" or "passthrough": let scikit-learn do it
        return features, steps[1][1]

    def save(self, directory: Path) -> None:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        # joblib/pickle, not skops: skops took 158 s to save this pipeline (docs/training.md).
        joblib.dump(self.pipeline, directory / self.FILE, compress=3)

    @classmethod
    def load(cls, directory: Path) -> "TfidfLogReg":
        import joblib

        return cls(joblib.load(Path(directory) / cls.FILE))


def _side_by_side(parts):
    """`scipy.sparse.hstack(parts, format="csr")`; for one row (a served tweet) without its ~0.1 ms
    of generic stacking."""
    import scipy.sparse as sp

    if parts[0].shape[0] != 1 or not all(sp.isspmatrix_csr(part) for part in parts):
        return sp.hstack(parts, format="csr")
    offsets = np.cumsum([0] + [part.shape[1] for part in parts[:-1]])
    data = np.concatenate([part.data for part in parts])
    indices = np.concatenate([part.indices.astype(np.int64) + offset for part, offset in zip(parts, offsets)])
    width = sum(part.shape[1] for part in parts)
    index_type = np.int32 if width <= np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((data, indices.astype(index_type), np.array([0, len(data)], dtype=index_type)),
                         shape=(1, width))


def _classifier_proba(classifier, features) -> np.ndarray:
    """`classifier.predict_proba(features)`; for a multinomial LogisticRegression, the same
    arithmetic (scores, then scikit-learn's softmax) without its ~0.25 ms of input validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.extmath import safe_sparse_dot, softmax

    if type(classifier) is not LogisticRegression or len(classifier.classes_) <= 2:
        return classifier.predict_proba(features)
    scores = safe_sparse_dot(features, classifier.coef_.T, dense_output=True) + classifier.intercept_
    return softmax(scores, copy=False)


def _reorder(proba: np.ndarray, classes: list[str]) -> np.ndarray:
    """Columns in LABELS order; a label the model never saw gets probability 0."""
    out = np.zeros((proba.shape[0], len(LABELS)), dtype=np.float64)
    for j, label in enumerate(LABELS):
        if label in classes:
            out[:, j] = proba[:, classes.index(label)]
    return out


def fit_classifier(model_type: str, texts: Sequence[str], labels: Sequence[str], params: dict, seed: int,
                   budget: dict, validation: tuple[Sequence[str], Sequence[str]] | None = None,
                   log=print) -> Classifier:
    if model_type == "tfidf_logreg":
        return TfidfLogReg.fit(texts, labels, params, seed)
    if model_type == "transformer":
        from ml.transformer import TransformerClassifier

        return TransformerClassifier.fit(texts, labels, params, seed, budget, validation=validation, log=log)
    raise ValueError(f"unknown model type {model_type!r}")


def load_classifier(model_type: str, directory: Path) -> Classifier:
    if model_type == "tfidf_logreg":
        return TfidfLogReg.load(directory)
    if model_type == "transformer":
        from ml.transformer import TransformerClassifier

        return TransformerClassifier.load(directory)
    raise ValueError(f"unknown model type {model_type!r} in the model's artifacts")
