"""One way to read a YAML config file: the model variants, the drift thresholds, the promotion and
rollout policies.

Each file's shape is a pydantic model (`ConfigModel`: unknown fields are errors, values are checked
against field constraints). `load_config_file` reads the YAML, applies dotted overrides
(`{"budget.max_steps": 5}`, from `--set budget.max_steps=5`), validates, and turns pydantic's
errors into the caller's own exception, one line per problem naming the file and the field path:

    invalid model config ml/configs/baseline.yaml:
      - model.params.C=-1: expected a positive number
      - model.params has unknown fields ['colour'] (allowed: C, char_analyzer, ...)

Settings (tweetops/core/settings.py) use the same error wording, naming environment variables.
"""
from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Strict, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

# Numbers as YAML writes them: `true` or "5" is not a number; an integer is a valid float (2 -> 2.0).
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]


class ConfigFileError(ValueError):
    """A config file is missing, malformed or has a bad field; subclassed by each config's error."""


def explained(message: str):
    """Annotated[...] metadata: any failure of the type before it reads `message` instead of pydantic's
    own words (e.g. Annotated[int, Field(ge=1), explained("expected a positive integer")])."""
    def validate(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("explained", message) from None
    return WrapValidator(validate)


class ConfigModel(BaseModel):
    """A config file or one of its sections: unknown fields are errors, values are frozen, and a
    section written as `null` (or left empty) means its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_defaults(cls, value: Any) -> Any:
        return {} if value is None else value

    def __getitem__(self, key: str) -> Any:
        # Sections used to be plain mappings (config.embeddings["enabled"]): they still read that way.
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __eq__(self, other: object) -> bool:
        # Equal content is equal config, whichever file it came from (source is a private attribute).
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # mutable section contents (dicts, lists): not hashable


M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path, error: type[Exception]) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, overrides: dict[str, Any] | None, source: str, error: type[Exception]) -> dict:
    """A copy of `raw` with each dotted field set ({"model.params.C": 0.5}); sections are created as needed."""
    raw = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        if not leaf or not all(parents):
            raise error(f"{source}: cannot override {dotted!r}: expected a dotted field such as budget.max_steps")
        node = raw
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parents[:depth + 1])
                raise error(f"{source}: cannot override {dotted!r}: {where} is {child!r}, not a section")
            node = child
        node[leaf] = copy.deepcopy(value)
    return raw


def parse_override(text: str, error: type[Exception] = ConfigFileError) -> tuple[str, Any]:
    """'budget.max_steps=5' -> ('budget.max_steps', 5): the value is read as YAML."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise error(f"override {text!r}: expected FIELD=VALUE, e.g. budget.max_steps=50")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise error(f"override {text!r}: the value is not valid YAML: {exc}") from None


def validate_config(model: type[M], raw: Any, source: str, error: type[Exception], what: str) -> M:
    """`model` validated from `raw`; any problem raises `error` listing every bad field of `source`."""
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(exc, model)
        raise error(f"invalid {what} {source}:\n  - " + "\n  - ".join(problems)) from None
    if "_source" in getattr(model, "__private_attributes__", {}):
        config._source = source
    return config


def load_config_file(model: type[M], path: str | Path, overrides: dict[str, Any] | None,
                     error: type[Exception], what: str) -> M:
    """Read `path`, apply the dotted `overrides`, validate: the one loader of every config file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} does not exist")
    raw = apply_overrides(load_yaml(path, error), overrides, str(path), error)
    return validate_config(model, raw, str(path), error, what)


# --- pydantic's errors in the product's words ---------------------------------------------------

_EXPECTED = {
    "int_type": "expected an integer", "int_parsing": "expected an integer", "int_from_float": "expected an integer",
    "float_type": "expected a number", "float_parsing": "expected a number", "finite_number": "expected a finite number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected text", "list_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "greater_than": "expected a number > {gt}", "greater_than_equal": "expected a number >= {ge}",
    "less_than": "expected a number < {lt}", "less_than_equal": "expected a number <= {le}",
    "literal_error": "expected {expected}", "enum": "expected {expected}",
    "too_short": "expected at least {min_length} item(s)", "too_long": "expected at most {max_length} item(s)",
    "string_pattern_mismatch": "expected text matching {pattern}",
}


def describe_errors(exc: ValidationError, model: type[BaseModel] | None = None,
                    name: Callable[[tuple], str] | None = None) -> list[str]:
    """One line per problem: `field.path=value: expected ...`. Unknown fields are grouped per section
    with the fields it allows. `name` turns a location into what the user wrote (default: the dotted
    field path; settings name the environment variable)."""
    problems: list[str] = []
    unknown: dict[tuple, list[str]] = {}    # pydantic's location of a section -> its unknown fields
    for error in exc.errors(include_url=False):
        if error["type"] == "default_factory_not_called":   # a default that depends on a bad field
            continue
        if error["type"] == "extra_forbidden":
            unknown.setdefault(tuple(error["loc"][:-1]), []).append(str(error["loc"][-1]))
            continue
        loc = _walk(model, tuple(error["loc"]))[0] if model else tuple(error["loc"])
        where = name(loc) if name else ".".join(str(p) for p in loc)
        problems.append(_problem(where, error, loc))
    for parent, fields in unknown.items():
        section = ".".join(str(p) for p in (_walk(model, parent)[0] if model else parent))
        allowed = _fields_at(model, parent) if model else []
        problems.append(f"{section + ' has ' if section else ''}unknown fields {sorted(fields)}"
                        + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
    return problems


def _problem(where: str, error: dict, loc: tuple) -> str:
    kind = error["type"]
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (error.get("ctx") or {}).items()}
    if kind == "union_tag_invalid":   # model.type: forest
        return (f"{where}.{ctx['discriminator'].strip(chr(39))}={ctx['tag']!r}: "
                f"expected one of {ctx['expected_tags']}")
    if kind == "union_tag_not_found":
        return f"{where}.{ctx['discriminator'].strip(chr(39))}: required"
    if kind == "missing":
        return f"{where}: required"
    if kind == "value_error":         # a validator's own sentence
        message = str(ctx.get("error", error["msg"]))
    elif kind == "explained":
        message = error["msg"]
    elif kind in _EXPECTED:
        message = _EXPECTED[kind].format(**ctx)
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    if loc and loc[-1] == "[key]":    # a mapping's key, e.g. checks.sarcasm
        return f"{where.rsplit('.', 1)[0]}: {message}"
    if not where:                     # the model's own check, naming its fields itself
        return message
    return f"{where}={error['input']!r}: {message}"


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _walk(model: type[BaseModel], loc: tuple) -> tuple[tuple, Any]:
    """Follow `loc` through the model's fields: (loc without tagged-union tags, the type reached)."""
    clean: list = []
    current: Any = model
    tag_field = None     # set when the next part of loc is a tagged union's tag (pydantic adds it)
    for part in loc:
        if tag_field is not None:
            members = [m for m in typing.get_args(current) if isinstance(m, type) and issubclass(m, BaseModel)
                       and part in typing.get_args(m.model_fields[tag_field].annotation)]
            tag_field = None
            if members:
                current = members[0]
                continue
            current = Any
        clean.append(part)
        inner = _unwrap(current)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and part in inner.model_fields:
            info = inner.model_fields[part]
            current, tag_field = _unwrap(info.annotation), info.discriminator
        elif typing.get_origin(inner) is dict:
            current = Any if part == "[key]" else typing.get_args(inner)[1]
        elif typing.get_origin(inner) is list:
            current = typing.get_args(inner)[0]
        else:
            current = Any
    return tuple(clean), current


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    reached = _unwrap(_walk(model, loc)[1])
    if isinstance(reached, type) and issubclass(reached, BaseModel):
        return list(reached.model_fields)
    return []
