"""Promotion: whenever training registers a challenger, apply the promotion policy to it
(ml.promotion, ml/policy/promotion.yaml) and tell Slack what was decided and why.

The challenger becomes champion only if it beats the champion on the fixed test split and on the
recent labelled window by the margin, and passes the behavioural checks; otherwise it stays
challenger. Every decision is logged in gold_promotion_log with this run as the actor, before any
alias moves: a retry or rerun of the same run finishes the decision it logged (one log row, the
alias moved once, the Slack message sent).
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from tweetops.orchestration.assets import CHALLENGER_MODEL
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_promotion",
    description="Promote the newest challenger only if it beats the champion (test split, recent window, behaviour)",
    doc_md=__doc__,
    schedule=[CHALLENGER_MODEL],
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("promotion", "mlflow"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
)
def tweetops_promotion():
    @task
    def promote_if_better(dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml.promotion import decide_promotion

        try:
            return decide_promotion(actor=f"airflow:{dag_run.dag_id}/{dag_run.run_id}").as_dict()
        except LookupError as exc:  # no challenger (already promoted, or none trained yet)
            raise AirflowSkipException(str(exc)) from exc

    @task
    def alert_decision(decision: dict) -> None:
        from ml.promotion import alert_message
        from tweetops.orchestration.alerts import send_alert

        send_alert(*alert_message(decision))

    alert_decision(promote_if_better())


tweetops_promotion()
