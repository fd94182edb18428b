"""A faster `TfidfVectorizer.transform` for the two analyzers the baseline uses, equal bit for bit.

scikit-learn builds every n-gram of every tweet as a Python string and counts them one by one: for
the baseline's character 2-5 grams that is about 400 strings a tweet and most of the scoring time.
Here the n-grams of a word are built and looked up once per process (words repeat across tweets far
more than tweets do), the counting is done by scipy, and the vectorizer's fitted weights are applied
with scikit-learn's own steps in its order (minus its per-call input validation), so the matrix is
the one `vectorizer.transform` returns (same values, same sorted indices). Anything other than the
plain settings `ml.models.TfidfLogReg.fit` uses falls back to scikit-learn.
tests/unit/test_tfidf_fast.py compares both on the whole corpus.
"""
from __future__ import annotations

import re
from itertools import repeat
from typing import Sequence
from weakref import WeakKeyDictionary

import numpy as np

# Per vectorizer: word -> the vocabulary indices of its character n-grams. Cleared when it reaches
# this many words (about 30 MB), so a process that scores forever keeps bounded memory.
MAX_CACHED_WORDS = 100_000
_WHITE_SPACES = re.compile(r"\s\s+")  # the same normalisation scikit-learn's char_wb applies
_word_caches: WeakKeyDictionary = WeakKeyDictionary()


def transform(vectorizer, texts: Sequence[str]):
    """What `vectorizer.transform(texts)` returns (a CSR matrix), faster when it can be."""
    if not texts or not _is_plain(vectorizer) or not all(isinstance(t, str) for t in texts):
        return vectorizer.transform(texts)
    if vectorizer.analyzer == "char_wb":
        counts = _char_wb_counts(vectorizer, texts)
    else:
        counts = _word_counts(vectorizer, texts)
    return _weigh(vectorizer._tfidf, counts)


def _weigh(tfidf, counts):
    """`tfidf.transform(counts, copy=False)`: the same steps in the same order, without its input
    validation (half a millisecond a call: most of a single tweet's transform)."""
    from sklearn.feature_extraction.text import _align_api_if_sparse
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    if tfidf.norm not in ("l2", None):
        return tfidf.transform(counts, copy=False)
    if tfidf.sublinear_tf:
        np.log(counts.data, counts.data)
        counts.data += 1.0
    if hasattr(tfidf, "idf_"):
        counts.data *= tfidf.idf_[counts.indices]
    if tfidf.norm == "l2":
        inplace_csr_row_normalize_l2(counts)
    return _align_api_if_sparse(counts)


def _is_plain(vectorizer) -> bool:
    """Settings under which the analyzer is exactly: split or tokenize, then n-grams (no other step)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return (type(vectorizer) is TfidfVectorizer and hasattr(vectorizer, "vocabulary_")
            and vectorizer.analyzer in ("char_wb", "word") and vectorizer.input == "content"
            and vectorizer.preprocessor is None and vectorizer.tokenizer is None
            and not vectorizer.lowercase and vectorizer.strip_accents is None
            and vectorizer.stop_words is None and not vectorizer.binary)


def _char_wb_counts(vectorizer, texts: Sequence[str]):
    cache = _word_caches.setdefault(vectorizer, {})
    if len(cache) >= MAX_CACHED_WORDS:
        cache.clear()
    lookup, (min_n, max_n) = vectorizer.vocabulary_.get, vectorizer.ngram_range
    parts, lengths = [], []
    for text in texts:
        length = 0
        for word in _WHITE_SPACES.sub(" ", text).split():
            indices = cache.get(word)
            if indices is None:
                indices = cache[word] = _char_wb_indices(word, min_n, max_n, lookup)
            parts.append(indices)
            length += len(indices)
        lengths.append(length)
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    rows = np.repeat(np.arange(len(texts), dtype=np.int32), lengths)
    return _count_matrix(rows, indices, len(texts), vectorizer)


def _char_wb_indices(word: str, min_n: int, max_n: int, lookup) -> np.ndarray:
    # scikit-learn's _char_wb_ngrams for one word: padded with spaces; a word no longer than n counts once.
    padded = f" {word} "
    size, grams = len(padded), []
    for n in range(min_n, max_n + 1):
        if size <= n:
            grams.append(padded)
            break
        grams.extend([padded[i:i + n] for i in range(size - n + 1)])
    found = np.fromiter(map(lookup, grams, repeat(-1)), dtype=np.int32, count=len(grams))
    return found[found >= 0]


def _word_counts(vectorizer, texts: Sequence[str]):
    lookup, (min_n, max_n) = vectorizer.vocabulary_.get, vectorizer.ngram_range
    tokenize = vectorizer.build_tokenizer()
    grams, lengths = [], []
    for text in texts:
        tokens = tokenize(text)
        before = len(grams)
        if min_n == 1:
            grams.extend(tokens)
        for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
            grams.extend([" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)])
        lengths.append(len(grams) - before)
    found = np.fromiter(map(lookup, grams, repeat(-1)), dtype=np.int32, count=len(grams))
    rows = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    known = found >= 0
    return _count_matrix(rows[known], found[known], len(texts), vectorizer)


def _count_matrix(rows: np.ndarray, indices: np.ndarray, n_texts: int, vectorizer):
    """Texts x vocabulary counts, duplicates summed and indices sorted, as scikit-learn makes it."""
    import scipy.sparse as sp

    counts = sp.coo_array((np.ones(len(indices), dtype=vectorizer.dtype), (rows, indices)),
                          shape=(n_texts, len(vectorizer.vocabulary_))).tocsr()
    counts.sort_indices()  # tocsr() already sums and sorts: this only makes the contract explicit
    return counts
