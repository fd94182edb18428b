"""Gold features: every update of silver_tweets rebuilds gold_features for the days it landed.

Features are computed on Spark with the same Python text functions the served model uses
(tweetops.core.text); each run replaces whole event_date partitions, so a rerun never appends twice. Each
run also catches up on any silver day gold_features is behind on (Airflow can deliver an asset
event late), and an hourly run does only that: see
tweetops.orchestration.context.intervals_to_process.
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
    def build_gold_features(**context) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml.features import TABLE, build_features
        from tweetops.orchestration.context import intervals_to_process  # the scoring DAG's rules too

        intervals = intervals_to_process(context, TABLE)
        if not intervals:
            raise AirflowSkipException("gold_features is up to date with silver_tweets")
        rows = sum(build_features(start, end) for start, end in intervals)
        context["outlet_events"][GOLD_FEATURES].extra = {
            "interval_start": intervals[0][0].isoformat(), "interval_end": intervals[-1][1].isoformat()}
        return rows

    build_gold_features()


tweetops_features()
