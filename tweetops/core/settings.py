"""One settings object for every TweetOps component, read from TWEETOPS_* environment variables.

Every default targets the embedded local stack (`tweetops stack up`); production sets the same
variables to real Kafka, MinIO/S3 and MLflow (see docker-compose.yml). `Settings` is a
pydantic-settings model: values are validated when loaded, every bad variable is reported at once,
and each error names the variable, its value and what it expects
(`TWEETOPS_SQL_THREADS='x': expected a positive integer`). An empty variable means its default.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from tweetops.core.config_files import describe_errors, explained

PREFIX = "TWEETOPS_"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = REPO_ROOT / ".tweetops"
# Where `tweetops stack up` keeps the MLflow accounts it generated (see tweetops/app/mlflow_auth.py).
MLFLOW_CREDENTIALS_FILE = Path("mlflow") / "credentials.json"
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class SettingsError(ValueError):
    """A setting has a bad value; the message names each variable and what it expects."""


# --- what each kind of value must look like (a ValueError's text follows "NAME='value': ") -------

def _bootstrap(value: str) -> str:
    for server in value.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("expected host:port[,host:port...]")
    return value


def _http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http(s)://host[:port] URL")
    try:
        parsed.port
    except ValueError:
        raise ValueError("the port is not a number") from None
    return value


def _one_of_prefixes(*prefixes: str, expected: str):
    def check(value: str) -> str:
        if not value.startswith(prefixes):
            raise ValueError(f"expected {expected}")
        return value
    return AfterValidator(check)


def _name(value: str) -> str:
    if not all(c.isalnum() or c in "._-" for c in value):
        raise ValueError("use letters, digits, '.', '_' or '-' only")
    return value


def _mlflow_uri(value: str) -> str:
    if urlparse(value).scheme not in ("http", "https", "sqlite", "file", "databricks"):
        raise ValueError("expected an http(s):// MLflow server")
    return value


def _lakehouse(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("", "file", "s3"):
        raise ValueError("expected a local folder or s3://bucket/prefix")
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError("an s3:// URI needs a bucket (s3://bucket/prefix)")
        return value.rstrip("/")
    return str(Path(parsed.path if parsed.scheme == "file" else value).expanduser().resolve())


def _memory_size(value: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", value, flags=re.I):
        raise ValueError("expected a size such as 2GB or 512MB")
    return value


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


Name = Annotated[str, AfterValidator(_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
BaseUrl = Annotated[HttpUrl, AfterValidator(lambda url: url.rstrip("/"))]
Folder = Annotated[Path, AfterValidator(_absolute)]
Upper = BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)


def _rows(minimum: int, default: int):
    more = f" ({minimum} or more)" if minimum else ""
    return Field(default, ge=minimum), explained(f"expected a whole number of rows{more}")


def _env(name: str, *fallbacks: str, **field: Any):
    """A field read from `name` (not TWEETOPS_<field>), else from the first fallback variable set."""
    return Field(validation_alias=AliasChoices(name, *fallbacks) if fallbacks else name, **field)


def _stack_account(home: Path, account: str = "pipeline") -> tuple[str | None, str | None]:
    """(username, password) of an account `tweetops stack up` generated under home, or (None, None)."""
    try:
        entry = json.loads((home / MLFLOW_CREDENTIALS_FILE).read_text())[account]
        return entry["username"], entry["password"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _stack_username(data: dict) -> str | None:
    return _stack_account(data.get("home", DEFAULT_HOME))[0]


def _stack_password(data: dict) -> str | None:
    # Only the password of the account the username names: a username alone is an error below.
    user, password = _stack_account(data.get("home", DEFAULT_HOME))
    return password if user is not None and user == data.get("mlflow_username") else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, populate_by_name=True, extra="forbid")

    home: Folder = DEFAULT_HOME                 # TWEETOPS_HOME: runtime state (stack logs, lakehouse, mlflow, airflow)
    kafka_bootstrap: Annotated[str, AfterValidator(_bootstrap)] = "127.0.0.1:9092"  # host:port of the Kafka-protocol broker
    topic: Name = "tweets"                      # TWEETOPS_TOPIC: the tweets topic
    topic_partitions: Annotated[int, Field(ge=1), explained("expected a positive integer")] = 3  # when the topic is created
    consumer_group: Name = "tweetops-ingest"    # TWEETOPS_CONSUMER_GROUP: the ingest consumer group
    broker_storage: Annotated[str, _one_of_prefixes("memory://", "s3://", expected="memory:// or s3://bucket/")] = \
        "memory://tansu/"                       # TWEETOPS_BROKER_STORAGE: where the embedded Tansu broker keeps data
    lakehouse_uri: Annotated[str, AfterValidator(_lakehouse)] = Field(   # a local folder or s3://bucket/prefix
        default_factory=lambda data: str(data.get("home", DEFAULT_HOME) / "lakehouse"))
    s3_endpoint_url: HttpUrl | None = _env("TWEETOPS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", default=None)  # MinIO / moto; unset for AWS S3
    aws_access_key_id: str | None = _env("AWS_ACCESS_KEY_ID", default=None)
    aws_secret_access_key: str | None = _env("AWS_SECRET_ACCESS_KEY", default=None, repr=False)
    aws_region: str = _env("AWS_REGION", "AWS_DEFAULT_REGION", default="us-east-1")
    mlflow_tracking_uri: Annotated[str, AfterValidator(_mlflow_uri)] = "http://127.0.0.1:5000"
    model_name: Name = "tweetops-sentiment"     # TWEETOPS_MODEL_NAME: the registered model
    airflow_url: BaseUrl = "http://127.0.0.1:8080"   # TWEETOPS_AIRFLOW_URL: Airflow API server / UI
    airflow_home: Folder = _env("AIRFLOW_HOME", default_factory=lambda data: data.get("home", DEFAULT_HOME) / "airflow")
    slack_conn_id: Name = "tweetops_slack"      # TWEETOPS_SLACK_CONN_ID: Airflow connection used for alerts
    slack_webhook_url: HttpUrl = "http://127.0.0.1:8099/services/tweetops/local"  # seeds that connection
    api_url: BaseUrl = "http://127.0.0.1:8000"  # TWEETOPS_API_URL: where `tweetops serve` listens
    spark_master: Annotated[str, _one_of_prefixes("local", "spark://", "k8s://", "yarn",
                                                  expected="local[N], spark://, k8s:// or yarn")] = "local[2]"
    max_future_skew_s: Annotated[int, Field(ge=0), explained("expected a whole number of seconds (0 or more)")] = \
        86400                                   # created_at may lead receipt by this much
    sql_memory_limit: Annotated[str, AfterValidator(_memory_size)] = "2GB"  # most memory one `tweetops sql` query may use
    sql_threads: Annotated[int, Field(ge=1), explained("expected a positive integer")] = 2
    sql_timeout_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False),
                                   explained("expected a positive number of seconds")] = 60.0
    # Secrets: kept out of repr() so a logged Settings never shows them. The MLflow account: these
    # variables, then MLflow's own (MLFLOW_TRACKING_USERNAME/PASSWORD), then the pipeline account the
    # embedded stack generated under TWEETOPS_HOME (so `tweetops train` works against `stack up`).
    mlflow_username: str | None = Field(default_factory=_stack_username)
    mlflow_password: str | None = Field(default_factory=_stack_password, repr=False)
    # This process's Airflow account (the Docker consumer posts asset events with it); unset: the
    # embedded stack's admin with its generated password.
    airflow_username: str | None = None         # TWEETOPS_AIRFLOW_USERNAME
    airflow_password: str | None = Field(None, repr=False)  # TWEETOPS_AIRFLOW_PASSWORD
    api_token: str | None = Field(None, repr=False)  # TWEETOPS_API_TOKEN: bearer token of the API
    kafka_security_protocol: Annotated[Literal[KAFKA_SECURITY_PROTOCOLS], Upper, explained(
        f"expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[Literal[KAFKA_SASL_MECHANISMS], Upper, explained(
        f"expected one of {', '.join(KAFKA_SASL_MECHANISMS)}")] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(None, repr=False)
    spark_scoring_min_rows: Annotated[int, *_rows(0, 250_000)]  # smaller intervals score in one process
    gate_chunk_rows: Annotated[int, *_rows(1, 200_000)]         # a bigger day is validated in chunks of about this
    train_max_rows: Annotated[int, *_rows(1, 300_000)]          # more labelled rows are sampled down to this (~2.5 GB to fit)
    allowed_lateness_hours: Annotated[float, Field(ge=0, allow_inf_nan=False), explained(
        "expected a number of hours (0 or more), e.g. 6")] = 6.0  # a day is complete this long after its close
    bronze_event_interval_s: Annotated[float, Field(ge=0, allow_inf_nan=False), explained(
        "expected seconds (0 or more), e.g. 15")] = 15.0   # at most one bronze_tweets asset event per this long
    ingest_metrics_port: Annotated[int, Field(ge=1, le=65535), explained(
        "expected a port number (1-65535)")] = 9108        # the embedded stack's consumer serves /metrics here

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _Environment(settings_cls)

    @model_validator(mode="after")
    def _pairs_are_complete(self) -> "Settings":
        problems = []
        if (self.lakehouse_on_s3 or self.broker_storage.startswith("s3://")) and not (
                self.aws_access_key_id and self.aws_secret_access_key):
            problems.append("TWEETOPS_LAKEHOUSE_URI or TWEETOPS_BROKER_STORAGE is on s3://: "
                            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if self.mlflow_username is not None and not self.mlflow_password:
            problems.append("TWEETOPS_MLFLOW_USERNAME is set: set TWEETOPS_MLFLOW_PASSWORD too")
        if self.airflow_username is not None and not self.airflow_password:
            problems.append("TWEETOPS_AIRFLOW_USERNAME is set: set TWEETOPS_AIRFLOW_PASSWORD too")
        if self.kafka_security_protocol.startswith("SASL_") and not (
                self.kafka_sasl_username and self.kafka_sasl_password):
            problems.append(f"TWEETOPS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}: set "
                            "TWEETOPS_KAFKA_SASL_USERNAME and TWEETOPS_KAFKA_SASL_PASSWORD")
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @property
    def lakehouse_on_s3(self) -> bool:
        return self.lakehouse_uri.startswith("s3://")

    @property
    def stack_dir(self) -> Path:
        return self.home / "stack"

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (Airflow tasks, the stack)."""
        return {_ENV_NAMES[name]: str(value) for name, value in self if value is not None}

    def kafka_client_config(self) -> dict[str, str]:
        """The security part of every confluent-kafka client's configuration (empty for PLAINTEXT)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        config = {"security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL_"):
            config.update({"sasl.mechanism": self.kafka_sasl_mechanism,
                           "sasl.username": self.kafka_sasl_username or "",
                           "sasl.password": self.kafka_sasl_password or ""})
        return config


def _env_name(name: str, field) -> str:
    alias = field.validation_alias
    if alias is None:
        return PREFIX + name.upper()
    return alias if isinstance(alias, str) else alias.choices[0]


# Field -> its environment variable (the first one read, when there are fallbacks).
_ENV_NAMES = {name: _env_name(name, field) for name, field in Settings.model_fields.items()}
# Any name of a setting (field, variable, fallback variable), lower case -> the field.
_FIELDS = {**{name: name for name in Settings.model_fields},
           **{env.lower(): name for name, env in _ENV_NAMES.items()},
           **{choice.lower(): name for name, field in Settings.model_fields.items()
              if isinstance(field.validation_alias, AliasChoices) for choice in field.validation_alias.choices}}
# A variable -> the variables read for the same setting, in order (AWS_REGION, AWS_DEFAULT_REGION).
_FALLBACKS = {field.validation_alias.choices[0]: field.validation_alias.choices
              for field in Settings.model_fields.values() if isinstance(field.validation_alias, AliasChoices)}
# Anything pydantic may name in an error (field, variable, fallback variable) -> the variable.
_VARIABLES = {**{name.lower(): env for name, env in _ENV_NAMES.items()},
              **{env.lower(): env for env in _ENV_NAMES.values()},
              **{choice.lower(): choice for field in Settings.model_fields.values()
                 if isinstance(field.validation_alias, AliasChoices) for choice in field.validation_alias.choices}}


class _Environment(EnvSettingsSource):
    """Environment variables from a mapping (default os.environ), trimmed; an empty one is unset."""

    def __init__(self, settings_cls, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ
        super().__init__(settings_cls)

    def _load_env_vars(self):
        trimmed = {k: v.strip() for k, v in self.environ.items() if isinstance(v, str) and v.strip()}
        if "TWEETOPS_MLFLOW_USERNAME" not in trimmed and "MLFLOW_TRACKING_USERNAME" in trimmed:
            # MLflow's own variables name an account too; a username and its password come as a pair.
            trimmed["TWEETOPS_MLFLOW_USERNAME"] = trimmed["MLFLOW_TRACKING_USERNAME"]
            trimmed.pop("TWEETOPS_MLFLOW_PASSWORD", None)
            if "MLFLOW_TRACKING_PASSWORD" in trimmed:
                trimmed["TWEETOPS_MLFLOW_PASSWORD"] = trimmed["MLFLOW_TRACKING_PASSWORD"]
        return {k.lower(): v for k, v in trimmed.items()} if not self.case_sensitive else trimmed


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings (from `env`, default os.environ); raise SettingsError listing
    every bad variable."""
    env = os.environ if env is None else env
    try:
        return _validated(env)
    except ValidationError as exc:
        problems = _problems(exc, env)
        # Incomplete pairs (s3:// without keys, SASL without an account) are checked once every
        # field is valid: check them again without the bad variables, so all is reported at once.
        bad = {_FIELDS.get(str(e["loc"][0]).lower()) for e in exc.errors() if e["loc"]} - {None}
        if bad:
            try:
                _validated({k: v for k, v in env.items() if _FIELDS.get(k.lower()) not in bad})
            except ValidationError as more:
                problems += [p for p in _problems(more, env) if p not in problems]
        raise SettingsError("Invalid TweetOps settings:\n  - " + "\n  - ".join(problems)) from None


