"""`tweetops ingest`: land the tweets topic in the bronze Delta tables, exactly once.

Consumes in batches (by count, bytes or time), decodes each batch into a strict pyarrow table
(streaming/schema.py) and commits it with its offsets as Delta app transactions
(streaming/landing.py). On start and on every partition assignment it seeks to the offsets stored
in Delta; Kafka's committed offsets are only a lag metric. While one batch commits, the next is
consumed and decoded. `--follow` runs until SIGTERM/SIGINT (which finish the current batch);
`--until-idle` drains the topic and exits. Design: docs/ingestion.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from streaming.schema import MAX_MESSAGE_BYTES
from tweetops.core.settings import Settings, load_settings

log = logging.getLogger("tweetops.ingest")

BATCH_MESSAGES = 5_000  # bigger batches commit less often but cost memory (aim: < 300 MB resident)
BATCH_BYTES = 32 * 1024 * 1024
FLUSH_INTERVAL_S = 1.0
IDLE_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0  # --until-idle: stop if the group assigns us nothing for this long
# Tansu holds a JoinGroup for half the session timeout (docs/ingestion.md): keep it short.
SESSION_TIMEOUT_MS = 6000
# librdkafka's prefetch queue. 16 MB keeps the consumer under 300 MB resident; 32 MB lands ~45%
# faster from a backlog for ~15-20 MB more (measured in docs/ingestion.md); 8 MB halves the rate.
PREFETCH_MB = 16


@dataclass
class IngestOptions:
    follow: bool = False                     # False: drain what is there, then return (--until-idle)
    topic: str | None = None                 # default: settings.topic
    group: str | None = None                 # default: settings.consumer_group
    batch_messages: int = BATCH_MESSAGES
    batch_bytes: int = BATCH_BYTES
    flush_interval: float = FLUSH_INTERVAL_S  # seconds from a batch's first message to its flush
    max_message_bytes: int = MAX_MESSAGE_BYTES
    idle_timeout: float = IDLE_TIMEOUT_S     # --until-idle: give up waiting for messages after this
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    metrics_port: int | None = None           # serve Prometheus metrics on this port
    metrics_host: str = "127.0.0.1"
    prefetch_mb: int = PREFETCH_MB             # librdkafka's queue and fetch size
    # Builds the object told of each bronze commit (`landed(version)`, `tick()`, `close()`), e.g. the
    # Airflow asset-event notifier that `tweetops ingest --notify-airflow` wires in (the orchestration
    # layer: streaming does not know who listens).
    notifier_factory: Callable[[Settings], Any] | None = None


@dataclass
class IngestStats:
    messages: int = 0
    tweets: int = 0
    dead_letters: int = 0
    skipped_dead_letters: int = 0
    batches: int = 0
    fenced: int = 0
    seconds: float = 0.0                     # the whole run, including joining the group
    landing_seconds: float = 0.0             # first message received -> last batch committed
    messages_per_second: float = 0.0         # messages / landing_seconds
    landing_cpu_seconds: float = 0.0         # CPU time of all threads over landing_seconds
    bronze_version: int | None = None
    landed_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset this run landed


class Ingestor:
    """One consumer of the group: consume, decode, land; one instance per run."""

    def __init__(self, settings: Settings, options: IngestOptions, stop: threading.Event | None = None):
        from streaming.metrics import ingest_metrics

        self.settings, self.options = settings, options
        self.topic = options.topic or settings.topic
        self.group = options.group or settings.consumer_group
        self.stop = stop or threading.Event()
        self.metrics = ingest_metrics()
        self.stats = IngestStats()
        self.buffer: list = []                      # confluent_kafka Message objects
        self.buffer_bytes = 0
        self.buffer_started = 0.0
        self.pending: tuple[Future, int, float] | None = None  # (landing, messages, first message time)
        self.failed = False
        self.assigned: dict[int, int] = {}          # partition -> offset it was assigned at
        self.unverified: dict[int, int] = {}        # partition -> cached high watermark at assignment
        self.at_end: set[int] = set()               # partitions whose end was reached since their last message
        self.last_activity = time.monotonic()
        self.ever_assigned = False
        self.joined = False                         # False while a (re)join of the group is in progress
        self.first_message_at: float | None = None
        self.first_message_cpu = 0.0
        self.notifier = None

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> IngestStats:
        from confluent_kafka import Consumer

        from streaming.landing import Lander
        from streaming.topic import ensure_topic, topic_id

        started = time.monotonic()
        ensure_topic(self.settings, self.topic)
        self.lander = Lander(self.settings, self.topic)
        self.lander.check_topic_id(topic_id(self.settings, self.topic))  # refuse a recreated topic
        _warm_up()
        server = None
        if self.options.metrics_port is not None:
            from streaming.metrics import serve_metrics
            server = serve_metrics(self.options.metrics_port, self.options.metrics_host)
        if self.options.notifier_factory is not None:
            self.notifier = self.options.notifier_factory(self.settings)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tweetops-land")
        self.consumer = Consumer(consumer_config(self.settings, self.group, self.options.session_timeout_ms,
                                                 self.options.prefetch_mb))
        log.info("ingesting %s (group %s) into %s, %s", self.topic, self.group, self.settings.lakehouse_uri,
                 "until stopped" if self.options.follow else "until idle")
        try:
            self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                    on_lost=self._on_lost)
            while not self.stop.is_set():
                self._poll()
                if self.notifier is not None:
                    self.notifier.tick()
                if not self.options.follow and self._idle():
                    break
            self._flush()
            self._wait_pending()
            self._finish_join()
        except BaseException:
            self.failed = True  # do not land anything more while closing
            raise
        finally:
            try:
                self.consumer.close()  # leaves the group; the revoke callback finds nothing left to land
            finally:
                self.executor.shutdown(wait=True)
                if self.notifier is not None:
                    self.notifier.close()
                if server is not None:
                    server.shutdown()
        self.stats.seconds = round(time.monotonic() - started, 3)
        if self.stats.landing_seconds:
            self.stats.messages_per_second = round(self.stats.messages / self.stats.landing_seconds, 1)
        log.info("stopped: %d messages -> %d tweets, %d dead letters in %d batches",
                 self.stats.messages, self.stats.tweets, self.stats.dead_letters, self.stats.batches)
        return self.stats

    def _poll(self) -> None:
        opts = self.options
        wait = 0.2
        if self.buffer:
            wait = max(0.0, min(wait, self.buffer_started + opts.flush_interval - time.monotonic()))
        asked_at = time.monotonic()
        messages = self.consumer.consume(min(10_000, opts.batch_messages - len(self.buffer)), wait)
        if messages:
            now = time.monotonic()
            self.last_activity = now
            if self.first_message_at is None:
                self.first_message_at, self.first_message_cpu = now, time.process_time()
            if not self.buffer:
                # consume() waits up to `wait` for more: the first message may have come that early.
                self.buffer_started = asked_at
            data = messages
            errors = [m for m in messages if m.error() is not None]
            if errors:
                data = [m for m in messages if m.error() is None]
            if errors or self.at_end:
                self._track_ends(data, errors)
            self.buffer.extend(data)
            self.buffer_bytes += sum(map(len, data))
            self.metrics.messages.labels(self.topic).inc(len(data))
        self._check_topic_end()
        if self.buffer and (len(self.buffer) >= opts.batch_messages or self.buffer_bytes >= opts.batch_bytes
                            or time.monotonic() - self.buffer_started >= opts.flush_interval):
            self._flush()
        self._collect_pending()  # report a committed batch (log, metrics, lag) as soon as it is done

    def _track_ends(self, data: list, errors: list) -> None:
        """A partition is at its end when an end-of-partition event follows its last message."""
        from confluent_kafka import KafkaError

        last: dict[int, int] = {}
        for m in data:
            last[m.partition()] = m.offset()
        self.at_end.difference_update(last)
        for m in errors:
            if m.error().code() == KafkaError._PARTITION_EOF:
                if last.get(m.partition(), -1) < m.offset():
                    self.at_end.add(m.partition())
            else:
                self._on_error(m.error(), m.partition())

    def _finish_join(self) -> None:
        """Wait for a join in progress before leaving: Tansu 0.6 wedges a group for good when a member
        leaves in the middle of a join (every later member waits forever)."""
        deadline = time.monotonic() + 2 * self.options.session_timeout_ms / 1000
        while not self.joined and time.monotonic() < deadline:
            self.consumer.consume(1000, 0.2)  # not landed: the next run reads them again from Delta offsets
        if not self.joined:
            log.warning("leaving the group in the middle of a join; if the next consumer of group %s is never "
                        "assigned partitions, use another group name or restart the broker", self.group)

    def _idle(self) -> bool:
        if self.buffer:
            return False
        if self.assigned and self.at_end.issuperset(self.assigned):
            self._wait_pending()
            return not self.buffer and self.at_end.issuperset(self.assigned)
        # Joining the group takes a few seconds (Tansu holds JoinGroup for half the session timeout).
        timeout = self.options.idle_timeout if self.ever_assigned else max(self.options.idle_timeout, JOIN_TIMEOUT_S)
        if time.monotonic() - self.last_activity > timeout:
            log.info("no message for %.0f s: stopping (assigned partitions: %s)", self.options.idle_timeout,
                     sorted(self.assigned) or "none")
            self._wait_pending()
            return True
        return False

    # --- batches ----------------------------------------------------------------------------

    def _flush(self, reseek: bool = True) -> None:
        """Decode the buffer and hand it to the landing thread (after the previous batch committed)."""
        from streaming.schema import decode_batch

        if not self.buffer:
            return
        messages, self.buffer, self.buffer_bytes = self.buffer, [], 0
        log.debug("flushing %d messages received over %.3f s", len(messages), time.monotonic() - self.buffer_started)
        batch = decode_batch([m.value() for m in messages], [m.partition() for m in messages],
                             [m.offset() for m in messages], [m.key() for m in messages], self.topic,
                             datetime.now(timezone.utc), self.options.max_message_bytes,
                             timedelta(seconds=self.settings.max_future_skew_s))
        if not self._wait_pending(reseek):
            return  # fenced: this batch was read from stale offsets; we re-seeked
        self.pending = (self.executor.submit(self.lander.land, batch), len(messages), self.buffer_started)

    def _collect_pending(self) -> None:
        if self.pending is not None and self.pending[0].done():
            self._wait_pending()

    def _wait_pending(self, reseek: bool = True) -> bool:
        """Wait for the batch being landed; False if it was fenced out (then everything buffered is dropped)."""
        from streaming.offsets import FencedOut

        if self.pending is None:
            return True
        (landing, messages, first_message), self.pending = self.pending, None
        try:
            landed = landing.result()
        except FencedOut as exc:
            log.warning("%s", exc)
            self.stats.fenced += 1
            self.buffer, self.buffer_bytes = [], 0
            if reseek:
                self._seek_to_stored(list(self.assigned))
            return False
        self._record(landed, messages, landed.committed_at - first_message)
        return True

    def _record(self, landed, messages: int, latency: float) -> None:
        m, stats = self.metrics, self.stats
        stats.messages += messages
        stats.tweets += landed.tweets
        stats.dead_letters += landed.dead_letters
        stats.skipped_dead_letters += landed.skipped_dead_letters
        stats.batches += 1
        stats.bronze_version = landed.bronze_version
        stats.landed_offsets.update({p: last for p, (_, last) in landed.offsets.items()})
        stats.landing_seconds = round(landed.committed_at - self.first_message_at, 3)
        stats.landing_cpu_seconds = round(time.process_time() - self.first_message_cpu, 3)
        m.rows.labels(self.topic, "bronze_tweets").inc(landed.tweets)
        m.rows.labels(self.topic, "bronze_dead_letters").inc(landed.dead_letters)
        for reason, count in landed.reasons.items():
            m.dead_letters.labels(self.topic, reason).inc(count)
        m.batches.labels(self.topic).inc()
        m.batch_seconds.labels(self.topic).observe(landed.seconds)
        m.last_commit.labels(self.topic).set(time.time())
        if self.notifier is not None:
            self.notifier.landed(landed.bronze_version)
        lag = self._update_lag()
        self._commit_to_kafka(landed.offsets)
        ranges = " ".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(landed.offsets.items()))
        log.info("batch %d: %d messages -> %d tweets + %d dead letters | offsets %s | bronze v%d | "
                 "commit %.0f ms, first message to commit %.0f ms | lag %s",
                 stats.batches, messages, landed.tweets, landed.dead_letters, ranges, landed.bronze_version,
                 landed.seconds * 1000, latency * 1000, "?" if lag is None else lag)

    def _commit_to_kafka(self, offsets: dict[int, tuple[int, int]]) -> None:
        # Only a lag metric for Kafka tools: positions come from Delta.
        from confluent_kafka import TopicPartition

        mine = [TopicPartition(self.topic, p, last + 1) for p, (_, last) in offsets.items() if p in self.assigned]
        if mine:
            try:
                self.consumer.commit(offsets=mine, asynchronous=True)
            except Exception as exc:  # noqa: BLE001 - a lag metric must never stop ingestion
                log.debug("kafka commit for lag failed: %s", exc)

    def _update_lag(self) -> int | None:
        from confluent_kafka import TopicPartition

        if not self.assigned:
            return None
        total, known = 0, False
        positions = self.consumer.position([TopicPartition(self.topic, p) for p in self.assigned])
        for tp in positions:
            # The fetch high watermark: Tansu's ListOffsets "latest" is wrong (docs/ingestion.md).
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or tp.offset < 0:
                continue
            lag = max(0, high - tp.offset)
            self.metrics.lag.labels(self.topic, str(tp.partition)).set(lag)
            total, known = total + lag, True
        return total if known else None

    # --- partitions -------------------------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        stored = self.lander.load([tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = stored[tp.partition] + 1 if stored[tp.partition] >= 0 else OFFSET_BEGINNING
            self.assigned[tp.partition] = stored[tp.partition] + 1
            log_start = self._log_start(consumer, tp.partition)
            if self._skip_retention_gap(tp.partition, stored[tp.partition] + 1, log_start):
                tp.offset = self.assigned[tp.partition] = log_start
            self.unverified[tp.partition] = consumer.get_watermark_offsets(tp, cached=True)[1]
            self.at_end.discard(tp.partition)
        consumer.assign(partitions)
        self.last_activity, self.ever_assigned, self.joined = time.monotonic(), True, True
        log.info("assigned %s partitions %s, resuming at offsets %s", self.topic,
                 sorted(self.assigned), {p: o for p, o in sorted(self.assigned.items())})

    def _on_revoke(self, consumer, partitions) -> None:
        # We still own the partitions: land what we hold so the next owner starts after it.
        if self.failed:
            self.buffer, self.pending = [], None
        else:
            self._flush(reseek=False)
            self._wait_pending(reseek=False)
        self._forget(partitions)
        self.joined = False
        consumer.unassign()
        log.info("revoked %s partitions %s", self.topic, sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer, partitions) -> None:
        # Someone else may own them already: drop what we hold; a landing in flight is fenced by Delta.
        self.buffer, self.buffer_bytes = [], 0
        try:
            self._wait_pending(reseek=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("landing after losing partitions failed: %s", exc)
        self._forget(partitions)
        self.joined = False
        consumer.unassign()
        log.warning("lost %s partitions %s", self.topic, sorted(tp.partition for tp in partitions))

    def _forget(self, partitions) -> None:
        for tp in partitions:
            self.assigned.pop(tp.partition, None)
            self.unverified.pop(tp.partition, None)
            self.at_end.discard(tp.partition)
            try:
                self.metrics.lag.remove(self.topic, str(tp.partition))
            except KeyError:
                pass

    def _seek_to_stored(self, partitions: list[int]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = self.lander.load(partitions)
        for p in partitions:
            offset = stored[p] + 1 if stored[p] >= 0 else OFFSET_BEGINNING
            self.assigned[p] = stored[p] + 1
            self.at_end.discard(p)
            self.consumer.seek(TopicPartition(self.topic, p, offset))
        log.info("re-seeked %s partitions to stored offsets %s", self.topic, stored)

    def _check_topic_end(self) -> None:
        """Fail if Delta holds offsets beyond the end of the topic (it was recreated)."""
        from confluent_kafka import TopicPartition

        from streaming.offsets import beyond_topic_end_error

        for p, stale_high in list(self.unverified.items()):
            start = self.assigned.get(p, 0)
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            if high < 0 or start <= high or (stale_high >= 0 and high == stale_high):
                if high >= 0 and start <= high:
                    del self.unverified[p]
                continue  # no fetch answered since the assignment, or all is well
            raise beyond_topic_end_error(self.topic, p, start - 1, high)

    def _log_start(self, consumer, partition: int) -> int:
        """The partition's first offset still in the log (ListOffsets "earliest"); 0 if unknown."""
        from confluent_kafka import TopicPartition

        try:
            return max(0, consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)[0])
        except Exception as exc:  # noqa: BLE001 - then only an out-of-range error will tell
            log.debug("no log start offset for %s[%d]: %s", self.topic, partition, exc)
            return 0

    def _skip_retention_gap(self, partition: int, next_offset: int, log_start: int) -> bool:
        """Retention deleted messages we had not landed yet: say so, count them, go on from the log start."""
        from streaming.offsets import lost_to_retention

        lost = lost_to_retention(next_offset, log_start)
        if lost:
            log.warning("%s[%d]: offsets %d-%d were deleted by the topic's retention before they were landed: "
                        "%d messages lost; continuing at the log start, offset %d (raise retention.ms or ingest "
                        "more often)", self.topic, partition, max(next_offset, 0), log_start - 1, lost, log_start)
            self.metrics.lost_to_retention.labels(self.topic, str(partition)).inc(lost)
        return bool(lost)

    def _on_error(self, error, partition: int) -> None:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        from streaming.offsets import beyond_topic_end_error

        if error.code() == KafkaError._AUTO_OFFSET_RESET:  # a real Kafka broker says: offset out of range
            # Below the log start (retention) is a loss to report and skip; beyond the end, a recreated topic.
            self._flush(reseek=False)
            self._wait_pending(reseek=False)
            next_offset = self.lander.landed.get(partition, -1) + 1
            log_start = self._log_start(self.consumer, partition)
            if self._skip_retention_gap(partition, next_offset, log_start):
                self.assigned[partition] = log_start
                self.consumer.seek(TopicPartition(self.topic, partition, log_start))
                return
            raise beyond_topic_end_error(self.topic, partition, self.assigned.get(partition, 0) - 1, -1)
        if error.fatal():
            raise KafkaException(error)
        log.warning("kafka: %s", error)


