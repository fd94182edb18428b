"""The incremental quality gate on a real Delta lakehouse with real corpus tweets: a run reads only the
rows bronze gained, late tweets reach silver, replays and compactions change nothing, a crash between
the quarantine and silver commits is recovered, a quarantined row fails one run only, and day-level
expectations wait for a day to be complete."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from tests.integration.test_quality_gate import (BAD_DAY, GOOD_DAY, bad_rows, bronze_row, corpus_days, gate,  # noqa: F401
                                                 read, seed_bronze)

pytestmark = pytest.mark.integration

# Both corpus days are long complete at this time (their day-level expectations apply).
LATER = datetime(2024, 3, 10, tzinfo=timezone.utc)


def silver_files(settings) -> set[str]:
    from tweetops.core.tables import open_table

    return set(open_table("silver_tweets", settings).file_uris())


def table_version(name: str, settings) -> int:
    from tweetops.core.tables import open_table

    return open_table(name, settings).version()


def test_a_late_tweet_for_a_validated_day_reaches_silver_on_the_next_run(local_lakehouse, corpus_days):
    from expectations.incremental import run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[GOOD_DAY]
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets[:-1])])
    first = run_incremental_gate(settings, now=LATER)
    assert first.days == [GOOD_DAY.isoformat()] and first.success
    assert len(read("silver_tweets", settings, GOOD_DAY)) == len(tweets) - 1

    late = tweets[-1]
    seed_bronze(settings, [bronze_row(late, 10_000, ingested_at=LATER)])   # arrives days after its day
    second = run_incremental_gate(settings, now=LATER)

    assert second.days == second.silver_days == [GOOD_DAY.isoformat()]
    assert (second.bronze_from, second.bronze_to) == (first.bronze_to, first.bronze_to + 1)
    # Its work is the new row only: one row read, one validated, one appended.
    assert (second.rows_read, second.rows_validated, second.silver_rows) == (1, 1, 1)
    assert second.results[0]["bronze_rows"] == 1 and second.results[0]["silver_rows"] == 1
    silver = read("silver_tweets", settings, GOOD_DAY)
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets)   # every tweet once, the late one too

    # Nothing new in bronze: nothing rebuilt, no table touched.
    versions = {name: table_version(name, settings) for name in ("silver_tweets", "silver_quarantine")}
    third = run_incremental_gate(settings, now=LATER)
    assert third.nothing_new
    assert {name: table_version(name, settings) for name in versions} == versions


def test_a_replay_of_the_same_tweets_changes_no_table(local_lakehouse, corpus_days):
    from expectations.incremental import run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[BAD_DAY]
    rows = [bronze_row(t, i) for i, t in enumerate(tweets)] + list(bad_rows(tweets).values())
    seed_bronze(settings, rows)
    run_incremental_gate(settings, now=LATER)
    silver, quarantine = read("silver_tweets", settings, BAD_DAY), read("silver_quarantine", settings, BAD_DAY)
    files, quarantine_version = silver_files(settings), table_version("silver_quarantine", settings)

    # The producer sends everything again: new offsets, new receipt times, same tweets.
    seed_bronze(settings, [{**r, "kafka_offset": r["kafka_offset"] + 50_000, "ingested_at": LATER} for r in rows])
    replay = run_incremental_gate(settings, now=LATER)

    assert replay.days == [BAD_DAY.isoformat()] and replay.silver_days == []
    assert replay.nothing_new and replay.success and replay.rows_known == len(rows)
    assert silver_files(settings) == files                      # the day's silver files are kept as they are
    assert table_version("silver_quarantine", settings) == quarantine_version
    assert read("silver_tweets", settings, BAD_DAY).equals(silver)
    assert read("silver_quarantine", settings, BAD_DAY).equals(quarantine)


def test_a_crash_between_quarantine_and_silver_is_recovered_by_the_next_run(local_lakehouse, corpus_days,
                                                                             monkeypatch):
    """Quarantine is appended first, then silver with the processed versions in the same commit: a crash
    between the two leaves nothing recorded, and the rerun neither loses nor doubles a row."""
    import expectations.incremental as incremental
    from expectations.incremental import BRONZE_APP, processed_versions, run_incremental_gate
    from tweetops.core.tables import ensure_table

    settings, tweets = local_lakehouse, corpus_days[BAD_DAY]
    bad = bad_rows(tweets)
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)] + list(bad.values()))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the quarantine commit")

    with monkeypatch.context() as patch:
        patch.setattr(incremental, "append_silver", crash)
        with pytest.raises(KeyboardInterrupt):
            run_incremental_gate(settings, now=LATER)

    assert sorted(read("silver_quarantine", settings, BAD_DAY)["id"]) == sorted(bad)
    assert ensure_table("silver_tweets", settings).to_pandas().empty
    assert processed_versions(settings)[BRONZE_APP] is None    # nothing recorded: the files are read again
    quarantine_version = table_version("silver_quarantine", settings)

    recovered = run_incremental_gate(settings, now=LATER)

    assert recovered.days == [BAD_DAY.isoformat()] and recovered.success   # the bad rows failed the first try
    assert recovered.rows_known == len(bad) and recovered.quarantined_rows == 0
    assert table_version("silver_quarantine", settings) == quarantine_version   # no second append
    assert sorted(read("silver_quarantine", settings, BAD_DAY)["id"]) == sorted(bad)
    silver = read("silver_tweets", settings, BAD_DAY)
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets)   # no row lost, none doubled
    assert processed_versions(settings)[BRONZE_APP] == recovered.bronze_to


def test_a_crash_inside_the_quarantine_append_is_recovered_too(local_lakehouse, corpus_days, monkeypatch):
    import expectations.incremental as incremental
    from expectations.incremental import BRONZE_APP, processed_versions, run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[BAD_DAY]
    bad = bad_rows(tweets)
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)] + list(bad.values()))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the quarantine commit")

    with monkeypatch.context() as patch:
        patch.setattr(incremental, "append_quarantine", crash)
        with pytest.raises(KeyboardInterrupt):
            run_incremental_gate(settings, now=LATER)
    assert processed_versions(settings)[BRONZE_APP] is None

    recovered = run_incremental_gate(settings, now=LATER)
    assert not recovered.success    # the bad rows were never judged: this run judges them
    assert sorted(read("silver_quarantine", settings, BAD_DAY)["id"]) == sorted(bad)
    assert sorted(read("silver_tweets", settings, BAD_DAY)["id"]) == sorted(t["id"] for t in tweets)


def test_new_data_bigger_than_a_chunk_goes_in_groups_and_a_crash_between_them_doubles_nothing(
        local_lakehouse, corpus_days, monkeypatch):
    """Three new files of 50 rows with TWEETOPS_GATE_CHUNK_ROWS=60: three groups, three silver commits,
    only the last records the versions; a crash after the first is redone without a doubled row."""

    import expectations.incremental as incremental
    from expectations.incremental import BRONZE_APP, processed_versions, run_incremental_gate

    settings, tweets = local_lakehouse.model_copy(update=dict(gate_chunk_rows=60)), corpus_days[GOOD_DAY]
    for i in range(0, len(tweets), 50):
        seed_bronze(settings, [bronze_row(t, i + j) for j, t in enumerate(tweets[i:i + 50])])
    real_append, calls = incremental.append_silver, []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between two groups")
        return real_append(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(incremental, "append_silver", crash_on_second)
        with pytest.raises(KeyboardInterrupt):
            run_incremental_gate(settings, now=LATER)
    assert len(read("silver_tweets", settings, GOOD_DAY)) == 50 and processed_versions(settings)[BRONZE_APP] is None

    result = run_incremental_gate(settings, now=LATER)

    assert result.success and result.rows_read == len(tweets) and result.rows_known == 50
    silver = read("silver_tweets", settings, GOOD_DAY)
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets)
    assert processed_versions(settings)[BRONZE_APP] == result.bronze_to


def test_a_batch_over_several_days_is_judged_day_by_day(local_lakehouse, corpus_days):
    """One validation for the rows of both days, each day's result naming only its own failures; a row
    whose created_at is not on its event day is still checked against its own day."""
    from expectations.incremental import run_incremental_gate

    settings = local_lakehouse
    good, bad_day = corpus_days[GOOD_DAY], corpus_days[BAD_DAY]
    bad = bad_rows(bad_day)
    misfiled = bronze_row(bad_day[9], 9100, id="bad-misfiled", event_date=GOOD_DAY)   # created on BAD_DAY
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(good)]
                + [bronze_row(t, 1000 + i) for i, t in enumerate(bad_day)] + [bad["bad-language"], misfiled])

    result = run_incremental_gate(settings, now=LATER)

    by_day = {r["interval_start"][:10]: r for r in result.results}
    assert [(f["column"], f["observed"]) for f in by_day[BAD_DAY.isoformat()]["failed"]] == [
        ("lang", f"1 of {len(bad_day) + 1} rows, e.g. 'xx'")]
    assert [f["column"] for f in by_day[GOOD_DAY.isoformat()]["failed"]] == ["created_at"]
    assert [by_day[d.isoformat()]["quarantined_rows"] for d in (GOOD_DAY, BAD_DAY)] == [1, 1]
    assert read("silver_quarantine", settings, GOOD_DAY)["id"].tolist() == ["bad-misfiled"]
    assert read("silver_quarantine", settings, BAD_DAY)["id"].tolist() == ["bad-language"]
    assert sorted(read("silver_tweets", settings, BAD_DAY)["id"]) == sorted(t["id"] for t in bad_day)
    assert result.rows_validated == len(good) + len(bad_day) + 2


def test_a_quarantined_row_fails_one_run_only(local_lakehouse, corpus_days):
    """A day with a quarantined row, then a clean batch for that day: the second run passes."""
    from expectations.incremental import run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[BAD_DAY]
    bad = bad_rows(tweets)
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets[:120])] + [bad["bad-language"]])
    first = run_incremental_gate(settings, now=LATER)
    assert not first.success and first.quarantined_rows == 1
    assert [f["column"] for f in first.results[0]["failed"]] == ["lang"]

    seed_bronze(settings, [bronze_row(t, 120 + i) for i, t in enumerate(tweets[120:])])
    second = run_incremental_gate(settings, now=LATER)

    assert second.success and second.results[0]["failed"] == []
    new = len(tweets) - 120
    assert (second.rows_read, second.silver_rows, second.quarantined_rows) == (new, new, 0)
    assert read("silver_quarantine", settings, BAD_DAY)["id"].tolist() == ["bad-language"]   # still there
    assert len(read("silver_tweets", settings, BAD_DAY)) == len(tweets)


def test_a_compaction_of_bronze_rewrites_rows_the_gate_drops_by_id(local_lakehouse, corpus_days):
    from expectations.incremental import run_incremental_gate
    from tweetops.core.tables import open_table

    settings, tweets = local_lakehouse, corpus_days[GOOD_DAY]
    for i in range(0, len(tweets), 50):   # three commits, three small files
        seed_bronze(settings, [bronze_row(t, i + j) for j, t in enumerate(tweets[i:i + 50])])
    run_incremental_gate(settings, now=LATER)
    silver, files = read("silver_tweets", settings, GOOD_DAY), silver_files(settings)

    open_table("bronze_tweets", settings).optimize.compact()    # one new file with every row again
    after = run_incremental_gate(settings, now=LATER)

    assert after.rows_read == len(tweets) and after.rows_known == len(tweets) and after.nothing_new
    assert silver_files(settings) == files and read("silver_tweets", settings, GOOD_DAY).equals(silver)


def test_silver_rows_carry_the_gate_run_that_validated_them_in_an_older_table_too(local_lakehouse, corpus_days):
    """silver_tweets made before gate_run_id existed gains the column; its rows read it as null."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from expectations.incremental import run_incremental_gate
    from tweetops.core.storage import ensure_bucket, storage_options, table_uri
    from tweetops.core.tables import open_table, spec
    from tweetops.app.trace import trace_tweet

    settings, tweets = local_lakehouse, corpus_days[GOOD_DAY]
    ensure_bucket(settings)
    old_schema = pa.schema([f for f in spec("silver_tweets").schema if f.name != "gate_run_id"])
    old = tweets[0]
    created = datetime.fromisoformat(old["created_at"])
    write_deltalake(table_uri("silver_tweets", settings), pa.Table.from_pylist([{
        "id": old["id"], "text": old["text"], "created_at": created, "user": old["user"], "lang": "en",
        "label": old["label"], "extra": None, "event_date": created.date(), "validated_at": created,
        "bronze_version": 0}], schema=old_schema), partition_by=["event_date"],
        storage_options=storage_options(settings))
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)])

    result = run_incremental_gate(settings, run_id="gate-run-42", now=LATER)

    assert result.success and result.rows_known == 1 and result.silver_rows == len(tweets) - 1
    silver = open_table("silver_tweets", settings).to_pandas()
    assert "gate_run_id" in silver.columns and len(silver) == len(tweets)
    by_id = dict(zip(silver["id"], silver["gate_run_id"]))
    assert by_id.pop(old["id"]) is None
    assert set(by_id.values()) == {"gate-run-42"}
    assert trace_tweet(tweets[1]["id"], settings)["silver_tweets"][0]["gate_run_id"] == "gate-run-42"


