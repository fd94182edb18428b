"""The TweetOps pages inside the real Airflow UI, in headless Chromium: log in, open the TweetOps
entry, a failed gate run's Data Docs page and a drift report through it, a SQL query on the
lakehouse page; the same URLs without a login are refused. The lakehouse, the GX project, an
Evidently report and the registry are seeded with library code (no whole pipeline run).

Screenshots land in the test's tmp folder; TWEETOPS_UI_SCREENSHOTS=docs/ui also writes the small
ones the README shows."""
from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import free_port
from tweetops.orchestration.airflow_api import airflow_password

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GOOD_DAY, BAD_DAY = date(2024, 3, 1), date(2024, 3, 2)
DRIFT_START, DRIFT_END = date(2024, 3, 5), date(2024, 3, 6)


@pytest.fixture(scope="module")
def airflow_with_tweetops(tmp_path_factory, mlflow_server):
    """Airflow standalone (as `tweetops stack up` starts it) on a free port, over a seeded
    TWEETOPS_HOME; yields (settings, admin password)."""
    from tweetops.app import stack
    from tweetops.core.settings import load_settings

    home = tmp_path_factory.mktemp("ui-plugin")
    env = {"TWEETOPS_HOME": str(home / "home"), "AIRFLOW_HOME": str(home / "airflow"),
           "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse"), "TWEETOPS_MLFLOW_TRACKING_URI": mlflow_server,
           "TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}", "TWEETOPS_MODEL_NAME": "tweetops-ui-test"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = load_settings()
        seed(settings)
        try:
            stack.up(settings, only=["airflow"])
            yield settings, airflow_password(settings)
        finally:
            stack.down(settings)


