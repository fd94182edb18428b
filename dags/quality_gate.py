"""Quality gate: validate bronze tweets with Great Expectations; good rows to silver, bad rows to
quarantine, a Slack alert and a failed run when any expectation fails.

Incremental: a run triggered by a `bronze_tweets` asset event (the ingest consumer posts one after
its commits, throttled) or by the daily schedule validates only the rows bronze gained since the
last run and appends them to silver or quarantine (exactly once, by tweet id), then judges the
day-level checks of the days that became complete (close + allowed lateness); it fails and alerts
only for what its own rows or judged days failed, and skips when it wrote and judged nothing.
See expectations/incremental.py.

Backfill: a run with the `date` param (YYYY-MM-DD) or an Airflow backfill rebuilds its day from
bronze whatever the incremental gate has processed. Suite: expectations/bronze_tweets.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tweetops.orchestration.assets import BRONZE_TWEETS, SILVER_TWEETS
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_quality_gate",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 0 * * *", timezone="UTC"),
                                 assets=[BRONZE_TWEETS]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("quality", "silver"),
    description="Great Expectations gate from bronze to silver for the days bronze gained; failing rows to "
                "quarantine, alert in Slack",
    doc_md=__doc__,
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
    params={"date": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                          description="Backfill: UTC day to rebuild from bronze (YYYY-MM-DD); empty: incremental")},
)
def tweetops_quality_gate():
    @task(outlets=[SILVER_TWEETS])
    def validate_bronze(**context) -> dict:
        """Validate, write silver and quarantine, alert on failed expectations: good rows always flow."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from expectations.incremental import gate_task
        from tweetops.orchestration.alerts import alert_quality_gate
        from tweetops.orchestration.context import gate_backfill_from_context

        try:
            summary = gate_task(context["run_id"], gate_backfill_from_context(context))
        except ValueError as exc:  # a bad `date` param: retrying will not fix it
            raise AirflowFailException(str(exc)) from exc
        if summary["skip"]:
            raise AirflowSkipException(summary["describe"])   # no silver_tweets event: nothing changed
        # Downstream DAGs rebuild exactly the days whose silver changed (features, scoring).
        context["outlet_events"][SILVER_TWEETS].extra = summary["event_extra"]
        for result in summary["results"]:
            if not result["success"]:
                alert_quality_gate(result, context)
        return summary

    # No second alert: Slack already has the details.
    @task(on_failure_callback=None)
    def fail_if_expectations_failed(summary: dict) -> None:
        """Make a failed validation visible as a failed run in the Airflow UI (after silver is written)."""
        from airflow.sdk.exceptions import AirflowFailException

        from expectations.gate import failure_summary

        failed = [failure_summary(r) for r in summary["results"] if not r["success"]]
        if failed:
            raise AirflowFailException("\n\n".join(failed))  # a retry would fail the same way

    fail_if_expectations_failed(validate_bronze())


tweetops_quality_gate()
