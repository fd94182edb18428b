"""The quality gate on a day bigger than one chunk (expectations.gate_chunked) writes the same
silver_tweets and silver_quarantine as the one-frame gate, and names each failing row's
expectations. Real corpus tweets, crafted bad rows and redeliveries, a real Delta lakehouse."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.integration.test_quality_gate import BAD_DAY, bad_rows, bronze_row, corpus_days, read, seed_bronze

pytestmark = pytest.mark.integration
__all__ = ["corpus_days"]  # the module fixture, shared

AUDIT = ["validated_at", "bronze_version", "gate_run_id", "quarantined_at", "run_id"]


def day_rows(corpus_days) -> list[dict]:
    tweets = corpus_days[BAD_DAY]
    rows = [bronze_row(t, i) for i, t in enumerate(tweets)]
    rows += [bronze_row(tweets[7], 5000 + i) for i in range(3)]              # redeliveries of one tweet
    rows.append(bronze_row(tweets[8], 6000, text="same id, other text"))     # an id used twice
    rows += list(bad_rows(tweets).values())
    return rows


def tables(settings) -> dict:
    out = {}
    for name, key in (("silver_tweets", ["id"]), ("silver_quarantine", ["id", "text", "failed_expectations"])):
        frame = read(name, settings, BAD_DAY)
        out[name] = frame.drop(columns=[c for c in AUDIT if c in frame]).sort_values(key).reset_index(drop=True)
    return out


def test_chunked_gate_writes_what_the_one_frame_gate_writes(local_lakehouse, corpus_days):
    from expectations import gate_chunked
    from expectations.gate import run_quality_gate
    from tweetops.core.intervals import day_bounds

    settings = local_lakehouse
    rows = day_rows(corpus_days)
    seed_bronze(settings, rows)
    start, end = BAD_DAY, BAD_DAY + timedelta(days=1)
    assert gate_chunked.bronze_rows_in(*day_bounds(start, end), settings) == len(rows)

    one_frame = run_quality_gate(start, end, settings.model_copy(update=dict(gate_chunk_rows=10_000)))
    expected = tables(settings)
    chunked = run_quality_gate(start, end, settings.model_copy(update=dict(gate_chunk_rows=40)))   # 161 rows: 5 chunks
    actual = tables(settings)

    assert len(actual["silver_tweets"]) > 100 and len(actual["silver_quarantine"]) >= 7
    for name in expected:
        assert actual[name].equals(expected[name]), name
    quarantined = {r["id"]: [f["expectation"] for f in json.loads(r["failed_expectations"])]
                   for r in actual["silver_quarantine"].to_dict("records")}
    assert quarantined["bad-language"] == ["expect_column_values_to_be_in_set"]
    assert quarantined["bad-empty-text"] == ["expect_column_value_lengths_to_be_between"]
    assert "expect_column_values_to_be_unique" in quarantined[corpus_days[BAD_DAY][8]["id"]]
    for field in ("success", "bronze_rows", "redeliveries_dropped", "silver_rows", "quarantined_rows"):
        assert getattr(chunked, field) == getattr(one_frame, field), field
    assert chunked.redeliveries_dropped == 3
    by_expectation = {(f.expectation, f.column): f for f in chunked.failed}
    assert {(f.expectation, f.column): f.unexpected_count for f in one_frame.failed} == {
        key: f.unexpected_count for key, f in by_expectation.items()}
    assert by_expectation[("expect_column_values_to_be_in_set", "lang")].observed.startswith(
        f"1 of {chunked.bronze_rows - 3} rows")


def test_a_small_day_split_in_chunks_still_fails_the_row_count(local_lakehouse, corpus_days):
    from expectations.gate import run_quality_gate

    settings = local_lakehouse.model_copy(update=dict(gate_chunk_rows=15))
    seed_bronze(settings, [bronze_row(t, i) for i, t in enumerate(corpus_days[BAD_DAY][:40])])
    result = run_quality_gate(BAD_DAY, BAD_DAY + timedelta(days=1), settings)
    assert not result.success and result.whole_interval_quarantined
    assert (result.silver_rows, result.quarantined_rows) == (0, 40)
    failed = {f.expectation: f for f in result.failed}
    assert failed["expect_table_row_count_to_be_between"].observed == "40"
    quarantine = read("silver_quarantine", settings, BAD_DAY)
    assert all("expect_table_row_count_to_be_between" in {f["expectation"] for f in json.loads(r)}
               for r in quarantine["failed_expectations"])
