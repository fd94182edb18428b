"""Exactly-once ingestion against a real Tansu broker and real Delta tables (local disk and moto S3)."""
from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from datetime import date, datetime, timezone

import msgspec
import pytest

from tweetops.core.tables import ensure_table, open_table
from streaming.consumer import IngestOptions, ingest, ingest_until_idle
from streaming.offsets import OffsetsBeyondTopicEnd, app_id, stored_offset
from streaming.produce import produce
from streaming.topic import ensure_topic
from tests.conftest import REPO, S3_KEYS, TWEETOPS, free_port, unique
from tweetops.app import stack
from tweetops.core.settings import load_settings

pytestmark = pytest.mark.integration

FAST_JOIN = 2000  # session.timeout.ms for test consumers: Tansu holds a join for half of it


def tweet_value(i: int, prefix: str = "t") -> bytes:
    return msgspec.json.encode({"id": f"{prefix}{i}", "text": f"tweet number {i} about my flight",
                                "created_at": f"2024-06-0{1 + i % 3}T10:{i % 60:02d}:00Z", "user": f"u{i % 7}",
                                "lang": "en", "label": ("negative", "neutral", "positive")[i % 3], "n": i})


BAD_VALUES = [  # one of each dead-letter kind
    (None, "empty_message"),
    (b"x" * 70_000, "oversized"),
    (b'{"id": "b1", "text": "caf\xc3\x28", "created_at": "2024-06-01T00:00:00Z"}', "invalid_utf8"),
    (b'{"id": "b2", "text": ', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"id": "b3", "created_at": "2024-06-01T00:00:00Z"}', "missing_field"),
    (b'{"id": "b4", "text": "   ", "created_at": "2024-06-01T00:00:00Z"}', "empty_field"),
    (b'{"id": 5, "text": "x", "created_at": "2024-06-01T00:00:00Z"}', "wrong_type"),
    (b'{"id": "b6", "text": "x", "created_at": "June 1st"}', "bad_timestamp"),
    (b'{"id": "b7", "text": "x", "created_at": "2024-06-01T00:00:00"}', "no_timezone"),
    (b'{"id": "b8", "text": "x", "created_at": "2024-06-01T00:00:00Z", "label": "meh"}', "bad_label"),
]


def send(settings, values: list[bytes | None], keys: list[bytes | None] | None = None) -> dict:
    keys = keys or [None] * len(values)
    summary = produce(zip(keys, values), settings, progress=False)
    assert summary["failed"] == 0 and summary["delivered"] == len(values), summary
    return summary


def table_rows(name: str, settings, columns: list[str]) -> dict[str, list]:
    return open_table(name, settings).to_pyarrow_table(columns=columns).to_pydict()


