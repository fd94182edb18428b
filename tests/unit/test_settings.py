"""Settings: sensible local defaults, and a bad value gives a message naming the variable."""
from pathlib import Path

import pytest

from tweetops.core.settings import SettingsError, load_settings


def test_defaults_target_the_embedded_stack(tmp_path):
    settings = load_settings({"TWEETOPS_HOME": str(tmp_path)})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.topic == "tweets"
    assert settings.lakehouse_uri == str(tmp_path / "lakehouse")
    assert not settings.lakehouse_on_s3
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.airflow_home == tmp_path / "airflow"
    assert settings.spark_master == "local[2]"


@pytest.mark.parametrize("name, value", [
    ("TWEETOPS_KAFKA_BOOTSTRAP", "no-port-here"),
    ("TWEETOPS_TOPIC_PARTITIONS", "zero"),
    ("TWEETOPS_BROKER_STORAGE", "postgres://x"),
    ("TWEETOPS_LAKEHOUSE_URI", "gs://bucket/x"),
    ("TWEETOPS_MLFLOW_TRACKING_URI", "ftp://mlflow"),
    ("TWEETOPS_AIRFLOW_URL", "localhost:8080"),
    ("TWEETOPS_API_URL", "http://127.0.0.1:port"),
    ("TWEETOPS_SPARK_MASTER", "mesos://x"),
    ("TWEETOPS_TOPIC", "tweets with spaces"),
    ("TWEETOPS_SQL_MEMORY_LIMIT", "lots"),
    ("TWEETOPS_SQL_THREADS", "0"),
    ("TWEETOPS_SQL_TIMEOUT_SECONDS", "-1"),
])
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(SettingsError) as error:
        load_settings({name: value})
    assert name in str(error.value)
    assert repr(value) in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as error:
        load_settings({"TWEETOPS_KAFKA_BOOTSTRAP": "x", "TWEETOPS_SPARK_MASTER": "y"})
    assert "TWEETOPS_KAFKA_BOOTSTRAP" in str(error.value) and "TWEETOPS_SPARK_MASTER" in str(error.value)


def test_s3_lakehouse_needs_credentials():
    with pytest.raises(SettingsError, match="AWS_ACCESS_KEY_ID"):
        load_settings({"TWEETOPS_LAKEHOUSE_URI": "s3://bucket/lake"})


