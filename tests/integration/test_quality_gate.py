"""The quality gate DAG under real Airflow (dag.test() on the test session's metadata DB), on a real
Delta lakehouse seeded with real corpus tweets plus crafted bad rows; alerts reach a real HTTP
receiver through the Airflow Slack provider."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "quality_gate.py"
GOOD_DAY, BAD_DAY = date(2024, 3, 1), date(2024, 3, 2)
PER_DAY = 150


@pytest.fixture(scope="module")
def corpus_days():
    """150 real tweets for each of two days, in bronze form."""
    from tweetops.core.corpus import load_corpus

    days: dict[date, list[dict]] = {GOOD_DAY: [], BAD_DAY: []}
    for tweet in load_corpus(end=date(2024, 3, 3), days=2):
        rows = days[datetime.fromisoformat(tweet["created_at"]).date()]
        if len(rows) < PER_DAY:
            rows.append(tweet)
    return days


def bronze_row(tweet: dict, offset: int, **changes) -> dict:
    created = datetime.fromisoformat(tweet["created_at"])
    row = {"id": tweet["id"], "text": tweet["text"], "created_at": created, "user": tweet["user"],
           "lang": tweet["lang"], "label": tweet["label"], "extra": json.dumps({"topic": tweet["topic"]}),
           "event_date": created.date(), "ingested_at": created + timedelta(seconds=5),
           "kafka_topic": "tweets", "kafka_partition": offset % 3, "kafka_offset": offset}
    return {**row, **changes}


def seed_bronze(settings, rows: list[dict]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.storage import ensure_bucket
    from tweetops.core.tables import ensure_table, spec

    ensure_bucket(settings)   # a fresh bucket on the S3 server: ingestion would have made it
    write_deltalake(ensure_table("bronze_tweets", settings),
                    pa.Table.from_pylist(rows, schema=spec("bronze_tweets").schema), mode="append")


def bad_rows(tweets: list[dict]) -> dict[str, dict]:
    """Crafted bad rows on BAD_DAY, by the expectation each one breaks."""
    day_start = datetime(BAD_DAY.year, BAD_DAY.month, BAD_DAY.day, tzinfo=timezone.utc)
    return {
        "bad-empty-text": bronze_row(tweets[0], 9001, id="bad-empty-text", text=""),
        "bad-long-text": bronze_row(tweets[1], 9002, id="bad-long-text", text="spam " * 80),
        "bad-language": bronze_row(tweets[2], 9003, id="bad-language", lang="xx"),
        "bad-label": bronze_row(tweets[3], 9004, id="bad-label", label="very_positive"),
        # event_date says BAD_DAY but created_at is a year later: an ingestion bug.
        "bad-future": bronze_row(tweets[4], 9005, id="bad-future", created_at=day_start + timedelta(days=400)),
    }


@pytest.fixture
def gate(local_lakehouse, airflow_db, slack_receiver, monkeypatch):
    """Settings with the Slack connection pointing at the receiver, and the DAG to test."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(f"AIRFLOW_CONN_{local_lakehouse.slack_conn_id.upper()}",
                       json.dumps({"conn_type": "slackwebhook", "password": slack_receiver.url}))
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "http://airflow.test:8080")
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return local_lakehouse, bag.get_dag("tweetops_quality_gate")


def run_dag(dag, day: date):
    run = dag.test(run_conf={"date": day.isoformat()})
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def read(name: str, settings, day: date):
    from tweetops.core.tables import open_table

    frame = open_table(name, settings).to_pandas()
    return frame[frame["event_date"] == day].sort_values("id").reset_index(drop=True)


def content(frame):
    """A table's rows in a stable order."""
    return frame.sort_values(["id", "text"]).reset_index(drop=True)


