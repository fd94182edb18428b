"""Daily lakehouse maintenance: compact small files, checkpoint, vacuum (7-day retention).

One mapped task per table (lakehouse.maintenance.maintain_table), so a conflict on one table is
retried alone. Safe while the consumer ingests; rerunning it changes nothing that matters (a
compacted table has nothing left to compact). The same work runs from the CLI: `tweetops maintain`.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_lakehouse_maintenance",
    description="Compact, checkpoint and vacuum every lakehouse Delta table",
    doc_md=__doc__,
    schedule="30 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("lakehouse", "maintenance"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=5)),
    params={
        "vacuum_retention_hours": Param(168, type="integer", minimum=168,
                                        description="Vacuum files removed longer ago than this (>= 7 days)"),
    },
)
def tweetops_lakehouse_maintenance():
    @task
    def list_tables() -> list[str]:
        from tweetops.core.tables import TABLES

        return list(TABLES)

    @task
    def maintain_table(name: str, **context) -> dict:
        from lakehouse.maintenance import maintain_table

        report = maintain_table(name, vacuum_retention_hours=int(context["params"]["vacuum_retention_hours"]))
        report.pop("would_delete", None)
        return report

    maintain_table.expand(name=list_tables())


tweetops_lakehouse_maintenance()
