"""The prediction API as a real process (`tweetops serve`) against a real MLflow server, serving
models trained and registered by ml.train: predictions, the champion swap under load, every class
of bad input, and schemathesis-generated requests."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ml.contract import CHAMPION, LABELS, LINEAGE_TAGS, METRIC_TEST_MACRO_F1
from tests.conftest import free_port, unique

pytestmark = pytest.mark.integration

MAX_BATCH = 16
MAX_BODY = 20_000
TWEETS = ["@united thanks for the quick rebooking, great crew!", "My flight got cancelled again. Worst airline ever",
          "Flight 1234 departs at 5pm from gate B7", "lost my bag and nobody answers the phone",
          "the new iphone camera is amazing"]


@dataclass
class Api:
    url: str
    process: subprocess.Popen
    log: Path

    def wait_for(self, version: str | None, timeout: float = 90) -> dict:
        """Wait until /health answers for this version (None: until it answers at all)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tweetops serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                last = httpx.get(f"{self.url}/health", timeout=2)
                if version is None or last.json().get("model_version") == version:
                    return last.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the API never served version {version}; last /health: {last and last.text}\n"
                    f"{self.log.read_text()[-3000:]}")


def start_api(settings, log: Path, *flags: str) -> Api:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, **settings.as_env(), "TWEETOPS_API_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetops.cli", "serve", "--poll-seconds", "0.2",
         "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY), *flags],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    return Api(url, process, log)


def stop_api(api: Api) -> None:
    api.process.terminate()
    try:
        api.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        api.process.kill()
        api.process.wait()


@pytest.fixture(scope="module")
def api(trained_baseline, tmp_path_factory):
    settings, trained = trained_baseline
    served = start_api(settings, tmp_path_factory.mktemp("api") / "serve.log")
    served.wait_for(trained.model_version)
    yield served
    stop_api(served)


@pytest.fixture(scope="module")
def champion_model(trained_baseline):
    """The champion loaded straight from the registry: what the API must agree with."""
    import mlflow

    settings, trained = trained_baseline
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{CHAMPION}")


