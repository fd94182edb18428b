"""`tweetops demo`: the whole story on real tweets, through the real stack and the real scheduler.

1. start the embedded stack, its ingest consumer included, and unpause the DAGs;
2. produce airline tweets of the corpus to Kafka (a few days), plus one deliberately bad batch;
3. the consumer lands them exactly once in bronze (bad messages to dead letters) and tells Airflow;
   the incremental gate validates the days that changed: good rows to silver, bad rows quarantined
   and alerted in Slack; features follow (data-aware on silver); no backfill is needed;
4. one backfill of the bad day through Airflow, to show it still rebuilds a day from bronze;
5. train and register the baseline: the first version becomes champion; scoring catches up;
6. drift: tweets of other topics stream in; the gate, features and scoring follow by themselves,
   predictions appear; the drift DAG detects drift, alerts and requests retraining (once);
   training registers a challenger; the promotion DAG decides;
7. a summary: counts per table, model versions, where to look (the TweetOps pages in the Airflow
   UI), SQL to try, a prediction served.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path

from tweetops.core.intervals import midnight
from tweetops.core.settings import Settings, load_settings

TWEETOPS = [sys.executable, "-m", "tweetops.cli"]
PIPELINE_DAGS = ["tweetops_quality_gate", "tweetops_features", "tweetops_training", "tweetops_scoring",
                 "tweetops_drift", "tweetops_promotion"]
SQL_EXAMPLES = [
    "SELECT label, count(*) AS tweets FROM silver_tweets GROUP BY label ORDER BY tweets DESC",
    "SELECT event_date, count(*) AS negative_about_united FROM silver_tweets "
    "WHERE label = 'negative' AND lower(text) LIKE '%@united%' GROUP BY event_date ORDER BY event_date",
    "SELECT d.check, round(d.value, 3) AS value, d.threshold, d.drifted FROM gold_drift_metrics d ORDER BY d.checked_at DESC LIMIT 10",
]


class Story:
    def __init__(self):
        self.started = time.monotonic()

    def chapter(self, title: str) -> None:
        print(f"\n\033[1m== [{time.monotonic() - self.started:5.0f} s] {title}\033[0m", flush=True)

    @staticmethod
    def say(text: str) -> None:
        print(f"   {text}", flush=True)


def tweetops(*args: str, quiet: bool = False) -> str:
    """Run a `tweetops` command as a person would, showing its output (progress bars included)."""
    print(f"   $ tweetops {' '.join(args)}", flush=True)
    result = subprocess.run([*TWEETOPS, *args], stdout=subprocess.PIPE, text=True)
    if not quiet and result.stdout.strip():
        print("     " + result.stdout.strip().replace("\n", "\n     "), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo stopped: `tweetops {' '.join(args)}` exited with {result.returncode}")
    return result.stdout


def bad_batch(day: date) -> list[bytes]:
    """Messages a real feed sends: broken JSON, missing fields, bad timestamps, and tweets that are
    well-formed but fail the quality gate (unknown language, empty-ish or overlong text, bad label)."""
    at = datetime.combine(day, dtime(12), tzinfo=timezone.utc).isoformat()
    messages = [b'{"id": "broken-1", "text": "unterminated', b"\xff\xfe not utf-8", b"[]",
                json.dumps({"id": "no-text", "created_at": at, "user": "u", "lang": "en"}).encode(),
                json.dumps({"id": "bad-time", "text": "hello", "created_at": "yesterday-ish",
                            "user": "u", "lang": "en"}).encode()]
    for i in range(40):
        messages.append(json.dumps({
            "id": f"demo-bad-{i}", "created_at": at, "user": "spam_bot", "lang": "zz" if i % 2 else "en",
            "text": ("BUY NOW " * 60) if i % 2 == 0 else f"win a free flight #{i}",
            "label": "positive",
        }).encode())
    return messages


def produce_raw(settings: Settings, messages: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    for message in messages:
        producer.produce(settings.topic, message)
    producer.flush(30)


def counts(settings: Settings) -> dict[str, int | None]:
    from tweetops.core.tables import TABLES, open_table

    result = {}
    for name in TABLES:
        try:
            result[name] = sum(a.num_rows for a in open_table(name, settings).to_pyarrow_dataset().to_batches())
        except LookupError:
            result[name] = None
    return result


def run_demo(args: argparse.Namespace) -> int:
    from tweetops.app import stack
    from tweetops.orchestration.airflow_api import AirflowAPI

    story = Story()
    settings = load_settings()
    today = datetime.now(timezone.utc).date()
    first_day = today - timedelta(days=args.days + 2)
    drift_start = today - timedelta(days=2)
    bad_day = first_day + timedelta(days=1)

    story.chapter("Starting the embedded stack (broker, ingest consumer, MLflow, Airflow, Slack receiver, API)")
    stack.up(settings)
    settings = load_settings()  # now with the MLflow pipeline account the first `stack up` generated
    stack.print_where_to_look(settings)

    api = AirflowAPI(settings)
    api.wait_for_dags(PIPELINE_DAGS, timeout=180)
    # Training waits: unpausing it starts its latest weekly run, which needs features first.
    for dag_id in PIPELINE_DAGS:
        if dag_id != "tweetops_training":
            api.unpause(dag_id)
    story.say("unpaused the gate, features, scoring, drift and promotion DAGs: from now on data flows by itself")

    story.chapter(f"Streaming real airline tweets of {first_day} .. {drift_start - timedelta(days=1)} to Kafka")
    tweetops("produce", "--corpus", "--corpus-topics", "airline", "--end", drift_start.isoformat(),
             "--days", str(args.days), *(["--limit", str(args.limit)] if args.limit else []))
    story.say(f"and one bad batch dated {bad_day}: broken messages and tweets that break the expectations")
    produce_raw(settings, bad_batch(bad_day))
    story.say("no ingest or backfill command: the stack's consumer lands each batch in bronze within a second and")
    story.say("tells Airflow (a bronze_tweets asset event); the gate validates the days that changed, then features follow")
    days = [first_day + timedelta(days=i) for i in range(args.days)]
    _follow_stream(settings, api, story, days, "silver_tweets")
    _wait_idle(api, "tweetops_features", story)

    story.chapter("A backfill still works: Airflow rebuilds one day from bronze, whatever was processed before")
    gate = api.backfill("tweetops_quality_gate", midnight(bad_day + timedelta(days=1)),
                        midnight(bad_day + timedelta(days=1)), reprocess="completed")
    for run in api.wait_for_backfill(gate, timeout=600):
        story.say(f"quality gate backfill of {bad_day}: {run['state']} (its bad rows stay in quarantine, alerted)")

    story.chapter("Training the baseline (TF-IDF + logistic regression) through Airflow")
    before = _run_ids(api, "tweetops_training", "tweetops_promotion")
    api.unpause("tweetops_training")
    story.say("unpaused tweetops_training: the scheduler starts its latest weekly run")
    run = _wait_for_new_run(api, "tweetops_training", before, story, run_type="scheduled", appear_within=90)
    if run is None:  # the scheduler made no run (no weekly tick since start_date): ask for one
        run_id = api.trigger("tweetops_training", conf={"config": "baseline"})
        story.say(f"tweetops_training {run_id}: {api.wait_for_run('tweetops_training', run_id, timeout=900)}")
    if "challenger" in _aliases(settings):
        story.say("the new version is a challenger; the promotion DAG (data-aware) decides ...")
        _wait_for_new_run(api, "tweetops_promotion", before, story)
    else:
        story.say("the registry had no champion: the first version became champion directly")
    _show_models(settings, story)

    story.chapter("Scoring catches up with the champion: every silver day without predictions")
    run_id = api.trigger("tweetops_scoring")
    story.say(f"tweetops_scoring {run_id} (no dates: a catch-up run): "
              f"{api.wait_for_run('tweetops_scoring', run_id, timeout=600)}")
    story.say("scoring triggers the drift DAG on the scored days: same topics as training, so no retraining")
    _wait_idle(api, "tweetops_drift", story)
    _show_drift(settings, story)

    story.chapter(f"Drift: tweets about other topics stream in for {drift_start} .. {today - timedelta(days=1)}")
    before = _run_ids(api, "tweetops_drift", "tweetops_training", "tweetops_promotion")
    tweetops("produce", "--corpus", "--corpus-topics", "apple,self_driving,google,other", "--end", today.isoformat(),
             "--days", "2", "--limit", str(args.drift_limit))
    story.say("consumer -> bronze -> gate -> features and scoring -> drift, each on the previous one's asset event:")
    _follow_stream(settings, api, story, [drift_start, drift_start + timedelta(days=1)], "gold_predictions")
    _wait_for_new_run(api, "tweetops_drift", before, story)
    drifted = _show_drift(settings, story)
    if drifted:
        story.say("the drift DAG emitted a retraining request (an Airflow asset); waiting for training and promotion ...")
        _wait_for_new_run(api, "tweetops_training", before, story)
        _wait_for_new_run(api, "tweetops_promotion", before, story)
    _wait_idle(api, "tweetops_features", story)
    _wait_idle(api, "tweetops_scoring", story)
    _show_models(settings, story)
    _show_alerts(settings, story)

    story.chapter("Summary")
    _wait_for_api_champion(settings)
    _summary(settings, story)
    print(f"\nThe whole story took {time.monotonic() - story.started:.0f} s. The stack keeps running: "
          "`tweetops stack down` stops it.")
    return 0


def _follow_stream(settings: Settings, api, story: Story, days: list[date], target: str,
                   timeout: float = 900) -> None:
    """Show rows arriving in bronze, silver and gold_predictions until `target` has rows for every day."""
    from lakehouse.freshness import rows_per_day

    started, shown = time.monotonic(), None
    while time.monotonic() - started < timeout:
        figures = {name: rows_per_day(name, settings) for name in ("bronze_tweets", "silver_tweets", "gold_predictions")}
        line = ", ".join(f"{name} {sum(n for d, n in per_day.items() if d in days)}" for name, per_day in figures.items())
        if line != shown:
            gate_runs = len(api.runs("tweetops_quality_gate"))
            story.say(f"[{time.monotonic() - started:4.0f} s] {line} (quality gate runs so far: {gate_runs})")
            shown = line
        if all(figures[target].get(d) for d in days) and _settled(figures, days, target):
            return
        time.sleep(5)
    story.say(f"{target} does not cover {days[0]} .. {days[-1]} after {timeout:.0f} s; see the Airflow UI")


def _settled(figures: dict, days: list[date], target: str) -> bool:
    """Every tweet of those days that passed the gate reached `target` (quarantined ones never do)."""
    if target == "silver_tweets":
        return True
    return all(figures[target].get(d, 0) >= figures["silver_tweets"].get(d, 0) for d in days)


def _wait_idle(api, dag_id: str, story: Story, timeout: float = 900) -> None:
    """Wait until the DAG has no queued or running runs (asset-triggered runs appear by themselves)."""
    time.sleep(5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.runs(dag_id)
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            states = [r["state"] for r in runs]
            story.say(f"{dag_id}: {states.count('success')} runs succeeded, {states.count('failed')} failed")
            return
        time.sleep(3)
    story.say(f"{dag_id}: still running after {timeout:.0f} s; see the Airflow UI")


def _run_ids(api, *dag_ids: str) -> set[str]:
    return {f"{dag_id}/{r['dag_run_id']}" for dag_id in dag_ids for r in api.runs(dag_id)}


def _wait_for_new_run(api, dag_id: str, before: set[str], story: Story, run_type: str = "asset_triggered",
                      timeout: float = 900, appear_within: float | None = None) -> dict | None:
    """Wait for a run of `run_type` that did not exist in `before` to finish; None if none appears."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        new = [r for r in api.runs(dag_id)
               if f"{dag_id}/{r['dag_run_id']}" not in before and r["run_type"] == run_type]
        if new and all(r["state"] in ("success", "failed") for r in new):
            story.say(f"{dag_id} {new[0]['dag_run_id']} ({run_type}): {new[0]['state']}")
            return new[0]
        if not new and appear_within is not None and time.monotonic() - started > appear_within:
            return None
        time.sleep(3)
    story.say(f"{dag_id}: no new {run_type} run finished within {timeout:.0f} s; see the Airflow UI")
    return None


