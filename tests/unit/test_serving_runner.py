"""The model runner: requests that arrive while the model is busy share one model call, each gets
its own answers back, and one request's failure never fails the others."""
from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pandas as pd
import pytest

from ml.model_access import LoadedModel, NoChampionError
from ml.serving import ModelFailed, ModelRunner, QueueFull


class SlowModel:
    """Labels 'negative' texts negative and the rest positive; the first call waits to be released."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.busy = threading.Event()
        self.release = threading.Event()

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        texts = frame["text"].tolist()
        if any(t == "poison" for t in texts):
            raise RuntimeError("cannot read poison")
        if not self.calls:
            self.busy.set()
            self.release.wait(5)
        self.calls.append(texts)
        negative = [t.startswith("negative") for t in texts]
        return pd.DataFrame({"label": ["negative" if n else "positive" for n in negative],
                             "proba_negative": [0.9 if n else 0.1 for n in negative],
                             "proba_neutral": [0.0] * len(texts),
                             "proba_positive": [0.1 if n else 0.9 for n in negative]})


def runner_with(model) -> ModelRunner:
    served = LoadedModel("m", "7", model, {}) if model else None
    return ModelRunner(SimpleNamespace(current=served, last_problem="no champion yet"), max_tweets=100)


def test_requests_waiting_for_a_busy_model_share_one_call_and_get_their_own_answers():
    model = SlowModel()
    runner = runner_with(model)

    async def scenario():
        first = asyncio.create_task(runner.predict(["negative first"]))
        assert await asyncio.to_thread(model.busy.wait, 5)  # the model is busy with the first request
        waiting = [asyncio.create_task(runner.predict([f"negative {i}", f"positive {i}"])) for i in range(5)]
        await asyncio.sleep(0.05)  # all five are queued
        model.release.set()
        return await first, await asyncio.gather(*waiting)

    try:
        first, waiting = asyncio.run(scenario())
    finally:
        runner.stop()
    assert [len(call) for call in model.calls] == [1, 10]  # five requests, one model call
    assert first[0].version == "7" and first[1] == ["negative"]
    for served, labels, probabilities in waiting:
        assert labels == ["negative", "positive"] and probabilities[:, 0].tolist() == [0.9, 0.1]


def test_a_failing_request_does_not_fail_the_requests_batched_with_it():
    model = SlowModel()
    model.release.set()
    runner = runner_with(model)

    async def scenario():
        return await asyncio.gather(runner.predict(["positive a"]), runner.predict(["poison"]),
                                    runner.predict(["negative b"]), return_exceptions=True)

    try:
        good, bad, other = asyncio.run(scenario())
    finally:
        runner.stop()
    assert good[1] == ["positive"] and other[1] == ["negative"]
    assert isinstance(bad, ModelFailed) and "m version 7 failed on this request: RuntimeError" in str(bad)
    assert bad.served.version == "7"


def test_a_full_queue_refuses_at_once_and_room_comes_back():
    model = SlowModel()
    served = LoadedModel("m", "7", model, {})
    runner = ModelRunner(SimpleNamespace(current=served, last_problem=None), max_tweets=100, max_queue=2)

    async def scenario():
        first = asyncio.create_task(runner.predict(["negative first"]))
        assert await asyncio.to_thread(model.busy.wait, 5)  # the model is busy: what comes now waits
        waiting = [asyncio.create_task(runner.predict([f"positive {i}"])) for i in range(2)]
        await asyncio.sleep(0)  # both reach the queue
        assert runner.waiting == 2
        with pytest.raises(QueueFull, match="2 requests already wait"):
            await runner.predict(["one too many"])
        model.release.set()
        answered = await asyncio.gather(first, *waiting)
        return answered, await runner.predict(["negative later"])

    try:
        answered, later = asyncio.run(scenario())
    finally:
        runner.stop()
    assert [labels for _, labels, _ in answered] == [["negative"], ["positive"], ["positive"]]
    assert later[1] == ["negative"] and runner.waiting == 0


def test_without_a_champion_every_request_gets_no_champion():
    runner = runner_with(None)
    try:
        with pytest.raises(NoChampionError, match="no champion yet"):
            asyncio.run(runner.predict(["hello"]))
    finally:
        runner.stop()
