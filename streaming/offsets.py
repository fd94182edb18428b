"""Where the ingest consumer's Kafka offsets live: as Delta app transactions in the tables it writes.

Every commit of a batch records, for each Kafka partition in it, the last offset it holds as the app
transaction `tweetops-ingest/<topic>/<partition>`. The offset and the rows land in one atomic
commit, so a crash can never land a message twice or skip one; Kafka's own committed offsets are
only a lag metric. The app id names what the table holds, not who wrote it: renaming the consumer
group does not re-ingest the topic, and two groups writing one table fence each other instead of
duplicating rows. See docs/ingestion.md for the protocol across the two tables.

Offsets only mean something for one incarnation of a topic, so bronze_tweets also records the Kafka
topic id the offsets belong to, as the table property `tweetops.ingest.topic-id.<topic>`. A table
property lives in the table's metadata, which every checkpoint carries and which compaction, vacuum
and log clean-up keep (commit metadata would be dropped with old log files). A topic deleted and
created again gets a new id: the consumer then refuses to start until `--reset-offsets`.
"""
from __future__ import annotations

import logging

from tweetops.core.settings import Settings

NOTHING_LANDED = -1  # the stored offset of a partition before its first batch (or after a reset)

log = logging.getLogger("tweetops.ingest")


class OffsetsWentBackwards(RuntimeError):
    """A stored offset is lower than one this consumer already landed or saw."""


class OffsetsBeyondTopicEnd(RuntimeError):
    """The lakehouse has landed offsets the topic does not have: the topic was recreated or truncated."""


class TopicRecreated(OffsetsBeyondTopicEnd):
    """The topic's id differs from the one the stored offsets belong to: it was deleted and created again."""


class FencedOut(RuntimeError):
    """Another consumer landed offsets of our partitions since we read them: our batch is stale."""


def app_id(topic: str, partition: int) -> str:
    return f"tweetops-ingest/{topic}/{partition}"


def stored_offset(table, app: str) -> int:
    """The last offset landed under this app id in the table's current snapshot."""
    version = table.transaction_version(app)
    return NOTHING_LANDED if version is None else version


def check_forward(table_name: str, app: str, stored: int, new: int) -> None:
    """A stored offset only moves forward (delta-rs does not check it)."""
    if new <= stored:
        raise OffsetsWentBackwards(
            f"{table_name}: refusing to store offset {new} for {app}, already at {stored}; "
            "offsets never go backwards (to re-ingest a recreated topic use `tweetops ingest --reset-offsets`)")


def beyond_topic_end_error(topic: str, partition: int, stored: int, high_watermark: int,
                           table_name: str = "bronze_tweets") -> OffsetsBeyondTopicEnd:
    return OffsetsBeyondTopicEnd(
        f"{table_name} has landed offset {stored} of {topic}[{partition}], but the topic ends at offset "
        f"{high_watermark}: the topic was recreated or truncated (a memory:// broker loses its topics on "
        f"restart). Nothing of this partition was landed. If the topic really starts over, run "
        f"`tweetops ingest --reset-offsets` (records 'nothing landed' for every partition; bronze keeps "
        f"its rows), then ingest again.")


def topic_id_property(topic: str) -> str:
    return f"tweetops.ingest.topic-id.{topic}"


def stored_topic_id(table, topic: str) -> str | None:
    """The Kafka topic id the table's offsets of this topic belong to (None: never recorded, or reset)."""
    return table.metadata().configuration.get(topic_id_property(topic)) or None


def record_topic_id(table, topic: str, topic_id: str | None) -> None:
    """Record the topic id (None: forget it, so the next consumer records the topic it finds)."""
    table.alter.set_table_properties({topic_id_property(topic): topic_id or ""}, raise_if_not_exists=False)
    log.info("%s: offsets of %s now belong to topic id %s", table.table_uri, topic, topic_id)


def topic_recreated_error(topic: str, stored_id: str, current_id: str) -> TopicRecreated:
    return TopicRecreated(
        f"bronze_tweets holds offsets of topic {topic} with id {stored_id}, but the topic {topic} on the broker "
        f"has id {current_id}: the topic was deleted and created again, and its offsets start over. Nothing "
        f"was landed. If the new topic is the one to ingest, run `tweetops ingest --reset-offsets` (records "
        f"'nothing landed' for every partition and the new topic id; bronze keeps its rows), then ingest again.")


def lost_to_retention(next_offset: int, log_start: int) -> int:
    """Messages the consumer needs next that retention already deleted (0 if none)."""
    return max(0, log_start - max(next_offset, 0)) if log_start > 0 else 0


def reset_offsets(settings: Settings, topic: str, partitions: list[int], topic_id: str | None = None) -> dict[int, int]:
    """Record 'nothing landed' for these partitions, so the next ingest starts at the topic's beginning.

    The dead-letter table is reset first: if this is interrupted, bronze still holds the old offset,
    the consumer refuses to start again, and the reset is simply run again. The new topic id is
    recorded last, for the same reason. Returns the old offsets.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake

    from tweetops.core.storage import ensure_bucket
    from tweetops.core.tables import ensure_table, spec

    ensure_bucket(settings)
    old: dict[int, int] = {}
    for name in ("bronze_dead_letters", "bronze_tweets"):
        table = ensure_table(name, settings)
        apps = {p: app_id(topic, p) for p in partitions}
        if name == "bronze_tweets":
            old = {p: stored_offset(table, app) for p, app in apps.items()}
        write_deltalake(table, spec(name).schema.empty_table(), mode="append", commit_properties=CommitProperties(
            app_transactions=[Transaction(app, NOTHING_LANDED) for app in apps.values()],
            custom_metadata={"tweetops.operation": "reset-offsets", "tweetops.topic": topic}))
        log.warning("%s: reset offsets of %s, partitions %s", name, topic, partitions)
        if name == "bronze_tweets":
            table.update_incremental()
            record_topic_id(table, topic, topic_id)
    return old
