"""ml.tfidf_fast gives the matrices scikit-learn's TfidfVectorizer.transform gives, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from ml import tfidf_fast
from tweetops.bench.text import raw_corpus_texts
from tweetops.core.text import normalize_text

EDGE_CASES = ["", " ", "a", "ab", "a b  c\t\td", "x\u3000y\u00a0z", "\n", "!!! ??", "<url> <user> <num>",
              "don't stop", "😀🚗 emoji", "soooooooooooooooooooooooo long", "İstanbul ſelf", "a\x1cb\x1fc"]


def _vectorizers(**overrides) -> list[TfidfVectorizer]:
    # The baseline's settings (ml/configs/baseline.yaml, ml.models.TfidfLogReg.fit).
    word = dict(ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=r"<\w+>|[\w']+|[!?]",
                lowercase=False, dtype=np.float32)
    char = dict(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, lowercase=False,
                dtype=np.float32)
    return [TfidfVectorizer(**{**word, **overrides}), TfidfVectorizer(**{**char, **overrides})]


def _assert_same(expected, actual) -> None:
    assert type(actual) is type(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert np.array_equal(actual.indptr, expected.indptr)
    assert np.array_equal(actual.indices, expected.indices)
    assert np.array_equal(actual.data, expected.data)  # exact, not approximately


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    raw = raw_corpus_texts()
    return [normalize_text(t) for t in raw] + raw + EDGE_CASES


@pytest.fixture(scope="module")
def fitted(corpus) -> list[TfidfVectorizer]:
    vectorizers = _vectorizers()
    for vectorizer in vectorizers:
        vectorizer.fit(corpus[::3])  # part of it: the rest has n-grams the vocabulary lacks
    return vectorizers


def test_equal_to_scikit_learn_on_the_whole_corpus(corpus, fitted):
    for vectorizer in fitted:
        for start in range(0, len(corpus), 20_000):  # batches, as scoring calls it
            batch = corpus[start:start + 20_000]
            _assert_same(vectorizer.transform(batch), tfidf_fast.transform(vectorizer, batch))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=60), min_size=1, max_size=8))
def test_equal_to_scikit_learn_on_any_text(fitted, texts):
    for vectorizer in fitted:
        _assert_same(vectorizer.transform(texts), tfidf_fast.transform(vectorizer, texts))


def test_the_word_cache_stays_bounded_and_correct(corpus, fitted, monkeypatch):
    monkeypatch.setattr(tfidf_fast, "MAX_CACHED_WORDS", 500)
    char = fitted[1]
    for start in range(0, 6_000, 1_000):
        batch = corpus[start:start + 1_000]
        _assert_same(char.transform(batch), tfidf_fast.transform(char, batch))
        words_in_batch = {word for text in batch for word in text.split()}
        assert len(tfidf_fast._word_caches[char]) <= 500 + len(words_in_batch)


@pytest.mark.parametrize("overrides", [dict(lowercase=True), dict(binary=True), dict(stop_words=["the"]),
                                       dict(analyzer="char"), dict(strip_accents="unicode")])
def test_other_settings_fall_back_to_scikit_learn(corpus, overrides):
    for vectorizer in _vectorizers(**overrides):
        vectorizer.fit(corpus[:3_000])
        batch = corpus[3_000:4_000]
        _assert_same(vectorizer.transform(batch), tfidf_fast.transform(vectorizer, batch))


def test_a_non_string_input_falls_back(fitted):
    word = fitted[0]
    _assert_same(word.transform([b"bytes text"]), tfidf_fast.transform(word, [b"bytes text"]))
