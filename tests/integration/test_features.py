"""The Spark feature job on real corpus tweets in silver_tweets: the same features as the pandas
path (one implementation), idempotent per interval, other intervals untouched, splits stable as
data grows, and the features DAG under real Airflow (dag.test())."""
from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "features.py"
DAY1, DAY2, DAY3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


def silver_rows(count: int, skip: int = 0) -> list[dict]:
    from tweetops.core.corpus import load_corpus

    rows = []
    for tweet in itertools.islice(load_corpus(end=DAY3 + timedelta(days=1), days=3), skip, skip + count):
        created = datetime.fromisoformat(tweet["created_at"])
        rows.append({"id": tweet["id"], "text": tweet["text"], "created_at": created, "user": tweet["user"],
                     "lang": tweet["lang"], "label": tweet["label"], "extra": json.dumps({"topic": tweet["topic"]}),
                     "event_date": created.date(), "validated_at": created + timedelta(minutes=1),
                     "bronze_version": 1})
    return rows


def add_to_silver(settings, rows: list[dict]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    write_deltalake(ensure_table("silver_tweets", settings),
                    pa.Table.from_pylist(rows, schema=spec("silver_tweets").schema), mode="append")


def gold(settings) -> pd.DataFrame:
    from tweetops.core.tables import open_table

    return open_table("gold_features", settings).to_pandas().sort_values("id").reset_index(drop=True)


@pytest.fixture
def lakehouse(local_lakehouse, spark, monkeypatch):
    settings = local_lakehouse.model_copy(update=dict(spark_master="local[2]"))
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    rows = silver_rows(300)
    add_to_silver(settings, rows)
    assert {r["event_date"] for r in rows} == {DAY1, DAY2, DAY3}
    return settings, rows


def test_spark_features_equal_the_pandas_features_and_reruns_replace(lakehouse):
    from ml.features import build_features, feature_frame

    settings, rows = lakehouse
    written = build_features(DAY1, DAY3, settings)
    in_interval = [r for r in rows if DAY1 <= r["event_date"] < DAY3]
    assert written == len(in_interval)
    table = gold(settings)
    assert set(table["event_date"]) == {DAY1, DAY2}
    # The Spark job and the pandas path (seeding, serving's normaliser) agree row for row.
    expected = feature_frame(pd.DataFrame(in_interval)).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table["split"].isin(["train", "validation", "test"]).all()

    assert build_features(DAY1, DAY3, settings) == written  # rerun: replaced, not appended
    pd.testing.assert_frame_equal(gold(settings), table)


def test_an_interval_leaves_other_days_alone_and_splits_never_move(lakehouse):
    from ml.features import build_features

    settings, rows = lakehouse
    build_features(DAY1, DAY2, settings)
    before = gold(settings)
    add_to_silver(settings, silver_rows(300, skip=300))   # more tweets arrive on every day
    build_features(DAY2, DAY3 + timedelta(days=1), settings)
    after = gold(settings)
    assert after[after["event_date"] == DAY1].reset_index(drop=True).equals(before.reset_index(drop=True))
    build_features(DAY1, DAY2, settings)                  # day 1 rebuilt with its new tweets
    grown = gold(settings).set_index("id")
    assert len(grown) == 600
    assert (grown.loc[before["id"], "split"].values == before["split"].values).all()


def test_the_features_dag_builds_the_requested_interval(lakehouse, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    settings, rows = lakehouse
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["tweetops_features"].test(run_conf={"start": DAY2.isoformat(), "end": DAY3.isoformat()})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    table = gold(settings)
    assert sorted(table["id"]) == sorted(r["id"] for r in rows if r["event_date"] == DAY2)


def test_training_samples_a_table_the_spark_job_wrote(lakehouse):
    """The bounded training sample reads Spark-written files too (a scan filter on the label once
    matched nothing there, so a big day trained on nothing)."""
    from ml.features import build_features
    from ml.training_sample import read_training_rows
    from tweetops.core.tables import open_table

    settings, rows = lakehouse
    written = build_features(DAY1, DAY3 + timedelta(days=1), settings)
    labelled = sum(1 for r in rows if r["label"])
    sample, info = read_training_rows(open_table("gold_features", settings), ["id", "label", "event_date"],
                                      max_rows=labelled // 2, seed=7)
    assert info["sampled"] and written == len(rows)
    assert len(sample) == labelled // 2 and sample["label"].notna().all()
