"""`tweetops train --config NAME`: train a model variant on gold_features and register it in MLflow.

One run: read gold_features at a pinned Delta version, drop duplicate texts (a text sits in one
split only), fit the variant of ml/configs/NAME.yaml on the train split, evaluate on the fixed test
split, run the behavioural checks, then log params, metrics, the confusion matrix, the model card
and the pyfunc model with lineage tags (git commit, features table + version, config name + hash),
and register it: champion if the model has none yet, else challenger (promotion is not ours).

Idempotent per run key (the Airflow run id): the run carries its key from its first moment and the
logged model's URI as soon as it exists, so a retry after a crash at any point finds that run and
completes what is missing (registration, the alias, the model card, the gold_model_metrics rows)
instead of registering a second version; a run that crashed before logging its model is marked
FAILED and training starts over.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ml import contract
from ml.config import ConfigError, TrainConfig, load_config, parse_override
from tweetops.core.settings import REPO_ROOT, Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

EXPERIMENT_SUFFIX = "-training"
TAG_RUN_KEY = "tweetops.run_key"          # idempotency key of a scheduled run (Airflow run id)
TAG_MODEL_VERSION = "tweetops.model_version"
TAG_MODEL_URI = "tweetops.model_uri"      # the logged model (models:/m-...), set before registering it
SPLIT_PRECEDENCE = {"test": 0, "validation": 1, "train": 2}  # a duplicated text goes to the most held-out split


@dataclass
class TrainingData:
    frame: pd.DataFrame            # deduplicated, labelled rows, sorted by id
    features_table: str
    features_version: int
    summary: dict

    def split(self, *names: str) -> pd.DataFrame:
        return self.frame[self.frame["split"].isin(names)]


@dataclass
class Fitted:
    classifier: object
    evaluations: dict              # split -> ml.evaluate.Evaluation
    behaviour: dict
    training: dict                 # train_seconds, rows, steps...

    @property
    def metrics(self) -> dict[str, float]:
        metrics = {}
        for evaluation in self.evaluations.values():
            metrics.update(evaluation.metrics)
        for name, check in self.behaviour["checks"].items():
            metrics[f"behaviour_{name}_pass_rate"] = float(check["pass_rate"])
        metrics["behaviour_passed"] = float(self.behaviour["passed"])
        metrics["train_seconds"] = float(self.training["train_seconds"])
        return metrics


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    model_version: str
    alias: str                     # champion (first version) or challenger
    config_name: str
    config_hash: str
    features_version: int
    metrics: dict[str, float] = field(default_factory=dict)
    behaviour_passed: bool = False
    skipped: bool = False          # an existing version had the same config and features: nothing registered

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.model_version}"

    def as_dict(self) -> dict:
        return {**asdict(self), "model_uri": self.model_uri}


# --- data ------------------------------------------------------------------------------------

def prepare_data(config: TrainConfig, settings: Settings, features_version: int | None = None) -> TrainingData:
    """gold_features at a pinned version -> labelled, windowed, deduplicated rows in a stable order."""
    import pandas as pd

    from tweetops.core.tables import open_table
    from ml.training_sample import read_training_rows

    table_name = config.data["features_table"]
    try:
        table = open_table(table_name, settings, version=features_version)
    except LookupError:
        raise LookupError(f"{table_name} does not exist at {settings.lakehouse_uri}: build it with the "
                          "tweetops_features DAG or `tweetops features seed`") from None
    except Exception as exc:  # delta-rs: the version does not exist (or was vacuumed)
        if features_version is None:
            raise
        raise LookupError(f"{table_name} has no version {features_version}: {exc}") from None
    version = table.version()
    columns = ["id", "event_date", "text_normalized", "topic", "label", "split"]
    frame, sample = read_training_rows(table, columns, settings.train_max_rows, config.seed)
    rows_read = len(frame)
    frame = frame[frame["label"].isin(contract.LABELS)]
    rows_labelled = len(frame)
    if config.data["window_days"] and not frame.empty:
        newest = pd.to_datetime(frame["event_date"]).max()
        frame = frame[pd.to_datetime(frame["event_date"]) > newest - timedelta(days=config.data["window_days"])]
    if config.data["topics"]:
        frame = frame[frame["topic"].isin(config.data["topics"])]
    frame = deduplicate(frame)
    if config.data["max_train_rows"]:
        fit_rows = frame.index[frame["split"].isin(config.data["train_splits"])][config.data["max_train_rows"]:]
        frame = frame.drop(index=fit_rows).reset_index(drop=True)
    for split in ("train", "test"):
        if not (frame["split"] == split).any():
            raise ValueError(f"{table_name} version {version} has no labelled {split} rows after filtering "
                             f"({rows_read} rows read): seed or build more features, or widen data.window_days/topics "
                             f"in the {config.name} config")
    splits = {}
    for split in ("train", "validation", "test"):
        part = frame[frame["split"] == split]
        splits[split] = {"total": int(len(part)), **part["label"].value_counts().astype(int).to_dict()}
    topics = (frame["topic"].fillna("other").value_counts(normalize=True).round(3).to_dict())
    summary = {"rows_read": rows_read, "rows_labelled": rows_labelled, "rows_after_dedup": int(len(frame)),
               "splits": splits, "topics": topics, "sample": sample}
    return TrainingData(frame, table_name, version, summary)


def deduplicate(frame: "pd.DataFrame") -> "pd.DataFrame":
    """One row per normalised text, in the most held-out split any copy of it has (test, then
    validation, then train), so a text is never trained on and tested on; sorted by id."""
    return (frame.assign(_rank=frame["split"].map(SPLIT_PRECEDENCE))
            .sort_values(["text_normalized", "_rank", "id"], kind="stable")
            .drop_duplicates("text_normalized")
            .drop(columns="_rank")
            .sort_values("id", kind="stable")
            .reset_index(drop=True))


# --- fit and evaluate --------------------------------------------------------------------------

def fit_and_evaluate(config: TrainConfig, data: TrainingData, log=print) -> Fitted:
    """Fit the configured classifier and evaluate it; deterministic for a deterministic model type."""
    from ml.behaviour import run_behaviour_checks
    from ml.evaluate import evaluate
    from ml.models import fit_classifier
    from ml.pyfunc import predict_frame

    fit_on = data.split(*config.data["train_splits"])
    validation = data.split("validation")
    log(f"fitting {config.name} ({config.model_type}) on {len(fit_on)} tweets")
    started = time.monotonic()
    classifier = fit_classifier(config.model_type, fit_on["text_normalized"].tolist(), fit_on["label"].tolist(),
                                config.params, config.seed, config.budget,
                                validation=(validation["text_normalized"].tolist(), validation["label"].tolist()),
                                log=log)
    training = {"train_seconds": round(time.monotonic() - started, 2), "train_rows": int(len(fit_on))}
    training.update(getattr(classifier, "training_log", {}) or {})
    training["train_seconds"] = round(time.monotonic() - started, 2)

    evaluations = {}
    for split in ("validation", "test"):
        part = data.split(split)
        if part.empty:
            continue
        # The rows already hold normalised text; predicting through predict_frame would normalise
        # it again (a no-op: normalize_text is idempotent) at a cost, so call the classifier directly.
        proba = classifier.predict_proba(part["text_normalized"].tolist())
        predicted = [contract.LABELS[i] for i in proba.argmax(axis=1)]
        evaluations[split] = evaluate(part["label"].tolist(), predicted, dataset=split)
    behaviour = run_behaviour_checks(lambda texts: predict_frame(classifier, texts))
    test = evaluations["test"].metrics
    log(f"test macro-F1 {test[contract.METRIC_TEST_MACRO_F1]:.4f}, accuracy {test[contract.METRIC_TEST_ACCURACY]:.4f}; "
        f"behaviour {'passed' if behaviour['passed'] else 'FAILED'}")
    return Fitted(classifier, evaluations, behaviour, training)


# --- lineage, logging, registration ----------------------------------------------------------

def git_commit() -> tuple[str, bool]:
    """(commit sha, dirty) of the code being run; ('unknown', True) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


