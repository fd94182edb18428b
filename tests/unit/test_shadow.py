"""Shadow and canary serving without a server: the seeded canary draw, the shadow scorer recording
both predictions with their versions, batched writes to gold_shadow_predictions, and the policy file."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from ml.model_access import LoadedModel
from ml.serving import ServingConfig
from ml.shadow import Rollout, RolloutConfig, load_rollout, shadow_summary


class KeywordModel:
    """'bad' -> negative; the challenger also calls 'fine' negative (so they disagree there)."""

    def __init__(self, strict: bool):
        self.strict = strict

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        negative = [("bad" in t) or (self.strict and "fine" in t) for t in frame["text"]]
        return pd.DataFrame({"label": ["negative" if n else "positive" for n in negative],
                             "proba_negative": [0.9 if n else 0.1 for n in negative],
                             "proba_neutral": [0.0] * len(negative),
                             "proba_positive": [0.1 if n else 0.9 for n in negative]})


def rollout_with(settings, **config) -> Rollout:
    champion = SimpleNamespace(current=LoadedModel("m", "1", KeywordModel(strict=False), {}))
    rollout = Rollout(settings, RolloutConfig(**config), champion, CollectorRegistry(), ServingConfig())
    rollout.challenger.current = LoadedModel("m", "2", KeywordModel(strict=True), {})
    return rollout


def tweet(text, id=None, label=None):
    return SimpleNamespace(text=text, id=id, label=label)


def test_canary_share_is_seeded_and_close_to_the_configured_share(local_lakehouse):
    first, second = rollout_with(local_lakehouse, canary_share=0.2, seed=7), rollout_with(local_lakehouse,
                                                                                           canary_share=0.2, seed=7)
    routes = [first.route() for _ in range(2000)]
    assert routes == [second.route() for _ in range(2000)]  # seeded: the same draw on a rerun
    assert 0.17 <= routes.count("canary") / len(routes) <= 0.23
    no_challenger = rollout_with(local_lakehouse, canary_share=0.2)
    no_challenger.challenger.current = None
    assert {no_challenger.route() for _ in range(200)} == {"champion"}
    same_version = rollout_with(local_lakehouse, canary_share=1.0)
    same_version.challenger.current = same_version.champion.current  # promoted: nothing to compare
    assert same_version.route() == "champion"


def test_shadow_records_both_predictions_and_flushes_in_batches(local_lakehouse):
    from tweetops.core.tables import open_table

    rollout = rollout_with(local_lakehouse, shadow=True, canary_share=0.0, flush_seconds=60, flush_rows=1000)
    champion = rollout.champion.current
    answered = [tweet("bad flight", "1", "negative"), tweet("fine flight", "2", "positive"), tweet("great", "3")]
    rollout.record("champion", champion, answered, ["negative", "positive", "positive"])
    rollout.record("canary", rollout.challenger.current, [tweet("fine day", "4", "negative")], ["negative"])
    rollout._score([rollout._pending.get_nowait(), rollout._pending.get_nowait()])
    with pytest.raises(LookupError):
        open_table("gold_shadow_predictions", local_lakehouse)  # not one commit per request
    rollout.flush()
    table = open_table("gold_shadow_predictions", local_lakehouse)
    assert table.version() == 1  # created, then one commit for the whole batch
    rows = {r["id"]: r for r in table.to_pyarrow_table().to_pylist()}
    assert set(rows) == {"1", "2", "3", "4"}
    assert all(r["champion_version"] == "1" and r["challenger_version"] == "2" for r in rows.values())
    assert (rows["1"]["champion_label"], rows["1"]["challenger_label"], rows["1"]["agree"]) == ("negative", "negative", True)
    assert (rows["2"]["champion_label"], rows["2"]["challenger_label"], rows["2"]["agree"]) == ("positive", "negative", False)
    assert rows["1"]["route"] == "champion" and rows["1"]["answered_by"] == "1"
    assert rows["4"]["route"] == "canary" and rows["4"]["answered_by"] == "2"
    assert rows["4"]["challenger_label"] == "negative" and rows["4"]["champion_label"] == "positive"
    [(pair, summary)] = shadow_summary(local_lakehouse).items()
    assert pair == ("1", "2") and summary["tweets"] == 4 and summary["agreed"] == 2
    assert summary["labelled"] == 3 and summary["champion_accuracy"] == pytest.approx(2 / 3)
    assert summary["challenger_accuracy"] == pytest.approx(2 / 3)  # right on 1 and 4, wrong on 2
    assert rollout.agreement._value.get() == pytest.approx(0.5)


def test_champion_answers_are_not_shadowed_without_shadow_mode(local_lakehouse):
    rollout = rollout_with(local_lakehouse, shadow=False, canary_share=0.5)
    rollout.record("champion", rollout.champion.current, [tweet("bad")], ["negative"])
    assert rollout._pending.empty()
    rollout.record("canary", rollout.challenger.current, [tweet("bad")], ["negative"])
    assert rollout._pending.qsize() == 1  # canary answers are always compared with the champion


def test_policy_file(tmp_path):
    assert load_rollout() == RolloutConfig()  # the shipped policy: everything off
    path = tmp_path / "rollout.yaml"
    path.write_text("shadow: true\ncanary_share: 0.2\n")
    assert load_rollout(path) == RolloutConfig(shadow=True, canary_share=0.2)
    path.write_text("canary_share: 1.5\n")
    with pytest.raises(ValueError, match=r"canary_share=1.5: expected a number <= 1"):
        load_rollout(path)
    path.write_text("canary: 0.2\n")
    with pytest.raises(ValueError, match="unknown fields"):
        load_rollout(path)


def test_promotion_policy_can_require_a_shadow_period(local_lakehouse):
    from ml.promotion import load_policy
    from ml.shadow import judge_shadow

    assert load_policy().shadow_min_tweets == 0 and load_policy().shadow_min_agreement is None  # off by default
    failures, passes = [], []
    judge_shadow(load_policy(overrides={"shadow.min_tweets": 1}), "1", "2", local_lakehouse, failures, passes)
    assert failures and "never shadowed" in failures[0]

    rollout = rollout_with(local_lakehouse, shadow=True)
    rollout.record("champion", rollout.champion.current,
                   [tweet("bad", "1", "negative"), tweet("fine", "2", "positive"), tweet("ok", "3")],
                   ["negative", "positive", "positive"])
    rollout._score([rollout._pending.get_nowait()])
    rollout.flush()
    strict = load_policy(overrides={"shadow.min_tweets": 10, "shadow.min_agreement": 0.9})
    failures, passes = [], []
    figures = judge_shadow(strict, "1", "2", local_lakehouse, failures, passes)
    assert figures["tweets"] == 3 and figures["agreement"] == pytest.approx(2 / 3)
    assert "3 tweets < 10" in failures[0] and "agreement 0.667 < 0.9" in failures[0]
    failures, passes = [], []
    judge_shadow(load_policy(overrides={"shadow.min_tweets": 3, "shadow.min_agreement": 0.5}), "1", "2",
                 local_lakehouse, failures, passes)
    assert not failures and "live accuracy" in passes[0]
    with pytest.raises(ValueError, match="shadow.min_tweets"):
        load_policy(overrides={"shadow.min_tweets": -1})
