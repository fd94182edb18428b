"""The TweetOps pages' app without a running Airflow: report paths cannot leave their folders,
an anonymous request is refused, the pages read what the pipeline recorded, and Slack alerts link
the pages over http(s), never file://."""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone

import pytest

from tweetops.core.settings import load_settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A TWEETOPS_HOME with one Data Docs page, one drift report, and a secret next to them."""
    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TWEETOPS_LAKEHOUSE_URI", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "https://airflow.example.com")
    settings = load_settings()
    site = settings.home / "gx/uncommitted/data_docs/local_site/validations/bronze_tweets/run1/t1"
    site.mkdir(parents=True)
    (site / "bronze-bronze_tweets.html").write_text("<html>data docs page</html>")
    (settings.home / "reports").mkdir(parents=True)
    (settings.home / "reports/drift-2024-03-05-2024-03-06.html").write_text("<html>evidently</html>")
    (settings.home / "secret.txt").write_text("do not serve")
    (tmp_path / "outside.html").write_text("outside")
    os.symlink(tmp_path / "outside.html", settings.home / "reports/link-out.html")
    return settings


@pytest.fixture
def client(home):
    from fastapi.testclient import TestClient

    from tweetops.app.ui.app import airflow_user, create_app

    app = create_app()
    app.dependency_overrides[airflow_user] = lambda: "tester"   # a logged-in user (the login itself: browser test)
    return TestClient(app)


@pytest.fixture
def auth_manager(airflow_db):
    """Airflow's configured auth manager (SimpleAuthManager), as the API server creates it; it
    checks tokens against the metadata DB (revoked tokens)."""
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


def test_reports_are_served_from_their_folders(client):
    page = "validations/bronze_tweets/run1/t1/bronze-bronze_tweets.html"
    assert client.get(f"/docs/{page}").text == "<html>data docs page</html>"
    report = client.get("/reports/drift-2024-03-05-2024-03-06.html")
    assert report.text == "<html>evidently</html>"
    # Their scripts run sandboxed: no access to the Airflow origin (and its API) of the viewer.
    assert report.headers["content-security-policy"].startswith("sandbox allow-scripts")


@pytest.mark.parametrize("path", [
    "/reports/../secret.txt", "/reports/%2e%2e/secret.txt", "/reports/..%2fsecret.txt", "/reports/%2e%2e%2fsecret.txt",
    "/docs/../../../../secret.txt", "/docs/..%2f..%2f..%2f..%2fsecret.txt", "/reports/%2fetc%2fpasswd",
    "/reports//etc/passwd", "/reports/link-out.html", "/reports/", "/reports/nothing.html", "/docs/validations",
])
def test_report_paths_cannot_escape_their_folders(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.text)
    assert "do not serve" not in response.text and "outside" != response.text


def test_resolve_report_refuses_traversal(home):
    from tweetops.core.reports import ReportPathError, resolve_report

    assert resolve_report("reports", "drift-2024-03-05-2024-03-06.html", home).is_file()
    for bad in ("../secret.txt", "/etc/passwd", "a/../../secret.txt", "link-out.html", "x\x00.html", ""):
        with pytest.raises(ReportPathError):
            resolve_report("reports", bad, home)
    with pytest.raises(ReportPathError):
        resolve_report("airflow", "airflow.cfg", home)


@pytest.mark.parametrize("path", ["/quality", "/drift", "/lakehouse?sql=SELECT+1", "/models", "/trace?id=1",
                                  "/reports/drift-2024-03-05-2024-03-06.html",
                                  "/docs/validations/bronze_tweets/run1/t1/bronze-bronze_tweets.html"])
def test_anonymous_requests_are_refused(home, auth_manager, path):
    from fastapi.testclient import TestClient

    from tweetops.app.ui.app import create_app

    anonymous = TestClient(create_app())
    response = anonymous.get(path)
    assert response.status_code == 401 and "evidently" not in response.text and "data docs" not in response.text
    assert anonymous.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert anonymous.get(path, cookies={"_token": "not-a-jwt"}).status_code == 401


def test_an_airflow_token_opens_the_pages_and_a_forged_one_does_not(home, auth_manager):
    import jwt
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from tweetops.app.ui.app import create_app

    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="viewer"))
    client = TestClient(create_app())
    page = "/reports/drift-2024-03-05-2024-03-06.html"
    assert client.get(page, headers={"Authorization": f"Bearer {token}"}).text == "<html>evidently</html>"
    assert client.get(page, cookies={"_token": token}).text == "<html>evidently</html>"
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-airflow-secret", algorithm="HS512")
    assert client.get(page, cookies={"_token": forged}).status_code == 401


def test_pages_render_the_recorded_runs_and_checks(client, home):
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    gx_run = home.home / "gx/uncommitted/validations/bronze_tweets/run1/t1"
    gx_run.mkdir(parents=True)
    (gx_run / "bronze-bronze_tweets.json").write_text(json.dumps({"success": False, "meta": {
        "validation_time": "2024-03-03T01:00:00+00:00"}, "statistics": {"evaluated_expectations": 2,
        "unsuccessful_expectations": 1}, "results": [
        {"success": True, "expectation_config": {"type": "expect_column_values_to_be_between", "kwargs": {
            "column": "created_at", "min_value": "2024-03-02T00:00:00+00:00", "max_value": "2024-03-03T00:00:00+00:00"}}},
        {"success": False, "expectation_config": {"type": "expect_column_values_to_be_in_set",
                                                  "description": "language is English", "kwargs": {
            "column": "lang", "value_set": ["en"]}}, "result": {
            "unexpected_index_list": [], "unexpected_count": 1, "element_count": 9, "partial_unexpected_list": ["xx"]}}]}))
    at = datetime(2024, 3, 6, tzinfo=timezone.utc)
    report = (home.home / "reports/drift-2024-03-05-2024-03-06.html").as_uri()
    write_deltalake(ensure_table("gold_drift_metrics", home), pa.Table.from_pylist([
        {"checked_at": at, "window_start": datetime(2024, 3, 5, tzinfo=timezone.utc), "window_end": at,
         "model_version": "1", "check": "oov_share", "value": 0.41, "threshold": 0.2, "drifted": True,
         "report_uri": report}], schema=spec("gold_drift_metrics").schema), mode="append")

    quality = client.get("/quality?run=run1").text
    assert "language is English" in quality and "expected in {en}; observed 1 of 9 rows, e.g. &#x27;xx&#x27;" in quality
    assert "2024-03-02 to 2024-03-03" in quality and "FAILED" in quality
    assert "/docs/validations/bronze_tweets/run1/t1/bronze-bronze_tweets.html" in quality
    drift = client.get("/drift?start=2024-03-05&end=2024-03-06").text
    assert "oov_share" in drift and "0.41" in drift and "DRIFT" in drift
    assert "/reports/drift-2024-03-05-2024-03-06.html" in drift and "file://" not in drift
    lakehouse = client.get("/lakehouse?sql=SELECT+%22check%22%2C+value+FROM+gold_drift_metrics")
    assert lakehouse.status_code == 200 and "oov_share" in lakehouse.text and "1 rows" in lakehouse.text
    refused = client.get("/lakehouse?sql=DELETE+FROM+gold_drift_metrics")
    assert refused.status_code == 400 and "read-only" in refused.text
    tables = client.get("/lakehouse").text
    assert "<td>gold_drift_metrics</td><td>gold</td><td class=n>1</td><td class=n>1</td>" in tables
    assert "WRITE Append" in tables and "not created" in tables


def test_slack_alerts_link_the_pages_over_http_never_file(home):
    from ml.drift import alert_message

    from tweetops.orchestration import alerts
    docs = home.home / "gx/uncommitted/data_docs/local_site/validations/bronze_tweets/run1/t1/bronze-bronze_tweets.html"
    gate = {"interval_start": "2024-03-02T00:00:00+00:00", "interval_end": "2024-03-03T00:00:00+00:00",
            "success": False, "run_id": "scheduled__2024-03-02T00:00:00+00:00", "bronze_rows": 9,
            "dead_letters": 0, "dead_letter_share": 0.0, "silver_rows": 8, "quarantined_rows": 1,
            "data_docs_url": docs.as_uri(), "data_docs_index": None,
            "failed": [{"expectation": "expect_column_values_to_be_in_set", "description": "language is English",
                        "column": "lang", "expected": "in {en}", "observed": "1 of 9 rows", "table_level": False}]}
    text, blocks = alerts.quality_gate_message(gate, "tweetops_quality_gate", gate["run_id"], home)
    drift_text, drift_blocks = alert_message({
        "window_start": "2024-03-05", "window_end": "2024-03-06", "model_name": "m", "model_version": "1",
        "checks": [{"name": "oov_share", "value": 0.41, "threshold": 0.2, "drifted": True, "detail": ""}],
        "reports": [(home.home / "reports/drift-2024-03-05-2024-03-06.html").as_uri()]})

    for message in (text, json.dumps(blocks), drift_text, json.dumps(drift_blocks)):
        assert "file://" not in message
    assert ("https://airflow.example.com/tweetops/quality?run=scheduled__2024-03-02T00%3A00%3A00%2B00%3A00"
            in text)
    assert ("Data Docs: https://airflow.example.com/tweetops/docs/validations/bronze_tweets/run1/t1/"
            "bronze-bronze_tweets.html") in text
    assert "https://airflow.example.com/tweetops/drift?start=2024-03-05&end=2024-03-06" in drift_text
    assert "https://airflow.example.com/tweetops/reports/drift-2024-03-05-2024-03-06.html" in drift_text


def test_report_links_follow_the_layout_when_written_under_another_home(home):
    from tweetops.core.links import report_url

    assert (report_url("file:///opt/tweetops/state/reports/drift-a.html", home)
            == "https://airflow.example.com/tweetops/reports/drift-a.html")
    assert (report_url("file:///elsewhere/gx/uncommitted/data_docs/local_site/index.html", home)
            == "https://airflow.example.com/tweetops/docs/index.html")
    assert report_url("file:///etc/passwd", home) is None and report_url(None, home) is None


def test_trace_follows_a_tweet_through_the_tables(home, capsys):
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec
    from tweetops.app.trace import trace_tweet

    now = datetime(2024, 3, 2, 12, tzinfo=timezone.utc)
    tweet = {"id": "42", "text": "late again @united", "created_at": now, "user": "u", "lang": "en",
             "label": "negative", "extra": None, "event_date": date(2024, 3, 2)}
    kafka = {"kafka_topic": "tweets", "kafka_partition": 1, "kafka_offset": 7}
    for name, row in {
        "bronze_tweets": {**tweet, "ingested_at": now, **kafka},
        "bronze_dead_letters": {"raw": b'{"id": "42", "text": ', "kafka_key": None, "reason": "not JSON",
                                **kafka, "kafka_offset": 6, "received_at": now, "ingest_date": date(2024, 3, 2)},
        "silver_tweets": {**tweet, "validated_at": now, "bronze_version": 0},
        "gold_predictions": {"id": "42", "event_date": date(2024, 3, 2), "label": "negative", "proba_negative": 0.9,
                             "proba_neutral": 0.05, "proba_positive": 0.05, "model_name": "m", "model_version": "3",
                             "scored_at": now},
    }.items():
        write_deltalake(ensure_table(name, home), pa.Table.from_pylist([row], schema=spec(name).schema), mode="append")

    found = trace_tweet("42", home)
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in found["bronze_tweets"]] == [(1, 7)]
    assert found["bronze_dead_letters"][0]["reason"] == "not JSON"
    assert found["silver_tweets"][0]["text"] == "late again @united" and found["silver_quarantine"] == []
    assert found["gold_predictions"][0]["model_version"] == "3" and found["gold_features"] == []
    assert trace_tweet("4", home)["bronze_tweets"] == []

    # `tweetops trace ID`: the same, one section per table; exit 1 for an id found nowhere.
    from tweetops.cli import main

    assert main(["trace", "42", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["gold_predictions"][0]["model_version"] == "3"
    assert main(["trace", "42"]) == 0
    out = capsys.readouterr().out
    assert "bronze_tweets:" in out and "not JSON" in out and "silver_quarantine: -" in out
    assert main(["trace", "no-such-tweet"]) == 1


def test_the_demo_summary_lists_every_page(home):
    from tweetops.core.links import all_pages

    assert all_pages(home) == {
        "Quality": "https://airflow.example.com/tweetops/quality", "Drift": "https://airflow.example.com/tweetops/drift",
        "Lakehouse": "https://airflow.example.com/tweetops/lakehouse",
        "Models": "https://airflow.example.com/tweetops/models",
        "Tweet lookup": "https://airflow.example.com/tweetops/trace"}


def test_the_plugin_mounts_the_pages_and_adds_the_navigation():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tweetops_ui", Path(__file__).resolve().parents[2] / "plugins" / "tweetops_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.TweetOpsUIPlugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/tweetops" and {"/quality", "/drift", "/lakehouse", "/models", "/trace"} <= {
        route.path for route in app["app"].routes}
    views = {view["name"]: view for view in plugin.external_views}
    assert views["TweetOps"]["nav_top_level"] and views["TweetOps"]["href"] == "/tweetops/quality"
    assert {v["href"] for v in views.values() if v.get("category") == "TweetOps"} == {
        "/tweetops/quality", "/tweetops/drift", "/tweetops/lakehouse", "/tweetops/models", "/tweetops/trace"}


def test_trace_names_the_bronze_version_that_landed_each_delivery(home):
    import pyarrow as pa
    from deltalake import CommitProperties, Transaction, write_deltalake

    from tweetops.core.tables import ensure_table, spec
    from tweetops.app.trace import trace_tweet
    from streaming.offsets import app_id

    now = datetime(2024, 3, 2, 12, tzinfo=timezone.utc)
    bronze = ensure_table("bronze_tweets", home)
    # Three landed batches of partition 1, as the consumer commits them: rows and offsets in one commit.
    for last, ids in ((5, ["a"]), (9, ["42"]), (20, ["b", "42"])):
        rows = [{"id": i, "text": "t", "created_at": now, "user": "u", "lang": "en", "label": None, "extra": None,
                 "event_date": date(2024, 3, 2), "ingested_at": now, "kafka_topic": "tweets", "kafka_partition": 1,
                 "kafka_offset": last - n} for n, i in enumerate(ids)]
        write_deltalake(bronze, pa.Table.from_pylist(rows, schema=spec("bronze_tweets").schema), mode="append",
                        commit_properties=CommitProperties(app_transactions=[Transaction(app_id("tweets", 1), last)]))
    found = trace_tweet("42", home)["bronze_tweets"]
    assert sorted((r["kafka_offset"], r["landed_in_bronze_version"]) for r in found) == [(9, 2), (19, 3)]