def _warm_up() -> None:
    """The first decode loads Arrow's time zone and compute machinery (~1 s): do it before the first batch."""
    from streaming.landing import batch_offsets
    from streaming.schema import decode_batch

    sample = b'{"id": "warm-up", "text": "warm-up", "created_at": "2024-01-01T00:00:00Z"}'
    batch_offsets(decode_batch([sample, b"not json"], [0, 0], [0, 1], [None, None], "warm-up",
                               datetime.now(timezone.utc)))


def consumer_config(settings: Settings, group: str, session_timeout_ms: int = SESSION_TIMEOUT_MS,
                    prefetch_mb: int = PREFETCH_MB) -> dict:
    return {
        **settings.kafka_client_config(),  # SASL/TLS when TWEETOPS_KAFKA_SECURITY_PROTOCOL says so
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "client.id": "tweetops-ingest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Positions come from Delta; an invalid one must stop us, not silently jump (see _on_error).
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, session_timeout_ms // 4),  # must be well below the session timeout
        "fetch.wait.max.ms": 100,
        # Prefetch so that decoding rarely waits for the network (see PREFETCH_MB).
        "queued.max.messages.kbytes": prefetch_mb * 1024,
        "fetch.max.bytes": prefetch_mb * 1024 * 1024,
    }


