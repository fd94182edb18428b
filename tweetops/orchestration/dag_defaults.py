"""The defaults every TweetOps DAG shares: owner, retries, retry delay, the Slack failure alert, tags.

Every file in dags/ builds its `default_args` and `tags` here, so no DAG can fail silently: a task
that fails for good (after its retries) posts `tweetops.orchestration.alerts.alert_on_failure` to Slack. The
callback sits on the tasks (default_args), not on the DAG: a DAG-level notifier errors inside
`airflow dags test`. Kept import-light: Airflow imports the plugins folder in every process.
"""
from __future__ import annotations

from datetime import timedelta

from tweetops.orchestration.alerts import alert_on_failure

OWNER = "tweetops"
RETRIES = 2
TAG = "tweetops"   # every DAG carries it, so the UI can filter the whole pipeline


def dag_default_args(retry_delay: timedelta = timedelta(minutes=1)) -> dict:
    """`default_args` for a TweetOps DAG; only the retry delay differs between DAGs."""
    return {"owner": OWNER, "retries": RETRIES, "retry_delay": retry_delay,
            "on_failure_callback": alert_on_failure}


def dag_tags(*topics: str) -> list[str]:
    """The DAG's tags: `tweetops` first, then what the DAG is about."""
    return [TAG, *topics]
