"""Model access: the one place that finds a registered TweetOps model, loads it and asks it for labels.

Everything that uses a model goes through here: the API and its shadow/canary rollout
(ml/serving.py, ml/shadow.py), batch scoring (ml/scoring.py, and ml/scoring_spark.py's executors),
drift checks (ml/drift.py), the promotion gate (ml/promotion.py), explanations (ml/explain.py),
reproduction (ml/reproduce.py) and `tweetops trace`.

- `resolve` turns the champion alias (or another alias, or a version number) into the registry's
  ModelVersion; `NoChampionError` when the alias points nowhere yet.
- `load` loads one version completely: only versions `tweetops train` registered (lineage tags,
  ml.registry.require_lineage), checked against ml.contract on a warm-up tweet, with the
  metrics and lineage that the API's GET /model shows.
- `predict_batches` runs a loaded model on raw texts in bounded batches, checking every answer
  against ml.contract (`ContractError`), so a broken model never writes a row or answers a user.
- `lineage` and `training_reference` say what a version was trained on: its lineage tags, the
  gold_features table and Delta version, and the config its training run logged.

ml/registry.py stays the registry's own bookkeeping (client, registration, aliases).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from ml.contract import (CHAMPION, LABELS, LINEAGE_TAGS, PREDICTION_COLUMNS, PROBA_COLUMNS, TAG_FEATURES_TABLE,
                         TAG_FEATURES_VERSION)
from tweetops.core.settings import Settings

log = logging.getLogger(__name__)

WARM_UP_TWEET = "@united thanks for the quick rebooking, great crew today!"
BATCH_ROWS = 10_000  # tweets per model call in predict_batches: bounds memory on a big interval
CACHED_MODELS = 2    # versions `load(..., cached=True)` keeps per process (drift and promotion use two)


class NoChampionError(LookupError):
    """The registry has no version with the champion alias (or another alias asked for) yet."""


class ContractError(ValueError):
    """A registered model does not answer as ml.contract promises; it is never used."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    model: Any                 # mlflow.pyfunc.PyFuncModel
    info: dict                 # what GET /model returns: version, metrics, lineage (read at load time)


# --- finding a version ---------------------------------------------------------------------------

def resolve(settings: Settings, ref: str | int = CHAMPION, *, model_name: str | None = None):
    """The registry's ModelVersion for an alias (default: the champion; '@challenger' works too) or a
    version number, of `model_name` (default: the settings' model).

    NoChampionError when the model or the alias does not exist yet; LookupError for a missing
    version number; any other registry problem (down, refused) is raised as it is."""
    from mlflow.exceptions import MlflowException

    from ml import registry

    name, ref = model_name or settings.model_name, str(ref).lstrip("@")
    client = registry.client(settings)
    if ref.isdigit():
        try:
            return client.get_model_version(name, ref)
        except MlflowException as exc:
            raise LookupError(f"model {name!r} has no version {ref} in the registry at "
                              f"{settings.mlflow_tracking_uri} ({exc.message.splitlines()[0]})") from None
    try:
        return client.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        # No such model: RESOURCE_DOES_NOT_EXIST; a model without the alias: INVALID_PARAMETER_VALUE.
        missing_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and "not found" in str(exc)
        missing_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            name == settings.model_name and registry.denied_for_missing_champion(exc, settings))
        if not missing_model and not missing_alias:
            raise
        raise NoChampionError(f"the registry at {settings.mlflow_tracking_uri} has no version of {name!r} "
                              f"with alias {ref!r} yet; train and promote a model first (`tweetops train`)") from None


def require_trusted(version) -> None:
    """Refuse a version `tweetops train` did not register (ml.registry.require_lineage): for a
    process that resolves here and loads elsewhere (Spark's driver, whose executors load)."""
    from ml import registry

    registry.require_lineage(version)


# --- loading -------------------------------------------------------------------------------------

_cache: dict[tuple[str, ...], LoadedModel] = {}
_cache_lock = threading.Lock()


