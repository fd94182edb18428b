"""Shared fixtures: real services on free loopback ports, each test with its own topic, table root
and AIRFLOW_HOME. Services are started with the same code as `tweetops stack up`."""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Airflow reads its configuration at import: give the whole test session its own AIRFLOW_HOME
# before anything imports airflow, so tests never touch a live instance's metadata DB.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="tweetops-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never talk to the developer's own stack: point every service at a closed port by default.
for _name, _value in {
    "TWEETOPS_HOME": str(_AIRFLOW_HOME / "tweetops-home"),
    "TWEETOPS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "TWEETOPS_MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
    "TWEETOPS_SLACK_WEBHOOK_URL": "http://127.0.0.1:1/services/none",
}.items():
    os.environ[_name] = _value

from tweetops.app import stack  # noqa: E402
from tweetops.core.settings import load_settings  # noqa: E402

S3_KEYS = {"AWS_ACCESS_KEY_ID": "tweetops-test", "AWS_SECRET_ACCESS_KEY": "tweetops-test-secret",
           "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _start(tmp_path_factory, name: str, env: dict[str, str]):
    home = tmp_path_factory.mktemp(f"stack-{name}")
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(home), **env})
    stack.up(settings, only=[name])
    return settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real Tansu broker (memory storage) on a free port; yields its bootstrap address."""
    settings = _start(tmp_path_factory, "broker", {"TWEETOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    yield settings.kafka_bootstrap
    stack.down(settings)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 HTTP server (moto) on a free port; yields its endpoint URL."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = _start(tmp_path_factory, "s3", {"TWEETOPS_LAKEHOUSE_URI": "s3://tweetops-test/lake",
                                               "TWEETOPS_S3_ENDPOINT_URL": endpoint, **S3_KEYS})
    yield endpoint
    stack.down(settings)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server with authentication on (basic-auth app, SQLite backend, proxied
    local artifacts), as `stack up` starts it; yields its URL.

    From then on the session signs in with its pipeline account (TWEETOPS_MLFLOW_USERNAME/PASSWORD
    and MLflow's own variables), as Airflow's tasks do; `mlflow_accounts` has the others."""
    settings = _start(tmp_path_factory, "mlflow", {"TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    pipeline = stack.mlflow_accounts(settings)["pipeline"]
    for prefix in ("TWEETOPS_MLFLOW_", "MLFLOW_TRACKING_"):
        os.environ[prefix + "USERNAME"], os.environ[prefix + "PASSWORD"] = pipeline["username"], pipeline["password"]
    _MLFLOW_STACK["settings"] = settings
    yield settings.mlflow_tracking_uri
    stack.down(settings)


_MLFLOW_STACK: dict = {}


@pytest.fixture(scope="session")
def mlflow_accounts(mlflow_server) -> dict[str, dict[str, str]]:
    """The test MLflow server's accounts: admin, pipeline, reader -> {username, password}."""
    return stack.mlflow_accounts(_MLFLOW_STACK["settings"])


@pytest.fixture
def slack_receiver():
    """A real HTTP receiver for Slack webhooks on 127.0.0.1; `.messages` holds what arrived."""
    from tweetops.app.slack_receiver import SlackReceiver

    receiver = SlackReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def local_lakehouse(tmp_path, monkeypatch):
    """Settings for a fresh lakehouse on local disk (and a fresh TWEETOPS_HOME)."""
    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TWEETOPS_LAKEHOUSE_URI", str(tmp_path / "lakehouse"))
    return load_settings()


@pytest.fixture
def s3_lakehouse(s3_server, tmp_path, monkeypatch):
    """Settings for a fresh lakehouse in its own bucket on the moto S3 server."""
    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TWEETOPS_LAKEHOUSE_URI", f"s3://{unique('lake')}/tweetops")
    monkeypatch.setenv("TWEETOPS_S3_ENDPOINT_URL", s3_server)
    for key, value in S3_KEYS.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture(params=["local", "s3"])
def any_lakehouse(request):
    """Run a test once on a local root and once on the S3 server."""
    return request.getfixturevalue("local_lakehouse" if request.param == "local" else "s3_lakehouse")


@pytest.fixture
def topic(broker, monkeypatch):
    """A fresh topic name on the test broker, set as TWEETOPS_TOPIC (created by whoever uses it)."""
    name = unique("tweets")
    monkeypatch.setenv("TWEETOPS_KAFKA_BOOTSTRAP", broker)
    monkeypatch.setenv("TWEETOPS_TOPIC", name)
    monkeypatch.setenv("TWEETOPS_CONSUMER_GROUP", unique("ingest"))
    return name


@pytest.fixture
def cli_env():
    """The environment for running `tweetops` as a subprocess with the current settings."""
    def env(**extra: str) -> dict[str, str]:
        return {**os.environ, **extra}
    return env


TWEETOPS = [sys.executable, "-m", "tweetops.cli"]


@pytest.fixture(scope="session")
def airflow_db():
    """This test session's Airflow metadata DB (SQLite under the temporary AIRFLOW_HOME), created once.

    Request it before `dag.test()`: runs land here, never in a live instance's DB. Yields AIRFLOW_HOME.
    """
    from airflow.utils import db

    db.initdb()
    yield _AIRFLOW_HOME


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local[2] SparkSession for the whole test session, with the Delta data source registered.

    Storage settings travel with each read/write (lakehouse.spark_delta), so tests may switch
    between local_lakehouse and s3_lakehouse while sharing this session."""
    from lakehouse.spark import spark_session

    home = tmp_path_factory.mktemp("spark-home")
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(home), "TWEETOPS_SPARK_MASTER": "local[2]"})
    session = spark_session(settings, app_name="tweetops-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def trained_baseline(mlflow_server, tmp_path_factory):
    """A baseline trained by ml.train on 2,000 real corpus tweets (seeded into gold_features) and
    registered as version 1, champion, of a model name of its own on the test MLflow server.

    Yields (settings, TrainResult); the settings point at that model, registry and lakehouse.
    Read-only for its users: tests that move aliases register a model name of their own."""
    from ml.features import seed_features_from_corpus
    from ml.train import train_model

    home = tmp_path_factory.mktemp("trained-baseline")
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(home),
                              "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse"),
                              "TWEETOPS_MLFLOW_TRACKING_URI": mlflow_server,
                              "TWEETOPS_MODEL_NAME": unique("sentiment")})
    seed_features_from_corpus(settings, limit=2000)
    result = train_model("baseline", settings, log=lambda *args: None)
    yield settings, result


@pytest.fixture(autouse=True)
def _dag_tests_get_the_airflow_db(request):
    """Airflow 3's DagBag.get_dag() reads the metadata DB: tests under tests/dags/ get this session's."""
    if Path(str(request.node.path)).parent.name == "dags":
        request.getfixturevalue("airflow_db")
