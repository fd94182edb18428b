"""Drift: daily, and whenever new predictions land, compare the window's silver tweets with the
champion's training reference (ml.drift, thresholds in ml/policy/drift.yaml).

Every score goes to gold_drift_metrics and the Evidently report to TWEETOPS_HOME/reports. Only when
a threshold is crossed: a Slack alert naming what drifted, by how much, with the report link, and
a retrain_request asset event, on which tweetops_training runs, at most one per drift episode (the
`retraining.cooldown_hours` of the thresholds file, ml/retrain_cooldown.py). A rerun replaces the
window's scores.
A window without silver tweets skips (the log says why) and writes no row.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tweetops.orchestration.assets import GOLD_PREDICTIONS, RETRAIN_REQUEST
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_drift",
    description="Evidently drift and live quality of silver tweets vs the champion's training data; alert and retrain",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("30 4 * * *", timezone="UTC"),
                                 assets=[GOLD_PREDICTIONS]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("drift", "monitoring"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=2)),
    params={
        "start": Param(None, type=["null", "string"], format="date",
                       description="Manual runs: first event date of the window (YYYY-MM-DD)"),
        "end": Param(None, type=["null", "string"], format="date",
                     description="Manual runs: first event date not in the window (default: start + 1 day)"),
        "config": Param(None, type=["null", "string"],
                        description="Drift thresholds file (default: ml/policy/drift.yaml)"),
    },
)
def tweetops_drift():
    @task
    def check_drift_in_window(**context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from ml.drift import DriftConfigError, EmptyWindowError, check_drift
        from ml.model_access import NoChampionError
        from tweetops.orchestration.context import drift_window_from_context

        start, end = drift_window_from_context(context)
        try:
            return check_drift(start, end, config=context["params"].get("config")).as_dict()
        except NoChampionError as exc:  # nothing to compare with until training registers one
            raise AirflowSkipException(str(exc)) from exc
        except EmptyWindowError as exc:  # no tweets that day: nothing to measure, no row written
            raise AirflowSkipException(str(exc)) from exc
        except DriftConfigError as exc:  # a bad thresholds file: retrying will not fix it
            raise AirflowFailException(str(exc)) from exc

    @task.short_circuit
    def drift_detected(result: dict) -> bool:
        """Skip the alert and the retrain request when nothing crossed a threshold."""
        return bool(result["drifted"])

    @task
    def retraining_decision(result: dict, params=None) -> dict:
        """Request retraining only once per drift episode: not within the cooldown of the last request."""
        import logging

        from ml.drift import load_drift_config
        from ml.retrain_cooldown import cooldown_from_config, retraining_due

        due, why = retraining_due(result["model_name"], cooldown_from_config(load_drift_config(params.get("config"))))
        logging.getLogger(__name__).info(why)
        return {"due": due, "why": why}

    @task
    def alert_drift(result: dict, retraining: dict) -> None:
        from ml.drift import alert_message
        from tweetops.orchestration.alerts import send_alert

        text, blocks = alert_message(result, retraining=retraining["due"])
        if not retraining["due"]:
            text += f"\nNo new retrain request: {retraining['why']}."
        send_alert(text, blocks)

    @task(outlets=[RETRAIN_REQUEST])
    def request_retraining(result: dict, retraining: dict, outlet_events=None) -> None:
        """The asset event tweetops_training is scheduled on: retraining goes through Airflow."""
        from airflow.sdk.exceptions import AirflowSkipException

        from ml.retrain_cooldown import record_request

        if not retraining["due"]:
            raise AirflowSkipException(retraining["why"])   # no event: training does not run again
        record_request(result["model_name"])
        outlet_events[RETRAIN_REQUEST].extra = {
            "reason": "drift", "window_start": result["window_start"], "window_end": result["window_end"],
            "model_version": result["model_version"], "drifted_checks": result["drifted_checks"]}

    result = check_drift_in_window()
    detected = drift_detected(result)
    retraining = retraining_decision(result)
    detected >> retraining
    [alert_drift(result, retraining), request_retraining(result, retraining)]


tweetops_drift()
