"""The one normalisation and the feature counts used at feature, training and prediction time."""
from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ml.features import feature_frame, split_of
from tweetops.core.text import normalize_text, tweet_features


@pytest.mark.parametrize("raw, expected", [
    ("@united thanks!! http://t.co/M93UabC", "<user> thanks!! <url>"),
    ("Flight 1750 at 3:50pm, gate B7", "flight <num> at <num>, gate b7"),
    ("RT @annaderocher: Great explainer http://t.co/M93U", "rt <user>: great explainer <url>"),
    ("truncated retweet ends in http", "truncated retweet ends in <url>"),
    ("see www.example.com/page now", "see <url> now"),
    ("Soooooo goooood", "sooo goood"),
    ("#iPhone6 is GREAT", "#iphone6 is great"),
    ("mail me: jane@example.com", "mail me: jane@example.com"),
    ("  lots   of\nspace\t", "lots of space"),
    ("", ""),
])
def test_normalize_text_replaces_urls_mentions_numbers(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_repairs_mojibake():
    # Real corpus text: curly apostrophes and emojis were mangled before publication.
    assert normalize_text("I don\u00d5\u00a2_\x8a\u00ce_\x86\u00a2t want either!") == "i don t want either!"
    assert normalize_text("cars_\u00d1_.no thank you") == "cars .no thank you"
    assert normalize_text("Caf\u00c3\u00a9 &amp; bar") == "caf\u00e9 & bar"


@pytest.mark.parametrize("raw", [
    "@united thanks!! http://t.co/M93UabC", "Flight 1750 at 3:50pm", "Soooooo goooood :) <3",
    "RT @x: #DeflateGate 10,000 fans http", "Ünïcödé café 😀",
])
def test_normalize_text_is_idempotent(raw):
    # Training reads already-normalised text; serving normalises raw text: both must agree.
    once = normalize_text(raw)
    assert normalize_text(once) == once


def test_mentions_and_urls_do_not_change_the_normalised_content():
    base = normalize_text("Thanks for the great flight")
    assert normalize_text("@jane_doe Thanks for the great flight").replace("<user> ", "") == base
    assert normalize_text("Thanks for the great flight https://t.co/abc").replace(" <url>", "") == base


def test_tweet_features_counts():
    f = tweet_features("@united @delta WHY is my flight late?! #fail #neveragain :( http://t.co/x 😀")
    assert f["n_mentions"] == 2
    assert f["n_hashtags"] == 2
    assert f["n_urls"] == 1
    assert f["n_emojis"] == 2
    assert f["n_exclamations"] == 1
    assert f["n_questions"] == 1
    assert f["topic"] == "airline"
    assert f["token_count"] == len(f["text_normalized"].split())
    assert 0 < f["uppercase_ratio"] < 1


def test_uppercase_ratio_ignores_urls_and_handles_no_letters():
    assert tweet_features("GREAT http://t.co/abcdef")["uppercase_ratio"] == 1.0
    assert tweet_features("123 !!!")["uppercase_ratio"] == 0.0


def test_split_is_a_stable_80_10_10_function_of_the_id():
    ids = [f"tweet-{i}" for i in range(20000)]
    splits = pd.Series([split_of(i) for i in ids]).value_counts(normalize=True)
    assert splits["train"] == pytest.approx(0.8, abs=0.015)
    assert splits["validation"] == pytest.approx(0.1, abs=0.01)
    assert splits["test"] == pytest.approx(0.1, abs=0.01)
    assert [split_of(i) for i in ids[:100]] == [split_of(i) for i in ids[:100]]


def test_split_does_not_move_when_rows_are_added():
    def tweets(n):
        return pd.DataFrame({"id": [f"id-{i}" for i in range(n)], "text": ["some tweet text"] * n,
                             "event_date": [date(2026, 1, 1)] * n, "label": ["neutral"] * n})

    small = feature_frame(tweets(200)).set_index("id")["split"]
    large = feature_frame(tweets(1000).sample(frac=1, random_state=3)).set_index("id")["split"]
    assert (large.loc[small.index] == small).all()
    assert set(small[small == "test"].index) <= set(large[large == "test"].index)


def test_feature_frame_has_the_catalog_columns_and_types():
    from tweetops.core.tables import spec

    frame = feature_frame(pd.DataFrame({"id": ["a", "b"], "text": ["Hi @x!", "No label here"],
                                        "event_date": [date(2026, 1, 1)] * 2, "label": ["positive", None]}))
    assert list(frame.columns) == [f.name for f in spec("gold_features").schema]
    assert frame["label"].tolist() == ["positive", None]
    assert str(frame["n_mentions"].dtype) == "int32"
    assert feature_frame(frame.iloc[0:0].rename(columns={"text_normalized": "text"})).empty
