"""The bronze suite on small frames (real GX, a file project in a temp dir) and the alert's wording."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from expectations.bronze_tweets import DEAD_LETTER_SHARE_COLUMN, Thresholds, batch_columns, suite_parameters
from expectations.gate import GateResult, drop_redeliveries, failure_summary, split_batch, validate_batch

DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)
SMALL = Thresholds(min_row_count=3)   # the default minimum is sized for a real day of tweets
PARAMS = suite_parameters(DAY, DAY + timedelta(days=1), now=DAY + timedelta(days=30))
TEXTS = ["@united thanks for the quick rebooking!", "my flight is delayed again", "driverless cars, yes please",
         "the new iphone camera is great", "google maps sent me in circles"]


def bronze(n: int = len(TEXTS), share: float = 0.0, **changes_by_row):
    """A batch of n good bronze rows; changes_by_row={"row2": {...}} breaks one of them."""
    import pyarrow as pa

    from tweetops.core.tables import spec

    rows = []
    for i in range(n):
        created = DAY + timedelta(hours=i)
        row = {"id": f"t{i}", "text": TEXTS[i % len(TEXTS)], "created_at": created, "user": f"user_{i}",
               "lang": "en", "label": ["negative", "neutral", "positive"][i % 3], "extra": None,
               "event_date": created.date(), "ingested_at": created, "kafka_topic": "tweets",
               "kafka_partition": 0, "kafka_offset": i}
        rows.append({**row, **changes_by_row.get(f"row{i}", {})})
    frame = pa.Table.from_pylist(rows, schema=spec("bronze_tweets").schema).to_pandas()
    frame[DEAD_LETTER_SHARE_COLUMN] = share
    return frame


@pytest.fixture(scope="module")
def gx_project(tmp_path_factory):
    return tmp_path_factory.mktemp("gx-project")


def failed_by_row(verdict) -> dict[int, set[str]]:
    return {row: {f.expectation for f in fs} for row, fs in verdict.row_failures.items()}


def test_a_clean_batch_passes_and_builds_data_docs(gx_project):
    verdict = validate_batch(bronze(), PARAMS, gx_project, SMALL, run_name="clean")

    assert verdict.success and verdict.failed == [] and verdict.row_failures == {}
    assert Path(verdict.data_docs_url.removeprefix("file://")).parent.exists()
    assert (gx_project / "gx/uncommitted/data_docs/local_site/index.html").is_file()


def test_each_bad_row_is_named_with_the_expectation_it_breaks(gx_project):
    batch = bronze(8, row1={"text": ""}, row2={"text": "x" * 281}, row3={"lang": "fr"},
                   row4={"label": "very_positive"}, row5={"created_at": DAY + timedelta(days=2)},
                   row6={"id": "t7", "text": "another tweet with t7's id"},
                   row0={"lang": None, "label": None})   # unknown language and no label are fine

    verdict = validate_batch(batch, PARAMS, gx_project, SMALL)

    assert not verdict.success and verdict.table_failures == []
    assert failed_by_row(verdict) == {
        1: {"expect_column_value_lengths_to_be_between"},
        2: {"expect_column_value_lengths_to_be_between"},
        3: {"expect_column_values_to_be_in_set"},
        4: {"expect_column_values_to_be_in_set"},
        5: {"expect_column_values_to_be_between"},
        6: {"expect_column_values_to_be_unique"},
        7: {"expect_column_values_to_be_unique"},
    }
    lang = next(f for f in verdict.failed if f.column == "lang")
    assert (lang.expected, lang.unexpected_count) == ("in {en}", 1)
    assert lang.observed == "1 of 8 rows, e.g. 'fr'"

    silver, quarantine = split_batch(batch, verdict)
    assert list(silver["id"]) == ["t0"]
    assert sorted(quarantine["id"]) == ["t1", "t2", "t3", "t4", "t5", "t7", "t7"]


def test_a_timestamp_in_the_future_fails_even_inside_the_interval(gx_project):
    now = DAY + timedelta(hours=12)
    batch = bronze(3, row2={"created_at": DAY + timedelta(hours=13)})

    verdict = validate_batch(batch, suite_parameters(DAY, DAY + timedelta(days=1), now=now), gx_project, SMALL)

    assert failed_by_row(verdict) == {2: {"expect_column_values_to_be_between"}}


def test_too_few_rows_or_too_many_dead_letters_fail_the_whole_interval(gx_project):
    batch = bronze(2, share=0.25)

    verdict = validate_batch(batch, PARAMS, gx_project, SMALL)

    observed = {f.expectation: (f.expected, f.observed) for f in verdict.table_failures}
    assert observed == {"expect_table_row_count_to_be_between": ("rows >= 3", "2"),
                        "expect_column_max_to_be_between": ("max <= 0.05", "0.25")}
    silver, quarantine = split_batch(batch, verdict)
    assert silver.empty and len(quarantine) == 2
    assert all(len(reasons) == 2 for reasons in quarantine["failed"])


def test_a_schema_change_fails_the_whole_interval(gx_project):
    batch = bronze().drop(columns=["lang"]).assign(country="FR")

    verdict = validate_batch(batch, PARAMS, gx_project, SMALL)

    assert not verdict.success
    schema = next(f for f in verdict.table_failures if f.expectation == "expect_table_columns_to_match_set")
    assert "country" in schema.observed and "lang" in schema.observed
    # The language expectation cannot run without its column: it counts against the interval too.
    assert any(f.column == "lang" and f.observed.startswith("error:") for f in verdict.table_failures)
    assert split_batch(batch, verdict)[0].empty


def test_redeliveries_keep_the_earliest_offset_and_conflicts_stay():
    import pandas as pd

    batch = bronze(3)
    redelivered = batch.iloc[[1]].assign(kafka_offset=100, ingested_at=DAY + timedelta(hours=5))
    conflicting = batch.iloc[[2]].assign(kafka_offset=101, text="edited text, same id")
    frame = pd.concat([redelivered, batch, conflicting])

    kept, dropped = drop_redeliveries(frame)

    assert dropped == 1
    assert sorted(zip(kept["id"], kept["kafka_offset"])) == [("t0", 0), ("t1", 1), ("t2", 2), ("t2", 101)]


def test_the_suite_covers_the_whole_bronze_schema():
    from tweetops.core.tables import spec

    assert batch_columns()[:-1] == spec("bronze_tweets").schema.names
    assert batch_columns()[-1] == DEAD_LETTER_SHARE_COLUMN


def _alerts_module():
    from tweetops.orchestration import alerts

    return alerts


def _failed_result() -> GateResult:
    return GateResult.from_dict({
        "interval_start": "2024-03-01T00:00:00+00:00", "interval_end": "2024-03-02T00:00:00+00:00",
        "success": False, "run_id": "manual__2024-03-02T01:00:00+00:00", "bronze_version": 3,
        "bronze_rows": 12, "redeliveries_dropped": 0, "dead_letters": 1, "dead_letter_share": 1 / 13,
        "silver_rows": 0, "quarantined_rows": 12, "data_docs_url": "file:///tmp/x/gx/uncommitted/data_docs/local_site/validations/v.html", "data_docs_index": None,
        "failed": [{"expectation": "expect_table_row_count_to_be_between", "description": "at least 100 tweets",
                    "column": None, "expected": "rows >= 100", "observed": "12", "table_level": True,
                    "unexpected_count": None}],
    })


def test_the_alert_names_dag_interval_expectations_counts_and_links():
    from tweetops.core.settings import load_settings

    settings = load_settings({"TWEETOPS_AIRFLOW_URL": "http://airflow.example:8080", "TWEETOPS_HOME": "/tmp/x"})
    text, blocks = _alerts_module().quality_gate_message(
        _failed_result(), "tweetops_quality_gate", "manual__2024-03-02T01:00:00+00:00", settings)

    assert text.splitlines()[0] == (":rotating_light: Quality gate failed: tweetops_quality_gate, "
                                    "interval 2024-03-01 to 2024-03-02")
    assert "12 of 12 rows quarantined, 0 to silver (the whole interval is quarantined)" in text
    assert ("at least 100 tweets (expect_table_row_count_to_be_between, interval): "
            "expected rows >= 100; observed 12") in text
    assert ("Airflow run: http://airflow.example:8080/dags/tweetops_quality_gate/runs/"
            "manual__2024-03-02T01%3A00%3A00%2B00%3A00") in text
    assert ("TweetOps quality page: http://airflow.example:8080/tweetops/quality?"
            "run=manual__2024-03-02T01%3A00%3A00%2B00%3A00") in text
    assert "Data Docs: http://airflow.example:8080/tweetops/docs/validations/v.html" in text
    assert "file://" not in text and "file://" not in json.dumps(blocks)
    assert blocks[0]["type"] == "header" and all(len(b["text"]["text"]) <= 3000 for b in blocks)


def test_failure_summary_for_the_run_log():
    summary = failure_summary(_failed_result().as_dict())
    assert summary.splitlines() == [
        "quality gate failed for 2024-03-01..2024-03-02: 12 rows quarantined, 0 to silver (whole interval quarantined)",
        "- at least 100 tweets: expected rows >= 100; observed 12",
        "Data Docs: file:///tmp/x/gx/uncommitted/data_docs/local_site/validations/v.html",
    ]


def test_no_slack_connection_means_the_alert_is_logged(monkeypatch):
    import logging

    from tweetops.core.settings import load_settings

    monkeypatch.delenv("AIRFLOW_CONN_TWEETOPS_NOWHERE", raising=False)
    settings = load_settings({"TWEETOPS_SLACK_CONN_ID": "tweetops_nowhere", "TWEETOPS_HOME": "/tmp/x"})
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append   # Airflow reroutes the root logger: listen on ours directly
    logger = logging.getLogger("tweetops.alerts")
    logger.addHandler(handler)
    try:
        assert _alerts_module().send_alert("the gate failed", settings=settings) is False
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert record.levelno == logging.WARNING
    assert "No Slack connection 'tweetops_nowhere'" in record.getMessage()
    assert "the gate failed" in record.getMessage()
