"""Secure-by-default pieces that need no service: the API's bearer token, the Kafka client's SASL
settings, secrets kept out of repr, the lineage check, and Airflow without its log servers."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from ml.api_auth import BearerTokenAuth, protect, token_matches
from ml.contract import LINEAGE_TAGS
from ml.registry import UntrustedModelError, require_lineage
from tweetops.core.settings import SettingsError, load_settings


def _app(token: str | None):
    from fastapi import FastAPI

    app = FastAPI()
    for path in ("/health", "/model", "/metrics"):
        app.get(path)(lambda: {"ok": True})
    app.post("/predict")(lambda: {"ok": True})
    protect(app, token)
    return app


def _call(app, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.request(method, path, headers=headers or {})
    return asyncio.run(go())


@pytest.mark.parametrize("method,path", [("POST", "/predict"), ("GET", "/model"), ("GET", "/metrics")])
def test_a_configured_token_is_required_everywhere_but_health(method, path):
    app = _app("t0ken")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer t0ken2"},
                    {"Authorization": "t0ken"}, {"Authorization": "Basic t0ken"}, {"Authorization": "Bearer "}):
        response = _call(app, method, path, headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer" and "TWEETOPS_API_TOKEN" in response.json()["detail"]
    assert _call(app, method, path, {"Authorization": "Bearer t0ken"}).status_code == 200
    assert _call(app, method, path, {"Authorization": "bearer t0ken"}).status_code == 200
    assert _call(app, "GET", "/health").status_code == 200


def test_without_a_token_the_api_is_open():
    app = _app(None)
    assert not any(m.cls is BearerTokenAuth for m in app.user_middleware)
    assert _call(app, "POST", "/predict").status_code == 200


def test_token_comparison_is_constant_time(monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert token_matches(b"Bearer abc", "abc") and not token_matches(b"Bearer abd", "abc")
    assert calls == [(b"abc", b"abc"), (b"abd", b"abc")]
    assert not token_matches(None, "abc")


def test_kafka_clients_get_sasl_settings():
    from confluent_kafka import Consumer, Producer

    from streaming.consumer import consumer_config
    from streaming.produce import producer_config

    assert load_settings({}).kafka_client_config() == {}
    settings = load_settings({"TWEETOPS_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
                              "TWEETOPS_KAFKA_SASL_USERNAME": "producer", "TWEETOPS_KAFKA_SASL_PASSWORD": "pw"})
    expected = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "producer", "sasl.password": "pw"}
    for config in (producer_config(settings), consumer_config(settings, "group")):
        assert expected.items() <= config.items()
    # librdkafka accepts them (it refuses unknown keys and mechanisms it was built without).
    Producer(producer_config(settings)).flush(0)
    Consumer(consumer_config(settings, "group")).close()


def test_bad_kafka_security_settings_name_the_variable():
    with pytest.raises(SettingsError) as error:
        load_settings({"TWEETOPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TWEETOPS_KAFKA_SASL_MECHANISM": "GSSAPI"})
    message = str(error.value)
    assert "TWEETOPS_KAFKA_SASL_MECHANISM='GSSAPI'" in message and "TWEETOPS_KAFKA_SASL_USERNAME" in message
    with pytest.raises(SettingsError, match="TWEETOPS_MLFLOW_PASSWORD"):
        load_settings({"TWEETOPS_MLFLOW_USERNAME": "pipeline"})


def test_secrets_stay_out_of_repr_but_reach_child_processes():
    settings = load_settings({"TWEETOPS_MLFLOW_USERNAME": "pipeline", "TWEETOPS_MLFLOW_PASSWORD": "mlflow-pw",
                              "TWEETOPS_API_TOKEN": "api-token", "AWS_ACCESS_KEY_ID": "key",
                              "AWS_SECRET_ACCESS_KEY": "s3-secret", "TWEETOPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                              "TWEETOPS_KAFKA_SASL_USERNAME": "u", "TWEETOPS_KAFKA_SASL_PASSWORD": "kafka-pw"})
    text = repr(settings)
    for secret in ("mlflow-pw", "api-token", "s3-secret", "kafka-pw"):
        assert secret not in text
    assert load_settings(settings.as_env()) == settings


def test_mlflow_credentials_fall_back_to_mlflow_variables_then_the_stack_file(tmp_path):
    from tweetops.app.mlflow_auth import mlflow_accounts

    assert load_settings({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}).mlflow_username == "u"
    home = {"TWEETOPS_HOME": str(tmp_path)}
    assert load_settings(home).mlflow_username is None
    accounts = mlflow_accounts(load_settings(home))
    assert (tmp_path / "mlflow" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert len({accounts[a]["password"] for a in ("admin", "pipeline", "reader")}) == 3
    settings = load_settings(home)
    assert (settings.mlflow_username, settings.mlflow_password) == ("pipeline", accounts["pipeline"]["password"])
    assert mlflow_accounts(settings) == accounts  # generated once, then kept


def test_a_version_without_lineage_tags_is_refused(caplog):
    tagged = SimpleNamespace(name="m", version="3", run_id="r", tags={tag: "x" for tag in LINEAGE_TAGS})
    require_lineage(tagged)
    for tags in ({}, {**tagged.tags, LINEAGE_TAGS[0]: ""}):
        with pytest.raises(UntrustedModelError, match="refusing m version 3: it has no TweetOps lineage tags"):
            require_lineage(SimpleNamespace(name="m", version="3", run_id="r", tags=tags))
    assert "refusing m version 3" in caplog.text


def test_airflow_standalone_starts_the_scheduler_and_triggerer_without_log_servers():
    from tweetops.app.airflow_standalone import _SubCommandWithoutLogServer

    def command(*argv):
        return _SubCommandWithoutLogServer(None, argv[0], list(argv), {}).command

    assert command("scheduler") == ["scheduler", "--skip-serve-logs"]
    assert command("triggerer") == ["triggerer", "--skip-serve-logs"]
    assert command("api-server") == ["api-server"] and command("dag-processor") == ["dag-processor"]


def test_the_stack_passes_each_component_its_own_mlflow_account(tmp_path):
    from tweetops.app import stack
    from tweetops.app.mlflow_auth import mlflow_accounts

    settings = load_settings({"TWEETOPS_HOME": str(tmp_path)})
    accounts = mlflow_accounts(settings)
    by_name = {s.name: s for s in stack.services(settings)}
    assert "--app-name" in by_name["mlflow"].argv and "basic-auth" in by_name["mlflow"].argv
    assert by_name["mlflow"].env["MLFLOW_AUTH_ADMIN_PASSWORD"] == accounts["admin"]["password"]
    assert by_name["airflow"].env["TWEETOPS_MLFLOW_USERNAME"] == "pipeline"
    assert by_name["api"].env["TWEETOPS_MLFLOW_USERNAME"] == "reader"
    assert by_name["api"].env["TWEETOPS_MLFLOW_PASSWORD"] == accounts["reader"]["password"]
    assert by_name["airflow"].env["SPARK_LOCAL_IP"] == "127.0.0.1"
    ini = tmp_path / "mlflow" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o777 == 0o600
    # Without the credential cache every request pays a PBKDF2 check (about 1.4 s measured under load).
    assert "auth_cache_ttl_seconds = 60" in ini.read_text() and "default_permission = READ" in ini.read_text()
