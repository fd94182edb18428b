"""The drift thresholds file, the promotion policy file and the messages people read."""
from __future__ import annotations

import json

from datetime import date, datetime, timezone

import pytest

from ml import drift, promotion


def test_shipped_thresholds_and_policy_are_valid():
    config = drift.load_drift_config()
    assert set(config.checks) == set(drift.KNOWN_CHECKS)
    assert config.embeddings["enabled"] is True and config.live_quality["max_drop"] > 0
    assert config.verdict["false_alarm_rate"] == 0.05 and config.live_quality["min_rows_per_class"] >= 30
    policy = promotion.load_policy()
    assert policy.margin >= 0 and policy.behaviour_gate in ("pass", "no_regression")


def test_overrides_and_disabled_checks(tmp_path):
    path = tmp_path / "drift.yaml"
    path.write_text("checks:\n  text_length: {method: wasserstein, threshold: 0.2, enabled: false}\n"
                    "  url_share: {method: jensenshannon, threshold: 0.1}\n")
    config = drift.load_drift_config(path, {"embeddings.enabled": True, "sample_rows": 50})
    assert list(config.checks) == ["url_share"] and config.embeddings["enabled"] and config.sample_rows == 50


def test_bad_thresholds_file_names_each_problem(tmp_path):
    bad = tmp_path / "drift.yaml"
    bad.write_text("checks:\n  text_length: {method: wasserstein, threshold: -1}\n"
                   "  sarcasm: {method: x, threshold: 1}\nembeddings: {enabled: maybe}\n")
    with pytest.raises(drift.DriftConfigError) as error:
        drift.load_drift_config(bad)
    message = str(error.value)
    assert str(bad) in message and "checks.text_length.threshold=-1" in message
    assert "checks.sarcasm: unknown check" in message and "embeddings.enabled='maybe'" in message
    with pytest.raises(drift.DriftConfigError, match="does not exist"):
        drift.load_drift_config(tmp_path / "missing.yaml")


def test_bad_policy_names_the_field(tmp_path):
    bad = tmp_path / "promotion.yaml"
    bad.write_text("margin: -0.1\nbehaviour: {gate: vibes}\nrecent_window: {required: sometimes}\n")
    with pytest.raises(promotion.PolicyError) as error:
        promotion.load_policy(bad)
    message = str(error.value)
    assert "margin=-0.1" in message and "behaviour.gate='vibes'" in message and "recent_window.required" in message


def _result(drifted: bool) -> drift.DriftResult:
    return drift.DriftResult(
        date(2024, 3, 5), date(2024, 3, 6), "sentiment", "4", datetime(2024, 3, 6, tzinfo=timezone.utc), 1500, 600,
        checks=[drift.Check("mention_share", 0.449, 0.1, drifted, "jensenshannon", "tweets with an @mention: 100% -> 53%"),
                drift.Check("live_recall_positive", 0.34, 0.58, drifted, "recall (Wilson)", ""),
                drift.Check("emoji_share", 0.03, 0.1, False, "jensenshannon", "")],
        reports=["file:///tmp/reports/drift-2024-03-05-2024-03-06.html"])


def test_drift_alert_says_what_drifted_by_how_much_and_where_the_report_is(monkeypatch):
    monkeypatch.setenv("TWEETOPS_AIRFLOW_URL", "https://airflow.example")
    monkeypatch.setenv("TWEETOPS_HOME", "/tmp")
    text, blocks = drift.alert_message(_result(True).as_dict())
    assert "2024-03-05 to 2024-03-06" in text and "v4" in text
    assert "mention_share: 0.449 >= threshold 0.1 (tweets with an @mention: 100% -> 53%)" in text
    assert "live_recall_positive: 0.340 <= threshold 0.58" in text and "emoji_share" not in text
    # Links through the Airflow UI's TweetOps pages, which anyone with an Airflow login can open.
    assert "Report: https://airflow.example/tweetops/drift?start=2024-03-05&end=2024-03-06" in text
    assert "Report: https://airflow.example/tweetops/reports/drift-2024-03-05-2024-03-06.html" in text
    assert "file://" not in text and "file://" not in json.dumps(blocks) and "Retraining requested" in text
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert _result(False).drifted is False and _result(True).as_dict()["drifted_checks"] == ["mention_share",
                                                                                             "live_recall_positive"]


def _behaviour(rates: dict[str, float]) -> dict:
    thresholds = {"minimum_functionality": 0.8, "negation": 0.75, "invariance": 0.9}
    return {"checks": {name: {"pass_rate": rate, "threshold": thresholds[name], "passed": rate >= thresholds[name]}
                       for name, rate in rates.items()}}


def test_behaviour_gate_pass_is_strict_and_no_regression_tolerates_a_shared_weakness():
    champion = _behaviour({"minimum_functionality": 0.86, "negation": 0.375, "invariance": 0.9})
    same_weakness = _behaviour({"minimum_functionality": 0.93, "negation": 0.375, "invariance": 1.0})
    worse = _behaviour({"minimum_functionality": 0.29, "negation": 0.125, "invariance": 0.95})
    both = lambda challenger: {"champion": champion, "challenger": challenger}  # noqa: E731
    assert promotion._behaviour_misses(both(same_weakness), "no_regression") == []
    assert [m.split()[0] for m in promotion._behaviour_misses(both(same_weakness), "pass")] == ["negation"]
    assert [m.split()[0] for m in promotion._behaviour_misses(both(worse), "no_regression")] == [
        "minimum_functionality", "negation"]


def test_decision_messages():
    decision = promotion.Decision(promotion.REFUSE, "sentiment", "3", "2", "test split macro-F1 0.269 vs 0.682",
                                  "airflow:tweetops_promotion/run-1", datetime(2024, 3, 6, tzinfo=timezone.utc))
    assert not decision.promoted
    assert "v3 refused: v2 stays champion, v3 stays challenger" in decision.message()
    text, _ = promotion.alert_message(decision)
    assert text.startswith(":no_entry: Challenger refused: sentiment v3 (champion was v2)")
    assert "test split macro-F1 0.269 vs 0.682" in text and "airflow:tweetops_promotion/run-1" in text
    assert promotion.default_actor().startswith("user:")
