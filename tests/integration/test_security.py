"""Secure by default, with real processes: the embedded stack listens on loopback only; MLflow's
authentication lets only the pipeline account register versions and move aliases; the API and
scoring refuse a version the pipeline did not register; the API's bearer token."""
from __future__ import annotations

import os
import subprocess

import httpx
import psutil
import pytest

from ml.contract import CHAMPION, LINEAGE_TAGS
from tests.conftest import TWEETOPS, free_port, unique
from tests.integration.test_serving import start_api, stop_api

pytestmark = pytest.mark.integration


# --- the embedded stack binds 127.0.0.1 only ------------------------------------------------------

def _listening(pgids: set[int]) -> list[tuple[str, str, int, int]]:
    """(process name, ip, port, pid) of every listening TCP socket of these process groups."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if os.getpgid(process.pid) not in pgids:
                continue
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((process.info["name"], conn.laddr.ip, conn.laddr.port, process.pid))
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def test_the_embedded_stack_listens_on_loopback_only(tmp_path):
    """Every service `stack up` starts, Airflow's components included, listens on 127.0.0.1: before,
    the scheduler's and triggerer's log servers (8793, 8794) listened on every interface."""
    from tweetops.app import stack
    from tweetops.core.settings import load_settings

    env = {**os.environ,
           "TWEETOPS_HOME": str(tmp_path / "home"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "TWEETOPS_LAKEHOUSE_URI": str(tmp_path / "lakehouse"),
           "TWEETOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
           "TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
           "TWEETOPS_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/services/test",
           "TWEETOPS_API_URL": f"http://127.0.0.1:{free_port()}",
           "TWEETOPS_INGEST_METRICS_PORT": str(free_port())}
    for name in ("TWEETOPS_MLFLOW_USERNAME", "TWEETOPS_MLFLOW_PASSWORD", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)  # the stack generates its own accounts
    settings = load_settings(env)
    try:
        up = subprocess.run([*TWEETOPS, "stack", "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        admin = stack.mlflow_accounts(settings)["admin"]["password"]
        assert f"user admin, password {admin}" in up.stdout  # printed like Airflow's
        _wait_for_triggerer(settings)
        pgids = {stack.running_pid(settings, s.name) for s in stack.services(settings)} - {None}
        assert len(pgids) == 6, "broker, slack, mlflow, airflow, ingest and api all run"
        listening = _listening(pgids)
        ports = {port for _, _, port, _ in listening}
        for url in (settings.mlflow_tracking_uri, settings.airflow_url, settings.api_url,
                    f"http://127.0.0.1:{env['TWEETOPS_INGEST_METRICS_PORT']}"):
            assert int(url.rsplit(":", 1)[1]) in ports, f"nothing listens for {url}: {listening}"
        exposed = [row for row in listening if row[1] not in ("127.0.0.1", "::1")]
        assert not exposed, f"listening beyond loopback: {exposed}"
    finally:
        down = subprocess.run([*TWEETOPS, "stack", "down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr


def _wait_for_triggerer(settings, timeout: float = 120) -> None:
    """The triggerer starts last; its log server used to start with it."""
    import json
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=3) as response:
                if json.load(response).get("triggerer", {}).get("status") == "healthy":
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail("Airflow's triggerer never reported healthy")


# --- MLflow: who may register and move aliases ----------------------------------------------------

def _signed_in(account: dict | None):
    """Environment for an MLflow client as this account (None: anonymous)."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "TWEETOPS_MLFLOW_USERNAME", "TWEETOPS_MLFLOW_PASSWORD")}
    if account:
        env.update(MLFLOW_TRACKING_USERNAME=account["username"], MLFLOW_TRACKING_PASSWORD=account["password"])
    return env


ATTEMPT = """
import json, os, re, sys
import mlflow
from mlflow import MlflowClient
uri, name, source, version = sys.argv[1:5]
mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
client = MlflowClient(uri, uri)
outcome = {}
for what, attempt in [("read", lambda: client.get_model_version_by_alias(name, "champion")),
                      ("register", lambda: mlflow.register_model(source, name)),
                      ("alias", lambda: client.set_registered_model_alias(name, "champion", version)),
                      ("delete_alias", lambda: client.delete_registered_model_alias(name, "champion"))]:
    try:
        attempt()
        outcome[what] = 200
    except Exception as exc:
        status = re.search(r"error code (\d{3})", str(exc))  # 401/403 answers are not MLflow JSON errors
        outcome[what] = int(status.group(1)) if status else exc.get_http_status_code()
print(json.dumps(outcome))
"""


