"""Score newly validated tweets with the champion model into gold_predictions.

Runs whenever silver_tweets is updated, and hourly to catch up on any silver day without
predictions (Airflow can deliver an asset event late; scoring skips until a champion exists).
Each run replaces the predictions of the days it scores (see
tweetops.orchestration.context.intervals_to_process), so a rerun never appends twice. Then it
rescores up to ml.scoring.RESCORE_DAYS_PER_RUN days still holding another version's predictions
(after a champion change), oldest first.
A manual run over days without silver tweets skips, saying so.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tweetops.orchestration.assets import GOLD_PREDICTIONS, SILVER_TWEETS
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_scoring",
    description="Champion predictions for every silver tweet of the interval -> gold_predictions",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("20 * * * *", timezone="UTC"),
                                 assets=[SILVER_TWEETS]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("scoring", "gold"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
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
        from ml.scoring import TABLE, score_interval
        from ml.model_access import NoChampionError
        from tweetops.orchestration.context import intervals_to_process

        intervals = intervals_to_process(context, TABLE)
        if not intervals:
            raise AirflowSkipException("gold_predictions is up to date with silver_tweets")
        try:
            rows = sum(score_interval(start, end) for start, end in intervals)
        except NoChampionError as exc:  # silver lands before the first model: nothing to score with yet
            raise AirflowSkipException(str(exc)) from exc
        except UntrustedModelError as exc:  # a champion the pipeline did not register: never run it
            from tweetops.orchestration.alerts import send_alert

            send_alert(f":rotating_light: Scoring refused the champion: {exc}")
            raise
        if rows == 0:  # a manual run over days without tweets: say so, no gold_predictions event
            days = ", ".join(f"[{start}, {end})" for start, end in intervals)
            raise AirflowSkipException(f"no silver tweets with event_date in {days}: nothing scored")
        # The drift DAG checks the days this run scored (it is scheduled on this asset).
        context["outlet_events"][GOLD_PREDICTIONS].extra = {
            "interval_start": intervals[0][0].isoformat(), "interval_end": intervals[-1][1].isoformat()}
        return rows

    # After the new days (never concurrently: one writer), whether or not there were any.
    @task(trigger_rule="none_failed")
    def rescore_for_the_champion() -> dict:
        """The days still holding another version's predictions, a bounded batch per run. No
        gold_predictions event: rescored history is no new data for the drift DAG."""
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        from ml.scoring import rescore_stale_days
        from ml.model_access import NoChampionError

        try:
            done = rescore_stale_days()
        except NoChampionError as exc:
            raise AirflowSkipException(str(exc)) from exc
        if not done["rescored_days"]:
            raise AirflowSkipException(f"every day's predictions are champion v{done['champion_version']}'s")
        logging.getLogger(__name__).info("rescored %s", done)
        return done

    score_silver_interval() >> rescore_for_the_champion()


tweetops_scoring()