def ingest(settings: Settings | None = None, options: IngestOptions | None = None,
           stop: threading.Event | None = None) -> dict:
    """Run the consumer (library entry point); returns the run's figures."""
    ingestor = Ingestor(settings or load_settings(), options or IngestOptions(), stop)
    return asdict(ingestor.run())


def ingest_until_idle(settings: Settings | None = None, **options) -> dict:
    """Land everything the topic holds now, then return the figures: what an Airflow task calls."""
    return ingest(settings, IngestOptions(follow=False, **options))


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="run until SIGTERM/SIGINT (the default)")
    mode.add_argument("--until-idle", action="store_true", help="land what the topic holds, then exit")
    mode.add_argument("--reset-offsets", action="store_true",
                      help="record 'nothing landed' for every partition of the topic (after the topic was "
                           "recreated), then exit; the next ingest starts at the topic's beginning")
    parser.add_argument("--topic", help="topic to ingest (default: TWEETOPS_TOPIC)")
    parser.add_argument("--group", help="consumer group (default: TWEETOPS_CONSUMER_GROUP)")
    parser.add_argument("--batch-messages", type=_positive_int, default=BATCH_MESSAGES,
                        help=f"flush a batch at this many messages (default {BATCH_MESSAGES})")
    parser.add_argument("--batch-bytes", type=_positive_int, default=BATCH_BYTES,
                        help=f"flush a batch at this many value bytes (default {BATCH_BYTES})")
    parser.add_argument("--flush-interval", type=float, default=FLUSH_INTERVAL_S, metavar="SECONDS",
                        help=f"flush a batch this long after its first message (default {FLUSH_INTERVAL_S})")
    parser.add_argument("--max-message-bytes", type=_positive_int, default=MAX_MESSAGE_BYTES,
                        help=f"larger messages become dead letters (default {MAX_MESSAGE_BYTES})")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, metavar="SECONDS",
                        help=f"--until-idle: stop after this long without messages (default {IDLE_TIMEOUT_S})")
    parser.add_argument("--session-timeout-ms", type=_positive_int, default=SESSION_TIMEOUT_MS,
                        help=f"consumer group session timeout (default {SESSION_TIMEOUT_MS})")
    parser.add_argument("--prefetch-mb", type=_positive_int, default=PREFETCH_MB,
                        help=f"librdkafka's prefetch queue in MB (default {PREFETCH_MB}: under 300 MB resident; "
                             "32 lands ~45%% faster from a backlog for ~20 MB more)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on HOST:PORT/metrics")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--json", action="store_true", help="print the run's figures as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a positive integer")
    return value


