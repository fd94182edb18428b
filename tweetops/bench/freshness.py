"""Freshness: how long a produced tweet takes to reach bronze, silver and gold_predictions.

Runs on the embedded stack (`tweetops stack up`, with its ingest consumer) and a champion model (one
is trained on seeded corpus features when the registry has none): unpauses the gate, features and
scoring DAGs, produces real corpus texts under new ids at `--rate` tweets per second for `--minutes`,
`--late-share` of them late (event time 1 to 6 days ago), then waits up to `--drain-minutes` for the
rest. Every `--poll` seconds it reads the files each table gained since the last look and notes when
each of its tweets first appears there. Figures: p50/p95/max latency from produce to each table (the
poll interval is their resolution), the share of late tweets that reached predictions, the DAG runs
created and their states, and the Airflow scheduler's CPU (its processes' CPU time / wall time).
Use a TWEETOPS_HOME of its own: it adds its tweets to the lakehouse.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tweetops.core.settings import Settings, load_settings

TABLES = ("bronze_tweets", "silver_tweets", "gold_predictions")
DAGS = ("tweetops_quality_gate", "tweetops_features", "tweetops_scoring")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10, help="how long to produce (default 10)")
    parser.add_argument("--rate", type=float, default=200, help="tweets per second (default 200)")
    parser.add_argument("--late-share", type=float, default=0.05, help="share of late tweets (default 0.05)")
    parser.add_argument("--drain-minutes", type=float, default=5,
                        help="after producing, wait at most this long for the last tweets (default 5)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the tables (default 2)")


def measure(args: argparse.Namespace) -> dict:
    settings = load_settings()
    api = _prepare(settings)
    run = f"fresh-{int(time.time())}"
    texts = _texts()
    produced: dict[str, float] = {}
    late: set[str] = set()
    seen: dict[str, dict[str, float]] = {t: {} for t in TABLES}
    files: dict[str, set[str]] = {t: set() for t in TABLES}
    for table in TABLES:   # what is there already is not ours
        files[table] = set(_open(table, settings).file_uris())
    cpu_before, started = _scheduler_cpu(settings), time.time()

    producer = _producer(settings)
    rng = random.Random(7)
    total = int(args.rate * args.minutes * 60)
    step, next_poll, sent, next_report = 0.1, time.time() + args.poll, 0, time.time() + 60
    print(f"producing {total} tweets at {args.rate:g}/s for {args.minutes:g} min, {args.late_share:.0%} late ...",
          flush=True)
    while sent < total:
        tick = time.time()
        due = min(total, int((tick - started) * args.rate) + 1)
        while sent < due:
            tweet_id = f"{run}-{sent}"
            is_late = rng.random() < args.late_share
            created = datetime.now(timezone.utc) - (timedelta(days=rng.uniform(1, 6)) if is_late else timedelta())
            text, label = texts[sent % len(texts)]
            producer.produce(settings.topic, json.dumps({
                "id": tweet_id, "text": text, "created_at": created.isoformat(), "user": "bench", "lang": "en",
                "label": label}).encode(), key=tweet_id.encode())
            produced[tweet_id] = time.time()
            late |= {tweet_id} if is_late else set()
            sent += 1
        producer.poll(0)
        if time.time() >= next_poll:
            _look(settings, run, files, seen)
            next_poll = time.time() + args.poll
        if time.time() >= next_report:   # a long run shows how it goes
            print(f"  {(time.time() - started) / 60:.0f} min: {sent} produced, "
                  + ", ".join(f"{len(seen[t])} in {t}" for t in TABLES), flush=True)
            next_report = time.time() + 60
        time.sleep(max(0.0, step - (time.time() - tick)))
    producer.flush(30)
    produced_until = time.time()
    print(f"produced; waiting up to {args.drain_minutes:g} min for gold_predictions ...", flush=True)
    while time.time() - produced_until < args.drain_minutes * 60 and len(seen["gold_predictions"]) < len(produced):
        _look(settings, run, files, seen)
        time.sleep(args.poll)
    wall = time.time() - started
    cpu = _scheduler_cpu(settings) - cpu_before

    figures: dict = {"tweets": len(produced), "late_tweets": len(late), "rate_per_s": args.rate,
                     "minutes": args.minutes, "poll_s": args.poll, "machine": _machine()}
    for table in TABLES:
        latencies = sorted(seen[table][i] - produced[i] for i in seen[table] if i in produced)
        figures[table] = {"reached": len(latencies), "share": round(len(latencies) / len(produced), 4),
                          **_percentiles(latencies)}
    figures["late_reached_predictions"] = round(
        sum(1 for i in late if i in seen["gold_predictions"]) / len(late), 4) if late else None
    figures["dag_runs"] = _dag_runs(api, started)
    figures["scheduler_cpu"] = round(cpu / wall, 3) if cpu is not None else None
    figures["commits"] = {t: _commits(t, settings, started) for t in ("gold_features", "gold_predictions")}
    _print(figures)
    return figures


def _prepare(settings: Settings):
    """The stack's Airflow with the pipeline unpaused, and a champion to score with."""
    from ml import registry
    from tweetops.orchestration.airflow_api import AirflowAPI

    if registry.champion(settings) is None:
        from ml.features import seed_features_from_corpus
        from ml.train import train_model

        print("no champion: training the baseline on seeded corpus features ...", flush=True)
        seed_features_from_corpus(settings, limit=3000)
        train_model("baseline", settings, log=lambda *a: None)
    api = AirflowAPI(settings)
    api.wait_for_dags(list(DAGS), timeout=180)
    for dag_id in DAGS:
        api.unpause(dag_id)
    _prefill(settings)
    return api