def lineage_tags(config: TrainConfig, data: TrainingData) -> dict[str, str]:
    sha, dirty = git_commit()
    return {
        contract.TAG_GIT_COMMIT: sha,
        contract.TAG_CONFIG_NAME: config.name,
        contract.TAG_CONFIG_HASH: config.hash,
        contract.TAG_FEATURES_TABLE: data.features_table,
        contract.TAG_FEATURES_VERSION: str(data.features_version),
        "tweetops.git_dirty": str(dirty).lower(),
        "tweetops.model_type": config.model_type,
        "tweetops.training_sample": json.dumps(data.summary.get("sample"), sort_keys=True, default=str),
    }


def train_model(config_name: str | TrainConfig, settings: Settings | None = None,
                features_version: int | None = None, overrides: dict | None = None,
                run_key: str | None = None, log=print, skip_unchanged: bool = False) -> TrainResult:
    """Train, evaluate, log and register one model version; see the module docstring.

    `run_key` makes scheduled runs idempotent: a rerun with the same key returns the version the
    first run registered (completing whatever a crash left undone) instead of registering another.
    `skip_unchanged` (the training DAG): when a registered version was trained with the same config
    (hash) on the same features table version, train nothing and return that version, `skipped`.
    """
    import mlflow

    from ml import registry

    settings = settings or load_settings()
    config = config_name if isinstance(config_name, TrainConfig) else load_config(config_name, overrides)
    registry.client(settings)  # sets the tracking and registry URIs
    experiment = mlflow.set_experiment(settings.model_name + EXPERIMENT_SUFFIX)
    if run_key:
        previous = _resume_run_with_key(experiment.experiment_id, run_key, settings, log)
        if previous is not None:
            return previous

    data = prepare_data(config, settings, features_version)
    if skip_unchanged and (same := version_trained_on(config, data, settings)) is not None:
        log(f"skipped: {settings.model_name} version {same.version} was trained with config {config.name} "
            f"({config.hash[:12]}) on {data.features_table} version {data.features_version} already; "
            "no new version registered")
        return _existing_result(same, settings)
    sizes = ", ".join(f"{split} {counts['total']}" for split, counts in data.summary["splits"].items())
    log(f"{data.features_table} version {data.features_version}: {data.summary['rows_after_dedup']} labelled "
        f"unique tweets ({sizes})")
    fitted = fit_and_evaluate(config, data, log=log)
    tags = lineage_tags(config, data)

    # The run carries its key from its first moment: a retry finds it whatever step a crash stopped.
    with tempfile.TemporaryDirectory(prefix="tweetops-train-") as tmp, \
            mlflow.start_run(run_name=f"{config.name}-{config.hash[:8]}",
                             tags={**tags, **({TAG_RUN_KEY: run_key} if run_key else {})}) as run:
        model_uri = _log_run(config, data, fitted, tags, Path(tmp), settings)
        result = _register_and_complete(run.info.run_id, model_uri, tags, settings)
    log(f"registered {settings.model_name} version {result.model_version} as {result.alias} (run {result.run_id})")
    return result


