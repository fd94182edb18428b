"""One settings object for every TweetOps component, read from TWEETOPS_* environment variables.

Every default targets the embedded local stack (`tweetops stack up`); production sets the same
variables to real Kafka, MinIO/S3 and MLflow (see docker-compose.yml). Values are validated when
loaded, and each error names the variable to fix.
"""
from __future__ import annotations

import os
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

PREFIX = "TWEETOPS_"
REPO_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting has a bad value; the message names each variable and what it expects."""


@dataclass(frozen=True)
class Settings:
    home: Path                      # TWEETOPS_HOME: runtime state (stack logs, lakehouse, mlflow, airflow)
    kafka_bootstrap: str            # TWEETOPS_KAFKA_BOOTSTRAP: host:port of the Kafka-protocol broker
    topic: str                      # TWEETOPS_TOPIC: the tweets topic
    topic_partitions: int           # TWEETOPS_TOPIC_PARTITIONS: partitions when the topic is created
    consumer_group: str             # TWEETOPS_CONSUMER_GROUP: the ingest consumer group
    broker_storage: str             # TWEETOPS_BROKER_STORAGE: memory:// or s3://bucket/ (embedded Tansu)
    lakehouse_uri: str              # TWEETOPS_LAKEHOUSE_URI: a local folder or s3://bucket/prefix
    s3_endpoint_url: str | None     # TWEETOPS_S3_ENDPOINT_URL: MinIO / moto endpoint; unset for AWS S3
    aws_access_key_id: str | None   # AWS_ACCESS_KEY_ID
    aws_secret_access_key: str | None = field(repr=False)  # AWS_SECRET_ACCESS_KEY
    aws_region: str                 # AWS_REGION
    mlflow_tracking_uri: str        # TWEETOPS_MLFLOW_TRACKING_URI
    model_name: str                 # TWEETOPS_MODEL_NAME: the registered model
    airflow_url: str                # TWEETOPS_AIRFLOW_URL: Airflow API server / UI
    airflow_home: Path              # AIRFLOW_HOME
    slack_conn_id: str              # TWEETOPS_SLACK_CONN_ID: Airflow connection used for alerts
    slack_webhook_url: str          # TWEETOPS_SLACK_WEBHOOK_URL: seeds that connection (default: local receiver)
    api_url: str                    # TWEETOPS_API_URL: where `tweetops serve` listens
    spark_master: str               # TWEETOPS_SPARK_MASTER: local[2], spark://..., k8s://...
    max_future_skew_s: int = 86400  # TWEETOPS_MAX_FUTURE_SKEW_S: created_at may lead receipt by this much
    sql_memory_limit: str = "2GB"   # TWEETOPS_SQL_MEMORY_LIMIT: most memory one `tweetops sql` query may use
    sql_threads: int = 2            # TWEETOPS_SQL_THREADS: threads one `tweetops sql` query may use
    sql_timeout_seconds: float = 60.0  # TWEETOPS_SQL_TIMEOUT_SECONDS: a longer query is interrupted
    # Secrets: kept out of repr() so a logged Settings never shows them.
    mlflow_username: str | None = None  # TWEETOPS_MLFLOW_USERNAME: this process's MLflow account
    mlflow_password: str | None = field(default=None, repr=False)  # TWEETOPS_MLFLOW_PASSWORD
    api_token: str | None = field(default=None, repr=False)        # TWEETOPS_API_TOKEN: bearer token of the API
    # This process's Airflow account (the Docker consumer posts asset events with it); unset: the
    # embedded stack's admin with its generated password.
    airflow_username: str | None = None  # TWEETOPS_AIRFLOW_USERNAME
    airflow_password: str | None = field(default=None, repr=False)  # TWEETOPS_AIRFLOW_PASSWORD
    kafka_security_protocol: str = "PLAINTEXT"  # TWEETOPS_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # TWEETOPS_KAFKA_SASL_MECHANISM
    kafka_sasl_username: str | None = None       # TWEETOPS_KAFKA_SASL_USERNAME
    kafka_sasl_password: str | None = field(default=None, repr=False)  # TWEETOPS_KAFKA_SASL_PASSWORD
    spark_scoring_min_rows: int = 250_000  # TWEETOPS_SPARK_SCORING_MIN_ROWS: smaller intervals score in one process
    gate_chunk_rows: int = 200_000  # TWEETOPS_GATE_CHUNK_ROWS: a bigger day is validated in chunks of about this
    train_max_rows: int = 2_000_000  # TWEETOPS_TRAIN_MAX_ROWS: more labelled features rows are sampled down to this

    @property
    def lakehouse_on_s3(self) -> bool:
        return self.lakehouse_uri.startswith("s3://")

    @property
    def stack_dir(self) -> Path:
        return self.home / "stack"

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (Airflow tasks, the stack)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[_ENV_NAMES[f.name]] = str(value)
        return env

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


_ENV_NAMES = {
    "home": "TWEETOPS_HOME",
    "kafka_bootstrap": "TWEETOPS_KAFKA_BOOTSTRAP",
    "topic": "TWEETOPS_TOPIC",
    "topic_partitions": "TWEETOPS_TOPIC_PARTITIONS",
    "consumer_group": "TWEETOPS_CONSUMER_GROUP",
    "broker_storage": "TWEETOPS_BROKER_STORAGE",
    "lakehouse_uri": "TWEETOPS_LAKEHOUSE_URI",
    "s3_endpoint_url": "TWEETOPS_S3_ENDPOINT_URL",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_region": "AWS_REGION",
    "mlflow_tracking_uri": "TWEETOPS_MLFLOW_TRACKING_URI",
    "model_name": "TWEETOPS_MODEL_NAME",
    "airflow_url": "TWEETOPS_AIRFLOW_URL",
    "airflow_home": "AIRFLOW_HOME",
    "slack_conn_id": "TWEETOPS_SLACK_CONN_ID",
    "slack_webhook_url": "TWEETOPS_SLACK_WEBHOOK_URL",
    "api_url": "TWEETOPS_API_URL",
    "spark_master": "TWEETOPS_SPARK_MASTER",
    "max_future_skew_s": "TWEETOPS_MAX_FUTURE_SKEW_S",
    "sql_memory_limit": "TWEETOPS_SQL_MEMORY_LIMIT",
    "sql_threads": "TWEETOPS_SQL_THREADS",
    "sql_timeout_seconds": "TWEETOPS_SQL_TIMEOUT_SECONDS",
    "mlflow_username": "TWEETOPS_MLFLOW_USERNAME",
    "mlflow_password": "TWEETOPS_MLFLOW_PASSWORD",
    "airflow_username": "TWEETOPS_AIRFLOW_USERNAME",
    "airflow_password": "TWEETOPS_AIRFLOW_PASSWORD",
    "api_token": "TWEETOPS_API_TOKEN",
    "kafka_security_protocol": "TWEETOPS_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "TWEETOPS_KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "TWEETOPS_KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "TWEETOPS_KAFKA_SASL_PASSWORD",
    "spark_scoring_min_rows": "TWEETOPS_SPARK_SCORING_MIN_ROWS",
    "gate_chunk_rows": "TWEETOPS_GATE_CHUNK_ROWS",
    "train_max_rows": "TWEETOPS_TRAIN_MAX_ROWS",
}

# Where `tweetops stack up` keeps the MLflow accounts it generated (see tweetops/app/mlflow_auth.py).
MLFLOW_CREDENTIALS_FILE = Path("mlflow") / "credentials.json"
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError listing every bad variable."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    home = Path(get("TWEETOPS_HOME", str(REPO_ROOT / ".tweetops"))).expanduser().resolve()

    kafka = get("TWEETOPS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    for server in kafka.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            problems.append(f"TWEETOPS_KAFKA_BOOTSTRAP={kafka!r}: expected host:port[,host:port...]")
            break

    partitions = get("TWEETOPS_TOPIC_PARTITIONS", "3")
    if not partitions.isdigit() or int(partitions) < 1:
        problems.append(f"TWEETOPS_TOPIC_PARTITIONS={partitions!r}: expected a positive integer")
        partitions = "1"

    broker_storage = get("TWEETOPS_BROKER_STORAGE", "memory://tansu/")
    if not broker_storage.startswith(("memory://", "s3://")):
        problems.append(f"TWEETOPS_BROKER_STORAGE={broker_storage!r}: expected memory:// or s3://bucket/")

    lakehouse = get("TWEETOPS_LAKEHOUSE_URI", str(home / "lakehouse"))
    scheme = urlparse(lakehouse).scheme
    if scheme not in ("", "file", "s3"):
        problems.append(f"TWEETOPS_LAKEHOUSE_URI={lakehouse!r}: expected a local folder or s3://bucket/prefix")
    if scheme == "file":
        lakehouse = urlparse(lakehouse).path
    if scheme in ("", "file"):
        lakehouse = str(Path(lakehouse).expanduser().resolve())
    elif not urlparse(lakehouse).netloc:
        problems.append(f"TWEETOPS_LAKEHOUSE_URI={lakehouse!r}: an s3:// URI needs a bucket (s3://bucket/prefix)")

    s3_endpoint = get("TWEETOPS_S3_ENDPOINT_URL", get("AWS_ENDPOINT_URL"))
    access_key, secret_key = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
    needs_s3 = scheme == "s3" or broker_storage.startswith("s3://")
    if needs_s3 and not (access_key and secret_key):
        problems.append("TWEETOPS_LAKEHOUSE_URI or TWEETOPS_BROKER_STORAGE is on s3://: "
                        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if s3_endpoint:
        _check_url("TWEETOPS_S3_ENDPOINT_URL", s3_endpoint, problems)

    mlflow_uri = get("TWEETOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    if urlparse(mlflow_uri).scheme not in ("http", "https", "sqlite", "file", "databricks"):
        problems.append(f"TWEETOPS_MLFLOW_TRACKING_URI={mlflow_uri!r}: expected an http(s):// MLflow server")

    airflow_url = get("TWEETOPS_AIRFLOW_URL", "http://127.0.0.1:8080")
    _check_url("TWEETOPS_AIRFLOW_URL", airflow_url, problems)
    api_url = get("TWEETOPS_API_URL", "http://127.0.0.1:8000")
    _check_url("TWEETOPS_API_URL", api_url, problems)
    slack_url = get("TWEETOPS_SLACK_WEBHOOK_URL", "http://127.0.0.1:8099/services/tweetops/local")
    _check_url("TWEETOPS_SLACK_WEBHOOK_URL", slack_url, problems)

    spark_master = get("TWEETOPS_SPARK_MASTER", "local[2]")
    if not spark_master.startswith(("local", "spark://", "k8s://", "yarn")):
        problems.append(f"TWEETOPS_SPARK_MASTER={spark_master!r}: expected local[N], spark://, k8s:// or yarn")

    skew = get("TWEETOPS_MAX_FUTURE_SKEW_S", "86400")
    if not skew.isdigit():
        problems.append(f"TWEETOPS_MAX_FUTURE_SKEW_S={skew!r}: expected a whole number of seconds (0 or more)")
        skew = "86400"
    spark_scoring_min_rows = get("TWEETOPS_SPARK_SCORING_MIN_ROWS", "250000")
    if not spark_scoring_min_rows.isdigit():
        problems.append(f"TWEETOPS_SPARK_SCORING_MIN_ROWS={spark_scoring_min_rows!r}: expected a whole number of rows")
        spark_scoring_min_rows = "250000"
    gate_chunk_rows = get("TWEETOPS_GATE_CHUNK_ROWS", "200000")
    if not gate_chunk_rows.isdigit() or int(gate_chunk_rows) < 1:
        problems.append(f"TWEETOPS_GATE_CHUNK_ROWS={gate_chunk_rows!r}: expected a whole number of rows (1 or more)")
        gate_chunk_rows = "200000"
    train_max_rows = get("TWEETOPS_TRAIN_MAX_ROWS", "2000000")
    if not train_max_rows.isdigit() or int(train_max_rows) < 1:
        problems.append(f"TWEETOPS_TRAIN_MAX_ROWS={train_max_rows!r}: expected a whole number of rows (1 or more)")
        train_max_rows = "2000000"
    sql_memory_limit = get("TWEETOPS_SQL_MEMORY_LIMIT", "2GB")
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", sql_memory_limit, flags=re.I):
        problems.append(f"TWEETOPS_SQL_MEMORY_LIMIT={sql_memory_limit!r}: expected a size such as 2GB or 512MB")
    sql_threads = get("TWEETOPS_SQL_THREADS", "2")
    if not sql_threads.isdigit() or int(sql_threads) < 1:
        problems.append(f"TWEETOPS_SQL_THREADS={sql_threads!r}: expected a positive integer")
        sql_threads = "1"
    sql_timeout = get("TWEETOPS_SQL_TIMEOUT_SECONDS", "60")
    try:
        if not 0 < float(sql_timeout) < float("inf"):
            raise ValueError
    except ValueError:
        problems.append(f"TWEETOPS_SQL_TIMEOUT_SECONDS={sql_timeout!r}: expected a positive number of seconds")
        sql_timeout = "60"

    for name in ("TWEETOPS_TOPIC", "TWEETOPS_CONSUMER_GROUP", "TWEETOPS_MODEL_NAME", "TWEETOPS_SLACK_CONN_ID"):
        value = get(name)
        if value is not None and not all(c.isalnum() or c in "._-" for c in value):
            problems.append(f"{name}={value!r}: use letters, digits, '.', '_' or '-' only")

    # MLflow account: explicit settings, then MLflow's own variables, then the pipeline account the
    # embedded stack generated under TWEETOPS_HOME (so `tweetops train` works against `stack up`).
    mlflow_user, mlflow_password = get("TWEETOPS_MLFLOW_USERNAME"), get("TWEETOPS_MLFLOW_PASSWORD")
    if mlflow_user is None:
        mlflow_user, mlflow_password = get("MLFLOW_TRACKING_USERNAME"), get("MLFLOW_TRACKING_PASSWORD")
    if mlflow_user is None:
        mlflow_user, mlflow_password = _stack_account(home / MLFLOW_CREDENTIALS_FILE, "pipeline")
    if mlflow_user is not None and not mlflow_password:
        problems.append("TWEETOPS_MLFLOW_USERNAME is set: set TWEETOPS_MLFLOW_PASSWORD too")

    airflow_user, airflow_password = get("TWEETOPS_AIRFLOW_USERNAME"), get("TWEETOPS_AIRFLOW_PASSWORD")
    if airflow_user is not None and not airflow_password:
        problems.append("TWEETOPS_AIRFLOW_USERNAME is set: set TWEETOPS_AIRFLOW_PASSWORD too")

    protocol = get("TWEETOPS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        problems.append(f"TWEETOPS_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
    mechanism = get("TWEETOPS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        problems.append(f"TWEETOPS_KAFKA_SASL_MECHANISM={mechanism!r}: expected one of {', '.join(KAFKA_SASL_MECHANISMS)}")
    sasl_user, sasl_password = get("TWEETOPS_KAFKA_SASL_USERNAME"), get("TWEETOPS_KAFKA_SASL_PASSWORD")
    if protocol.startswith("SASL_") and not (sasl_user and sasl_password):
        problems.append(f"TWEETOPS_KAFKA_SECURITY_PROTOCOL={protocol}: set TWEETOPS_KAFKA_SASL_USERNAME "
                        "and TWEETOPS_KAFKA_SASL_PASSWORD")

    if problems:
        raise SettingsError("Invalid TweetOps settings:\n  - " + "\n  - ".join(problems))

    return Settings(
        home=home,
        kafka_bootstrap=kafka,
        topic=get("TWEETOPS_TOPIC", "tweets"),
        topic_partitions=int(partitions),
        consumer_group=get("TWEETOPS_CONSUMER_GROUP", "tweetops-ingest"),
        broker_storage=broker_storage,
        lakehouse_uri=lakehouse.rstrip("/"),
        s3_endpoint_url=s3_endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_region=get("AWS_REGION", get("AWS_DEFAULT_REGION", "us-east-1")),
        mlflow_tracking_uri=mlflow_uri,
        model_name=get("TWEETOPS_MODEL_NAME", "tweetops-sentiment"),
        airflow_url=airflow_url.rstrip("/"),
        airflow_home=Path(get("AIRFLOW_HOME", str(home / "airflow"))).expanduser().resolve(),
        slack_conn_id=get("TWEETOPS_SLACK_CONN_ID", "tweetops_slack"),
        slack_webhook_url=slack_url,
        api_url=api_url.rstrip("/"),
        spark_master=spark_master,
        max_future_skew_s=int(skew),
        sql_memory_limit=sql_memory_limit,
        sql_threads=int(sql_threads),
        sql_timeout_seconds=float(sql_timeout),
        mlflow_username=mlflow_user,
        mlflow_password=mlflow_password,
        api_token=get("TWEETOPS_API_TOKEN"),
        airflow_username=airflow_user,
        airflow_password=airflow_password,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=sasl_user,
        kafka_sasl_password=sasl_password,
        spark_scoring_min_rows=int(spark_scoring_min_rows),
        gate_chunk_rows=int(gate_chunk_rows),
        train_max_rows=int(train_max_rows),
    )


def _stack_account(path: Path, account: str) -> tuple[str | None, str | None]:
    """(username, password) of an account `tweetops stack up` generated, or (None, None)."""
    try:
        entry = json.loads(path.read_text())[account]
        return entry["username"], entry["password"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _check_url(name: str, value: str, problems: list[str]) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        problems.append(f"{name}={value!r}: expected an http(s)://host[:port] URL")
    else:
        try:
            parsed.port
        except ValueError:
            problems.append(f"{name}={value!r}: the port is not a number")


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
