"""The embedded stack end to end, on free ports: `tweetops stack up|status|down`, real tweets through
the real broker into bronze, a backfill run by the real Airflow scheduler (twice: identical tables),
the Airflow and MLflow UIs in headless Chromium, and `down` leaving no process behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time as time_module
import urllib.request
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import TWEETOPS, free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".tweetops" / "screenshots"


def _process_groups_alive(pgids: set[int]) -> set[int]:
    alive = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            alive.add(int(fields[2]))
    return alive


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("stack-e2e")
    env = {
        "TWEETOPS_HOME": str(home / "home"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse"),
        "TWEETOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
        "TWEETOPS_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/services/test",
        "TWEETOPS_API_URL": f"http://127.0.0.1:{free_port()}",
        "TWEETOPS_TOPIC_PARTITIONS": "2",
        "TWEETOPS_INGEST_METRICS_PORT": str(free_port()),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        # This stack generates its own MLflow accounts; not the session's test server's (conftest).
        for key in ("TWEETOPS_MLFLOW_USERNAME", "TWEETOPS_MLFLOW_PASSWORD", "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD"):
            patch.delenv(key, raising=False)
        yield {**os.environ, **env}
        subprocess.run([*TWEETOPS, "stack", "down"], env={**os.environ, **env}, capture_output=True, timeout=120)


def _tweetops(env, *args, timeout=600):
    result = subprocess.run([*TWEETOPS, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"tweetops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time_module.monotonic() + timeout
    while not condition():
        assert time_module.monotonic() < deadline, f"gave up waiting for {what}"
        time_module.sleep(1)


def _consumer_pids(group: int) -> list[int]:
    """The `tweetops ingest` processes under the stack's restart loop (process group `group`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        # The restart loop (/bin/sh) names the same command in its arguments: only the consumer itself.
        if int(fields[2]) == group and fields[0] != "Z" and b"ingest\0--follow" in cmdline \
                and not cmdline.startswith(b"/bin/sh"):
            found.append(int(stat.parent.name))
    return found


def _kill_consumer(group: int) -> None:
    for pid in _consumer_pids(group):
        os.kill(pid, signal.SIGKILL)


def _table_rows(name: str) -> list[dict]:
    from tweetops.core.tables import ensure_table

    rows = ensure_table(name).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda row: json.dumps(row, default=str, sort_keys=True))


