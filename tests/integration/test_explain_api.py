"""Explanations through the real API process and the CLI, by a baseline trained and registered by ml.train."""
from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.conftest import TWEETOPS
from tests.integration.test_serving import TWEETS, start_api, stop_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(trained_baseline, tmp_path_factory):
    settings, trained = trained_baseline
    served = start_api(settings, tmp_path_factory.mktemp("api-explain") / "serve.log")
    served.wait_for(trained.model_version)
    yield served
    stop_api(served)


def _adds_up(explanation: dict) -> bool:
    terms = explanation["towards"] + explanation["away"]
    total = explanation["intercept"] + explanation["other"] + sum(f["contribution"] for f in terms)
    return total == pytest.approx(explanation["decision"], abs=1e-6)


def test_predict_explains_only_when_asked(api, trained_baseline):
    plain = httpx.post(f"{api.url}/predict", json={"text": TWEETS[0]}).json()
    assert "explanation" not in plain
    explained = httpx.post(f"{api.url}/predict", json={"text": TWEETS[0], "explain": True})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["label"] == plain["label"] and body["model_version"] == trained_baseline[1].model_version
    explanation = body["explanation"]
    assert explanation["method"] == "linear" and explanation["label"] == body["label"]
    assert explanation["towards"] and _adds_up(explanation)
    words = explanation["intercept"] + explanation["unattributed"] + sum(w["contribution"] for w in explanation["words"])
    assert words == pytest.approx(explanation["decision"], abs=1e-6)


def test_batch_explains_every_tweet_in_order(api):
    response = httpx.post(f"{api.url}/predict", json={"explain": True, "tweets": [{"id": str(i), "text": t}
                                                                                 for i, t in enumerate(TWEETS)]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["id"] for p in predictions] == [str(i) for i in range(len(TWEETS))]
    for prediction in predictions:
        assert prediction["explanation"]["label"] == prediction["label"] and _adds_up(prediction["explanation"])
    # Per tweet too: only the tweet that asks is explained.
    mixed = httpx.post(f"{api.url}/predict", json={"tweets": [{"text": TWEETS[0], "explain": True},
                                                              {"text": TWEETS[1]}]}).json()["predictions"]
    assert "explanation" in mixed[0] and "explanation" not in mixed[1]


def test_cli_explains_with_the_champion(trained_baseline, cli_env):
    settings, trained = trained_baseline
    done = subprocess.run([*TWEETOPS, "explain", "--json", TWEETS[0], TWEETS[1]], env=cli_env(**settings.as_env()),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["model_version"] == trained.model_version
    assert [e["label"] for e in body["explanations"]] and all(_adds_up(e) for e in body["explanations"])
    human = subprocess.run([*TWEETOPS, "explain", TWEETS[0]], env=cli_env(**settings.as_env()),
                           capture_output=True, text=True, timeout=300)
    assert human.returncode == 0 and "towards" in human.stdout and "away from" in human.stdout, human.stderr
