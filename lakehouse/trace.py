"""`tweetops trace ID`: one tweet's path through the lakehouse, table by table.

Bronze (every delivery, with its Kafka partition and offset), dead letters whose raw message names
the id, silver or quarantine (with the expectations it failed), its features row and the
champion's prediction with the model version. The Airflow UI's tweet lookup shows the same
(tweetops/ui). Reading never creates a table.

Example:
  tweetops trace 570306133677760513
"""
from __future__ import annotations

import argparse
import json

from tweetops.settings import Settings, load_settings

# The path of a tweet, in pipeline order: table -> columns shown (None: every column).
STEPS: dict[str, list[str] | None] = {
    "bronze_tweets": ["kafka_topic", "kafka_partition", "kafka_offset", "ingested_at", "event_date", "created_at",
                      "lang", "label", "text"],
    "bronze_dead_letters": ["reason", "kafka_topic", "kafka_partition", "kafka_offset", "received_at", "raw"],
    "silver_tweets": ["event_date", "validated_at", "bronze_version", "label", "text"],
    "silver_quarantine": ["event_date", "quarantined_at", "run_id", "failed_expectations", "text"],
    "gold_features": None,
    "gold_predictions": ["event_date", "label", "proba_negative", "proba_neutral", "proba_positive",
                         "model_name", "model_version", "scored_at"],
}
MAX_DEAD_LETTER_BYTES = 500


def trace_tweet(tweet_id: str, settings: Settings | None = None) -> dict[str, list[dict]]:
    """Table name -> the rows of that table about `tweet_id` (an empty list where it never got)."""
    import pyarrow.compute as pc

    from lakehouse.sql import table_dataset

    settings = settings or load_settings()
    needle = tweet_id.encode()
    found: dict[str, list[dict]] = {}
    for name, columns in STEPS.items():
        data = table_dataset(name, settings)
        if name == "bronze_dead_letters":
            # Dead letters have no parsed id: look for it in the raw message.
            table = data.to_table() if hasattr(data, "to_table") else data
            rows = [r for r in table.to_pylist() if r["raw"] and needle in r["raw"]]
        else:
            flt = pc.field("id") == tweet_id
            table = data.to_table(filter=flt) if hasattr(data, "to_table") else data.filter(flt)
            rows = table.to_pylist()
        found[name] = [_shown(row, columns) for row in rows]
    return found


def _shown(row: dict, columns: list[str] | None) -> dict:
    row = {k: row[k] for k in (columns or row) if k in row}
    raw = row.get("raw")
    if isinstance(raw, bytes):
        text = raw[:MAX_DEAD_LETTER_BYTES].decode("utf-8", errors="replace")
        row["raw"] = text + ("..." if len(raw) > MAX_DEAD_LETTER_BYTES else "")
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the tweet id")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    found = trace_tweet(args.id, load_settings())
    if args.format == "json":
        print(json.dumps(found, default=str))
    else:
        import pyarrow as pa

        from lakehouse.sql import format_table

        print(f"tweet {args.id}:")
        for name, rows in found.items():
            if not rows:
                print(f"\n{name}: -")
                continue
            print(f"\n{name}:")
            print(format_table(pa.Table.from_pylist([{k: _text(v) for k, v in r.items()} for r in rows])))
    return 0 if any(found.values()) else 1


def _text(value):
    return value if value is None or isinstance(value, (int, float)) else str(value)