def test_stack_backfill_and_uis(stack_env):
    env = stack_env
    up = _tweetops(env, "stack", "up")
    assert env["TWEETOPS_AIRFLOW_URL"] in up and "password" in up

    status = json.loads(_tweetops(env, "stack", "status", "--json"))
    assert {row["service"]: row["state"] for row in status} == {
        "broker": "healthy", "slack": "healthy", "mlflow": "healthy", "airflow": "healthy", "ingest": "healthy",
        "api": "healthy"}
    pids = {row["service"]: row["pid"] for row in status}
    with urllib.request.urlopen(env["TWEETOPS_MLFLOW_TRACKING_URI"] + "/health", timeout=5) as response:
        assert response.status == 200

    # A second `up` is harmless: same processes.
    _tweetops(env, "stack", "up")
    assert {r["service"]: r["pid"] for r in json.loads(_tweetops(env, "stack", "status", "--json"))} == pids

    # Real tweets of one day through the real broker into bronze.
    today = datetime.now(timezone.utc).date()
    day = today - timedelta(days=1)
    _tweetops(env, "produce", "--corpus", "--corpus-topics", "airline", "--end", today.isoformat(),
              "--days", "1", "--limit", "600", "--quiet")
    # The stack's own consumer lands them; killed, it is started again and resumes from bronze's offsets.
    _wait_for(lambda: len(_table_rows("bronze_tweets")) >= 1, "the stack's consumer to land tweets")
    _kill_consumer(pids["ingest"])
    _wait_for(lambda: len(_table_rows("bronze_tweets")) == 600 and _consumer_pids(pids["ingest"]),
              "the restarted consumer to land every tweet")
    assert len(_table_rows("bronze_tweets")) == 600   # none twice

    # The real scheduler runs a backfill of the quality gate for that day, then the same backfill again.
    from tweetops.orchestration.airflow_api import AirflowAPI

    api = AirflowAPI()
    api.wait_for_dags(["tweetops_quality_gate"])
    api.unpause("tweetops_quality_gate")
    logical = datetime.combine(today, time(), tzinfo=timezone.utc)  # the run at `today` validates `day`
    # Unpausing makes the scheduler run the latest interval (catchup is off): let that run finish
    # first, so the backfills below always rerun an interval that already ran, never race its creation.
    scheduled = api.wait_for_logical_run("tweetops_quality_gate", logical, timeout=300)
    assert scheduled["state"] == "success", scheduled
    snapshots = [{name: _table_rows(name) for name in ("silver_tweets", "silver_quarantine")}]
    for _ in range(2):
        backfill = api.backfill("tweetops_quality_gate", logical, logical, reprocess="completed")
        runs = api.wait_for_backfill(backfill, timeout=300)
        assert runs and all(run["state"] == "success" for run in runs), runs
        snapshots.append({name: _table_rows(name) for name in ("silver_tweets", "silver_quarantine")})
    assert len(snapshots[0]["silver_tweets"]) > 500
    assert {row["event_date"] for row in snapshots[0]["silver_tweets"]} == {day}
    assert snapshots[0] == snapshots[1] == snapshots[2], "a backfill of an interval that already ran changed the tables"

    # A late tweet for that validated day: the consumer lands it and tells Airflow, the incremental gate
    # rebuilds the day; nobody backfills.
    late = {"id": "late-tweet-1", "text": "@united landed two days late, like this tweet", "user": "u", "lang": "en",
            "created_at": datetime.combine(day, time(12), tzinfo=timezone.utc).isoformat(), "label": "negative"}
    from streaming.produce import produce

    produce([(b"late-tweet-1", json.dumps(late).encode())], progress=False)
    _wait_for(lambda: "late-tweet-1" in {r["id"] for r in _table_rows("silver_tweets")},
              "the late tweet to reach silver_tweets", timeout=300)
    assert len(_table_rows("silver_tweets")) == len(snapshots[0]["silver_tweets"]) + 1

    # A registered model for the MLflow UI.
    from ml.features import seed_features_from_corpus
    from ml.train import train_model

    seed_features_from_corpus(limit=1500)
    train_model("baseline")

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    _check_uis(env)

    _tweetops(env, "stack", "down")
    assert _process_groups_alive(set(pids.values())) == set()
    assert all(r["state"] == "stopped" for r in json.loads(
        subprocess.run([*TWEETOPS, "stack", "status", "--json"], env=env, capture_output=True, text=True).stdout))


def _check_uis(env) -> None:
    from playwright.sync_api import sync_playwright

    from tweetops.app.mlflow_auth import mlflow_accounts
    from tweetops.orchestration.airflow_api import airflow_password
    from tweetops.core.settings import load_settings

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    airflow, mlflow = env["TWEETOPS_AIRFLOW_URL"], env["TWEETOPS_MLFLOW_TRACKING_URI"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(airflow + "/", wait_until="load")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", airflow_password(load_settings()))
            page.click("button[type=submit]")
            page.wait_for_selector("text=Dags", timeout=30_000)

            page.goto(airflow + "/dags", wait_until="load")
            page.wait_for_selector("text=tweetops_quality_gate", timeout=30_000)
            for dag_id in ("tweetops_features", "tweetops_training"):
                assert page.locator(f"text={dag_id}").count() >= 1, f"{dag_id} not listed in the Airflow UI"
            page.screenshot(path=str(SCREENSHOTS / "airflow-dags.png"))

            page.goto(airflow + "/dags/tweetops_quality_gate/runs", wait_until="load")
            page.wait_for_selector("text=success", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "airflow-runs.png"))

            # MLflow asks for an account (basic-auth app): the admin password `stack up` generated.
            admin = mlflow_accounts(load_settings())["admin"]
            page = browser.new_page(viewport={"width": 1400, "height": 900}, http_credentials={
                "username": admin["username"], "password": admin["password"]})
            page.goto(mlflow + "/#/models", wait_until="load")
            page.wait_for_selector("text=tweetops-sentiment", timeout=30_000)
            page.keyboard.press("Escape")  # MLflow's "new registry UI" announcement, when it shows
            page.screenshot(path=str(SCREENSHOTS / "mlflow-models.png"))
            page.goto(mlflow + "/#/models/tweetops-sentiment", wait_until="load")
            page.wait_for_selector("text=champion", timeout=30_000)  # version 1 carries the alias
            page.keyboard.press("Escape")
            page.screenshot(path=str(SCREENSHOTS / "mlflow-model-champion.png"))
        finally:
            browser.close()
