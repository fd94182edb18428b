"""Training: weekly, or as soon as the drift DAG requests a retrain (the retrain_request asset).

Trains the model variant named by the `config` param (ml/configs/NAME.yaml) on the latest
gold_features version and registers it; a new version becomes the challenger (the very first
becomes champion). Promotion is the promotion DAG's decision, triggered by the challenger asset.
A retry or rerun of the same DAG run returns the version it already registered, completing what a
crash left undone (registration, alias, model card, metrics rows): never a second version.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tweetops.orchestration.assets import CHALLENGER_MODEL, RETRAIN_REQUEST
from tweetops.orchestration.dag_defaults import dag_default_args, dag_tags


@dag(
    dag_id="tweetops_training",
    description="Train a model variant on gold_features, log it to MLflow with lineage, register it as challenger",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
                                 assets=[RETRAIN_REQUEST]),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=dag_tags("training", "mlflow"),
    default_args=dag_default_args(retry_delay=timedelta(minutes=2)),
    params={"config": Param("baseline", type="string", description="model variant: a file name in ml/configs")},
)
def tweetops_training():
    @task
    def train(params=None, run_id=None) -> dict:
        from ml.train import train_model

        # A retrain request on features it was already trained on registers nothing (log line says which).
        return train_model(params["config"], run_key=run_id, skip_unchanged=True).as_dict()

    @task(outlets=[CHALLENGER_MODEL])
    def announce_challenger(result: dict, outlet_events=None) -> None:
        """Emit the challenger asset event (the promotion DAG runs on it) only for a new challenger."""
        from airflow.sdk.exceptions import AirflowSkipException

        if result.get("skipped"):
            raise AirflowSkipException(f"version {result['model_version']} already had this config and features "
                                       f"version {result['features_version']}: nothing new to promote")
        if result["alias"] != "challenger":
            raise AirflowSkipException(f"version {result['model_version']} became {result['alias']}: no challenger")
        outlet_events[CHALLENGER_MODEL].extra = {"model_name": result["model_name"],
                                                 "model_version": result["model_version"]}

    announce_challenger(train())


tweetops_training()
