"""Erasure (the right to be forgotten): trigger by hand with a user name or a tweet id, and every
tweet of theirs leaves the lakehouse and its history (ml.erasure, as `tweetops forget`).

Idempotent per run: the run id is the erasure id, so a retry after success does nothing and a
retry after a failure erases what is left. The run's params (the name) stay in Airflow's own
metadata DB: delete the DAG run once it succeeded if that DB must not hold them either.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_erasure",
    description="Erase a user's (or a tweet's) rows from every table, old versions and files; log it; mark models",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("lakehouse", "erasure", "gdpr"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=1)),
    params={
        "user": Param("", type="string", description="Erase every tweet this user wrote"),
        "tweet_id": Param("", type="string", description="Or: erase the tweet with this id"),
    },
)
def tweetops_erasure():
    @task
    def forget(dag_run=None, params=None) -> dict:
        from dataclasses import asdict

        from ml.erasure import Subject, forget

        users = (params["user"],) if params["user"].strip() else ()
        ids = (params["tweet_id"],) if params["tweet_id"].strip() else ()
        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        erasure = forget(Subject(users=users, ids=ids), actor=actor, erasure_id=actor)
        return asdict(erasure)  # counts and model versions only: no name, no id

    forget()


tweetops_erasure()