def version_trained_on(config: TrainConfig, data: TrainingData, settings: Settings):
    """The newest registered version whose lineage tags name this config hash and features version."""
    from ml import registry

    same = [v for v in registry.client(settings).search_model_versions(f"name='{settings.model_name}'")
            if v.tags.get(contract.TAG_CONFIG_HASH) == config.hash
            and v.tags.get(contract.TAG_FEATURES_TABLE) == data.features_table
            and v.tags.get(contract.TAG_FEATURES_VERSION) == str(data.features_version)]
    return max(same, key=lambda v: int(v.version)) if same else None


def _existing_result(version, settings: Settings) -> TrainResult:
    from ml import registry

    client = registry.client(settings)
    aliases = set(client.get_model_version(settings.model_name, version.version).aliases or [])
    run = client.get_run(version.run_id)
    return TrainResult(run_id=version.run_id, model_name=settings.model_name, model_version=str(version.version),
                       alias=next((a for a in (contract.CHAMPION, contract.CHALLENGER) if a in aliases), ""),
                       config_name=version.tags.get(contract.TAG_CONFIG_NAME, ""),
                       config_hash=version.tags.get(contract.TAG_CONFIG_HASH, ""),
                       features_version=int(version.tags.get(contract.TAG_FEATURES_VERSION, -1)),
                       metrics=dict(run.data.metrics),
                       behaviour_passed=run.data.metrics.get("behaviour_passed", 0.0) == 1.0, skipped=True)


