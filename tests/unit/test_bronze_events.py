"""The consumer's bronze_tweets asset events against a real HTTP server on loopback that answers like
Airflow's REST API: throttled, retried after a failure, naming the bronze versions they cover."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tweetops.orchestration.bronze_events import BronzeNotifier
from tweetops.orchestration.airflow_api import AirflowAPI
from tweetops.core.settings import load_settings

ASSET_URI = "tweetops://lakehouse/bronze_tweets"


@pytest.fixture
def airflow():
    """Answers the asset lookup; POST /api/v2/assets/events fails `failing` times with 503, then records."""
    state = {"failing": 0, "events": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            assets = [{"id": 3, "uri": ASSET_URI + "_other"}, {"id": 4, "uri": ASSET_URI}]
            return self._answer(200, json.dumps({"assets": assets, "total_entries": 2}).encode())

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/auth/token":
                return self._answer(201, b'{"access_token": "t"}')
            if state["failing"]:
                state["failing"] -= 1
                return self._answer(503, b'{"detail": "busy"}')
            state["events"].append(body)
            return self._answer(200, json.dumps({"id": len(state["events"]), **body}).encode())

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
    settings = load_settings({"TWEETOPS_AIRFLOW_URL": f"http://127.0.0.1:{server.server_address[1]}"})
    yield settings, AirflowAPI(settings, password="p"), state
    server.shutdown()


def _settle(notifier: BronzeNotifier) -> None:
    if notifier._thread is not None:
        notifier._thread.join(10)


def test_a_failed_event_is_posted_again_with_the_versions_landed_since(airflow):
    settings, api, state = airflow
    state["failing"] = 1
    notifier = BronzeNotifier(settings, interval=0, api=api)
    notifier.landed(7)
    _settle(notifier)
    assert state["events"] == []                       # Airflow was busy: nothing lost, retried below
    notifier.landed(8)
    _settle(notifier)
    assert state["events"] == [{"asset_id": 4, "extra": {"bronze_versions": "7..8", "bronze_from": 7, "bronze_to": 8}}]
    notifier.tick()                                    # nothing new: no event
    _settle(notifier)
    assert len(state["events"]) == 1


def test_events_are_throttled_and_the_last_batch_is_posted_on_close(airflow):
    settings, api, state = airflow
    notifier = BronzeNotifier(settings, interval=3600, api=api)
    notifier.landed(1)
    _settle(notifier)
    for version in (2, 3, 4):                          # within the interval: no event each
        notifier.landed(version)
        _settle(notifier)
    assert [e["extra"]["bronze_versions"] for e in state["events"]] == ["1..1"]
    notifier.close()
    assert [e["extra"]["bronze_versions"] for e in state["events"]] == ["1..1", "2..4"]
