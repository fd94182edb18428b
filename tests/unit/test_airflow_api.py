"""The Airflow REST client against a real HTTP server on loopback that answers like Airflow's."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tweetops.orchestration.airflow_api import AirflowAPI, AirflowError
from tweetops.core.settings import load_settings

LOCKED = b'{"detail":"Database is locked. Backfill creation is not supported on SQLite under concurrent access."}'


@pytest.fixture
def airflow(monkeypatch):
    """A server whose /api/v2/backfills answers 503 `locked` a set number of times, then 200."""
    state = {"locked": 0, "posts": 0, "patches": []}

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["patches"].append((self.path, self.headers["Authorization"], body))
            return self._answer(200, json.dumps({"note": body["note"]}).encode())

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/auth/token":
                return self._answer(201, b'{"access_token": "t"}')
            state["posts"] += 1
            if state["posts"] <= state["locked"]:
                return self._answer(503, LOCKED)
            return self._answer(200, json.dumps({"id": 7, "dag_id": "d"}).encode())

        def _answer(self, code, body):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("tweetops.orchestration.airflow_api.time.sleep", lambda seconds: None)
    settings = load_settings({"TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{server.server_address[1]}"})
    state["url"] = settings.airflow_url
    yield AirflowAPI(settings, password="p"), state
    server.shutdown()


DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_backfill_waits_out_a_locked_sqlite_database(airflow):
    api, state = airflow
    state["locked"] = 3
    assert api.backfill("d", DAY, DAY)["id"] == 7
    assert state["posts"] == 4


def test_backfill_gives_up_with_the_servers_reason(airflow):
    api, state = airflow
    state["locked"] = 100
    with pytest.raises(AirflowError, match="Database is locked"):
        api.backfill("d", DAY, DAY)


def test_a_features_or_scoring_run_notes_what_it_covered(airflow, monkeypatch, caplog):
    """tweetops.orchestration.run_report.describe_run: one log line, and the run's note through the REST API with
    the process's Airflow account; a note that cannot be set never fails the run."""
    import logging
    from types import SimpleNamespace

    from tweetops.orchestration.run_report import describe_run

    _, state = airflow
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", state["url"])
    monkeypatch.setenv("TWEETOPS_AIRFLOW_USERNAME", "consumer")
    monkeypatch.setenv("TWEETOPS_AIRFLOW_PASSWORD", "c")
    line = "gold_predictions silver v3..v5: 120 new rows appended to 2024-03-01"
    context = {"dag_run": SimpleNamespace(dag_id="tweetops_scoring"), "run_id": "asset_triggered__2024-03-01T00:00:00+00:00"}
    with caplog.at_level(logging.INFO, logger="tweetops.orchestration.run_report"):
        describe_run(context, line)
    assert line in caplog.text
    [(path, authorization, body)] = state["patches"]
    assert path == "/api/v2/dags/tweetops_scoring/dagRuns/asset_triggered__2024-03-01T00%3A00%3A00%2B00%3A00?update_mask=note"
    assert authorization == "Bearer t" and body == {"note": line}

    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "http://127.0.0.1:1")   # Airflow unreachable: logged, no error
    describe_run(context, line)
