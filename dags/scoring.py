"""Score newly validated tweets with the champion model into gold_predictions.

Runs whenever silver_tweets is updated, and hourly to catch up on any silver day without
predictions (Airflow can deliver an asset event late; scoring skips until a champion exists).
Each run replaces the predictions of the days it scores (see ml.scoring.intervals_to_process),
so a rerun never appends twice.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from lakehouse.assets import GOLD_PREDICTIONS, SILVER_TWEETS


@dag(
    dag_id="tweetops_scoring",
    description="Champion predictions for every silver tweet of the interval -> gold_predictions",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("20 * * * *", timezone="UTC"),
                                 assets=[SILVER_TWEETS]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["tweetops", "scoring", "gold"],
    default_args={"owner": "tweetops", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "start": Param(None, type=["null", "string"], format="date",
                       description="Manual runs: first event date to score (YYYY-MM-DD); empty: catch up"),
        "end": Param(None, type=["null", "string"], format="date",
                     description="Manual runs: first event date not scored (default: start + 1 day)"),
    },
)
def tweetops_scoring():
    @task(outlets=[GOLD_PREDICTIONS])
    def score_silver_interval(**context) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml.registry import UntrustedModelError
        from ml.scoring import TABLE, intervals_to_process, score_interval
        from ml.serving import NoChampionError

        intervals = intervals_to_process(context, TABLE)
        if not intervals:
            raise AirflowSkipException("gold_predictions is up to date with silver_tweets")
        try:
            rows = sum(score_interval(start, end) for start, end in intervals)
        except NoChampionError as exc:  # silver lands before the first model: nothing to score with yet
            raise AirflowSkipException(str(exc)) from exc
        except UntrustedModelError as exc:  # a champion the pipeline did not register: never run it
            from tweetops_alerts import send_alert

            send_alert(f":rotating_light: Scoring refused the champion: {exc}")
            raise
        # The drift DAG checks the days this run scored (it is scheduled on this asset).
        context["outlet_events"][GOLD_PREDICTIONS].extra = {
            "interval_start": intervals[0][0].isoformat(), "interval_end": intervals[-1][1].isoformat()}
        return rows

    score_silver_interval()


tweetops_scoring()
