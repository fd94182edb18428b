"""`tweetops stack up|status|down` on free ports: every service answers its health check, a second
`up` is harmless, and `down` leaves no process behind."""
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TWEETOPS, free_port

pytestmark = pytest.mark.integration


def _process_groups_alive(pgids: set[int]) -> set[int]:
    alive = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            alive.add(int(fields[2]))
    return alive


def test_stack_lifecycle(tmp_path):
    env = {
        **os.environ,
        "TWEETOPS_HOME": str(tmp_path / "home"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "TWEETOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
        "TWEETOPS_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/services/test",
    }
    run = lambda *args: subprocess.run([*TWEETOPS, "stack", *args], env=env, capture_output=True, text=True,
                                       timeout=400)
    try:
        up = run("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert env["TWEETOPS_AIRFLOW_URL"] in up.stdout and "password" in up.stdout

        status = json.loads(run("status", "--json").stdout)
        assert {row["service"]: row["state"] for row in status} == {
            "broker": "healthy", "slack": "healthy", "mlflow": "healthy", "airflow": "healthy"}
        pids = {row["service"]: row["pid"] for row in status}

        # Each service really answers.
        from confluent_kafka.admin import AdminClient
        topics = AdminClient({"bootstrap.servers": env["TWEETOPS_KAFKA_BOOTSTRAP"]}).list_topics(timeout=10).topics
        assert "tweets" in topics
        with urllib.request.urlopen(env["TWEETOPS_MLFLOW_TRACKING_URI"] + "/health", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(env["TWEETOPS_AIRFLOW_URL"] + "/api/v2/monitor/health", timeout=5) as r:
            assert json.load(r)["scheduler"]["status"] == "healthy"
        request = urllib.request.Request(env["TWEETOPS_SLACK_WEBHOOK_URL"], data=b'{"text": "hi"}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.read() == b"ok"

        again = run("up")
        assert again.returncode == 0, again.stderr
        assert {row["service"]: row["pid"] for row in json.loads(run("status", "--json").stdout)} == pids
    finally:
        down = run("down")
    assert down.returncode == 0
    assert _process_groups_alive(set(pids.values())) == set()
    assert all(row["state"] == "stopped" for row in json.loads(run("status", "--json").stdout))
