"""Chaos: a consumer group whose members are SIGKILLed at random while a producer writes; counts lost and duplicated.

Starts N `tweetops ingest --follow` processes in one group on a topic of P partitions, produces
tweets (one in 50 a dead letter) at a steady rate, and meanwhile kills a random member at random
moments and starts it again. Once the producer is done it waits until every produced offset is in
bronze_tweets or bronze_dead_letters, stops the members, and counts each offset: lost (in neither
table) and duplicated (more than once). Starts its own Tansu broker and temporary lakehouse unless
told otherwise.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from tweetops.core.settings import REPO_ROOT, load_settings

# Tansu holds a JoinGroup for half the session timeout and evicts a killed member after it: keep it short.
SESSION_TIMEOUT_MS = 2000
BAD_EVERY = 50  # one message in 50 is not a tweet, so the dead-letter commit is killed too


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--consumers", type=int, default=3, help="members of the consumer group (default 3)")
    parser.add_argument("--partitions", type=int, default=6, help="topic partitions (default 6)")
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs of random members (default 12)")
    parser.add_argument("--rate", type=float, default=500, help="tweets/s produced during the kills (default 500)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the kill schedule (default 20240601)")
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="seconds to wait for the group to land everything after the kills (default 120)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu broker")
    parser.add_argument("--lakehouse", help="use this lakehouse root instead of a temporary folder")


def measure(args: argparse.Namespace) -> dict:
    from tweetops.bench.ingest import _broker

    with _broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory(prefix="tweetops-chaos-") as tmp:
        run_id = uuid.uuid4().hex[:6]
        env = {**os.environ, "TWEETOPS_HOME": str(Path(tmp) / "home"), "TWEETOPS_KAFKA_BOOTSTRAP": bootstrap,
               "TWEETOPS_TOPIC": f"chaos-{run_id}", "TWEETOPS_CONSUMER_GROUP": f"chaos-{run_id}",
               "TWEETOPS_LAKEHOUSE_URI": args.lakehouse or str(Path(tmp) / "lakehouse")}
        figures = run_chaos(env, args.consumers, args.partitions, args.kills, args.rate, args.seed,
                            args.drain_timeout, log_dir=Path(tmp))
    print(f"{figures['kills']} SIGKILLs of {figures['consumers']} consumers on {figures['partitions']} partitions "
          f"while producing {figures['produced']} messages: {figures['lost']} lost, {figures['duplicated']} duplicated "
          f"({figures['tweets']} tweets, {figures['dead_letters']} dead letters)", flush=True)
    return figures


def run_chaos(env: dict[str, str], consumers: int = 3, partitions: int = 6, kills: int = 12, rate: float = 500,
              seed: int = 20240601, drain_timeout: float = 120, log_dir: Path | None = None,
              say=lambda text: print(text, flush=True)) -> dict:
    """Run the chaos against the broker, topic, group and lakehouse named in env; returns the counts."""
    from streaming.produce import produce
    from streaming.topic import ensure_topic

    settings = load_settings(env)
    ensure_topic(settings, partitions=partitions)
    rng = random.Random(seed)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="tweetops-chaos-"))
    started = time.monotonic()
    members = [_Member(env, log_dir / f"consumer-{i}.log") for i in range(consumers)]
    try:
        total = int(rate * (kills * 1.2 + 3))  # the producer writes for about as long as the kills go on
        summary: dict = {}
        producer = threading.Thread(target=lambda: summary.update(produce(
            _messages(total), settings, rate=rate, progress=False)), daemon=True)
        producer.start()
        _wait(lambda: _landed(settings), 90, "the group's first commit")
        for kill in range(kills):
            time.sleep(rng.uniform(0.3, 2.0))
            # Mostly members that are consuming: a member killed while it starts tests little.
            busy = [i for i, m in enumerate(members) if m.landed_since_start()]
            victim = rng.choice(busy) if busy and rng.random() < 0.8 else rng.randrange(consumers)
            was_landing = members[victim].kill_and_restart()
            say(f"kill {kill + 1}/{kills}: consumer {victim} (SIGKILL{' while landing' if was_landing else ''}, "
                "restarted)")
        producer.join()
        if summary.get("failed") or summary.get("delivered") != total:
            raise RuntimeError(f"the producer did not deliver every message: {summary}")
        produced = {(p, o) for p, n in summary["per_partition"].items() for o in range(n)}
        say(f"produced {total} messages; waiting for the group to land them all")
        drain_started = time.monotonic()
        deadline = drain_started + drain_timeout
        while time.monotonic() < deadline and not produced <= set(_landed(settings)):
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drain_started
    finally:
        for member in members:
            member.stop()
    landed = _landed(settings)
    return {
        "consumers": consumers, "partitions": partitions, "kills": sum(m.kills for m in members),
        "kills_of_landing_members": sum(m.kills_landing for m in members),
        "produced": len(produced), "tweets": landed.tweets, "dead_letters": landed.dead_letters,
        "lost": len(produced - set(landed)), "duplicated": sum(n - 1 for n in landed.values() if n > 1),
        "unexpected": len(set(landed) - produced), "drain_seconds": round(drain_seconds, 1),
        "seconds": round(time.monotonic() - started, 1), "session_timeout_ms": SESSION_TIMEOUT_MS,
        "cpus": os.cpu_count(),
    }


def _messages(total: int):
    for i in range(total):
        if i % BAD_EVERY == BAD_EVERY - 1:
            yield str(i).encode(), b'{"id": "chaos-%d", "text": "no timestamp"}' % i
        else:
            yield str(i).encode(), (b'{"id": "chaos-%d", "text": "tweet %d of the chaos run", '
                                    b'"created_at": "2024-06-01T10:00:00Z"}' % (i, i))


class _Landed(Counter):
    tweets = dead_letters = 0


def _landed(settings) -> _Landed:
    """(partition, offset) -> how many rows hold it, over bronze_tweets and bronze_dead_letters."""
    from tweetops.core.tables import open_table

    landed = _Landed()
    for name in ("bronze_tweets", "bronze_dead_letters"):
        try:
            rows = open_table(name, settings).to_pyarrow_table(columns=["kafka_partition", "kafka_offset"])
        except LookupError:
            continue
        landed.update(zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist()))
        if name == "bronze_tweets":
            landed.tweets = rows.num_rows
        else:
            landed.dead_letters = rows.num_rows
    return landed


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class _Member:
    """One `tweetops ingest --follow` process of the group, logging to a file (a pipe could fill up)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env, self.log_path, self.kills, self.kills_landing = env, log_path, 0, 0
        self.proc = self._start()

    def landed_since_start(self) -> bool:
        """Whether this run of the member has committed a batch (its log says `batch N:`)."""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_start)
            return b"INFO tweetops.ingest: batch " in log.read()

    def _start(self) -> subprocess.Popen:
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "streaming.consumer", "--follow", "--batch-messages", "200",
                 "--flush-interval", "0.1", "--session-timeout-ms", str(SESSION_TIMEOUT_MS)],
                cwd=REPO_ROOT, env={**self.env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)

    def kill_and_restart(self) -> bool:
        """SIGKILL, then start again; True if the killed run had landed batches."""
        self.proc.kill()
        self.proc.wait(30)
        landing = self.landed_since_start()
        self.kills, self.kills_landing = self.kills + 1, self.kills_landing + landing
        self.proc = self._start()
        return landing

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # finishes its batch and any join in progress, then leaves
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