def test_day_level_expectations_wait_until_the_day_is_complete(local_lakehouse, corpus_days, monkeypatch):
    from expectations.incremental import run_incremental_gate

    monkeypatch.setenv("TWEETOPS_ALLOWED_LATENESS_HOURS", "6")
    day_start = datetime(GOOD_DAY.year, GOOD_DAY.month, GOOD_DAY.day, tzinfo=timezone.utc)
    settings = local_lakehouse
    # Ten tweets of the day's first 20 hours, far below the 100 a day demands.
    tweets = [t for t in corpus_days[GOOD_DAY] if datetime.fromisoformat(t["created_at"]).hour < 20][:10]
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)])

    partial = run_incremental_gate(settings, now=day_start + timedelta(hours=20))
    assert partial.success and partial.complete_days == []          # a partial day: no false alarm
    assert len(read("silver_tweets", settings, GOOD_DAY)) == 10

    # Still before the day's close + 6 h: nothing new, nothing to judge.
    assert run_incremental_gate(settings, now=day_start + timedelta(hours=29)).nothing_new

    complete = run_incremental_gate(settings, now=day_start + timedelta(hours=31))   # no new data
    assert complete.days == complete.complete_days == [GOOD_DAY.isoformat()]
    assert not complete.success
    failed = [f["expectation"] for f in complete.results[0]["failed"]]
    assert failed == ["expect_table_row_count_to_be_between"]
    # Judged once: the next run has nothing to do.
    assert run_incremental_gate(settings, now=day_start + timedelta(hours=40)).nothing_new