def _attempt(account, settings, source: str, version: str) -> dict:
    import json
    import sys

    done = subprocess.run([sys.executable, "-c", ATTEMPT, settings.mlflow_tracking_uri, settings.model_name, source,
                           version], env=_signed_in(account), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_only_the_pipeline_account_registers_versions_and_moves_aliases(trained_baseline, mlflow_accounts):
    from ml import model_access, registry

    settings, trained = trained_baseline  # trained and registered with the pipeline account
    version = model_access.resolve(settings, trained.model_version)
    source = version.source
    anonymous = _attempt(None, settings, source, trained.model_version)
    assert set(anonymous.values()) == {401}, anonymous
    reader = _attempt(mlflow_accounts["reader"], settings, source, trained.model_version)
    assert reader["read"] == 200, "the read-only account (the API's) reads the registry"
    assert reader["register"] == reader["alias"] == reader["delete_alias"] == 403, reader
    # Nothing changed: still one version, still the pipeline's champion.
    assert registry.champion(settings).version == trained.model_version
    assert [v.version for v in registry.client(settings).search_model_versions(f"name='{settings.model_name}'")] \
        == [trained.model_version]


# --- the API and scoring load only the pipeline's versions ----------------------------------------

def _register_without_lineage(settings, source: str) -> str:
    """A version registered by hand (no `tweetops train`): no lineage tags."""
    from ml import registry

    import mlflow

    client = registry.client(settings)
    version = mlflow.register_model(source, settings.model_name)
    client.set_registered_model_alias(settings.model_name, CHAMPION, version.version)
    return str(version.version)


def test_the_api_and_scoring_refuse_a_version_without_lineage_tags(trained_baseline, mlflow_accounts, tmp_path):
    from ml import model_access, registry
    from ml.registry import UntrustedModelError

    base, trained = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("untrusted")))
    source = model_access.resolve(base, trained.model_version).source
    registry.client(settings).create_registered_model(settings.model_name)
    forged = _register_without_lineage(settings, source)

    with pytest.raises(UntrustedModelError, match=f"version {forged}: it has no TweetOps lineage tags"):
        model_access.load(settings, model_access.resolve(settings))  # what scoring does first

    reader = mlflow_accounts["reader"]
    api = start_api(settings.model_copy(update=dict(mlflow_username=reader["username"], mlflow_password=reader["password"])),
                    tmp_path / "serve.log")
    try:
        health = api.wait_for(None)
        assert health["status"] == "no_champion" and health["model_version"] is None
        assert "no TweetOps lineage tags" in health["detail"]
        assert httpx.post(f"{api.url}/predict", json={"text": "hello"}).status_code == 503
    finally:
        stop_api(api)
    log = api.log.read_text()
    assert f"refusing {settings.model_name} version {forged}: it has no TweetOps lineage tags" in log
    assert all(tag in log for tag in LINEAGE_TAGS)


# --- the API's bearer token -----------------------------------------------------------------------

def test_the_api_with_a_token_refuses_requests_without_it(trained_baseline, mlflow_accounts, tmp_path):
    settings, trained = trained_baseline
    reader, token = mlflow_accounts["reader"], "s3cr3t-" + unique("token")
    api = start_api(settings.model_copy(update=dict(api_token=token, mlflow_username=reader["username"],
                            mlflow_password=reader["password"])), tmp_path / "serve.log")
    try:
        assert api.wait_for(trained.model_version)["status"] == "ok"  # /health stays open for probes
        requests = [("POST", "/predict", {"text": "my flight is delayed again"}), ("GET", "/model", None),
                    ("GET", "/metrics", None)]
        for method, path, body in requests:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token},
                            {"Authorization": f"Basic {token}"}):
                refused = httpx.request(method, api.url + path, json=body, headers=headers)
                assert refused.status_code == 401, (path, headers, refused.text)
                assert refused.headers["www-authenticate"] == "Bearer"
            accepted = httpx.request(method, api.url + path, json=body, headers={"Authorization": f"Bearer {token}"})
            assert accepted.status_code == 200, (path, accepted.text)
        assert httpx.get(f"{api.url}/openapi.json").status_code == 200
    finally:
        stop_api(api)
    assert "refused POST /predict from 127.0.0.1: no bearer token" in api.log.read_text()