def _log_run(config, data, fitted, tags, tmp: Path, settings: Settings) -> str:
    """Log params, metrics, artifacts, the model card and the model to the active run; returns the
    logged model's URI, also set as a run tag so a retry can register it without training again."""
    import mlflow
    import yaml

    from ml.evaluate import plot_confusion_matrix
    from ml.model_card import render_model_card
    from ml.pyfunc import log_pyfunc

    mlflow.log_params({**config.flat_params(), "features_table": data.features_table,
                       "features_version": data.features_version,
                       **{f"rows_{k}": v["total"] for k, v in data.summary["splits"].items()}})
    metrics = fitted.metrics
    mlflow.log_metrics(metrics)
    test = fitted.evaluations["test"]
    mlflow.log_artifact(str(plot_confusion_matrix(test, tmp / "confusion_matrix.png",
                                                  title=f"{config.name}: test macro-F1 "
                                                        f"{test.metrics['test_macro_f1']:.3f} (n={test.support})")))
    mlflow.log_dict({split: e.report for split, e in fitted.evaluations.items()}, "classification_report.json")
    mlflow.log_dict({split: {"labels": list(contract.LABELS), "matrix": e.confusion}
                     for split, e in fitted.evaluations.items()}, "confusion_matrix.json")
    mlflow.log_dict(fitted.behaviour, "behaviour.json")
    mlflow.log_text(yaml.safe_dump(config.as_dict(), sort_keys=True), "config.yaml")
    mlflow.log_dict(data.summary, "data_summary.json")

    classifier_dir = tmp / "classifier"
    fitted.classifier.save(classifier_dir)
    model_info = log_pyfunc(fitted.classifier, classifier_dir, config.model_type)
    # The card is the run's before any version exists; the registered version's copy names it.
    mlflow.log_text(render_model_card(model_name=settings.model_name, config=config, lineage=tags,
                                      data_summary=data.summary, evaluations=fitted.evaluations,
                                      behaviour=fitted.behaviour, training=fitted.training,
                                      classifier=fitted.classifier), "model_card.md")
    mlflow.set_tag(TAG_MODEL_URI, model_info.model_uri)
    return model_info.model_uri


def _register_and_complete(run_id: str, model_uri: str, lineage: dict[str, str], settings: Settings) -> TrainResult:
    """Register the run's model unless a version of it exists, then complete every later step; each
    step checks or overwrites, so running this again after a crash at any point changes nothing twice."""
    from ml import registry

    client = registry.client(settings)
    name = settings.model_name
    registration = registry.register(model_uri, run_id, tags=lineage, settings=settings)
    number, alias = registration.version, registration.alias
    client.set_tag(run_id, TAG_MODEL_VERSION, number)
    if not client.get_model_version(name, number).description:
        card = _run_model_card(run_id)
        if card:
            client.update_model_version(name, number, description=card.replace(
                f"# Model card: {name}", f"# Model card: {name} version {number}", 1))
    run = client.get_run(run_id)
    _record_metrics(settings, number, run_id, run.data.metrics)
    tags = run.data.tags
    return TrainResult(run_id=run_id, model_name=name, model_version=number, alias=alias,
                       config_name=tags.get(contract.TAG_CONFIG_NAME, ""),
                       config_hash=tags.get(contract.TAG_CONFIG_HASH, ""),
                       features_version=int(tags.get(contract.TAG_FEATURES_VERSION, -1)),
                       metrics=dict(run.data.metrics),
                       behaviour_passed=run.data.metrics.get("behaviour_passed", 0.0) == 1.0)


def _run_model_card(run_id: str) -> str | None:
    import mlflow

    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    except Exception:  # the card is documentation: a version without it still serves
        return None