def test_a_backfill_rebuilds_its_days_whatever_the_recorded_version(local_lakehouse, corpus_days):
    from expectations.gate import run_quality_gate
    from expectations.incremental import BRONZE_APP, processed_versions, run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[GOOD_DAY]
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)])
    run_incremental_gate(settings, now=LATER)
    recorded = processed_versions(settings)[BRONZE_APP]
    from tweetops.core.tables import open_table

    # Someone deletes silver's day by mistake: a backfill restores it from bronze.
    open_table("silver_tweets", settings).delete(f"event_date = '{GOOD_DAY.isoformat()}'")
    assert read("silver_tweets", settings, GOOD_DAY).empty
    result = run_quality_gate(GOOD_DAY, GOOD_DAY + timedelta(days=1), settings, now=LATER)
    assert result.success and len(read("silver_tweets", settings, GOOD_DAY)) == len(tweets)
    assert processed_versions(settings)[BRONZE_APP] == recorded
    assert date.fromisoformat(result.interval_start[:10]) == GOOD_DAY


def test_the_dag_validates_what_bronze_gained_and_names_the_days(gate, corpus_days, slack_receiver):
    """A run without a `date` (asset-triggered, scheduled, manual) is incremental; with nothing new it skips."""
    settings, dag = gate
    tweets = corpus_days[GOOD_DAY]
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)])

    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    summary = next(ti for ti in run.get_task_instances() if ti.task_id == "validate_bronze").xcom_pull(
        task_ids="validate_bronze")
    assert summary["days"] == [GOOD_DAY.isoformat()]
    assert summary["event_extra"]["days"] == [GOOD_DAY.isoformat()] 
    assert summary["event_extra"]["bronze_to"] == table_version("bronze_tweets", settings)
    assert sorted(read("silver_tweets", settings, GOOD_DAY)["id"]) == sorted(t["id"] for t in tweets)

    again = dag.test()
    assert {ti.task_id: ti.state for ti in again.get_task_instances()}["validate_bronze"] == "skipped"
    assert slack_receiver.messages == []


