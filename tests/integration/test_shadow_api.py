"""Shadow and canary serving through the real API process, with two versions trained by ml.train
on real corpus tweets: the baseline as champion and a word-only variant as challenger."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from deltalake import DeltaTable

from ml.contract import CHALLENGER, CHAMPION
from tests.conftest import free_port, unique
from tests.integration.drift_data import FAST_CONFIG
from tests.integration.test_serving import Api, stop_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_versions(mlflow_server, tmp_path_factory):
    from ml import registry
    from ml.features import seed_features_from_corpus
    from ml.train import train_model
    from tweetops.core.settings import load_settings

    home = tmp_path_factory.mktemp("shadow")
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(home), "TWEETOPS_LAKEHOUSE_URI": str(home / "lake"),
                              "TWEETOPS_MLFLOW_TRACKING_URI": mlflow_server, "TWEETOPS_MODEL_NAME": unique("shadow")})
    seed_features_from_corpus(settings, limit=2000)
    champion = train_model("baseline", settings, log=lambda *a: None)
    challenger = train_model(str(FAST_CONFIG), settings, log=lambda *a: None)
    assert (champion.alias, challenger.alias) == (CHAMPION, CHALLENGER)
    assert registry.challenger(settings).version == challenger.model_version
    return settings, champion.model_version, challenger.model_version


def start(settings, tmp_path, policy: str) -> Api:
    (tmp_path / "rollout.yaml").write_text(policy)
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetops.cli", "serve", "--poll-seconds", "0.5", "--rollout", str(tmp_path / "rollout.yaml")],
        env={**os.environ, **settings.as_env(), "TWEETOPS_API_URL": url},
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    return Api(url, process, log)


def corpus_tweets(count: int) -> list[dict]:
    import random

    from ml.contract import LABELS
    from tweetops.core.corpus import load_corpus

    labelled = [t for t in load_corpus() if t.get("label") in LABELS]
    return [{"id": f"t{i}", "text": t["text"], "label": t["label"]}
            for i, t in enumerate(random.Random(3).sample(labelled, count))]


def shadow_rows(settings) -> list[dict]:
    return DeltaTable(f"{settings.lakehouse_uri}/gold_shadow_predictions").to_pyarrow_table().to_pylist()


def test_shadow_scores_every_request_with_both_and_answers_with_the_champion(two_versions, tmp_path):
    settings, champion, challenger = two_versions
    api = start(settings, tmp_path, "shadow: true\ncanary_share: 0\nflush_seconds: 0.5\n")
    try:
        api.wait_for(champion)
        tweets = corpus_tweets(60)
        answers = {}
        for tweet in tweets[:40]:
            body = httpx.post(f"{api.url}/predict", json=tweet, timeout=30).json()
            assert body["model_version"] == champion, body
            answers[tweet["id"]] = body["label"]
        batch = httpx.post(f"{api.url}/predict", json={"tweets": tweets[40:]}, timeout=30).json()
        assert batch["model_version"] == champion
        answers.update({p["id"]: p["label"] for p in batch["predictions"]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_safe_rows(settings)) < len(tweets):
            time.sleep(0.3)
        metrics = httpx.get(f"{api.url}/metrics").text
    finally:
        stop_api(api)
    rows = {r["id"]: r for r in shadow_rows(settings)}
    assert set(rows) == set(answers)  # every tweet scored by both
    for tweet_id, row in rows.items():
        assert (row["champion_version"], row["challenger_version"], row["answered_by"]) == (champion, challenger, champion)
        assert row["route"] == "champion" and row["champion_label"] == answers[tweet_id]
        assert row["agree"] == (row["champion_label"] == row["challenger_label"])
        assert row["label"] is not None
    agreement = sum(r["agree"] for r in rows.values()) / len(rows)
    [gauge] = [float(line.split()[1]) for line in metrics.splitlines() if line.startswith("tweetops_shadow_agreement ")]
    assert gauge == pytest.approx(agreement)
    assert f'tweetops_live_labelled_total{{correct="true",model_version="{challenger}",role="challenger"}}' in metrics
    # Written in batches by the flusher, not one commit per request.
    history = DeltaTable(f"{settings.lakehouse_uri}/gold_shadow_predictions").history()
    assert len(history) < len(tweets) / 4


def _safe_rows(settings) -> list[dict]:
    try:
        return shadow_rows(settings)
    except Exception:
        return []


def test_canary_answers_the_configured_share_with_the_challenger(two_versions, tmp_path):
    settings, champion, challenger = two_versions
    api = start(settings, tmp_path, "shadow: false\ncanary_share: 0.2\nseed: 11\nflush_seconds: 0.5\n")
    try:
        api.wait_for(champion)
        deadline = time.monotonic() + 30  # the challenger loads after the champion
        while f'route="canary"' not in httpx.get(f"{api.url}/metrics").text and time.monotonic() < deadline:
            httpx.post(f"{api.url}/predict", json={"text": "warm up"}, timeout=30)
        versions = [httpx.post(f"{api.url}/predict", json={"text": t["text"]}, timeout=30).json()["model_version"]
                    for t in corpus_tweets(400)]
    finally:
        stop_api(api)
    assert set(versions) == {champion, challenger}
    share = versions.count(challenger) / len(versions)
    assert 0.14 <= share <= 0.26, share  # binomial sd at 400 draws: 0.02
    canary_rows = [r for r in shadow_rows(settings) if r["route"] == "canary"]
    assert canary_rows and all(r["answered_by"] == challenger for r in canary_rows)