def seed(settings) -> None:
    """Two gate runs (one passes, one fails) through the real gate, a drift check with a real
    Evidently report, two model versions with test metrics and a promotion decision."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from expectations.gate import run_quality_gate
    from tweetops.core.tables import ensure_table, spec
    from tweetops.core.corpus import load_corpus
    from tests.integration.test_quality_gate import bad_rows, bronze_row, seed_bronze

    days: dict[date, list[dict]] = {GOOD_DAY: [], BAD_DAY: []}
    for tweet in load_corpus(end=BAD_DAY + timedelta(days=1), days=2):
        rows = days[datetime.fromisoformat(tweet["created_at"]).date()]
        if len(rows) < 120:
            rows.append(tweet)
    rows = [bronze_row(t, i) for i, t in enumerate(days[GOOD_DAY] + days[BAD_DAY])]
    seed_bronze(settings, rows + list(bad_rows(days[BAD_DAY]).values()))
    for day in (GOOD_DAY, BAD_DAY):
        run_quality_gate(day, day + timedelta(days=1), settings, run_id=f"scheduled__{day}T00:00:00+00:00")

    report = settings.home / "reports" / f"drift-{DRIFT_START}-{DRIFT_END}.html"
    _evidently_report(report)
    at = datetime.combine(DRIFT_END, datetime.min.time(), timezone.utc)
    start = datetime.combine(DRIFT_START, datetime.min.time(), timezone.utc)
    checks = [("text_content", 0.97, 0.8, True), ("mention_share", 0.45, 0.1, True), ("text_length", 0.04, 0.1, False)]
    write_deltalake(ensure_table("gold_drift_metrics", settings), pa.Table.from_pylist([
        {"checked_at": at, "window_start": start, "window_end": at, "model_version": "1", "check": name,
         "value": value, "threshold": threshold, "drifted": drifted, "report_uri": report.as_uri()}
        for name, value, threshold, drifted in checks], schema=spec("gold_drift_metrics").schema), mode="append")

    from ml.registry import client

    registry = client(settings)
    registry.create_registered_model(settings.model_name)
    # An experiment of its own, as training makes: the pipeline account may only read "Default".
    experiment_id = registry.create_experiment(f"{settings.model_name}-ui-test")
    metrics = []
    for version, f1 in (("1", 0.712), ("2", 0.741)):
        run = registry.create_run(experiment_id=experiment_id)
        registry.create_model_version(settings.model_name, source=f"{run.info.artifact_uri}/model",
                                      run_id=run.info.run_id, tags={"variant": "baseline"})
        metrics += [{"model_name": settings.model_name, "model_version": version, "run_id": f"run{version}",
                     "dataset": "test", "metric": "test_macro_f1", "value": f1, "logged_at": at}]
    registry.set_registered_model_alias(settings.model_name, "champion", "2")
    write_deltalake(ensure_table("gold_model_metrics", settings),
                    pa.Table.from_pylist(metrics, schema=spec("gold_model_metrics").schema), mode="append")
    write_deltalake(ensure_table("gold_promotion_log", settings), pa.Table.from_pylist([
        {"at": at, "actor": "airflow:tweetops_promotion", "action": "promote", "model_name": settings.model_name,
         "from_version": "1", "to_version": "2", "metrics": json.dumps({"test_macro_f1": [0.712, 0.741]}),
         "reason": "challenger v2 beats champion v1 on test macro-F1 by 0.029 (margin 0.01)"}],
        schema=spec("gold_promotion_log").schema), mode="append")


def _evidently_report(path: Path) -> None:
    import pandas as pd
    from evidently import Dataset, DataDefinition, Report
    from evidently.presets import DataDriftPreset

    reference = pd.DataFrame({"text_length": [50 + i % 40 for i in range(300)]})
    current = pd.DataFrame({"text_length": [90 + i % 60 for i in range(300)]})
    definition = DataDefinition(numerical_columns=["text_length"])
    snapshot = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(current, data_definition=definition),
                                               reference_data=Dataset.from_pandas(reference, data_definition=definition))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))


def _status_without_login(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tweetops_pages_in_the_airflow_ui(airflow_with_tweetops, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    settings, password = airflow_with_tweetops
    extra = os.environ.get("TWEETOPS_UI_SCREENSHOTS")
    check_pages(settings, password, [tmp_path] + ([Path(extra)] if extra else []))
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in ("quality", "drift", "lakehouse"))


def check_pages(settings, password: str, shots: list[Path]) -> None:
    from playwright.sync_api import sync_playwright

    from tweetops.app.ui import pages

    airflow = settings.airflow_url
    failed_run = next(r for r in pages.gate_runs(settings) if not r["success"])
    docs_url = f"{airflow}/tweetops/docs/{failed_run['data_docs']}"
    report_url = f"{airflow}/tweetops/reports/drift-{DRIFT_START}-{DRIFT_END}.html"
    urls = [f"{airflow}/tweetops/{page}" for page in ("quality", "drift", "lakehouse", "models", "trace")]
    urls += [docs_url, report_url, f"{airflow}/tweetops/lakehouse?sql=SELECT+1"]

    # Without a login: browsers are sent to the login page, other clients get 401.
    for url in urls:
        assert _status_without_login(url) in (302, 303, 307), url
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 401, url

    def screenshot(page, name: str) -> None:
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            anonymous = browser.new_page()
            anonymous.goto(report_url, wait_until="load")
            assert "/auth/login" in anonymous.url and "evidently" not in anonymous.content().lower()
            anonymous.close()

            page = browser.new_page(viewport={"width": 1280, "height": 720})
            # A Slack link opened without a login: the Airflow login, then back to the page.
            page.goto(f"{airflow}/tweetops/quality?run={failed_run['run']}", wait_until="load")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{airflow}/tweetops/quality?run=*", timeout=60_000)
            page.locator("text=FAILED").first.wait_for(timeout=60_000)

            # The TweetOps section of Airflow's navigation, its pages in Airflow's frame.
            page.goto(airflow + "/", wait_until="load")
            page.get_by_role("link", name="TweetOps").click()
            frame = page.frame_locator("iframe")
            frame.locator("text=Quality-gate runs Great Expectations recorded").wait_for(timeout=60_000)
            assert frame.locator("text=FAILED").count() >= 1 and frame.locator("text=passed").count() >= 1
            screenshot(page, "quality")
            # Each page is also under Plugins > TweetOps.
            page.get_by_role("button", name="Plugins").click()
            page.get_by_role("menuitem", name="TweetOps").hover()
            page.get_by_role("menuitem", name="Drift").click()
            page.frame_locator("iframe").locator("text=mention_share").wait_for(timeout=60_000)

            # The failed run's Data Docs page, served through the plugin.
            page.goto(f"{airflow}/tweetops/quality?run={failed_run['run']}", wait_until="load")
            assert page.locator("text=language in en").count() >= 1   # the bad day's "xx" row
            page.click("text=Data Docs")
            page.wait_for_load_state("load")
            assert page.url == docs_url
            assert "Great Expectations" in page.content() and "language in en (or unknown)" in page.content()
            screenshot(page, "quality-data-docs")

            page.goto(f"{airflow}/tweetops/drift", wait_until="load")
            assert page.locator("text=mention_share").count() == 1 and page.locator("text=DRIFT").count() >= 1
            screenshot(page, "drift")
            page.click(f"text=drift-{DRIFT_START}-{DRIFT_END}.html")
            page.wait_for_load_state("load")
            assert page.url == report_url
            page.locator("text=Drift Score").first.wait_for(timeout=60_000)   # Evidently's own rendering
            screenshot(page, "drift-report")

            page.goto(f"{airflow}/tweetops/lakehouse", wait_until="load")
            assert page.locator("td", has_text="silver_quarantine").count() == 1
            sql = "SELECT event_date, count(*) AS tweets FROM silver_tweets GROUP BY event_date ORDER BY event_date"
            expected = pages.run_sql(sql, settings).to_pylist()
            page.fill("textarea[name=sql]", sql)
            page.click("text=Run")
            page.wait_for_selector("#sql-rows")
            assert page.locator("#sql-rows").inner_text() == "2 rows" and len(expected) == 2
            for row in expected:
                day = row["event_date"].isoformat()
                assert page.locator("table.result tr", has_text=day).inner_text().split() == [day, str(row["tweets"])]
            screenshot(page, "lakehouse")
            page.fill("textarea[name=sql]", "DELETE FROM silver_tweets")
            page.click("text=Run")
            assert "read-only" in page.locator("#sql-error").inner_text()

            page.goto(f"{airflow}/tweetops/models", wait_until="load")
            champion = page.locator("tr", has_text="v2").first.inner_text().split()
            assert champion[:3] == ["v2", "champion", "baseline"] and champion[-1] == "0.741"
            assert page.locator("a", has_text="v1").get_attribute("href").startswith(settings.mlflow_tracking_uri)
            assert page.locator("text=beats champion v1").count() == 1
            screenshot(page, "models")

            page.goto(f"{airflow}/tweetops/trace?id=bad-language", wait_until="load")
            assert page.locator("text=expect_column_values_to_be_in_set").count() >= 1
            screenshot(page, "trace")
        finally:
            browser.close()