def load(settings: Settings, version, *, cached: bool = False) -> LoadedModel:
    """Load one registered version (a ModelVersion from `resolve`) completely and check it honours
    ml.contract on a warm-up tweet; UntrustedModelError for a version without lineage tags.

    `cached`: keep the last CACHED_MODELS versions of this process (a version never changes), for
    jobs that load the same model several times (drift, promotion, scoring catch-up). The API
    does not cache: it holds the version it serves and lets the old one go after a swap."""
    from ml import registry

    client = registry.client(settings)  # also points the pyfunc loader (global URIs) at this registry
    registry.require_lineage(version)  # a registered model is code: only the pipeline's versions load
    # The run too: a model deleted and registered again restarts its version numbers.
    key = (settings.mlflow_tracking_uri, version.name, str(version.version), str(version.run_id))
    if cached:
        with _cache_lock:
            if key in _cache:
                _cache[key] = _cache.pop(key)  # now the most recently used
                return _cache[key]
    started = time.perf_counter()
    model = pyfunc(settings.mlflow_tracking_uri, f"models:/{version.name}/{version.version}")
    try:  # warm-up: a lazy model pays its first-call cost here, not a user; and a broken one is refused
        predict_arrays(model, [WARM_UP_TWEET])
    except ContractError as exc:
        raise ContractError(f"{version.name} version {version.version} breaks ml.contract: {exc}") from None
    info = {
        "name": version.name,
        "version": str(version.version),
        "aliases": sorted(version.aliases or []),
        "run_id": version.run_id,
        "model_id": getattr(version, "model_id", None),
        "registered_at": _from_millis(version.creation_timestamp),
        "loaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_seconds": round(time.perf_counter() - started, 3),
        "metrics": {},
        "lineage": {tag: (version.tags or {}).get(tag) for tag in LINEAGE_TAGS},
    }
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
            info["metrics"] = dict(sorted(run.data.metrics.items()))
            for tag in LINEAGE_TAGS:  # the run holds the lineage when the version has no copy of it
                info["lineage"][tag] = info["lineage"][tag] or run.data.tags.get(tag)
        except Exception as exc:  # a deleted run must not stop using the model
            log.warning("could not read run %s of %s v%s: %s", version.run_id, version.name, version.version, exc)
    loaded = LoadedModel(version.name, str(version.version), model, info)
    if cached:
        with _cache_lock:
            while len(_cache) >= CACHED_MODELS:
                _cache.pop(next(iter(_cache)))
            _cache[key] = loaded
    return loaded


def pyfunc(tracking_uri: str, model_uri: str):
    """The registered pyfunc at `model_uri` (models:/NAME/VERSION), as stored: no lineage or contract check.

    `load` uses it after its checks; a Spark executor, which gets no Settings, calls it for the
    version its driver resolved and checked (require_trusted), and checks every batch with
    predict_arrays. MLflow credentials must already be in the environment (ml.registry.client)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)  # the loader reads from this registry
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def _from_millis(millis: int | None) -> str | None:
    if not millis:
        return None
    return datetime.fromtimestamp(millis / 1000, timezone.utc).isoformat(timespec="seconds")


# --- predicting ----------------------------------------------------------------------------------

def predict_arrays(model: Any, texts: list[str]):
    """Run a registered pyfunc on raw texts: (labels, probabilities as an n x 3 array in LABELS order).

    Checked against ml.contract, so a broken model is refused at load time and never answers users.
    Plain numpy after the model call: per-request pandas work would cost more than the model.
    """
    import numpy as np

    fast = _fast_path(model)
    if fast is not None and all(type(text) is str for text in texts):
        labels, probabilities = fast(texts)
        probabilities = np.asarray(probabilities, dtype="float64")
        if len(labels) != len(texts) or probabilities.shape != (len(texts), len(PROBA_COLUMNS)):
            raise ContractError(f"the model returned {len(labels)} labels and probabilities of shape "
                                f"{probabilities.shape}; ml.contract expects {len(texts)} rows of {len(PROBA_COLUMNS)}")
    else:
        import pandas as pd

        output = model.predict(pd.DataFrame({"text": texts}))
        columns = getattr(output, "columns", ())
        missing = [c for c in PREDICTION_COLUMNS if c not in columns]
        if missing or len(output) != len(texts):
            raise ContractError(f"the model returned {len(output)} rows with columns {list(columns)}; "
                                f"ml.contract expects {len(texts)} rows with {', '.join(PREDICTION_COLUMNS)}")
        labels = output["label"].tolist()
        probabilities = np.column_stack([output[c].to_numpy(dtype="float64") for c in PROBA_COLUMNS])
    if not set(labels) <= set(LABELS) or not np.isfinite(probabilities).all():
        raise ContractError(f"the model answered labels {sorted(set(map(str, labels)))} with probabilities "
                            f"{probabilities[:3].tolist()}...; expected labels in {LABELS} and finite probabilities")
    return labels, probabilities


_FAST_PATHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fast_path(model: Any):
    """The pyfunc's own `predict_texts(texts) -> (labels, probabilities)` (ml.pyfunc.SentimentModel),
    or None for any other model. It answers what `model.predict(DataFrame)` answers, without the
    DataFrame in and out and MLflow's input-schema step: a third of a single-tweet call."""
    try:
        return _FAST_PATHS[model]
    except (KeyError, TypeError):
        pass
    fast = None
    unwrap = getattr(model, "unwrap_python_model", None)
    if unwrap is not None:
        try:
            fast = getattr(unwrap(), "predict_texts", None)
        except Exception:  # not a python_function model built from a PythonModel
            fast = None
    try:
        _FAST_PATHS[model] = fast
    except TypeError:  # not weak-referenceable: look it up again next time
        pass
    return fast


