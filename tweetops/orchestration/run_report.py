"""What a features or scoring run tells Airflow: the note on its run, the extra of its asset event.

Both say which silver versions and days the run covered, so runs stay readable in the Airflow UI.
"""
from __future__ import annotations

import logging
from datetime import date

from tweetops.core.intervals import DAY, midnight
from tweetops.core.settings import load_settings

log = logging.getLogger(__name__)


def event_extra(done: dict) -> dict:
    """The extra of the run's asset event: the days it changed (and their span, for the drift DAG)."""
    extra = {"days": done["days"], "silver_from": done.get("silver_from"), "silver_to": done.get("silver_to"),
             "describe": done["describe"]}
    if done["days"]:
        first, last = date.fromisoformat(done["days"][0]), date.fromisoformat(done["days"][-1])
        extra |= {"interval_start": midnight(first).isoformat(), "interval_end": midnight(last + DAY).isoformat()}
    return extra


def describe_run(context: dict, line: str) -> None:
    """Say what the run covered: one log line, and the run's note in the Airflow UI (best effort,
    through the REST API with the stack's credentials; a task cannot set it through the Task SDK)."""
    log.info("%s", line)
    dag_run = context.get("dag_run")
    dag_id, run_id = getattr(dag_run, "dag_id", None), context.get("run_id")
    if not dag_id or not run_id:
        return
    try:
        from tweetops.orchestration.airflow_api import AirflowAPI

        AirflowAPI(load_settings(), timeout=10).set_note(dag_id, run_id, line)
    except Exception as exc:  # noqa: BLE001 - a note is a courtesy: never fail the run for it
        log.info("run note not set (%s)", str(exc)[:200])
