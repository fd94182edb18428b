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
