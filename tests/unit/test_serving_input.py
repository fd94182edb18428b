"""The API's input checks, without a model: every class of bad input gets its 4xx and a message
naming the field; valid input reaches the model (503 here, because no champion is loaded)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ml.serving import ServingConfig, create_app


@pytest.fixture(scope="module")
def client():
    # No `with`: the lifespan (and its registry poller) never starts, so no champion is ever loaded.
    app = create_app(config=ServingConfig(max_batch=3, max_body_bytes=4000, max_text_chars=500))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("body, where, words", [
    ({"text": ""}, "text", "at least 1 character"),
    ({"text": "  \n "}, "text", "non-whitespace"),
    ({}, "text", "Field required"),
    ({"text": 42}, "text", "valid string"),
    ({"text": None}, "text", "valid string"),
    ({"text": "x" * 501}, "text", "at most 500"),
    ({"text": "ok", "id": 7}, "id", "valid string"),
    ({"text": "ok", "lang": "en"}, "lang", "unknown field"),
    ({"tweets": []}, "tweets", "at least 1 item"),
    ({"tweets": [{"text": "a"}] * 4}, "tweets", "at most 3 items"),
    ({"tweets": [{"text": "a"}, {"txt": "b"}]}, "tweets.1.text", "Field required"),
    ({"tweets": "a"}, "tweets", "valid list"),
    ({"text": "a", "tweets": [{"text": "b"}]}, "text", "unknown field"),
    (["a tweet"], "body", "expected a JSON object"),
    ("a tweet", "body", "expected a JSON object"),
])
def test_bad_input_is_a_422_naming_the_field(client, body, where, words):
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"{where}: ") and words in message, message


def test_malformed_json_and_wrong_content_type_are_4xx(client):
    broken = client.post("/predict", content=b'{"text": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["message"]
    plain = client.post("/predict", content=b'{"text": "hi"}', headers={"content-type": "text/plain"})
    assert plain.status_code == 422 and "application/json" in plain.json()["message"]
    assert client.post("/predict", content=b'{"text": "\xff"}',
                       headers={"content-type": "application/json"}).status_code == 400


def test_a_body_above_the_limit_is_a_413_declared_or_streamed(client):
    declared = client.post("/predict", json={"text": "x" * 5000})
    assert declared.status_code == 413 and "4000-byte limit" in declared.json()["detail"]
    streamed = client.post("/predict", content=(b"x" * 1000 for _ in range(5)),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_valid_input_without_a_champion_is_a_503_that_says_why(client):
    for body in ({"text": "great flight"}, {"tweets": [{"id": "1", "text": "great flight"}]}):
        response = client.post("/predict", json=body)
        assert response.status_code == 503 and "no model to serve" in response.json()["detail"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "no_champion"
    assert client.get("/model").status_code == 503


def test_metrics_count_requests_by_route_and_status(client):
    client.post("/predict", json={"text": ""})
    text = client.get("/metrics").text
    assert 'tweetops_api_requests_total{endpoint="/predict",method="POST",status="422"}' in text
    assert "tweetops_api_request_seconds_bucket" in text


def test_openapi_documents_both_request_shapes_and_the_limits(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in body["schema"]["oneOf"]} == {"Tweet", "TweetBatch"}
    assert spec["components"]["schemas"]["TweetBatch"]["properties"]["tweets"]["maxItems"] == 3
    assert {"413", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
