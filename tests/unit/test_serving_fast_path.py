"""The API's fast path (the pyfunc's predict_texts, no DataFrame, no MLflow schema step) answers
exactly what the registered pyfunc's predict(DataFrame) answers, tweet by tweet and in batches."""
from __future__ import annotations

import random

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from ml.config import load_config
from ml.contract import LABELS, PROBA_COLUMNS
from ml.models import TfidfLogReg
from ml.pyfunc import ARTIFACT_KEY, SentimentModel, signature
from ml.model_access import _fast_path, predict_arrays
from tweetops.core.corpus import load_corpus
from tweetops.core.text import normalize_text


@pytest.fixture(scope="module")
def corpus():
    labelled = [t for t in load_corpus() if t.get("label") in LABELS]
    return random.Random(7).sample(labelled, 3300)  # seeded: the corpus file is ordered by topic


@pytest.fixture(scope="module")
def pyfunc(corpus, tmp_path_factory):
    """The baseline fitted on 3,000 corpus tweets, saved and loaded as the MLflow pyfunc the API serves."""
    train = corpus[:3000]
    classifier = TfidfLogReg.fit([normalize_text(t["text"]) for t in train], [t["label"] for t in train],
                                 load_config("baseline").params, seed=42)
    root = tmp_path_factory.mktemp("pyfunc")
    classifier.save(root / "classifier")
    mlflow.pyfunc.save_model(str(root / "model"), python_model=SentimentModel("tfidf_logreg"),
                             artifacts={ARTIFACT_KEY: str(root / "classifier")}, signature=signature())
    return mlflow.pyfunc.load_model(str(root / "model"))


def slow_path(model, texts: list[str]):
    """What the API did before: the pyfunc's predict on a DataFrame."""
    output = model.predict(pd.DataFrame({"text": texts}))
    return output["label"].tolist(), np.column_stack([output[c].to_numpy(dtype="float64") for c in PROBA_COLUMNS])


def test_the_served_pyfunc_has_a_fast_path_and_other_models_do_not(pyfunc):
    assert _fast_path(pyfunc) is not None
    assert _fast_path(object()) is None


def test_fast_path_answers_exactly_what_the_pyfunc_answers_one_tweet_at_a_time(pyfunc, corpus):
    held_out = [t["text"] for t in corpus[3000:]]  # 300 tweets the model never saw
    for text in held_out:
        labels, probabilities = predict_arrays(pyfunc, [text])
        expected_labels, expected = slow_path(pyfunc, [text])
        assert labels == expected_labels
        assert probabilities.dtype == np.float64 and np.array_equal(probabilities, expected), text


def test_fast_path_answers_exactly_what_the_pyfunc_answers_in_batches(pyfunc, corpus):
    texts = [t["text"] for t in corpus[3000:]] + ["", "   ", "é" * 300, "<url> <user> !!!"]
    labels, probabilities = predict_arrays(pyfunc, texts)
    expected_labels, expected = slow_path(pyfunc, texts)
    assert labels == expected_labels and np.array_equal(probabilities, expected)
    assert len(set(labels)) == 3  # the comparison covers every class


def test_the_pipeline_shortcut_equals_scikit_learns_pipeline(pyfunc, corpus):
    classifier = pyfunc.unwrap_python_model().classifier
    texts = [normalize_text(t["text"]) for t in corpus[3000:]]
    ours = classifier.predict_proba(texts)
    theirs = classifier.pipeline.predict_proba(texts)
    order = [list(classifier.pipeline.classes_).index(label) for label in LABELS]
    assert np.array_equal(ours, theirs[:, order])
    for text in texts[:300]:  # one tweet at a time, as the API predicts: its own shortcuts
        assert np.array_equal(classifier.predict_proba([text]), classifier.pipeline.predict_proba([text])[:, order])


def test_texts_that_are_not_strings_take_the_pyfuncs_own_path(pyfunc):
    labels, probabilities = predict_arrays(pyfunc, ["great crew", None])
    expected_labels, expected = slow_path(pyfunc, ["great crew", None])
    assert labels == expected_labels and np.array_equal(probabilities, expected)
