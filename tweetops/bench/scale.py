"""Scale: one day of N tweets from topic to gold_predictions; wall time, rate, peak memory per stage.

For each size (--tweets 1000000,5000000,...): corpus tweets (seeded shuffle; each repeat gets a fresh id
and one hashtag, so texts stay distinct as in real traffic), all on one UTC day, are
produced to a Tansu broker, then each stage runs as the `tweetops` command a user runs: ingest
(--until-idle), gate, features build, train (baseline, registered on a local MLflow server), and
score twice: on Spark and in one process (the crossover that TWEETOPS_SPARK_SCORING_MIN_ROWS sets).
While a stage runs, its whole process tree is sampled (psutil, every 0.2 s): the peak resident
memory of the driver (the command's Python), of the JVM, and of the largest Spark Python worker,
and the peak of the tree's sum. With --spark cluster (or both), features and scoring also run on a
standalone master with two one-core workers (tweetops.app.spark_cluster), whose processes are sampled
too. Prints a table, then one JSON line (tweetops bench). Each day is also appended to a JSON-lines
record; --plot draws the growth curve of every recorded day (tweetops.bench.scale_plot).
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from tweetops.core.settings import REPO_ROOT, load_settings

DAY = date(2026, 1, 15)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tweets", default="1000000",
                        help="comma-separated day sizes in tweets (default 1000000), e.g. 1000000,5000000,10000000")
    parser.add_argument("--spark", choices=("local", "cluster", "both"), default="local",
                        help="where features and scoring run: local[2], a 2-worker standalone cluster, or both")
    parser.add_argument("--partitions", type=int, default=2, help="topic partitions (default 2)")
    parser.add_argument("--one-process-max", type=int, default=1_000_000, metavar="TWEETS",
                        help="score in one process too (the crossover) only for days up to this size "
                             "(default 1000000): that path holds the whole interval in memory")
    parser.add_argument("--record", type=Path, metavar="JSONL",
                        help="append each measured day to this file (default: $TWEETOPS_HOME/bench/scale-days.jsonl)")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="then draw the growth curve of every day in the record (.svg or .png)")
    parser.add_argument("--plot-only", action="store_true", help="measure nothing: only draw --plot from the record")


class TreeMemory(threading.Thread):
    """Peak RSS of a process tree (plus extra trees, e.g. a Spark cluster's), by role, in MB."""

    def __init__(self, pid: int, extra_pids: list[int] = (), every: float = 0.2):
        super().__init__(daemon=True)
        self.roots, self.every, self.done = [pid, *extra_pids], every, threading.Event()
        self.peak = {"driver": 0.0, "jvm": 0.0, "python_worker": 0.0, "total": 0.0}
        self.start()

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            total = 0.0
            for root in self.roots:
                try:
                    top = psutil.Process(root)
                    tree = [top, *top.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for process in tree:
                    try:
                        rss = process.memory_info().rss / 2**20
                        role = self._role(process, top)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    total += rss
                    self.peak[role] = max(self.peak[role], rss)
            self.peak["total"] = max(self.peak["total"], total)
            self.done.wait(self.every)

    @staticmethod
    def _role(process, top) -> str:
        name = process.name()
        if name == "java":
            return "jvm"
        if process.pid == top.pid and name.startswith("python"):
            return "driver"
        command = " ".join(process.cmdline())
        return "python_worker" if "pyspark" in command or name.startswith("python") else "driver"


def run_stage(name: str, argv: list[str], env: dict, tweets: int, extra_pids: list[int] = ()) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tweetops.cli", *argv], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(process.pid, list(extra_pids))
    output, _ = process.communicate()
    memory.done.set()
    memory.join()
    wall = time.perf_counter() - started
    if process.returncode not in (0, 1) or (process.returncode == 1 and name != "gate"):
        raise RuntimeError(f"{name} failed ({process.returncode}): {' '.join(argv)}\n{output[-3000:]}")
    figures = {"stage": name, "wall_s": round(wall, 1), "tweets_per_s": round(tweets / wall),
               **{f"peak_{k}_mb": round(v) for k, v in memory.peak.items()}}
    print(f"  {name:<18}{wall:>8.1f} s{tweets / wall:>11,.0f}/s  driver {memory.peak['driver']:>6.0f} MB  "
          f"jvm {memory.peak['jvm']:>6.0f} MB  py-worker {memory.peak['python_worker']:>5.0f} MB  "
          f"tree {memory.peak['total']:>6.0f} MB", flush=True)
    return figures


def _produce_day(settings, count: int) -> float:
    import msgspec

    from tweetops.bench.ingest import _corpus_tweets
    from streaming.produce import produce

    tweets, encode = _corpus_tweets(), msgspec.json.Encoder().encode
    random.Random(0).shuffle(tweets)  # seeded: any size is a representative draw (labels, topics)
    day_start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc)

    def messages():
        for n, tweet in enumerate(itertools.islice(itertools.cycle(tweets), count)):
            copy = n // len(tweets)
            tweet_id = f"{tweet['id']}-{copy}"
            created = day_start + timedelta(seconds=(n * 86399) // max(1, count - 1))
            # Each copy's text differs by one hashtag: a day of the same 38k texts repeated would be
            # deduplicated by training (a text with a test copy leaves train), unlike real traffic.
            text = tweet["text"] if copy == 0 else f"{tweet['text']} #c{copy}"
            yield tweet_id.encode(), encode({**tweet, "id": tweet_id, "text": text,
                                             "created_at": created.isoformat(timespec="seconds")})

    started = time.perf_counter()
    summary = produce(messages(), settings, progress=False)
    if summary["failed"]:
        raise RuntimeError(f"could not produce the benchmark day: {summary['errors']}")
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict:
    from tweetops.bench import scale_plot

    if args.plot_only and not args.plot:
        raise SystemExit("tweetops bench scale: --plot-only needs --plot FILE (.svg or .png)")
    record = args.record or load_settings().home / "bench" / "scale-days.jsonl"
    figures = {"days": []} if args.plot_only else _measure_days(args, record)
    if args.plot:
        figures["plot"] = str(scale_plot.draw(scale_plot.read_days(record), args.plot))
        print(f"growth curve of {record}: {figures['plot']}", flush=True)
    return figures


def _measure_days(args: argparse.Namespace, record: Path) -> dict:
    from tweetops.app.spark_cluster import free_port
    from tweetops.bench.ingest import _broker
    from tweetops.app import stack

    sizes = [int(s) for s in str(args.tweets).split(",") if s.strip()]
    modes = ["local", "cluster"] if args.spark == "both" else [args.spark]
    results = []
    with tempfile.TemporaryDirectory(prefix="tweetops-bench-scale-") as tmp, _broker(None) as bootstrap:
        mlflow_env = {**os.environ, "TWEETOPS_HOME": f"{tmp}/mlflow-home",
                      "TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
        mlflow_settings = load_settings(mlflow_env)
        stack.up(mlflow_settings, only=["mlflow"])
        # The server has accounts (MLflow auth): the stages sign in as the pipeline account it generated.
        pipeline = load_settings(mlflow_env)
        credentials = {"TWEETOPS_MLFLOW_USERNAME": pipeline.mlflow_username or "",
                       "TWEETOPS_MLFLOW_PASSWORD": pipeline.mlflow_password or ""}
        try:
            for size in sizes:
                for mode in modes:
                    results.append(_one_day(size, mode, Path(tmp) / f"{size}-{mode}", bootstrap,
                                            mlflow_settings.mlflow_tracking_uri, args.partitions,
                                            one_process=size <= args.one_process_max, credentials=credentials))
                    _append(record, results[-1])
        finally:
            stack.stop(mlflow_settings, "mlflow")
    return {"days": results, "cpus": os.cpu_count(), "memory_gb": round(_memory_gb(), 1),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _one_day(size: int, mode: str, folder: Path, bootstrap: str, tracking_uri: str, partitions: int,
             one_process: bool = True, credentials: dict | None = None) -> dict:
    from tweetops.app.spark_cluster import LocalSparkCluster

    env = {**os.environ, "TWEETOPS_HOME": str(folder / "home"), "TWEETOPS_LAKEHOUSE_URI": str(folder / "lakehouse"),
           "TWEETOPS_KAFKA_BOOTSTRAP": bootstrap, "TWEETOPS_TOPIC": f"scale-{folder.name}",
           "TWEETOPS_TOPIC_PARTITIONS": str(partitions), "TWEETOPS_CONSUMER_GROUP": f"scale-{folder.name}",
           "TWEETOPS_MLFLOW_TRACKING_URI": tracking_uri, "TWEETOPS_MODEL_NAME": f"scale_{folder.name}".replace("-", "_"),
           "PYTHONUNBUFFERED": "1", **(credentials or {})}
    settings = load_settings(env)
    from streaming.topic import ensure_topic

    ensure_topic(settings)
    print(f"{size:,} tweets on {DAY} ({mode}): producing ...", flush=True)
    produce_s = _produce_day(settings, size)
    day, next_day = DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()
    stages = [run_stage("ingest", ["ingest", "--until-idle", "--prefetch-mb", "32"], env, size),
              run_stage("gate", ["gate", "--date", day], env, size)]
    cluster = None
    if mode == "cluster":
        cluster = LocalSparkCluster(folder / "spark-cluster", workers=2).start()
        env = {**env, "TWEETOPS_SPARK_MASTER": cluster.master_url}
    try:
        extra = cluster.pids() if cluster else []
        stages.append(run_stage("features", ["features", "build", "--start", day], env, size, extra))
        stages.append(run_stage("training", ["train", "--config", "baseline"], env, size, extra))
        score = ["score", "--start", day, "--end", next_day]
        # Both scoring engines, whatever TWEETOPS_SPARK_SCORING_MIN_ROWS would choose: the crossover.
        stages.append(run_stage("scoring-spark", score, {**env, "TWEETOPS_SPARK_SCORING_MIN_ROWS": "0"},
                                size, extra))
        if one_process:
            stages.append(run_stage("scoring-1-process", score,
                                    {**env, "TWEETOPS_SPARK_SCORING_MIN_ROWS": str(10**12)}, size))
        else:
            print(f"  {'scoring-1-process':<18}skipped above --one-process-max: Spark scores days this big", flush=True)
    finally:
        if cluster:
            cluster.stop()
    return {"tweets": size, "spark": mode, "produce_s": round(produce_s, 1), "stages": stages,
            "max_process_mb": max(max(s["peak_driver_mb"], s["peak_jvm_mb"], s["peak_python_worker_mb"])
                                  for s in stages)}


def _append(record: Path, day: dict) -> None:
    """One measured day as one JSON line, with the machine and its load (for the growth curve)."""
    import json

    from ml.train import git_commit

    record.parent.mkdir(parents=True, exist_ok=True)
    machine = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "memory_gb": round(_memory_gb(), 1), "load_average_1m": round(os.getloadavg()[0], 2),
               "commit": git_commit()[0][:12]}
    with record.open("a") as out:
        out.write(json.dumps({**day, **machine}) + "\n")


def _memory_gb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30