def _aliases(settings: Settings) -> dict[str, str]:
    from ml import registry

    try:
        return dict(registry.client(settings).get_registered_model(settings.model_name).aliases)
    except Exception:
        return {}


def _show_models(settings: Settings, story: Story) -> None:
    from ml import registry

    client = registry.client(settings)  # signed in with the settings' MLflow account
    try:
        versions = client.search_model_versions(f"name='{settings.model_name}'")
    except Exception as exc:  # a registry problem should not hide the rest of the story
        story.say(f"registry unavailable: {exc}")
        return
    # search_model_versions leaves aliases out; the registered model has them all.
    aliases = client.get_registered_model(settings.model_name).aliases if versions else {}
    for version in sorted(versions, key=lambda v: int(v.version)):
        run = client.get_run(version.run_id)
        f1 = run.data.metrics.get("test_macro_f1")
        tags = [f"@{a}" for a, v in aliases.items() if str(v) == str(version.version)]
        score = f"{f1:.3f}" if f1 is not None else "n/a"
        story.say(f"{settings.model_name} v{version.version}: test macro-F1 {score} {' '.join(tags)}")


def _show_drift(settings: Settings, story: Story) -> list[str]:
    """Print the verdict of the newest drift check; return the checks that drifted."""
    from lakehouse.sql import query

    try:
        rows = query("SELECT d.check, d.value, d.threshold, d.drifted, d.window_start, d.window_end "
                     "FROM gold_drift_metrics d WHERE d.checked_at = (SELECT max(checked_at) FROM gold_drift_metrics)",
                     settings).to_pylist()
    except Exception as exc:
        story.say(f"drift metrics unavailable: {exc}")
        return []
    if not rows:
        story.say("no drift check has run yet")
        return []
    drifted = [r["check"] for r in rows if r["drifted"]]
    window = f"{rows[0]['window_start']:%Y-%m-%d} .. {rows[0]['window_end']:%Y-%m-%d}"
    story.say(f"drift check of {window}: {len(rows)} scores; crossed their threshold: {', '.join(drifted) or 'none'}")
    return drifted


