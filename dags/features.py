"""Gold features: each update of silver_tweets adds the features of the tweets silver gained.

A run computes features only for the silver rows added since the silver version recorded on
gold_features (a Delta app transaction, written in the same commit as the rows), appends them,
and rebuilds whole the days silver rewrote (backfill, erasure, compaction) or that are behind:
see lakehouse/downstream.py. Features come from the same Python text functions the served model
uses (tweetops.core.text). Small appends and rebuilds run in this process; big ones on Spark. The hourly run
is a safety net that does the same. A manual run with `start` rebuilds [start, end) on Spark.
The task's log line and the run's note say which silver versions and days the run covered.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tweetops.orchestration.assets import GOLD_FEATURES, SILVER_TWEETS
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_features",
    description="Spark feature job: silver_tweets of the interval -> gold_features (normalised text, counts, split)",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("15 * * * *", timezone="UTC"),
                                 assets=[SILVER_TWEETS]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("features", "gold", "spark"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
    params={
        "start": Param(None, type=["null", "string"], format="date",
                       description="Manual runs: first event date to rebuild (YYYY-MM-DD); empty: catch up"),
        "end": Param(None, type=["null", "string"], format="date",
                     description="Manual runs: first event date not rebuilt (default: start + 1 day)"),
    },
)
def tweetops_features():
    @task(outlets=[GOLD_FEATURES])
    def build_gold_features(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from lakehouse.downstream import manual_result
        from tweetops.orchestration.context import manual_interval
        from tweetops.orchestration.run_report import describe_run, event_extra
        from ml.features import TABLE, build_features, update_features

        manual = manual_interval(context)
        if manual:  # a manual rebuild of [start, end) on Spark, whatever was processed before
            done = manual_result(TABLE, *manual, build_features(*manual))
        else:
            done = update_features().as_dict()
        describe_run(context, done["describe"])
        if not done["days"]:
            raise AirflowSkipException(done["describe"])   # no gold_features event: nothing changed
        context["outlet_events"][GOLD_FEATURES].extra = event_extra(done)
        return done

    build_gold_features()


tweetops_features()