def metric_rows(metrics: dict[str, float]) -> list[tuple[str, str, float]]:
    """(dataset, metric, value) for gold_model_metrics from a run's metrics: the evaluation metrics
    of each split (test_*, validation_*) and the behavioural checks (behaviour_*)."""
    rows = []
    for metric, value in sorted(metrics.items()):
        dataset = metric.split("_", 1)[0]
        if dataset in ("test", "validation", "behaviour"):
            rows.append((dataset, metric, float(value)))
    return rows


def _record_metrics(settings: Settings, version: str, run_id: str, metrics: dict[str, float]) -> None:
    """One row per metric in gold_model_metrics, so SQL dashboards see every version's scores.
    Replaces the version's rows in one commit: written once however often a retry writes them."""
    import pyarrow as pa

    from tweetops.core.delta_replace import equals_predicate, replace_rows
    from tweetops.core.tables import ensure_table, spec

    now = datetime.now(timezone.utc)
    rows = [{"model_name": settings.model_name, "model_version": version, "run_id": run_id, "dataset": dataset,
             "metric": metric, "value": value, "logged_at": now} for dataset, metric, value in metric_rows(metrics)]
    table = ensure_table("gold_model_metrics", settings)
    replace_rows(table, pa.Table.from_pylist(rows, schema=spec("gold_model_metrics").schema),
                 equals_predicate(model_name=settings.model_name, model_version=version))


def _resume_run_with_key(experiment_id: str, run_key: str, settings: Settings, log) -> TrainResult | None:
    """The result of the run with this key, completed if a crash interrupted it; None when no run
    with the key got as far as logging its model (its leftovers are marked FAILED)."""
    import mlflow

    from ml import registry

    client = registry.client(settings)
    runs = mlflow.search_runs([experiment_id], filter_string=f"tags.`{TAG_RUN_KEY}` = '{run_key}'",
                              output_format="list", order_by=["attributes.start_time ASC"])
    for run in runs:
        model_uri = run.data.tags.get(TAG_MODEL_URI)
        if model_uri is None:
            continue
        if TAG_MODEL_VERSION not in run.data.tags:
            log(f"run key {run_key!r}: completing run {run.info.run_id}, interrupted after logging its model")
        lineage = {tag: value for tag, value in run.data.tags.items()
                   if tag.startswith("tweetops.") and tag not in (TAG_RUN_KEY, TAG_MODEL_URI, TAG_MODEL_VERSION)}
        result = _register_and_complete(run.info.run_id, model_uri, lineage, settings)
        if run.info.status != "FINISHED":
            client.set_terminated(run.info.run_id, "FINISHED")
        log(f"run key {run_key!r}: {settings.model_name} version {result.model_version} is {result.alias} "
            f"(run {result.run_id})")
        return result
    for run in runs:  # crashed before its model existed: nothing to keep
        if run.info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(run.info.run_id, "FAILED")
    return None


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ml.config import available_configs

    parser.add_argument("--config", default="baseline",
                        help=f"model variant: a name in ml/configs ({', '.join(available_configs())}) or a YAML path")
    parser.add_argument("--features-version", type=int, default=None,
                        help="gold_features Delta version to train on (default: the latest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set budget.max_steps=50 (part of the config hash)")


def run(args: argparse.Namespace) -> int:
    import sys

    try:
        overrides = dict(parse_override(item) for item in args.overrides)
        result = train_model(args.config, features_version=args.features_version, overrides=overrides)
    except (ConfigError, LookupError, ValueError) as exc:
        print(f"tweetops train: {exc}", file=sys.stderr)
        return 2
    m = result.metrics
    print(f"\n{result.model_name} version {result.model_version} -> @{result.alias}")
    print(f"  config {result.config_name} ({result.config_hash}), features version {result.features_version}")
    print(f"  test macro-F1 {m[contract.METRIC_TEST_MACRO_F1]:.4f}, accuracy {m[contract.METRIC_TEST_ACCURACY]:.4f}, "
          f"behaviour {'passed' if result.behaviour_passed else 'FAILED'}")
    print(f"  load it with mlflow.pyfunc.load_model('{result.model_uri}')")
    print(json.dumps(result.as_dict(), default=str))
    return 0