def _validated(env: Mapping[str, str]) -> Settings:
    return Settings(_build_sources=((_Environment(Settings, env),), {}))


def _problems(exc: ValidationError, env: Mapping[str, str]) -> list[str]:
    def variable(loc: tuple) -> str:
        name = _VARIABLES.get(str(loc[0]).lower(), str(loc[0])) if loc else ""
        # A fallback variable (AWS_ENDPOINT_URL for TWEETOPS_S3_ENDPOINT_URL) is named when it was the one set.
        choices = [c for c in _FALLBACKS.get(name, ()) if (env.get(c) or "").strip()]
        return choices[0] if choices else name

    return describe_errors(exc, name=variable)


def is_local(url: str) -> bool:
    """True for a service on this machine's loopback (one the embedded stack runs)."""
    return host_port(url, 80)[0] in ("127.0.0.1", "localhost")


def host_port(url_or_hostport: str, default_port: int) -> tuple[str, int]:
    """('127.0.0.1', 5000) from 'http://127.0.0.1:5000' or '127.0.0.1:5000'."""
    if "://" in url_or_hostport:
        parsed = urlparse(url_or_hostport)
        return parsed.hostname or "127.0.0.1", parsed.port or default_port
    host, _, port = url_or_hostport.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port) if port else default_port
