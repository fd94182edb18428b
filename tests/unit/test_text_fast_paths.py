"""The fast paths of tweetops.core.text give exactly the outputs of the reference implementation."""
from __future__ import annotations

import pytest

import tweetops.core.text as fast
import tweetops.core.text_reference as reference
from tweetops.bench.text import raw_corpus_texts

EDGE_CASES = [
    "", " ", "plain ascii", "a &amp; b", "tab\tand\r\nlines", "bell\x07 and esc\x1b[31m", "del\x7f",
    "vertical\x0btab", "form\x0cfeed", "Ⓐ Ⅻ ABC", "ſelf-driving", "\u212aelvin google", "İstanbul flight",
    "GOOGLE's SELF DRIVING car", "@JetBlue :-) <3 8) ;P =D", "http", "WWW.EXAMPLE.COM/x", "a/b 12/25",
    "café niño", "Õ¢_Î_¢ soup", "😀 emoji 🚗", "soooooo ２３ digits", "#tag#tag @a@b",
]


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    raw = raw_corpus_texts()
    # The raw corpus (mojibake and all, as ingest sees it) and its repaired form (as silver holds it).
    return raw + [reference.repair_text(text) for text in raw] + EDGE_CASES


def test_repair_text_equals_the_reference_on_the_whole_corpus(corpus_texts):
    differing = [t for t in corpus_texts if fast.repair_text(t) != reference.repair_text(t)]
    assert not differing, differing[:5]


def test_tweet_features_equal_the_reference_on_the_whole_corpus(corpus_texts):
    differing = [t for t in corpus_texts if fast.tweet_features(t) != reference.tweet_features(t)]
    assert not differing, differing[:5]


def test_normalize_text_and_topic_equal_the_reference(corpus_texts):
    sample = corpus_texts[::7] + EDGE_CASES
    assert [fast.normalize_text(t) for t in sample] == [reference.normalize_text(t) for t in sample]
    assert [fast.topic_of(t) for t in sample] == [reference.topic_of(t) for t in sample]