def test_good_interval_goes_to_silver_without_alert(gate, corpus_days, slack_receiver):
    settings, dag = gate
    tweets = corpus_days[GOOD_DAY]
    rows = [bronze_row(t, i) for i, t in enumerate(tweets)]
    rows.append(bronze_row(tweets[0], 5000))   # a redelivery: same tweet at a later offset
    seed_bronze(settings, rows)

    run, states = run_dag(dag, GOOD_DAY)

    assert run.state == "success", states
    silver = read("silver_tweets", settings, GOOD_DAY)
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets)   # every tweet once
    assert read("silver_quarantine", settings, GOOD_DAY).empty
    assert silver["bronze_version"].nunique() == 1
    assert slack_receiver.messages == []
    docs = Path(settings.home / "gx/uncommitted/data_docs/local_site/index.html")
    assert docs.is_file() and "bronze_tweets" in docs.read_text()


def test_bad_rows_are_quarantined_alerted_and_fail_the_run_idempotently(gate, corpus_days, slack_receiver):
    settings, dag = gate
    tweets = corpus_days[BAD_DAY]
    bad = bad_rows(tweets)
    good = [bronze_row(t, i) for i, t in enumerate(tweets)]
    # Two different tweets under one id: both are quarantined, neither is trusted.
    clash = bronze_row(tweets[5], 9006, text="a different tweet reusing an id")
    seed_bronze(settings, good + list(bad.values()) + [clash])

    run, states = run_dag(dag, BAD_DAY)

    assert run.state == "failed"
    assert states == {"validate_bronze": "success", "fail_if_expectations_failed": "failed"}
    silver, quarantine = read("silver_tweets", settings, BAD_DAY), read("silver_quarantine", settings, BAD_DAY)
    clashing_id = tweets[5]["id"]
    bad_ids = set(bad) | {clashing_id}
    assert not bad_ids & set(silver["id"])
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets if t["id"] != clashing_id)
    assert sorted(quarantine["id"]) == sorted([*bad, clashing_id, clashing_id])
    reasons = {row.id: json.loads(row.failed_expectations) for row in quarantine.itertuples() if row.id in bad}
    assert reasons["bad-language"] == [{
        "expectation": "expect_column_values_to_be_in_set", "description": "language in en (or unknown)",
        "column": "lang", "expected": "in {en}", "value": "xx"}]
    assert [r["column"] for r in reasons["bad-empty-text"]] == ["text"]
    assert [r["expectation"] for r in reasons["bad-future"]] == ["expect_column_values_to_be_between"]
    assert [r["value"] for r in reasons["bad-label"]] == ["very_positive"]

    # One alert, with the DAG, the interval, each failed expectation observed vs expected, the
    # quarantine counts and both links.
    assert len(slack_receiver.messages) == 1
    payload = slack_receiver.messages[0]["payload"]
    text = payload["text"]
    assert "tweetops_quality_gate" in text and "2024-03-02 to 2024-03-03" in text
    assert f"7 of {len(tweets) + 6} rows quarantined, {len(tweets) - 1} to silver" in text
    assert "expected in {en}; observed 1 of" in text and "'xx'" in text
    assert "expected 1 <= length <= 280; observed 2 of" in text
    assert "expected in {negative, neutral, positive}; observed 1 of" in text and "'very_positive'" in text
    assert "one tweet per id" in text
    assert f"http://airflow.test:8080/dags/tweetops_quality_gate/runs/" in text
    docs_url = next(line for line in text.splitlines() if line.startswith("Data Docs: ")).removeprefix("Data Docs: ")
    # An http link through the Airflow UI's TweetOps pages to a file that exists, never file://.
    from tweetops.core.reports import resolve_report

    prefix = "http://airflow.test:8080/tweetops/docs/"
    assert docs_url.startswith(prefix) and "file://" not in text
    assert resolve_report("docs", unquote(docs_url.removeprefix(prefix)), settings).is_file()
    assert "TweetOps quality page: http://airflow.test:8080/tweetops/quality?run=" in text
    assert any(b["type"] == "header" for b in payload["blocks"])

    # A rerun of the same interval leaves both tables identical: nothing appended twice.
    rerun, _ = run_dag(dag, BAD_DAY)
    assert rerun.state == "failed"
    assert content(read("silver_tweets", settings, BAD_DAY)).equals(content(silver))
    assert content(read("silver_quarantine", settings, BAD_DAY)).equals(content(quarantine))
    assert len(slack_receiver.messages) == 2

    # New bronze rows for the day: the rerun replaces the partitions (one commit each), still no duplicates.
    from tweetops.core.tables import open_table

    version = open_table("silver_tweets", settings).version()
    late = bronze_row(tweets[6], 9100, id="late-arrival")
    seed_bronze(settings, [late])
    run_dag(dag, BAD_DAY)
    assert open_table("silver_tweets", settings).version() == version + 1
    silver_late = read("silver_tweets", settings, BAD_DAY)
    assert sorted(silver_late["id"]) == sorted([*silver["id"], "late-arrival"])
    assert silver_late["id"].is_unique
    assert content(read("silver_quarantine", settings, BAD_DAY)).equals(content(quarantine))