def test_one_tweet_gets_the_champions_label_and_probabilities(api, trained_baseline, champion_model):
    import pandas as pd

    settings, trained = trained_baseline
    response = httpx.post(f"{api.url}/predict", json={"text": TWEETS[1], "id": "t-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == settings.model_name and body["model_version"] == trained.model_version
    assert body["id"] == "t-1" and body["label"] in LABELS
    expected = champion_model.predict(pd.DataFrame({"text": [TWEETS[1]]})).iloc[0]
    assert body["label"] == expected["label"]
    for label in LABELS:
        assert body["probabilities"][label] == pytest.approx(expected[f"proba_{label}"])
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_a_batch_keeps_order_and_ids_and_agrees_with_single_requests(api, trained_baseline):
    settings, trained = trained_baseline
    batch = [{"id": f"b{i}", "text": text} for i, text in enumerate(TWEETS)]
    response = httpx.post(f"{api.url}/predict", json={"tweets": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == trained.model_version
    assert [p["id"] for p in body["predictions"]] == [t["id"] for t in batch]
    for tweet, prediction in zip(batch, body["predictions"]):
        single = httpx.post(f"{api.url}/predict", json={"text": tweet["text"]}).json()
        assert single["label"] == prediction["label"]
        assert single["probabilities"] == pytest.approx(prediction["probabilities"])


def test_model_reports_the_served_version_with_its_metrics_and_lineage(api, trained_baseline):
    settings, trained = trained_baseline
    info = httpx.get(f"{api.url}/model").json()
    assert info["name"] == settings.model_name and info["version"] == trained.model_version
    assert CHAMPION in info["aliases"] and info["run_id"] == trained.run_id
    assert info["metrics"][METRIC_TEST_MACRO_F1] == pytest.approx(trained.metrics[METRIC_TEST_MACRO_F1])
    assert set(LINEAGE_TAGS) <= set(info["lineage"])
    assert info["lineage"]["tweetops.config_name"] == "baseline"
    assert info["lineage"]["tweetops.config_hash"] == trained.config_hash
    assert info["lineage"]["tweetops.features_version"] == str(trained.features_version)
    assert info["lineage"]["tweetops.git_commit"]


def test_metrics_count_requests_and_predictions_per_label(api, trained_baseline):
    from prometheus_client.parser import text_string_to_metric_families

    settings, trained = trained_baseline

    def predictions_by_label() -> dict[str, float]:
        families = text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text)
        return {s.labels["label"]: s.value for f in families if f.name == "tweetops_predictions"
                for s in f.samples if s.name.endswith("_total") and s.labels["model_version"] == trained.model_version}

    before = predictions_by_label()
    body = httpx.post(f"{api.url}/predict", json={"tweets": [{"text": t} for t in TWEETS]}).json()
    after = predictions_by_label()
    sent = {label: sum(p["label"] == label for p in body["predictions"]) for label in LABELS}
    assert {label: after.get(label, 0) - before.get(label, 0) for label in LABELS} == sent
    text = httpx.get(f"{api.url}/metrics").text
    assert 'tweetops_api_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'tweetops_api_request_seconds_bucket{endpoint="/predict"' in text
    assert f"tweetops_model_version {float(trained.model_version)}" in text


def test_metrics_split_each_answered_request_into_stages(api):
    """tweetops_predict_stage_seconds: every stage counted once per answered /predict request, and
    the stages (consecutive) add up to no more than the request's own latency."""
    from prometheus_client.parser import text_string_to_metric_families

    from ml.serving import STAGES

    def read() -> tuple[dict, tuple[float, float]]:
        stages, request = {}, (0.0, 0.0)
        for family in text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text):
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[-1]
                if family.name == "tweetops_predict_stage_seconds" and kind in ("sum", "count"):
                    stages.setdefault(sample.labels["stage"], {})[kind] = sample.value
                if (family.name == "tweetops_api_request_seconds" and kind in ("sum", "count")
                        and sample.labels["endpoint"] == "/predict"):
                    request = (sample.value, request[1]) if kind == "sum" else (request[0], sample.value)
        return stages, request

    before, (request_sum0, request_count0) = read()
    for text in TWEETS:
        assert httpx.post(f"{api.url}/predict", json={"text": text}).status_code == 200
    assert httpx.post(f"{api.url}/predict", json={"text": ""}).status_code == 422  # not answered: no stages
    after, (request_sum1, request_count1) = read()
    assert set(after) == set(STAGES)
    for stage in STAGES:
        assert after[stage]["count"] - before.get(stage, {}).get("count", 0) == len(TWEETS)
    staged = sum(after[stage]["sum"] - before.get(stage, {}).get("sum", 0) for stage in STAGES)
    assert request_count1 - request_count0 == len(TWEETS) + 1
    assert 0 < staged <= request_sum1 - request_sum0


BAD_REQUESTS = {
    "empty text": ({"json": {"text": ""}}, 422, "text: "),
    "blank text": ({"json": {"text": " \t\n"}}, 422, "non-whitespace"),
    "missing text": ({"json": {"id": "1"}}, 422, "text: Field required"),
    "text is a number": ({"json": {"text": 3}}, 422, "text: Input should be a valid string"),
    "text is a list": ({"json": {"text": ["a"]}}, 422, "text: Input should be a valid string"),
    "id is a number": ({"json": {"text": "a", "id": 1}}, 422, "id: "),
    "unknown field": ({"json": {"text": "a", "sentiment": "positive"}}, 422, "unknown field"),
    "empty batch": ({"json": {"tweets": []}}, 422, "tweets: "),
    "batch above the maximum": ({"json": {"tweets": [{"text": "a"}] * (MAX_BATCH + 1)}}, 422,
                                f"at most {MAX_BATCH} items"),
    "empty text in a batch": ({"json": {"tweets": [{"text": "ok"}, {"text": ""}]}}, 422, "tweets.1.text"),
    "tweets is not a list": ({"json": {"tweets": {"text": "a"}}}, 422, "tweets: "),
    "body is a list": ({"json": ["a tweet"]}, 422, "expected a JSON object"),
    "no body": ({}, 422, "a JSON body is required"),
    "malformed JSON": ({"content": b'{"text": "a"', "headers": {"content-type": "application/json"}}, 422,
                       "not valid JSON"),
    "not JSON content type": ({"content": b"a tweet", "headers": {"content-type": "text/plain"}}, 422,
                              "application/json"),
    "not UTF-8": ({"content": b'{"text": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 400,
                  "UTF-8"),
    "body above the limit": ({"json": {"text": "a" * (MAX_BODY + 1)}}, 413, f"{MAX_BODY}-byte limit"),
    "streamed body above the limit": ({"content": iter([b'{"text": "', b"a" * MAX_BODY, b'"}']),
                                       "headers": {"content-type": "application/json"}}, 413, "byte limit"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(api, case):
    request, status, words = BAD_REQUESTS[case]
    response = httpx.post(f"{api.url}/predict", **request)
    assert response.status_code == status, response.text
    body = response.json()
    assert words in (body.get("message") or body["detail"]), body
    assert httpx.get(f"{api.url}/health").status_code == 200  # and the API is still serving


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_server_error_nor_schema_violation(api, mode):
    """Requests generated from the OpenAPI spec (valid ones, and invalid ones in negative mode) get
    documented answers: never a 5xx, always a documented status, content type and response schema."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict", "GET /health", "GET /model", "GET /metrics"}
    for operation in operations:
        if mode == "negative" and operation.method.upper() == "GET":
            continue  # no parameters or body: nothing invalid to generate

        @settings(max_examples=60, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def check(case):
            case.call_and_validate(base_url=api.url)

        check()


def test_champion_swap_under_concurrent_requests_fails_no_request(trained_baseline, tmp_path):
    """A model name of its own: no champion (503), then version 1 appears and is served without a
    restart, then the alias moves to version 2 while clients hammer the API: every request succeeds,
    each answer names the version that made it, and once a client sees version 2 it never sees 1.
    Last, the alias moves to a version that breaks the contract: it is refused, 2 keeps serving."""
    from ml import registry
    from ml.train import train_model

    base, _ = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("swap")))
    word_only = {"model.params.char_ngram_range": []}  # a quicker fit: this test is about serving
    api = start_api(settings, tmp_path / "serve.log")
    try:
        health = api.wait_for(None)
        assert health["status"] == "no_champion"
        assert f"no version of {settings.model_name!r} with alias 'champion'" in health["detail"]
        waiting = httpx.post(f"{api.url}/predict", json={"text": "hello"})
        assert waiting.status_code == 503 and "no model to serve" in waiting.json()["detail"]

        first = train_model("baseline", settings, overrides=word_only, log=lambda *a: None)
        assert first.alias == CHAMPION
        api.wait_for(first.model_version)
        second = train_model("baseline", settings, overrides={**word_only, "model.params.C": 1.0},
                             log=lambda *a: None)
        assert second.alias != CHAMPION  # a challenger: the API keeps serving version 1

        seen: list[list[tuple[int, str | None]]] = [[] for _ in range(4)]
        stop = threading.Event()

        def client(n: int):
            with httpx.Client(base_url=api.url, timeout=30) as http:
                while not stop.is_set():
                    body = {"text": TWEETS[n]} if n % 2 else {"tweets": [{"text": t} for t in TWEETS]}
                    try:
                        response = http.post("/predict", json=body)
                        seen[n].append((response.status_code, response.json().get("model_version")))
                    except httpx.HTTPError as exc:
                        seen[n].append((0, repr(exc)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(len(seen))]
        for thread in threads:
            thread.start()
        try:
            while sum(len(s) for s in seen) < 20:  # load is flowing before the alias moves
                time.sleep(0.05)
            registry.set_alias(CHAMPION, second.model_version, settings)
            api.wait_for(second.model_version)
            target = [len(s) + 10 for s in seen]
            while any(len(s) < t for s, t in zip(seen, target)):  # every client also sees the new version
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        broken = register_broken_version(settings, tmp_path)
        failures = refresh_failures(api)
        assert failures == 0  # no poll failed so far, not even while version 1 was being registered
        registry.set_alias(CHAMPION, broken, settings)
        wait_for(lambda: refresh_failures(api) > failures, api, "the API never refused the broken version")
        assert api.wait_for(None)["model_version"] == second.model_version  # the broken one never served
        assert httpx.post(f"{api.url}/predict", json={"text": "hello"}).json()["model_version"] == second.model_version
    finally:
        stop_api(api)

    answers = [answer for client_answers in seen for answer in client_answers]
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:5]
    assert {version for _, version in answers} == {first.model_version, second.model_version}
    for client_answers in seen:
        versions = [version for _, version in client_answers]
        switched = versions.index(second.model_version)
        assert set(versions[switched:]) == {second.model_version}, versions


BROKEN_MODEL = """
import mlflow.pyfunc
import pandas as pd


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"sentiment": ["great"] * len(model_input)})  # not ml.contract's columns


mlflow.models.set_model(Broken())
"""


def register_code_model(settings, tmp_path: Path, name: str, source: str) -> str:
    """Register a hand-made pyfunc (not from ml.train) with lineage tags as the pipeline writes
    them, so the API gets past the lineage check; returns its version."""
    import mlflow

    from ml import registry

    registry.client(settings)
    code = tmp_path / f"{name}_model.py"
    code.write_text(source)
    mlflow.set_experiment(f"{settings.model_name}-{name}")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code), pip_requirements=["mlflow"])
    lineage = {tag: "test" for tag in LINEAGE_TAGS}
    return str(mlflow.register_model(info.model_uri, settings.model_name, tags=lineage).version)


def register_broken_version(settings, tmp_path: Path) -> str:
    """A registered version that breaks ml.contract."""
    return register_code_model(settings, tmp_path, "broken", BROKEN_MODEL)


def refresh_failures(api: Api) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text)
    return next(s.value for f in families if f.name == "tweetops_model_refresh_failures"
                for s in f.samples if s.name.endswith("_total"))


def wait_for(condition, api: Api, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{message}:\n{api.log.read_text()[-3000:]}")


GATED_MODEL = """
import os
import time

import mlflow.pyfunc
import pandas as pd


class Gated(mlflow.pyfunc.PythonModel):
    \"\"\"Neutral for everything; 'explode' raises; 'gate:DIR' says it started, then waits for DIR/open.\"\"\"

    def predict(self, context, model_input, params=None):
        texts = model_input["text"].tolist()
        for text in texts:
            if text == "explode":
                raise RuntimeError("the model cannot read this tweet")
            if text.startswith("gate:"):
                folder = text.split(":", 1)[1]
                open(os.path.join(folder, "started"), "w").close()
                deadline = time.monotonic() + 120
                while not os.path.exists(os.path.join(folder, "open")) and time.monotonic() < deadline:
                    time.sleep(0.02)
        n = len(texts)
        return pd.DataFrame({"label": ["neutral"] * n, "proba_negative": [0.25] * n,
                             "proba_neutral": [0.5] * n, "proba_positive": [0.25] * n})


mlflow.models.set_model(Gated())
"""


def register_gated_champion(settings, tmp_path: Path) -> str:
    from ml import registry

    version = register_code_model(settings, tmp_path, "gated", GATED_MODEL)
    registry.client(settings).set_registered_model_alias(settings.model_name, CHAMPION, version)
    return version


def metric_value(api: Api, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text)
    return sum(s.value for f in families if f.name == name for s in f.samples
               if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_full_queue_answers_503_with_retry_after(trained_baseline, tmp_path):
    """--max-queue 1: while the model is busy, one request waits and the next is refused at once
    with 503 and Retry-After; once the model is free everything is answered."""
    base, _ = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("backpressure")))
    version = register_gated_champion(settings, tmp_path)
    gate = tmp_path / "gate"
    gate.mkdir()
    api = start_api(settings, tmp_path / "serve.log", "--max-queue", "1")
    answers: dict[str, httpx.Response] = {}

    def send(name: str, text: str) -> None:
        answers[name] = httpx.post(f"{api.url}/predict", json={"text": text}, timeout=120)

    try:
        api.wait_for(version)
        busy = threading.Thread(target=send, args=("busy", f"gate:{gate}"))
        busy.start()
        wait_for(lambda: (gate / "started").exists(), api, "the model never started the gated request")
        queued = threading.Thread(target=send, args=("queued", "a tweet that waits its turn"))
        queued.start()
        wait_for(lambda: _queue_holds_one(api), api, "the second request never queued")
        refused = httpx.post(f"{api.url}/predict", json={"text": "one too many"}, timeout=30)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "1 requests already wait for the model (--max-queue 1)" in refused.json()["detail"]
        (gate / "open").touch()
        busy.join(60)
        queued.join(60)
        assert answers["busy"].status_code == 200 and answers["queued"].status_code == 200
        assert httpx.post(f"{api.url}/predict", json={"text": "room again"}).status_code == 200
        assert metric_value(api, "tweetops_predict_queue_full") == 1
    finally:
        (gate / "open").touch()
        stop_api(api)


def test_a_model_error_is_a_json_500_naming_the_version_and_counted(trained_baseline, tmp_path):
    """A request the model fails on: a JSON 500 naming the served version (no traceback), counted
    in /metrics; the API keeps serving."""
    base, _ = trained_baseline
    settings = base.model_copy(update=dict(model_name=unique("model-error")))
    version = register_gated_champion(settings, tmp_path)
    api = start_api(settings, tmp_path / "serve.log")
    try:
        api.wait_for(version)
        failed = httpx.post(f"{api.url}/predict", json={"text": "explode"})
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/json"
        body = failed.json()
        assert body["model_name"] == settings.model_name and body["model_version"] == version
        assert f"version {version} failed on this request: RuntimeError: the model cannot read this tweet" \
            in body["detail"] and "Traceback" not in failed.text
        assert metric_value(api, "tweetops_model_errors", model_version=version) == 1
        assert httpx.post(f"{api.url}/predict", json={"text": "still serving"}).status_code == 200
    finally:
        stop_api(api)


def _queue_holds_one(api: Api) -> bool:
    """The API's queue gauge: one request waits for the model."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text)
    return any(s.value == 1 for f in families if f.name == "tweetops_predict_queue_waiting" for s in f.samples)
