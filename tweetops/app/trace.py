"""`tweetops trace ID`: one tweet's path through the lakehouse, table by table.

Bronze (every delivery, with its Kafka partition and offset and the bronze_tweets version that
landed it), dead letters whose raw message names the id, silver (with the gate run that validated it
and the bronze version it had read) or quarantine (with the gate run and the expectations it
failed), its features row and the champion's prediction with the model version and the
gold_features version that model was trained on. The Airflow UI's tweet lookup shows the same
(tweetops/app/ui). Reading never creates a table.

Example:
  tweetops trace 570306133677760513
"""
from __future__ import annotations

import argparse
import json

from tweetops.core.settings import Settings, load_settings

# The path of a tweet, in pipeline order: table -> columns shown (None: every column).
STEPS: dict[str, list[str] | None] = {
    "bronze_tweets": ["kafka_topic", "kafka_partition", "kafka_offset", "ingested_at", "event_date", "created_at",
                      "lang", "label", "text"],
    "bronze_dead_letters": ["reason", "kafka_topic", "kafka_partition", "kafka_offset", "received_at", "raw"],
    "silver_tweets": ["event_date", "validated_at", "bronze_version", "gate_run_id", "label", "text"],
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
    for row in found["bronze_tweets"]:
        row["landed_in_bronze_version"] = landing_version(row["kafka_topic"], row["kafka_partition"],
                                                          row["kafka_offset"], settings)
    for row in found["gold_predictions"]:
        row["model_features_version"] = model_features_version(row["model_name"], row["model_version"], settings)
    return found


def landing_version(topic: str, partition: int, offset: int, settings: Settings) -> int | None:
    """The bronze_tweets version whose commit landed this Kafka offset: the first version whose stored
    offset for the partition (an app transaction, streaming/offsets.py) reaches it. The offsets only
    grow, so a binary search over versions finds it; compaction does not move them."""
    from tweetops.core.tables import open_table
    from streaming.offsets import app_id, stored_offset

    app = app_id(topic, int(partition))
    try:
        low, high = 0, open_table("bronze_tweets", settings).version()
    except LookupError:
        return None

    def reached(version: int) -> bool | None:
        try:
            return stored_offset(open_table("bronze_tweets", settings, version=version), app) >= offset
        except Exception:  # noqa: BLE001 - an old version whose log was cleaned up
            return None

    if not reached(high):
        return None   # landed without an offset (a seeded table): no version to name
    while low < high:
        middle = (low + high) // 2
        if reached(middle):
            high = middle
        else:
            low = middle + 1
    return low


def model_features_version(model_name: str, version: str, settings: Settings) -> str | None:
    """The gold_features version a registered model was trained on (its lineage tag), if MLflow answers."""
    from ml import contract, model_access
    from tweetops.core.settings import host_port

    host, port = host_port(settings.mlflow_tracking_uri, 5000)
    if settings.mlflow_tracking_uri.startswith("http") and not _answers(host, port):
        return None   # no registry running: do not wait for MLflow's retries
    try:
        tags = model_access.lineage(settings, version, model_name=model_name, complete=False)
    except Exception:  # noqa: BLE001 - the registry is down or the version deleted: say unknown
        return None
    return tags.get(contract.TAG_FEATURES_VERSION)


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


def _answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _text(value):
    return value if value is None or isinstance(value, (int, float)) else str(value)
