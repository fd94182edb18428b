"""Land one decoded batch in the lakehouse, exactly once per Kafka offset, across two Delta tables.

A Delta commit covers one table, and a batch goes to two: bronze_tweets and bronze_dead_letters.
Each table stores its own offsets as app transactions (streaming/offsets.py), and a batch is
committed in this order:

  1. dead letters (only if the batch has new ones), with each partition's last batch offset;
  2. bronze tweets (even zero rows, so offsets advance), with each partition's last batch offset.

The consumer resumes after bronze's offset. A crash between 1 and 2 re-reads messages whose dead
letters are already stored: those at or below the dead-letter table's offset are skipped, so each
message lands exactly once in exactly one table. docs/ingestion.md walks through every crash point.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tweetops.core.storage import ensure_bucket
from tweetops.core.tables import ensure_table
from streaming.offsets import (NOTHING_LANDED, FencedOut, OffsetsWentBackwards, app_id, check_forward,
                               record_topic_id, stored_offset, stored_topic_id, topic_recreated_error)
from streaming.schema import DecodedBatch
from tweetops.core.settings import Settings

log = logging.getLogger("tweetops.ingest")


@dataclass
class Landed:
    tweets: int
    dead_letters: int
    skipped_dead_letters: int      # already stored by an attempt that crashed before its bronze commit
    offsets: dict[int, tuple[int, int]]  # partition -> (first, last) offset of the batch
    reasons: dict[str, int]        # dead letters landed, by reason kind
    bronze_version: int
    seconds: float                 # spent committing
    committed_at: float            # time.monotonic() when the bronze commit returned


def batch_offsets(batch: DecodedBatch) -> dict[int, tuple[int, int]]:
    """partition -> (first, last) offset over the batch's tweets and dead letters."""
    parts = [t.select(["kafka_partition", "kafka_offset"]) for t in (batch.tweets, batch.dead_letters)
             if t.num_rows]
    if not parts:
        return {}
    grouped = pa.concat_tables(parts).group_by("kafka_partition").aggregate(
        [("kafka_offset", "min"), ("kafka_offset", "max")])
    return {p: (lo, hi) for p, lo, hi in zip(grouped["kafka_partition"].to_pylist(),
                                             grouped["kafka_offset_min"].to_pylist(),
                                             grouped["kafka_offset_max"].to_pylist())}


