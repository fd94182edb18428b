"""The lakehouse catalog: every Delta table TweetOps knows, its schema, partitioning and purpose.

Tables are created empty on first use, from the schema declared here, on a local or S3 root.
Medallion layers: bronze (raw, as landed), silver (validated), gold (features, predictions, metrics).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from tweetops.core.storage import ensure_bucket, storage_options, table_uri
from tweetops.core.settings import Settings, load_settings

UTC_TS = pa.timestamp("us", tz="UTC")
LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class TableSpec:
    name: str
    layer: str
    description: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()


def _schema(*columns: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype, nullable=nullable) for name, dtype, nullable in columns])


TWEET_COLUMNS = (
    ("id", pa.string(), False),
    ("text", pa.string(), False),
    ("created_at", UTC_TS, False),
    ("user", pa.string(), True),
    ("lang", pa.string(), True),
    ("label", pa.string(), True),
    ("extra", pa.string(), True),          # JSON object of fields beyond the schema, kept verbatim
    ("event_date", pa.date32(), False),    # UTC date of created_at: the partition and data interval
)
KAFKA_COLUMNS = (
    ("kafka_topic", pa.string(), False),
    ("kafka_partition", pa.int32(), False),
    ("kafka_offset", pa.int64(), False),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in [
    TableSpec(
        "bronze_tweets", "bronze",
        "Raw tweets exactly as landed from Kafka, one row per message (duplicates kept).",
        _schema(*TWEET_COLUMNS, ("ingested_at", UTC_TS, False), *KAFKA_COLUMNS),
        ("event_date",),
    ),
    TableSpec(
        "bronze_dead_letters", "bronze",
        "Messages that could not be decoded or failed the tweet schema, with the raw bytes and why.",
        _schema(("raw", pa.binary(), True), ("kafka_key", pa.binary(), True), ("reason", pa.string(), False),
                *KAFKA_COLUMNS, ("received_at", UTC_TS, False), ("ingest_date", pa.date32(), False)),
        ("ingest_date",),
    ),
    TableSpec(
        "silver_tweets", "silver",
        "Validated tweets, deduplicated by id, text normalised; one partition per data interval.",
        _schema(*TWEET_COLUMNS, ("validated_at", UTC_TS, False), ("bronze_version", pa.int64(), False),
                ("gate_run_id", pa.string(), True)),   # the gate run that validated it (null in older rows)
        ("event_date",),
    ),
    TableSpec(
        "silver_quarantine", "silver",
        "Bronze rows that failed the quality gate, with the expectations they failed.",
        _schema(*TWEET_COLUMNS, ("failed_expectations", pa.string(), False),
                ("quarantined_at", UTC_TS, False), ("run_id", pa.string(), True)),
        ("event_date",),
    ),
    TableSpec(
        "gold_features", "gold",
        "Model features per tweet: normalised text, counts, topic and a stable train/validation/test split.",
        _schema(("id", pa.string(), False), ("event_date", pa.date32(), False),
                ("text_normalized", pa.string(), False), ("token_count", pa.int32(), False),
                ("n_hashtags", pa.int32(), False), ("n_mentions", pa.int32(), False),
                ("n_urls", pa.int32(), False), ("n_emojis", pa.int32(), False),
                ("n_exclamations", pa.int32(), False), ("n_questions", pa.int32(), False),
                ("uppercase_ratio", pa.float64(), False), ("topic", pa.string(), True),
                ("label", pa.string(), True), ("split", pa.string(), False)),
        ("event_date",),
    ),
    TableSpec(
        "gold_predictions", "gold",
        "The champion's prediction for every silver tweet, with the model version that made it.",
        _schema(("id", pa.string(), False), ("event_date", pa.date32(), False), ("label", pa.string(), False),
                ("proba_negative", pa.float64(), False), ("proba_neutral", pa.float64(), False),
                ("proba_positive", pa.float64(), False), ("model_name", pa.string(), False),
                ("model_version", pa.string(), False), ("scored_at", UTC_TS, False)),
        ("event_date",),
    ),
    TableSpec(
        "gold_model_metrics", "gold",
        "Evaluation metrics of every trained model version, one row per metric.",
        _schema(("model_name", pa.string(), False), ("model_version", pa.string(), True),
                ("run_id", pa.string(), False), ("dataset", pa.string(), False),
                ("metric", pa.string(), False), ("value", pa.float64(), True),
                ("logged_at", UTC_TS, False)),
    ),
    TableSpec(
        "gold_drift_metrics", "gold",
        "Every drift and live-quality check: one row per score, with its threshold and verdict.",
        _schema(("checked_at", UTC_TS, False), ("window_start", UTC_TS, False), ("window_end", UTC_TS, False),
                ("model_version", pa.string(), True), ("check", pa.string(), False),
                ("value", pa.float64(), True), ("threshold", pa.float64(), True),
                ("drifted", pa.bool_(), False), ("report_uri", pa.string(), True)),
    ),
    TableSpec(
        "gold_promotion_log", "gold",
        "Every promotion, refusal and rollback of the champion alias: who, when, metrics, why.",
        _schema(("at", UTC_TS, False), ("actor", pa.string(), False), ("action", pa.string(), False),
                ("model_name", pa.string(), False), ("from_version", pa.string(), True),
                ("to_version", pa.string(), True), ("metrics", pa.string(), True),
                ("reason", pa.string(), False)),
    ),
    TableSpec(
        "gold_shadow_predictions", "gold",
        "Requests scored by both champion and challenger (shadow and canary serving): both labels and "
        "versions, which one answered, agreement, the true label when the request had one. No text.",
        _schema(("scored_at", UTC_TS, False), ("id", pa.string(), True), ("route", pa.string(), False),
                ("answered_by", pa.string(), False), ("model_name", pa.string(), False),
                ("champion_version", pa.string(), False), ("champion_label", pa.string(), False),
                ("challenger_version", pa.string(), False), ("challenger_label", pa.string(), False),
                ("agree", pa.bool_(), False), ("label", pa.string(), True)),
    ),
    TableSpec(
        "gold_erasure_log", "gold",
        "Every erasure (tweetops forget): who, when, rows and files removed per table, affected model "
        "versions; no name, id or text of the erased tweets.",
        _schema(("erasure_id", pa.string(), False), ("at", UTC_TS, False), ("actor", pa.string(), False),
                ("rows_deleted", pa.int64(), False), ("rows_per_table", pa.string(), False),
                ("table_versions", pa.string(), False), ("files_removed", pa.string(), False),
                ("model_versions", pa.string(), False), ("registry", pa.string(), False)),
    ),
]}


def spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(sorted(TABLES))}") from None


def ensure_table(name: str, settings: Settings | None = None):
    """Open the table, creating it empty from its declared schema on first use."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    settings = settings or load_settings()
    table = spec(name)
    uri, options = table_uri(name, settings), storage_options(settings)
    try:
        return DeltaTable(uri, storage_options=options)
    except (TableNotFoundError, OSError):
        # OSError: on a fresh MinIO/S3 the bucket itself is missing (NoSuchBucket).
        ensure_bucket(settings)
        try:
            return DeltaTable.create(uri, table.schema, partition_by=list(table.partition_by) or None,
                                     mode="ignore", name=name, description=table.description,
                                     storage_options=options)
        except Exception:
            # Another process created it between our read and our create: open theirs.
            return DeltaTable(uri, storage_options=options)


def open_table(name: str, settings: Settings | None = None, version: int | None = None):
    """Open an existing table (optionally at a version); a clear error if it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    settings = settings or load_settings()
    spec(name)
    try:
        return DeltaTable(table_uri(name, settings), version=version, storage_options=storage_options(settings))
    except (TableNotFoundError, OSError):  # OSError: the S3 bucket itself does not exist yet
        raise LookupError(f"table {name!r} does not exist yet at {table_uri(name, settings)}") from None


def rows_in_dates(name: str, start, end, settings: Settings | None = None) -> int:
    """Rows of table `name` whose date partition (its first partition column) lies in [start, end),
    from the Delta log's statistics: no data file is read. Files without statistics count 0."""
    from datetime import date, datetime

    from tweetops.core.intervals import day_interval

    def as_date(value) -> date:  # a partition value, as the Delta log gives it
        if isinstance(value, datetime):
            return value.date()
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])

    column = spec(name).partition_by[0]
    start, end = day_interval(start, end)
    actions = pa.table(ensure_table(name, settings).get_add_actions(flatten=True)).to_pylist()
    return sum(int(a.get("num_records") or 0) for a in actions
               if a.get(f"partition.{column}") is not None and start <= as_date(a[f"partition.{column}"]) < end)