def _wait_for_api_champion(settings: Settings, timeout: float = 60) -> None:
    """The API polls the registry: give it a moment to swap in the newest champion."""
    champion = _aliases(settings).get("champion")
    deadline = time.monotonic() + timeout
    while champion and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{settings.api_url}/model", timeout=5) as response:
                if str(json.loads(response.read()).get("version")) == str(champion):
                    return
        except Exception:
            pass
        time.sleep(2)


def _show_alerts(settings: Settings, story: Story) -> None:
    """The Slack messages the local receiver got: the title and the links of each (the full JSON is in the file)."""
    path = settings.stack_dir / "slack" / "messages.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    story.say(f"Slack alerts received by the local webhook receiver: {len(lines)}")
    for line in lines:
        text = json.loads(line).get("payload", {}).get("text", "")
        if not text:
            story.say(f"  {line[:120]}")
            continue
        title, *rest = text.splitlines()
        story.say(f"  {title}")
        details = [r for r in rest if r.startswith(("TweetOps quality page:", "Data Docs:", "Report:"))]
        if "Challenger" in title and rest:  # a promotion decision: its reason
            details.insert(0, rest[0])
        for detail in details:
            story.say(f"      {detail}")


def _summary(settings: Settings, story: Story) -> None:
    story.say("Rows per table:")
    for name, rows in counts(settings).items():
        story.say(f"  {name:<22} {rows if rows is not None else '(not created)'}")
    _show_models(settings, story)
    story.say("Where to look:")
    story.say(f"  Airflow UI       {settings.airflow_url}  (admin / see `tweetops stack up`)")
    story.say(f"  MLflow UI        {settings.mlflow_tracking_uri}/#/models/{settings.model_name}")
    from tweetops.core.links import all_pages

    # The TweetOps pages in the Airflow UI (behind its login): Data Docs and drift reports included.
    for title, url in all_pages(settings).items():
        story.say(f"  TweetOps {title:<13} {url}")
    story.say(f"  Slack messages   {settings.stack_dir / 'slack' / 'messages.jsonl'}")
    story.say("Try some SQL:")
    for sql in SQL_EXAMPLES:
        story.say(f'  tweetops sql "{sql}"')
    story.say("And the prediction API:")
    curl = (f"curl -s -X POST {settings.api_url}/predict -H 'Content-Type: application/json' "
            "-d '{\"text\": \"@united lost my bag again, worst airline ever\"}'")
    story.say(f"  {curl}")
    try:
        request = urllib.request.Request(f"{settings.api_url}/predict", method="POST",
                                         data=json.dumps({"text": "@united lost my bag again, worst airline ever"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            story.say(f"  -> {response.read().decode()}")
    except Exception as exc:
        story.say(f"  -> the API did not answer yet ({exc}); try the curl above in a few seconds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=4, help="days of airline tweets before the drift (default 4)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many airline tweets (default: all)")
    parser.add_argument("--drift-limit", type=int, default=4000,  # a seeded sample with the corpus label mix
                        help="tweets of other topics streamed for the drift scenario (default 4000)")


def run(args: argparse.Namespace) -> int:
    return run_demo(args)