class Lander:
    """Writes batches of one topic; remembers what it landed per partition."""

    def __init__(self, settings: Settings, topic: str):
        self.topic = topic
        ensure_bucket(settings)  # a missing bucket is an OSError, not "table not found", in delta-rs
        self.bronze = ensure_table("bronze_tweets", settings)
        self.dead = ensure_table("bronze_dead_letters", settings)
        self.landed: dict[int, int] = {}       # partition -> last offset in bronze_tweets
        self.dead_landed: dict[int, int] = {}  # partition -> last offset covered by bronze_dead_letters

    def app(self, partition: int) -> str:
        return app_id(self.topic, partition)

    def check_topic_id(self, topic_id: str | None) -> None:
        """Refuse offsets stored for another incarnation of the topic; record the id on first use."""
        if topic_id is None:
            log.warning("the broker gives no topic id for %s: a recreated topic is only noticed once its offsets "
                        "fall behind the stored ones", self.topic)
            return
        from deltalake.exceptions import CommitFailedError

        for _attempt in range(5):
            self.bronze.update_incremental()
            stored = stored_topic_id(self.bronze, self.topic)
            if stored == topic_id:
                return
            if stored is not None:
                raise topic_recreated_error(self.topic, stored, topic_id)
            try:  # first run, or a lakehouse from before topic ids were recorded: these offsets are this topic's
                record_topic_id(self.bronze, self.topic, topic_id)
            except CommitFailedError:
                continue  # a consumer of the group recorded it (or landed) at the same moment: read again
        raise FencedOut(f"could not record the topic id of {self.topic} in bronze_tweets after 5 attempts")

    def load(self, partitions: list[int]) -> dict[int, int]:
        """Read the stored offsets of these partitions from the latest table versions."""
        self.bronze.update_incremental()
        self.dead.update_incremental()
        for p in partitions:
            bronze, dead = stored_offset(self.bronze, self.app(p)), stored_offset(self.dead, self.app(p))
            if bronze < self.landed.get(p, NOTHING_LANDED):
                raise OffsetsWentBackwards(
                    f"bronze_tweets: stored offset of {self.app(p)} is {bronze}, but this consumer already "
                    f"landed up to {self.landed[p]}; someone rewrote the offsets. Stop every consumer and check "
                    "the table history (DeltaTable.history()).")
            self.landed[p], self.dead_landed[p] = bronze, dead
        return {p: self.landed[p] for p in partitions}

    def land(self, batch: DecodedBatch) -> Landed:
        """Commit the batch: dead letters first, then bronze. Raises FencedOut if another consumer won."""
        from deltalake import CommitProperties, Transaction, write_deltalake
        from deltalake.exceptions import CommitFailedError

        started = time.perf_counter()
        offsets = batch_offsets(batch)
        for p, (first, last) in offsets.items():
            landed = self.landed.get(p, NOTHING_LANDED)
            if first <= landed:
                raise OffsetsWentBackwards(f"batch of {self.topic}[{p}] starts at offset {first}, "
                                           f"but offset {landed} is already landed")
            self._check_not_fenced(p)
            check_forward("bronze_tweets", self.app(p), stored_offset(self.bronze, self.app(p)), last)

        dead_letters, skipped = self._new_dead_letters(batch.dead_letters, offsets)
        try:
            if dead_letters.num_rows:
                moved = {p: last for p, (_, last) in offsets.items() if last > self.dead_landed.get(p, NOTHING_LANDED)}
                write_deltalake(self.dead, dead_letters, mode="append", commit_properties=CommitProperties(
                    app_transactions=[Transaction(self.app(p), last) for p, last in moved.items()]))
                self.dead_landed.update(moved)
                log.debug("committed %d dead letters (bronze_dead_letters v%d); committing bronze",
                          dead_letters.num_rows, self.dead.version())
            write_deltalake(self.bronze, batch.tweets, mode="append", commit_properties=CommitProperties(
                app_transactions=[Transaction(self.app(p), last) for p, (_, last) in offsets.items()]))
        except CommitFailedError as exc:
            # delta-rs refuses a commit whose app ids were committed by someone since our snapshot.
            raise FencedOut(f"another consumer landed offsets of {self.topic} partitions "
                            f"{sorted(offsets)} first ({exc}); re-reading offsets") from exc
        self.landed.update({p: last for p, (_, last) in offsets.items()})
        reasons = Counter(r.split(":", 1)[0] for r in dead_letters.column("reason").to_pylist())
        return Landed(batch.tweets.num_rows, dead_letters.num_rows, skipped, offsets, dict(reasons),
                      self.bronze.version(), time.perf_counter() - started, time.monotonic())

    def _check_not_fenced(self, partition: int) -> None:
        """Our snapshots must hold exactly the offsets we believe we landed. A commit of ours on another
        partition refreshes a snapshot, and it may bring a rival's offsets for this one: delta-rs then sees
        no conflict, so the batch (read from our older offsets) would land duplicates."""
        app = self.app(partition)
        for name, table, ours in (("bronze_tweets", self.bronze, self.landed), ("bronze_dead_letters", self.dead,
                                                                                self.dead_landed)):
            stored, believed = stored_offset(table, app), ours.get(partition, NOTHING_LANDED)
            if stored != believed:
                raise FencedOut(f"{name}: offset of {app} is {stored}, but this consumer landed up to {believed}: "
                                "another consumer landed this partition; re-reading offsets")

    def _new_dead_letters(self, dead_letters: pa.Table, offsets: dict[int, tuple[int, int]]) -> tuple[pa.Table, int]:
        """Drop dead letters an earlier, crashed attempt already stored (offset <= the table's offset)."""
        stored = {p: self.dead_landed[p] for p, (first, _) in offsets.items()
                  if self.dead_landed.get(p, NOTHING_LANDED) >= first}
        if not dead_letters.num_rows or not stored:
            return dead_letters, 0
        keep = None
        for p, offset in stored.items():
            old = pc.and_(pc.equal(dead_letters["kafka_partition"], p),
                          pc.less_equal(dead_letters["kafka_offset"], offset))
            keep = pc.invert(old) if keep is None else pc.and_(keep, pc.invert(old))
        kept = dead_letters.filter(keep)
        return kept, dead_letters.num_rows - kept.num_rows
