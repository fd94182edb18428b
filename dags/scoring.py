"""Score newly validated tweets with the champion model into gold_predictions.

Runs whenever silver_tweets is updated, and hourly as a safety net (scoring skips until a champion
exists). A run predicts only the silver rows added since the silver version recorded on
gold_predictions (a Delta app transaction, in the same commit as the appended rows), dropping ids
already scored, so a rerun or a crash never doubles or loses a row; it rescores whole the days
silver rewrote or that are behind (see lakehouse/downstream.py). Small appends predict in this
process, big ones on Spark (ml/scoring_spark.py). The task's log line and the run's note say
which silver versions and days it covered. Then it rescores up to ml.scoring.RESCORE_DAYS_PER_RUN days
still holding another version's predictions (after a champion change), oldest first.
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
    def score_silver_interval(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from lakehouse.downstream import manual_result
        from tweetops.orchestration.context import manual_interval
        from tweetops.orchestration.run_report import describe_run, event_extra
        from ml.registry import UntrustedModelError
        from ml.scoring import TABLE, score_interval, score_new_silver
        from ml.model_access import NoChampionError

        manual = manual_interval(context)
        try:
            if manual:  # a manual rescore of [start, end), whatever was processed before
                done = manual_result(TABLE, *manual, score_interval(*manual))
            else:
                done = score_new_silver().as_dict()
        except NoChampionError as exc:  # silver lands before the first model: nothing to score with yet
            raise AirflowSkipException(str(exc)) from exc
        except UntrustedModelError as exc:  # a champion the pipeline did not register: never run it
            from tweetops.orchestration.alerts import send_alert

            send_alert(f":rotating_light: Scoring refused the champion: {exc}")
            raise
        describe_run(context, done["describe"])
        if manual and done["rows"] == 0:  # a manual run over days without tweets: say so, no event
            raise AirflowSkipException(f"no silver tweets with event_date in [{manual[0]}, {manual[1]}): nothing scored")
        if not done["days"]:
            raise AirflowSkipException(done["describe"])   # nothing new: no gold_predictions event
        # The drift DAG checks the days this run scored (it is scheduled on this asset).
        context["outlet_events"][GOLD_PREDICTIONS].extra = event_extra(done)
        return done

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