def test_too_few_rows_and_too_many_dead_letters_quarantine_the_whole_interval(any_lakehouse, corpus_days):
    import pyarrow as pa
    from deltalake import write_deltalake

    from expectations.gate import run_quality_gate
    from tweetops.core.tables import ensure_table, spec

    settings = any_lakehouse   # a local folder, then a bucket on the S3 server
    day = GOOD_DAY
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(corpus_days[day][:40])])
    received = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    dead = [{"raw": b"\xff{not json", "kafka_key": None, "reason": "undecodable JSON", "kafka_topic": "tweets",
             "kafka_partition": 0, "kafka_offset": 10_000 + i, "received_at": received, "ingest_date": day}
            for i in range(10)]
    write_deltalake(ensure_table("bronze_dead_letters", settings),
                    pa.Table.from_pylist(dead, schema=spec("bronze_dead_letters").schema), mode="append")

    result = run_quality_gate(day, day + timedelta(days=1), settings)

    assert not result.success and result.whole_interval_quarantined
    assert (result.silver_rows, result.quarantined_rows, result.dead_letters) == (0, 40, 10)
    failed = {f.expectation: f for f in result.failed}
    assert failed["expect_table_row_count_to_be_between"].observed == "40"
    assert failed["expect_table_row_count_to_be_between"].expected == "rows >= 100"
    assert failed["expect_column_max_to_be_between"].observed == "0.2"
    assert failed["expect_column_max_to_be_between"].expected == "max <= 0.05"
    quarantine = read("silver_quarantine", settings, day)
    assert len(quarantine) == 40
    assert {r["expectation"] for r in json.loads(quarantine["failed_expectations"][0])} == {
        "expect_table_row_count_to_be_between", "expect_column_max_to_be_between"}
    assert read("silver_tweets", settings, day).empty


def test_task_failure_alerts_slack(gate, slack_receiver):
    _, dag = gate

    run = dag.test(run_conf={"date": "2024-02-30"})

    assert run.state == "failed"
    assert len(slack_receiver.messages) == 1
    text = slack_receiver.messages[0]["payload"]["text"]
    assert "Task failed: tweetops_quality_gate.validate_bronze" in text
    assert "2024-02-30" in text and "YYYY-MM-DD" in text
    assert "http://airflow.test:8080/dags/tweetops_quality_gate/runs/" in text


def test_gate_cli_on_a_day_without_messages_exits_4_and_writes_nothing(local_lakehouse, capsys):
    from tweetops.core.tables import ensure_table
    from tweetops.cli import main

    assert main(["gate", "--date", "2024-03-01"]) == 4
    assert "no bronze tweets or dead letters for 2024-03-01: nothing to validate" in capsys.readouterr().err
    assert ensure_table("silver_tweets", local_lakehouse).to_pyarrow_table().num_rows == 0
    assert ensure_table("silver_tweets", local_lakehouse).version() == 0   # not even an empty commit
    with pytest.raises(SystemExit):
        main(["gate", "--date", "01/03/2024"])
    assert "'01/03/2024': expected a date as YYYY-MM-DD" in capsys.readouterr().err