def test_dead_letters_alone_on_a_partial_day_raise_no_alarm(local_lakehouse):
    import pyarrow as pa
    from deltalake import write_deltalake

    from expectations.incremental import run_incremental_gate
    from tweetops.core.storage import ensure_bucket
    from tweetops.core.tables import ensure_table, spec

    settings = local_lakehouse
    ensure_bucket(settings)
    received = datetime(GOOD_DAY.year, GOOD_DAY.month, GOOD_DAY.day, 9, tzinfo=timezone.utc)
    dead = [{"raw": b"\xff{not json", "kafka_key": None, "reason": "undecodable JSON", "kafka_topic": "tweets",
             "kafka_partition": 0, "kafka_offset": i, "received_at": received, "ingest_date": GOOD_DAY}
            for i in range(3)]
    write_deltalake(ensure_table("bronze_dead_letters", settings),
                    pa.Table.from_pylist(dead, schema=spec("bronze_dead_letters").schema), mode="append")

    partial = run_incremental_gate(settings, now=received + timedelta(hours=2))
    assert partial.success and partial.results == [] and partial.nothing_new
    complete = run_incremental_gate(settings, now=received + timedelta(hours=40))   # the day is complete now
    assert complete.complete_days == [GOOD_DAY.isoformat()] and not complete.success


