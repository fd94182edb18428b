"""The MLflow model registry as TweetOps uses it: versions with lineage tags, and two aliases.

`champion` is the version that serves; `challenger` is the newest candidate. Training registers a
version and makes it champion only when there is none yet; otherwise it becomes challenger, and
only the promotion policy (ml/promotion.py) moves the champion alias. Reading a version (resolving
an alias, loading it, its lineage and training reference) is ml/model_access.py's job.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ml.contract import CHALLENGER, CHAMPION, LINEAGE_TAGS
from tweetops.core.settings import Settings, load_settings

log = logging.getLogger(__name__)


class UntrustedModelError(RuntimeError):
    """A model version without TweetOps lineage tags: not registered by the pipeline, never loaded."""


def client(settings: Settings | None = None):
    """An MlflowClient for the settings' registry, signed in with the settings' MLflow account.

    MLflow reads credentials only from MLFLOW_TRACKING_USERNAME/PASSWORD, so they are exported to
    this process's environment; the fluent API (mlflow.register_model, pyfunc loading) uses them too.
    """
    import mlflow
    from mlflow import MlflowClient

    settings = settings or load_settings()
    if settings.mlflow_username and settings.mlflow_password:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_password
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def denied_for_missing_champion(exc, settings: Settings) -> bool:
    """True when MLflow refused a champion lookup (403) only because there is no champion: with
    authentication on, an alias lookup on a model that does not exist (yet) answers
    PERMISSION_DENIED, not 404. The model may appear meanwhile, still without the alias."""
    from mlflow.exceptions import MlflowException

    if getattr(exc, "error_code", None) != "PERMISSION_DENIED":
        return False
    try:
        model = client(settings).get_registered_model(settings.model_name)
    except MlflowException as missing:
        return missing.error_code == "RESOURCE_DOES_NOT_EXIST"
    return CHAMPION not in (model.aliases or {})


def model_uri(name: str, alias: str = CHAMPION) -> str:
    """`models:/NAME@ALIAS`, what serving loads."""
    return f"models:/{name}@{alias}"


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    alias: str      # champion (first version) or challenger
    run_id: str


def register(model_uri_: str, run_id: str, tags: dict[str, str], settings: Settings | None = None) -> Registration:
    """Register a run's logged model with its lineage tags, once: when a version of that run exists
    already (a retry after a crash), it is reused. It becomes champion if the model has none, else
    challenger; an alias it already holds is kept. Safe to call again at any point."""
    import mlflow

    settings = settings or load_settings()
    mlflow_client = client(settings)
    name = settings.model_name
    existing = mlflow_client.search_model_versions(f"name='{name}' AND run_id='{run_id}'")
    if existing:
        version = max(existing, key=lambda v: int(v.version))
    else:
        version = mlflow.register_model(model_uri_, name, tags=tags)
    aliases = set(mlflow_client.get_model_version(name, str(version.version)).aliases or [])
    if aliases & {CHAMPION, CHALLENGER}:
        alias = CHAMPION if CHAMPION in aliases else CHALLENGER
    else:
        alias = CHALLENGER if alias_version(name, CHAMPION, settings) is not None else CHAMPION
        mlflow_client.set_registered_model_alias(name, alias, str(version.version))
    return Registration(name, str(version.version), alias, run_id)


def alias_version(name: str, alias: str, settings: Settings | None = None):
    """The ModelVersion behind an alias, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion(settings: Settings | None = None):
    settings = settings or load_settings()
    return alias_version(settings.model_name, CHAMPION, settings)


def challenger(settings: Settings | None = None):
    settings = settings or load_settings()
    return alias_version(settings.model_name, CHALLENGER, settings)


def set_alias(alias: str, version: str | int, settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))


def require_lineage(model_version) -> None:
    """Refuse a version the pipeline did not register: it has no TweetOps lineage tags.

    A registered model is code: serving and scoring load only versions `tweetops train` tagged.
    Raises UntrustedModelError (and logs why) for anything else.
    """
    tags = model_version.tags or {}
    missing = [tag for tag in LINEAGE_TAGS if not tags.get(tag)]
    if missing:
        message = (f"refusing {model_version.name} version {model_version.version}: it has no TweetOps lineage "
                   f"tags {missing}, so `tweetops train` did not register it (run {model_version.run_id}); "
                   "check who can write to the registry and move the champion alias back")
        log.error(message)
        raise UntrustedModelError(message)
