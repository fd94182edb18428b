"""Quality gate: validate a day of bronze tweets with Great Expectations; good rows to silver,
bad rows to quarantine, a Slack alert and a failed run when any expectation fails.

The interval is the run's data interval, or the `date` param (YYYY-MM-DD) for manual runs;
a rerun replaces the day's silver and quarantine partitions. Suite: expectations/bronze_tweets.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, task

from lakehouse.assets import SILVER_TWEETS
from tweetops_dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_quality_gate",
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=dag_tags("quality", "silver"),
    description="Great Expectations gate from bronze to silver; failing rows to quarantine, alert in Slack",
    doc_md=__doc__,
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
    params={"date": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                          description="UTC day to validate (YYYY-MM-DD); empty: the run's data interval")},
)
def tweetops_quality_gate():
    @task(outlets=[SILVER_TWEETS])
    def validate_bronze(**context) -> dict:
        """Validate, write silver and quarantine, alert on failed expectations: good rows always flow."""
        from airflow.sdk.exceptions import AirflowFailException

        from expectations.gate import interval_from_context, run_quality_gate
        from tweetops_alerts import alert_quality_gate

        try:
            interval = interval_from_context(context)
        except ValueError as exc:  # a bad `date` param: retrying will not fix it
            raise AirflowFailException(str(exc)) from exc
        result = run_quality_gate(*interval, run_id=context["run_id"])
        # Downstream DAGs read the days this run landed from the event (a cron run's logical
        # date is the day after the day it validates).
        context["outlet_events"][SILVER_TWEETS].extra = {
            "interval_start": interval[0].isoformat(), "interval_end": interval[1].isoformat()}
        if not result.success:
            alert_quality_gate(result, context)
        return result.as_dict()

    # No second alert: Slack already has the details.
    @task(on_failure_callback=None)
    def fail_if_expectations_failed(result: dict) -> None:
        """Make a failed validation visible as a failed run in the Airflow UI (after silver is written)."""
        from airflow.sdk.exceptions import AirflowFailException

        from expectations.gate import failure_summary

        if not result["success"]:
            raise AirflowFailException(failure_summary(result))  # a retry would fail the same way

    fail_if_expectations_failed(validate_bronze())


tweetops_quality_gate()