def wait_for(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def bronze_count(settings) -> int:
    try:
        return open_table("bronze_tweets", settings).count()
    except LookupError:
        return 0


def assert_exactly_once(settings, per_partition: dict[int, int], good_ids: list[str], bad_raw: list[bytes | None]):
    """Every offset of the topic is in exactly one of the two tables, once; ids and raw bytes match."""
    bronze = table_rows("bronze_tweets", settings, ["id", "kafka_partition", "kafka_offset"])
    dead = table_rows("bronze_dead_letters", settings, ["raw", "kafka_partition", "kafka_offset"])
    landed = Counter(zip(bronze["kafka_partition"], bronze["kafka_offset"])) + \
        Counter(zip(dead["kafka_partition"], dead["kafka_offset"]))
    duplicated = {k: n for k, n in landed.items() if n > 1}
    assert not duplicated, f"landed more than once: {sorted(duplicated)[:10]}"
    produced = {(p, o) for p, n in per_partition.items() for o in range(n)}
    assert set(landed) == produced, f"missing {sorted(produced - set(landed))[:10]}, extra {sorted(set(landed) - produced)[:10]}"
    assert Counter(bronze["id"]) == Counter(good_ids)
    assert sorted(dead["raw"], key=repr) == sorted(bad_raw, key=repr)


class ConsumerProcess:
    """`tweetops ingest` as a subprocess (python -m streaming.consumer), its log lines read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "streaming.consumer", *args], cwd=REPO,
                                     env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(f"no log line matching {pattern!r} (exit code {self.proc.poll()}); "
                                     f"log tail:\n{''.join(self.log[-15:])}")
            try:
                match = regex.search(self.lines.get(timeout=min(left, 0.5)))
            except queue.Empty:
                continue
            if match:
                return match

    def stop(self, sig: int, timeout: float = 30) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out


@contextmanager
def dedicated_broker(tmp_path, storage: str = "memory://tansu/"):
    """A Tansu broker of our own (it will be restarted), started like `tweetops stack up` does."""
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(tmp_path / "broker-home"),
                              "TWEETOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                              "TWEETOPS_BROKER_STORAGE": storage})
    stack.up(settings, only=["broker"])
    try:
        yield settings
    finally:
        stack.stop(settings, "broker")


def restart_broker(broker_settings) -> None:
    stack.stop(broker_settings, "broker")
    stack.up(broker_settings, only=["broker"])


# --- the corpus, end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus():
    from tweetops.core.corpus import load_corpus

    return list(load_corpus(end=date(2024, 6, 1), days=7))


def test_the_corpus_lands_exactly_once(any_lakehouse, topic, corpus):
    settings = load_settings()
    encode = msgspec.json.Encoder().encode
    summary = produce(((t["id"].encode(), encode(t)) for t in corpus), settings, progress=False)
    assert summary["delivered"] == len(corpus) > 30_000

    stats = ingest_until_idle(settings, session_timeout_ms=FAST_JOIN)

    assert stats["messages"] == stats["tweets"] == len(corpus) and stats["dead_letters"] == 0
    assert_exactly_once(settings, summary["per_partition"], [t["id"] for t in corpus], [])
    bronze = open_table("bronze_tweets", settings)
    assert bronze.metadata().partition_columns == ["event_date"]
    days = {p["event_date"] for p in bronze.partitions()}
    assert days == {str(date(2024, 5, d)) for d in range(25, 32)}
    # The offsets are stored with the rows; a second run finds nothing new.
    again = ingest_until_idle(settings, session_timeout_ms=FAST_JOIN, idle_timeout=3)
    assert again["messages"] == 0 and bronze_count(settings) == len(corpus)


def test_produce_and_ingest_commands(local_lakehouse, topic, cli_env):
    produced = subprocess.run([*TWEETOPS, "produce", "--corpus", "--corpus-topics", "airline", "--end", "2024-06-01",
                               "--days", "3", "--limit", "300", "--quiet", "--json"],
                              cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert produced.returncode == 0, produced.stderr
    summary = json.loads(produced.stdout)
    assert summary["delivered"] == 300 and summary["failed"] == 0

    # A 1 MB prefetch queue (far below the default) only slows a backlog down: nothing is lost.
    ingested = subprocess.run([*TWEETOPS, "ingest", "--until-idle", "--json", "--session-timeout-ms", str(FAST_JOIN),
                               "--prefetch-mb", "1"],
                              cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout.splitlines()[-1])["tweets"] == 300
    assert re.search(r"batch 1: \d+ messages -> \d+ tweets \+ 0 dead letters", ingested.stderr)

    rows = table_rows("bronze_tweets", load_settings(), ["id", "label", "extra", "created_at", "event_date"])
    assert len(set(rows["id"])) == 300
    assert {json.loads(e)["topic"] for e in rows["extra"]} == {"airline"}
    assert set(rows["label"]) <= {"negative", "neutral", "positive"}  # every corpus tweet is labelled
    assert all(datetime(2024, 5, 29, tzinfo=timezone.utc) <= t < datetime(2024, 6, 1, tzinfo=timezone.utc)
               for t in rows["created_at"])
    assert {d.isoformat() for d in rows["event_date"]} == {"2024-05-29", "2024-05-30", "2024-05-31"}


# --- dead letters, metrics, clean stop -------------------------------------------------------

def test_bad_messages_land_as_dead_letters_and_the_consumer_keeps_going(any_lakehouse, topic):
    settings = load_settings()
    port = free_port()
    stop = threading.Event()
    result: dict = {}
    follower = threading.Thread(target=lambda: result.update(ingest(settings, IngestOptions(
        follow=True, flush_interval=0.2, session_timeout_ms=FAST_JOIN, metrics_port=port), stop)))
    follower.start()
    try:
        values = [tweet_value(i) for i in range(20)] + [v for v, _ in BAD_VALUES] + \
            [tweet_value(i) for i in range(20, 40)]
        summary = send(settings, values)
        wait_for(lambda: bronze_count(settings) == 40, 60, "40 tweets in bronze")
        wait_for(lambda: open_table("bronze_dead_letters", settings).count() == len(BAD_VALUES), 30,
                 "the dead letters")
        metrics = wait_for(lambda: _scrape(port, topic, "tweetops_ingest_rows_landed_total"), 10, "metrics")
    finally:
        stop.set()
        follower.join(60)
    assert not follower.is_alive() and result["messages"] == len(values)

    dead = table_rows("bronze_dead_letters", settings, ["raw", "reason", "kafka_topic", "kafka_offset"])
    reasons = {raw: reason for raw, reason in zip(dead["raw"], dead["reason"])}
    for raw, kind in BAD_VALUES:
        assert reasons[raw].startswith(kind + ":"), (raw[:40] if raw else raw, reasons[raw])
    assert set(dead["kafka_topic"]) == {topic}
    assert_exactly_once(settings, summary["per_partition"], [f"t{i}" for i in range(40)], [v for v, _ in BAD_VALUES])

    assert metrics[f'tweetops_ingest_rows_landed_total{{table="bronze_tweets",topic="{topic}"}}'] == 40
    assert metrics[f'tweetops_ingest_rows_landed_total{{table="bronze_dead_letters",topic="{topic}"}}'] == len(BAD_VALUES)
    assert metrics[f'tweetops_ingest_messages_total{{topic="{topic}"}}'] == len(values)
    for _, kind in BAD_VALUES:
        assert metrics[f'tweetops_ingest_dead_letters_total{{reason="{kind}",topic="{topic}"}}'] == 1
    assert any(k.startswith("tweetops_ingest_lag_messages") for k in metrics)
    assert metrics[f'tweetops_ingest_batch_seconds_count{{topic="{topic}"}}'] >= 1


HOSTILE_VALUES = [  # messages from a client that is not TweetOps, each meant to stop or poison something
    (b"[" * 1000 + b"]" * 1000, "too_deep"),
    (b'{"id": "h1", "text": ' + b"[" * 2000 + b"]" * 2000 + b', "created_at": "2024-06-01T00:00:00Z"}', "too_deep"),
    (b'{"id": "h2", "text": "x", "created_at": "9999-12-31T23:59:59-05:00"}', "out_of_window"),
    (b'{"id": "h3", "text": "x", "created_at": "0001-01-01T00:00:00+01:00"}', "out_of_window"),
    (b'{"id": "h4", "text": "x", "created_at": "0001-01-01T00:00:00Z"}', "out_of_window"),
    (b'{"id": "h5", "text": "x", "created_at": "2006-03-20T12:00:00Z"}', "out_of_window"),
    (b'{"id": "h6", "text": "x", "created_at": "2999-01-01T00:00:00Z"}', "out_of_window"),
    (b'{"id": "h7", "text": "\\ud800 unpaired", "created_at": "2024-06-01T00:00:00Z"}', "invalid_json"),
    (b'{"id": "h8", "text": "x", "created_at": "2024-06-01T00:00:00Z", "n": NaN}', "invalid_json"),
    (b'{"id": "h9", "text": "x", "created_at": "2024-06-01T00:00:00Z", "n": 1e999}', "invalid_json"),
    (b"\x00" * 64, "invalid_json"),
]
ODD_BUT_VALID = [  # these are tweets: they land in bronze, byte for byte where it matters
    b'{"id": "v1", "text": "huge number", "created_at": "2024-06-01T00:00:00Z", "n": ' + b"9" * 400 + b"}",
    b'{"id": "v2", "text": "deep but fine", "created_at": "2024-06-01T00:00:00+14:00", "n": ' + b"[" * 50 +
    b"]" * 50 + b"}",
    b'{"id": "v3", "text": "\\ud83d\\ude80 paired surrogates", "created_at": "2006-03-21T00:00:00Z"}',
]


def test_hostile_messages_cannot_stop_ingestion_or_poison_a_table(local_lakehouse, topic, cli_env):
    settings = load_settings()
    good = [tweet_value(i) for i in range(30)]
    values = good[:10] + [v for v, _ in HOSTILE_VALUES] + good[10:20] + ODD_BUT_VALID + good[20:]
    summary = send(settings, values)

    ingested = subprocess.run([*TWEETOPS, "ingest", "--until-idle", "--json", "--session-timeout-ms", str(FAST_JOIN)],
                              cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    good_ids = [f"t{i}" for i in range(30)] + ["v1", "v2", "v3"]
    assert_exactly_once(settings, summary["per_partition"], good_ids, [v for v, _ in HOSTILE_VALUES])
    dead = table_rows("bronze_dead_letters", settings, ["raw", "reason"])
    reasons = dict(zip(dead["raw"], dead["reason"]))
    assert {raw: reasons[raw].split(":")[0] for raw, _ in HOSTILE_VALUES} == dict(HOSTILE_VALUES)

    for table in ("bronze_tweets", "bronze_dead_letters"):  # every table still reads, whole
        read = subprocess.run([*TWEETOPS, "sql", f"SELECT * FROM {table}", "--format", "json"], cwd=REPO,
                              env=cli_env(), capture_output=True, text=True, timeout=120)
        assert read.returncode == 0, read.stderr[-3000:]
        assert len(json.loads(read.stdout)) == (33 if table == "bronze_tweets" else len(HOSTILE_VALUES))
    days = subprocess.run([*TWEETOPS, "sql", "SELECT min(event_date) AS lo, max(event_date) AS hi FROM bronze_tweets",
                           "--format", "json"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert days.returncode == 0 and json.loads(days.stdout) == [{"lo": "2006-03-21", "hi": "2024-06-03"}], days


def _scrape(port: int, topic: str, required: str) -> dict[str, float] | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("tweetops_ingest") and topic in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples if any(k.startswith(required) for k in samples) else None


# --- crashes -----------------------------------------------------------------------------------

def test_sigkill_at_random_moments_neither_loses_nor_duplicates(local_lakehouse, topic):
    settings = load_settings()
    rng = random.Random(20240601)
    values, keys, good_ids, bad = [], [], [], []
    for i in range(8000):
        if i % 40 == 7:  # a dead letter every 40 messages: most batches make two commits
            value = BAD_VALUES[i % len(BAD_VALUES)][0] or b"{}"
            bad.append(value)
        else:
            value = tweet_value(i)
            good_ids.append(f"t{i}")
        values.append(value)
        keys.append(str(i).encode())
    summary = send(settings, values, keys)
    args = ["--follow", "-v", "--batch-messages", "100", "--flush-interval", "0.05",
            "--session-timeout-ms", str(FAST_JOIN)]
    moments, torn = Counter(), 0
    for kill in range(12):
        consumer = ConsumerProcess(*args)
        consumer.wait_line(r"batch \d+: ", timeout=60)  # every run makes progress before it dies
        moment = ("just after a flush starts", "just after the dead-letter commit", "at a random time")[kill % 3]
        if kill % 3 == 0:
            consumer.wait_line("flushing", timeout=10)
            time.sleep(rng.uniform(0, 0.03))
        elif kill % 3 == 1:
            consumer.wait_line("committed .* dead letters", timeout=10)
        else:
            time.sleep(rng.uniform(0, 0.15))
        consumer.proc.kill()
        consumer.proc.wait(10)
        moments[moment] += 1
        torn += _dead_letters_ahead_of_bronze(settings, topic)
    print(f"kills: {dict(moments)}; {torn} left dead letters committed ahead of bronze")

    stats = ingest_until_idle(settings, session_timeout_ms=FAST_JOIN)
    assert sum(moments.values()) >= 10
    assert stats["messages"] < len(values)  # the killed runs did land most of it
    assert_exactly_once(settings, summary["per_partition"], good_ids, bad)


def _dead_letters_ahead_of_bronze(settings, topic: str) -> int:
    bronze, dead = ensure_table("bronze_tweets", settings), ensure_table("bronze_dead_letters", settings)
    return sum(stored_offset(dead, app_id(topic, p)) > stored_offset(bronze, app_id(topic, p)) for p in range(3))


def test_a_crash_between_the_dead_letter_and_bronze_commits_is_repaired(local_lakehouse, monkeypatch):
    """Deterministic version of the torn case: the bronze commit dies after the dead letters landed."""
    import deltalake

    from streaming.landing import Lander
    from streaming.schema import decode_batch

    settings = load_settings()
    values = [tweet_value(o) if o % 4 else b"broken" for o in range(40)]
    batch = decode_batch(values, [0] * 40, list(range(40)), [None] * 40, "crashy", datetime.now(timezone.utc))
    lander = Lander(settings, "crashy")
    lander.load([0])
    real_write = deltalake.write_deltalake

    def die_on_bronze(table, data, **kwargs):
        if "bronze_tweets" in table.table_uri:
            raise KeyboardInterrupt("killed between the two commits")
        return real_write(table, data, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", die_on_bronze)
    with pytest.raises(KeyboardInterrupt):
        lander.land(batch)
    monkeypatch.setattr(deltalake, "write_deltalake", real_write)

    restarted = Lander(settings, "crashy")
    assert restarted.load([0]) == {0: -1}  # bronze resumes from the start ...
    assert restarted.dead_landed == {0: 39}  # ... the dead letters are already stored
    landed = restarted.land(batch)
    assert (landed.tweets, landed.dead_letters, landed.skipped_dead_letters) == (30, 0, 10)
    assert_exactly_once(settings, {0: 40}, [f"t{o}" for o in range(40) if o % 4], [b"broken"] * 10)


def test_two_writers_of_one_partition_fence_each_other(local_lakehouse):
    from streaming.landing import Lander
    from streaming.offsets import FencedOut
    from streaming.schema import decode_batch

    settings = load_settings()
    now = datetime.now(timezone.utc)
    first = decode_batch([tweet_value(o) for o in range(10)], [0] * 10, list(range(10)), [None] * 10, "fenced", now)
    second = decode_batch([tweet_value(o) for o in range(10, 20)], [0] * 10, list(range(10, 20)), [None] * 10,
                          "fenced", now)
    a, b = Lander(settings, "fenced"), Lander(settings, "fenced")
    a.load([0])
    b.load([0])
    a.land(first)
    with pytest.raises(FencedOut):
        b.land(first)  # a zombie replaying the same offsets loses
    assert b.load([0]) == {0: 9}
    b.land(second)
    assert_exactly_once(settings, {0: 20}, [f"t{o}" for o in range(20)], [])


def test_a_commit_on_another_partition_does_not_hide_a_rivals_offsets(local_lakehouse):
    """A's own commit on p1 moves its snapshot past B's commit on p0; A's stale p0 batch must still lose."""
    from streaming.landing import Lander
    from streaming.offsets import FencedOut
    from streaming.schema import decode_batch

    settings = load_settings()
    now = datetime.now(timezone.utc)

    def batch(partition: int, offsets: range, bad: bool = False):
        values = [b"broken" if bad and o % 2 else tweet_value(o, f"p{partition}-") for o in offsets]
        return decode_batch(values, [partition] * len(values), list(offsets), [None] * len(values), "fence", now)

    a, b = Lander(settings, "fence"), Lander(settings, "fence")
    a.load([0, 1])
    b.load([0])
    b.land(batch(0, range(10)))
    a.land(batch(1, range(10)))
    with pytest.raises(FencedOut):
        a.land(batch(0, range(20)))  # a stale batch: 0-9 are B's
    assert a.load([0]) == {0: 9}
    a.land(batch(0, range(10, 20)))
    assert_exactly_once(settings, {0: 20, 1: 10}, [f"p0-{o}" for o in range(20)] + [f"p1-{o}" for o in range(10)], [])

    # The same for dead letters: B's dead letters of p2 are not landed again by A.
    a.load([2, 3])
    b.load([2])
    b.land(batch(2, range(10), bad=True))
    a.land(batch(3, range(10)))
    with pytest.raises(FencedOut):
        a.land(batch(2, range(20), bad=True))
    a.load([2])
    a.land(batch(2, range(10, 20), bad=True))
    dead = table_rows("bronze_dead_letters", settings, ["kafka_partition", "kafka_offset"])
    landed = Counter(zip(dead["kafka_partition"], dead["kafka_offset"]))
    assert sorted(landed) == [(2, o) for o in range(1, 20, 2)] and set(landed.values()) == {1}


def test_a_rivals_dead_letters_alone_fence_a_stale_batch(local_lakehouse, monkeypatch):
    """B dies between its dead-letter and bronze commits; A's own dead-letter commit on p1 brings B's
    dead-letter offset of p0 into A's snapshot: A's stale p0 batch must not store those dead letters again."""
    import deltalake

    from streaming.landing import Lander
    from streaming.offsets import FencedOut
    from streaming.schema import decode_batch

    settings = load_settings()
    now = datetime.now(timezone.utc)

    def batch(partition: int, offsets: range):
        values = [b"broken" if o % 2 else tweet_value(o, f"p{partition}-") for o in offsets]
        return decode_batch(values, [partition] * len(values), list(offsets), [None] * len(values), "torn", now)

    a, b = Lander(settings, "torn"), Lander(settings, "torn")
    a.load([0, 1])
    b.load([0])
    real_write = deltalake.write_deltalake

    def die_on_bronze(table, data, **kwargs):
        if "bronze_tweets" in table.table_uri:
            raise KeyboardInterrupt("B killed between its two commits")
        return real_write(table, data, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", die_on_bronze)
    with pytest.raises(KeyboardInterrupt):
        b.land(batch(0, range(10)))
    monkeypatch.setattr(deltalake, "write_deltalake", real_write)

    a.land(batch(1, range(10)))
    with pytest.raises(FencedOut, match="bronze_dead_letters"):
        a.land(batch(0, range(20)))
    assert a.load([0]) == {0: -1} and a.dead_landed[0] == 9
    a.land(batch(0, range(20)))
    assert_exactly_once(settings, {0: 20, 1: 10}, [f"p{p}-{o}" for p in (0, 1) for o in range(0, 20 if p == 0 else 10, 2)],
                        [b"broken"] * 15)


# --- the broker goes away ----------------------------------------------------------------------

def test_a_broker_restart_on_s3_storage_while_consuming(s3_lakehouse, tmp_path, monkeypatch):
    import boto3

    bucket = unique("broker")
    boto3.client("s3", endpoint_url=s3_lakehouse.s3_endpoint_url, region_name="us-east-1",
                 aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
    with dedicated_broker(tmp_path, f"s3://{bucket}/") as broker:
        monkeypatch.setenv("TWEETOPS_KAFKA_BOOTSTRAP", broker.kafka_bootstrap)
        monkeypatch.setenv("TWEETOPS_TOPIC", unique("tweets"))
        monkeypatch.setenv("TWEETOPS_CONSUMER_GROUP", unique("ingest"))
        settings = load_settings()
        before = send(settings, [tweet_value(i) for i in range(3000)])
        consumer = ConsumerProcess("--follow", "--batch-messages", "100", "--flush-interval", "0.1",
                                   "--session-timeout-ms", str(FAST_JOIN))
        consumer.wait_line(r"batch \d+: ", timeout=60)
        landed_before_restart, restart_started = bronze_count(settings), time.monotonic()
        restart_broker(broker)  # mid-consume: the log and the group offsets are on S3
        restart_seconds = time.monotonic() - restart_started
        after = send(settings, [tweet_value(i) for i in range(3000, 4000)])
        wait_for(lambda: bronze_count(settings) >= 4000, 120, "all 4000 tweets in bronze", every=0.5)
        code, out = consumer.stop(signal.SIGTERM)
        assert code == 0, "".join(consumer.log[-20:])
        print(f"{landed_before_restart} tweets landed before the restart ({restart_seconds:.1f} s)")
    per_partition = Counter(before["per_partition"]) + Counter(after["per_partition"])
    assert_exactly_once(settings, dict(per_partition), [f"t{i}" for i in range(4000)], [])


def test_offsets_beyond_a_recreated_topic_stop_the_consumer_until_reset(local_lakehouse, tmp_path, monkeypatch,
                                                                      cli_env):
    with dedicated_broker(tmp_path) as broker:  # memory:// storage: a restart loses every topic
        monkeypatch.setenv("TWEETOPS_KAFKA_BOOTSTRAP", broker.kafka_bootstrap)
        monkeypatch.setenv("TWEETOPS_TOPIC", unique("tweets"))
        settings = load_settings()
        send(settings, [tweet_value(i) for i in range(90)])
        assert ingest_until_idle(settings, session_timeout_ms=FAST_JOIN)["tweets"] == 90
        version = open_table("bronze_tweets", settings).version()

        restart_broker(broker)
        ensure_topic(settings)
        send(settings, [tweet_value(i, "new") for i in range(6)], [b"a", b"b", b"c", b"d", b"e", b"f"])
        with pytest.raises(OffsetsBeyondTopicEnd, match="--reset-offsets"):
            ingest_until_idle(settings, session_timeout_ms=FAST_JOIN, group=unique("ingest"))
        assert open_table("bronze_tweets", settings).version() == version  # nothing written

        reset = subprocess.run([sys.executable, "-m", "streaming.consumer", "--reset-offsets"], cwd=REPO,
                               env=cli_env(), capture_output=True, text=True, timeout=60)
        assert reset.returncode == 0, reset.stderr
        stats = ingest_until_idle(settings, session_timeout_ms=FAST_JOIN, group=unique("ingest"))
    assert stats["tweets"] == 6 and bronze_count(settings) == 96


def test_a_recreated_topic_holding_more_messages_than_the_stored_offsets_is_refused(local_lakehouse, topic, cli_env):
    from confluent_kafka.admin import AdminClient

    settings = load_settings()
    ensure_topic(settings, partitions=1)
    send(settings, [tweet_value(i) for i in range(5)])
    assert ingest_until_idle(settings, session_timeout_ms=FAST_JOIN)["tweets"] == 5
    version = open_table("bronze_tweets", settings).version()

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.delete_topics([topic])[topic].result(15)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 30, "the topic to be deleted")
    ensure_topic(settings, partitions=1)
    send(settings, [tweet_value(i, "new") for i in range(20)])  # offsets 0-19: beyond the stored 4

    ingest_command = [*TWEETOPS, "ingest", "--until-idle", "--session-timeout-ms", str(FAST_JOIN)]
    refused = subprocess.run(ingest_command, cwd=REPO, env=cli_env(TWEETOPS_CONSUMER_GROUP=unique("ingest")),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "deleted and created again" in refused.stderr and "--reset-offsets" in refused.stderr
    assert open_table("bronze_tweets", settings).version() == version  # nothing written

    reset = subprocess.run([*TWEETOPS, "ingest", "--reset-offsets"], cwd=REPO, env=cli_env(), capture_output=True,
                           text=True, timeout=60)
    assert reset.returncode == 0, reset.stderr
    again = subprocess.run([*TWEETOPS, "ingest", "--until-idle", "--json", "--session-timeout-ms", str(FAST_JOIN)],
                           cwd=REPO, env=cli_env(TWEETOPS_CONSUMER_GROUP=unique("ingest")), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1])["tweets"] == 20
    ids = table_rows("bronze_tweets", settings, ["id"])["id"]
    assert sorted(ids) == sorted([f"t{i}" for i in range(5)] + [f"new{i}" for i in range(20)])


# --- a consumer group --------------------------------------------------------------------------

def test_two_consumers_in_one_group_share_the_partitions_without_duplicates(local_lakehouse, topic):
    settings = load_settings()
    ensure_topic(settings, partitions=4)
    args = ["--follow", "--json", "--batch-messages", "200", "--flush-interval", "0.1",
            "--session-timeout-ms", str(FAST_JOIN)]
    first = ConsumerProcess(*args)
    first.wait_line(r"assigned .* partitions \[0, 1, 2, 3\]")
    second = ConsumerProcess(*args)
    second.wait_line(r"assigned .* partitions \[\d+, \d+\]")  # the group rebalanced: two each
    summary = send(settings, [tweet_value(i) for i in range(4000)], [str(i).encode() for i in range(4000)])
    wait_for(lambda: bronze_count(settings) >= 4000, 90, "4000 tweets in bronze", every=0.3)

    results = [c.stop(signal.SIGTERM) for c in (first, second)]
    assert [code for code, _ in results] == [0, 0], [c.log[-10:] for c in (first, second)]
    landed = [set(json.loads(out.splitlines()[-1])["landed_offsets"]) for _, out in results]
    assert landed[0] and landed[1] and not landed[0] & landed[1], landed
    assert_exactly_once(settings, summary["per_partition"], [f"t{i}" for i in range(4000)], [])