def run(args: argparse.Namespace, notifier_factory: Callable[[Settings], Any] | None = None) -> int:
    from streaming.offsets import OffsetsBeyondTopicEnd, OffsetsWentBackwards

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("botocore").setLevel(logging.WARNING)
    settings = load_settings()
    if args.reset_offsets:
        return _reset(settings, args)
    options = IngestOptions(
        follow=not args.until_idle, notifier_factory=notifier_factory, topic=args.topic, group=args.group, batch_messages=args.batch_messages,
        batch_bytes=args.batch_bytes, flush_interval=args.flush_interval, max_message_bytes=args.max_message_bytes,
        idle_timeout=args.idle_timeout, session_timeout_ms=args.session_timeout_ms, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, prefetch_mb=args.prefetch_mb)
    stop = threading.Event()

    def finish(signum, _frame):
        log.info("%s: finishing the current batch, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    try:
        stats = ingest(settings, options, stop)
    except (OffsetsBeyondTopicEnd, OffsetsWentBackwards) as exc:
        print(f"tweetops ingest: {exc}", file=sys.stderr)
        return 3
    summary = (f"landed {stats['messages']} messages: {stats['tweets']} tweets in bronze_tweets, "
               f"{stats['dead_letters']} in bronze_dead_letters ({stats['batches']} batches, "
               f"{stats['messages_per_second']:.0f} msg/s)")
    print(json.dumps(stats) if args.json else summary)
    return 0


def _reset(settings: Settings, args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    from streaming.offsets import reset_offsets
    from streaming.topic import topic_id

    topic = args.topic or settings.topic
    metadata = AdminClient({**settings.kafka_client_config(), "bootstrap.servers": settings.kafka_bootstrap}).list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
    partitions = sorted(set(partitions) | set(range(settings.topic_partitions)))
    old = reset_offsets(settings, topic, partitions, topic_id(settings, topic) if topic in metadata.topics else None)
    print(f"reset offsets of {topic}: {old} -> nothing landed; "
          "the next `tweetops ingest` starts at the beginning of the topic")
    return 0


if __name__ == "__main__":  # `python -m streaming.consumer`: the command without loading every other one
    _parser = argparse.ArgumentParser(prog="tweetops ingest", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