def test_s3_lakehouse_with_endpoint():
    settings = load_settings({"TWEETOPS_LAKEHOUSE_URI": "s3://bucket/lake/", "TWEETOPS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
                              "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert settings.lakehouse_on_s3 and settings.lakehouse_uri == "s3://bucket/lake"
    from tweetops.core.storage import storage_options, table_uri

    assert table_uri("bronze_tweets", settings) == "s3://bucket/lake/bronze_tweets"
    assert storage_options(settings)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert storage_options(settings)["AWS_ALLOW_HTTP"] == "true"


def test_relative_lakehouse_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(load_settings({"TWEETOPS_LAKEHOUSE_URI": "lake"}).lakehouse_uri) == tmp_path / "lake"


def test_as_env_round_trips(tmp_path):
    settings = load_settings({"TWEETOPS_HOME": str(tmp_path), "TWEETOPS_TOPIC": "t1"})
    assert load_settings(settings.as_env()) == settings


@pytest.mark.parametrize("name, value, expected", [
    ("TWEETOPS_SQL_THREADS", "x", "TWEETOPS_SQL_THREADS='x': expected a positive integer"),
    ("TWEETOPS_TOPIC_PARTITIONS", "0", "TWEETOPS_TOPIC_PARTITIONS='0': expected a positive integer"),
    ("TWEETOPS_ALLOWED_LATENESS_HOURS", "-1", "TWEETOPS_ALLOWED_LATENESS_HOURS='-1': expected a number of hours"),
    ("TWEETOPS_BRONZE_EVENT_INTERVAL_S", "soon", "TWEETOPS_BRONZE_EVENT_INTERVAL_S='soon': expected seconds"),
    ("TWEETOPS_INGEST_METRICS_PORT", "70000", "TWEETOPS_INGEST_METRICS_PORT='70000': expected a port number"),
    ("TWEETOPS_KAFKA_SECURITY_PROTOCOL", "tls", "TWEETOPS_KAFKA_SECURITY_PROTOCOL='tls': expected one of PLAINTEXT"),
    # A fallback variable is named when it is the one set.
    ("AWS_ENDPOINT_URL", "minio:9000", "AWS_ENDPOINT_URL='minio:9000': expected an http(s)://host[:port] URL"),
])
def test_the_message_names_the_variable_its_value_and_what_it_expects(name, value, expected):
    with pytest.raises(SettingsError) as error:
        load_settings({name: value})
    assert expected in str(error.value)
    assert "PydanticUndefined" not in str(error.value)  # defaults derived from a bad value stay quiet


def test_variables_read_elsewhere_are_settings_too(tmp_path):
    settings = load_settings({"TWEETOPS_ALLOWED_LATENESS_HOURS": "2.5", "TWEETOPS_BRONZE_EVENT_INTERVAL_S": "0",
                              "TWEETOPS_INGEST_METRICS_PORT": "9200"})
    assert (settings.allowed_lateness_hours, settings.bronze_event_interval_s, settings.ingest_metrics_port) == (2.5, 0, 9200)
    defaults = load_settings({"TWEETOPS_HOME": str(tmp_path)})
    assert (defaults.allowed_lateness_hours, defaults.bronze_event_interval_s, defaults.ingest_metrics_port) == (6, 15, 9108)
    from tweetops.app.stack import ingest_service

    assert "--metrics-port 9200" in " ".join(ingest_service(settings).argv)


def test_allowed_lateness_reads_the_environment_through_settings(monkeypatch):
    from datetime import timedelta

    from expectations.incremental import allowed_lateness

    monkeypatch.setenv("TWEETOPS_ALLOWED_LATENESS_HOURS", "3")
    assert allowed_lateness() == timedelta(hours=3)
    monkeypatch.setenv("TWEETOPS_ALLOWED_LATENESS_HOURS", "-3")
    with pytest.raises(SettingsError, match="TWEETOPS_ALLOWED_LATENESS_HOURS='-3'"):
        allowed_lateness()


def test_blank_values_mean_the_default_and_values_are_trimmed():
    settings = load_settings({"TWEETOPS_SQL_THREADS": "  ", "TWEETOPS_TOPIC": " t1 ", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert settings.sql_threads == 2 and settings.topic == "t1" and settings.aws_region == "eu-west-1"


def test_the_mlflow_account_comes_as_a_pair(tmp_path):
    home = tmp_path / "home"
    assert load_settings({"TWEETOPS_HOME": str(home), "MLFLOW_TRACKING_USERNAME": "u",
                          "MLFLOW_TRACKING_PASSWORD": "p"}).mlflow_password == "p"
    with pytest.raises(SettingsError, match="set TWEETOPS_MLFLOW_PASSWORD too"):
        load_settings({"TWEETOPS_HOME": str(home), "TWEETOPS_MLFLOW_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"})
    (home / "mlflow").mkdir(parents=True)
    (home / "mlflow" / "credentials.json").write_text('{"pipeline": {"username": "pipe", "password": "pw"}}')
    stack = load_settings({"TWEETOPS_HOME": str(home)})
    assert (stack.mlflow_username, stack.mlflow_password) == ("pipe", "pw") and "pw" not in repr(stack)


def test_settings_read_the_process_environment_like_load_settings(monkeypatch, tmp_path):
    from tweetops.core.settings import Settings

    monkeypatch.setenv("TWEETOPS_HOME", str(tmp_path))
    monkeypatch.setenv("TWEETOPS_TOPIC", "from-env")
    assert Settings() == load_settings() and Settings().topic == "from-env"
    changed = load_settings().model_copy(update={"topic": "copy"})
    assert changed.topic == "copy" and load_settings().topic == "from-env"