def test_tweets_created_after_the_run_started_are_not_future_tweets(local_lakehouse, corpus_days):
    """A streaming day: the run starts, then tweets created moments later land before the gate reads bronze."""
    from expectations.incremental import run_incremental_gate

    settings = local_lakehouse
    started = datetime.now(timezone.utc)
    fresh = started + timedelta(seconds=1)
    if fresh.date() != started.date():   # a run straddling midnight: the tweet belongs to the next day
        fresh = started
    seed_bronze(settings, [bronze_row(t, i, id=f"fresh-{i}", created_at=fresh, event_date=fresh.date())
                           for i, t in enumerate(corpus_days[GOOD_DAY][:5])])
    import time as clock
    clock.sleep(1.5)   # the tweets are now in the past: the gate reads bronze after their creation

    result = run_incremental_gate(settings, now=started)
    assert result.success, result.results[0]["failed"]
    assert len(read("silver_tweets", settings, fresh.date())) == 5


def test_the_dag_alerts_a_quarantined_row_in_one_run_only(gate, corpus_days, slack_receiver):
    """Under Airflow: the run whose batch holds a bad row fails and alerts; a later clean batch for the
    same day passes without a second alert, and its event names the day whose silver changed."""
    settings, dag = gate
    tweets = corpus_days[BAD_DAY]
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets[:120])] + [bad_rows(tweets)["bad-language"]])

    first = dag.test()
    assert first.state == "failed"
    assert len(slack_receiver.messages) == 1 and "expected in {en}; observed 1 of 121 rows" in \
        slack_receiver.messages[0]["payload"]["text"]

    seed_bronze(settings, [bronze_row(t, 120 + i) for i, t in enumerate(tweets[120:])])
    second = dag.test()
    states = {ti.task_id: ti.state for ti in second.get_task_instances()}
    assert second.state == "success", states
    assert len(slack_receiver.messages) == 1                       # no second alert
    summary = next(ti for ti in second.get_task_instances() if ti.task_id == "validate_bronze").xcom_pull(
        task_ids="validate_bronze")
    assert summary["event_extra"]["days"] == [BAD_DAY.isoformat()]
    assert summary["event_extra"]["judged_days"] == []
    assert summary["results"][0]["silver_rows"] == len(tweets) - 120