def predict_batches(model: Any, texts: Sequence[str], batch_rows: int = BATCH_ROWS):
    """predict_arrays over any number of texts, `batch_rows` per model call (bounded memory):
    (labels, n x 3 probabilities). `model` is a pyfunc or a LoadedModel."""
    import numpy as np

    model = getattr(model, "model", model)
    texts = list(texts)
    if not texts:
        return [], np.zeros((0, len(LABELS)))
    chunks = [predict_arrays(model, texts[i:i + batch_rows]) for i in range(0, len(texts), batch_rows)]
    return [label for labels, _ in chunks for label in labels], np.vstack([proba for _, proba in chunks])


# --- what a version was trained on ---------------------------------------------------------------

def lineage(settings: Settings, ref: str | int = CHAMPION, *, model_name: str | None = None,
            complete: bool = True) -> dict[str, str]:
    """The lineage tags of a version (an alias, a number or a ModelVersion), falling back to its
    training run's tags, plus `version` and `run_id`. LookupError when a tag is missing, unless
    `complete=False` (then whatever is there)."""
    from ml import registry

    version = ref if hasattr(ref, "tags") else resolve(settings, ref, model_name=model_name)
    tags = dict(version.tags or {})
    if not all(tag in tags for tag in LINEAGE_TAGS) and version.run_id:
        run_tags = registry.client(settings).get_run(version.run_id).data.tags
        tags = {**{k: v for k, v in run_tags.items() if k in LINEAGE_TAGS}, **tags}
    missing = [tag for tag in LINEAGE_TAGS if tag not in tags]
    if missing and complete:
        raise LookupError(f"model {version.name!r} version {version.version} has no lineage "
                          f"tags {missing}: it was not registered by `tweetops train`")
    return {**tags, "version": str(version.version), "run_id": version.run_id}


@dataclass(frozen=True)
class TrainingReference:
    """What a registered version was trained on: enough to read its training data again."""
    model_name: str
    version: str
    run_id: str
    lineage: dict[str, str]       # the LINEAGE_TAGS, version and run_id
    features_table: str           # the gold_features table and the Delta version it was read at
    features_version: int
    config: Any                   # ml.config.TrainConfig, as its run logged it
    logged_config: dict           # that config as logged (config.yaml), to re-validate with overrides


def training_reference(settings: Settings, ref: str | int = CHAMPION) -> TrainingReference:
    """The training reference of a version (an alias, a number or a ModelVersion): its lineage and
    the config its training run logged. LookupError when either cannot be read."""
    import mlflow.artifacts
    import yaml

    from ml import registry
    from ml.config import config_from_dict

    tags = lineage(settings, ref)
    name = ref.name if hasattr(ref, "tags") else settings.model_name
    registry.client(settings)  # the artifact download signs in with the settings' account
    try:
        logged = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{tags['run_id']}/config.yaml"))
        config = config_from_dict(logged, source=f"run {tags['run_id']} config.yaml")
    except Exception as exc:
        raise LookupError(f"{name} v{tags['version']}: cannot read its training config from run "
                          f"{tags['run_id']} ({exc})") from None
    return TrainingReference(name, tags["version"], tags["run_id"], tags, tags[TAG_FEATURES_TABLE],
                             int(tags[TAG_FEATURES_VERSION]), config, logged)


def run_metrics(settings: Settings, version) -> dict[str, float]:
    """The metrics a version's training run logged (test_macro_f1, test_recall_<label>, ...)."""
    from ml import registry

    if not version.run_id:
        return {}
    return dict(registry.client(settings).get_run(version.run_id).data.metrics)
