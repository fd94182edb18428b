"""The incremental quality gate on a real Delta lakehouse with real corpus tweets: late tweets reach
silver, replays change nothing, a crash between the silver and quarantine commits is recovered, and
day-level expectations wait for a day to be complete."""
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

    assert second.days == [GOOD_DAY.isoformat()]
    assert (second.bronze_from, second.bronze_to) == (first.bronze_to, first.bronze_to + 1)
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

    assert replay.days == [BAD_DAY.isoformat()]
    assert silver_files(settings) == files                      # the day's silver files are kept as they are
    assert table_version("silver_quarantine", settings) == quarantine_version
    assert read("silver_tweets", settings, BAD_DAY).equals(silver)
    assert read("silver_quarantine", settings, BAD_DAY).equals(quarantine)


def test_a_crash_between_silver_and_quarantine_is_recovered_by_the_next_run(local_lakehouse, corpus_days,
                                                                             monkeypatch):
    import expectations.gate as gate
    from expectations.incremental import BRONZE_APP, processed_versions, run_incremental_gate

    settings, tweets = local_lakehouse, corpus_days[BAD_DAY]
    bad = bad_rows(tweets)
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(tweets)] + list(bad.values()))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the silver commit")

    with monkeypatch.context() as patch:
        patch.setattr(gate, "write_quarantine", crash)
        with pytest.raises(KeyboardInterrupt):
            run_incremental_gate(settings, now=LATER)
    from tweetops.core.tables import ensure_table

    assert len(read("silver_tweets", settings, BAD_DAY)) == len(tweets)
    assert ensure_table("silver_quarantine", settings).to_pandas().empty
    assert processed_versions(settings)[BRONZE_APP] is None    # nothing recorded: the day is redone

    recovered = run_incremental_gate(settings, now=LATER)

    assert recovered.days == [BAD_DAY.isoformat()]
    assert sorted(read("silver_quarantine", settings, BAD_DAY)["id"]) == sorted(bad)
    silver = read("silver_tweets", settings, BAD_DAY)
    assert sorted(silver["id"]) == sorted(t["id"] for t in tweets)   # no row lost, none doubled
    assert processed_versions(settings)[BRONZE_APP] == recovered.bronze_to


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