def _prefill(settings: Settings, timeout: float = 600) -> None:
    """Late tweets go to days that already hold a day's tweets, as in a running platform: produce the
    corpus's airline tweets of the last 7 days once, and wait for the gate to validate them."""
    from lakehouse.freshness import rows_per_day
    from streaming.produce import corpus_messages, produce

    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=i) for i in range(1, 7)]
    if all(rows_per_day("silver_tweets", settings).get(d, 0) >= 100 for d in days):
        return
    print("filling the last 7 days with corpus tweets first (steady state) ...", flush=True)
    produce(corpus_messages(today, 7, {"airline"}), settings, progress=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(rows_per_day("silver_tweets", settings).get(d, 0) >= 100 for d in days):
            return
        time.sleep(5)
    raise RuntimeError("the corpus days did not reach silver_tweets in time: is the stack's ingest consumer up?")


def _texts() -> list[tuple[str, str | None]]:
    from tweetops.core.corpus import load_corpus

    return [(t["text"], t["label"]) for t in load_corpus(days=1, topics={"airline"}, limit=5000)]


def _producer(settings: Settings):
    from confluent_kafka import Producer

    from streaming.produce import producer_config

    return Producer({**producer_config(settings), "linger.ms": 20})


def _open(name: str, settings: Settings):
    from tweetops.core.tables import ensure_table

    return ensure_table(name, settings)


def _look(settings: Settings, run: str, files: dict[str, set[str]], seen: dict[str, dict[str, float]]) -> None:
    """Read the files each table gained since the last look; note when each of our ids first shows."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from tweetops.core.storage import pyarrow_filesystem

    now = time.time()
    for table in TABLES:
        current = set(_open(table, settings).file_uris())
        new = sorted(current - files[table])
        files[table] = current
        if not new:
            continue
        filesystem, _prefix = pyarrow_filesystem(settings)
        paths = [_path(uri) for uri in new]
        ids = ds.dataset(paths, format="parquet", filesystem=filesystem).to_table(columns=["id"])["id"]
        mine = pc.filter(ids, pc.starts_with(ids, run)).to_pylist()
        for tweet_id in mine:
            seen[table].setdefault(tweet_id, now)


def _path(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("s3://"):
        return uri[len("s3://"):]
    return uri


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50_s": None, "p95_s": None, "max_s": None}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)

    return {"p50_s": at(0.5), "p95_s": at(0.95), "max_s": round(values[-1], 1)}


def _commits(table: str, settings: Settings, since: float) -> dict:
    """The table's commits since `since` by what made them: appends of new silver rows
    (append_new_silver) or whole-day rebuilds (score_interval, WRITE...)."""
    kinds: dict[str, int] = {}
    for commit in _open(table, settings).history():
        if commit.get("timestamp", 0) / 1000 < since:
            break
        kind = commit.get("tweetops.operation") or commit.get("operation", "?")
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _machine() -> dict:
    """What the figures were measured on: cores, memory, and the load while measuring."""
    import os

    try:
        memory = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")).split()[1]) / 2**20
    except (OSError, StopIteration, ValueError):
        memory = None
    return {"cores": os.cpu_count(), "memory_gib": round(memory, 1) if memory else None,
            "load_average_1m": os.getloadavg()[0]}


def _dag_runs(api, since: float) -> dict:
    """Runs created since `since`, per DAG and state (all of them: a 10-minute run makes many)."""
    runs = {}
    for dag_id in DAGS:
        states: dict[str, int] = {}
        for r in api.runs_since(dag_id, since):
            states[r["state"]] = states.get(r["state"], 0) + 1
        runs[dag_id] = states
    return runs


def _scheduler_cpu(settings: Settings) -> float | None:
    """CPU seconds used so far by the stack's `airflow scheduler` processes (None if not found)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if b"airflow scheduler" in cmdline:
            found = True
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total if found else None


def _print(f: dict) -> None:
    print(f"\n{f['tweets']} tweets ({f['late_tweets']} late) at {f['rate_per_s']:g}/s for {f['minutes']:g} min; "
          f"latency from produce, resolution {f['poll_s']:g} s:")
    for table in TABLES:
        t = f[table]
        print(f"  {table:<17} reached {t['share']:.1%}  p50 {t['p50_s']} s  p95 {t['p95_s']} s  max {t['max_s']} s")
    late = f["late_reached_predictions"]
    print(f"  late tweets in gold_predictions: {'n/a' if late is None else f'{late:.1%}'}")
    print(f"  DAG runs created: {f['dag_runs']}")
    print(f"  commits: {f['commits']}")
    print(f"  Airflow scheduler CPU: {f['scheduler_cpu']} cores (CPU time / wall time)")
    m = f["machine"]
    print(f"  machine: {m['cores']} cores, {m['memory_gib']} GiB, load average {m['load_average_1m']:.1f} at the end")
