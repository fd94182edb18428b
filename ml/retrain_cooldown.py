"""One drift episode requests at most one retraining: a cooldown between retrain requests.

Drift is checked on every new batch of predictions, over windows that overlap, so one shift in the
data fires many times. The drift DAG requests retraining only when the model's last request is older
than `retraining.cooldown_hours` (ml/policy/drift.yaml, default 24); each alert still goes out and
says whether it requested retraining. The last request's time is kept in the lakehouse, as a Delta
app transaction on gold_drift_metrics (`tweetops-drift/retrain-request/<model>`, epoch seconds):
no Airflow Variable, and it moves atomically with nothing else to keep in step.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tweetops.core.settings import Settings, load_settings

TABLE = "gold_drift_metrics"


def app_id(model_name: str) -> str:
    return f"tweetops-drift/retrain-request/{model_name}"


def last_request(model_name: str, settings: Settings | None = None) -> datetime | None:
    from tweetops.core.tables import ensure_table

    seconds = ensure_table(TABLE, settings or load_settings()).transaction_version(app_id(model_name))
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def retraining_due(model_name: str, cooldown: timedelta, now: datetime | None = None,
                   settings: Settings | None = None) -> tuple[bool, str]:
    """(whether to request retraining now, why in words)."""
    now = now or datetime.now(timezone.utc)
    last = last_request(model_name, settings)
    if last is None or now - last >= cooldown:
        return True, "retraining requested" + ("" if last is None else f" (last request {last:%Y-%m-%d %H:%M} UTC)")
    return False, (f"retraining already requested at {last:%Y-%m-%d %H:%M} UTC for this drift episode "
                   f"(cooldown {cooldown.total_seconds() / 3600:g} h, until {last + cooldown:%Y-%m-%d %H:%M} UTC)")


def record_request(model_name: str, now: datetime | None = None, settings: Settings | None = None) -> None:
    """Remember this request (an empty commit on gold_drift_metrics carrying the time)."""
    import pyarrow as pa  # noqa: F401 - pyarrow backs the empty table below
    from deltalake import CommitProperties, Transaction, write_deltalake

    from tweetops.core.tables import ensure_table, spec

    now = now or datetime.now(timezone.utc)
    table = ensure_table(TABLE, settings or load_settings())
    write_deltalake(table, spec(TABLE).schema.empty_table(), mode="append", commit_properties=CommitProperties(
        app_transactions=[Transaction(app_id(model_name), int(now.timestamp()))],
        custom_metadata={"tweetops.operation": "retrain_request"}))


def cooldown_from_config(config) -> timedelta:
    return timedelta(hours=float(config.retraining["cooldown_hours"]))
