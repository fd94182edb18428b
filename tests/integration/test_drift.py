"""Drift checks on real tweets against a real champion (trained on airline tweets, registered on a
real MLflow server): unseen airline tweets do not drift, tweets about other topics do; scores land
in gold_drift_metrics (a rerun replaces them) and the Evidently report on disk."""
from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from tests.integration.drift_data import (FAST_CONFIG, airline, other_topics, write_features,
                                          write_predictions, write_silver)

pytestmark = pytest.mark.integration

TRAINED_ON, SAME_TOPIC_DAY, OTHER_TOPICS_DAY, SCORED_DAY, TINY_DAY = (
    date(2024, 2, 1), date(2024, 3, 1), date(2024, 3, 5), date(2024, 3, 8), date(2024, 3, 9))
TRAINING_DAY = TRAINED_ON
DESCRIPTOR_CHECKS = {"text_length", "oov_share", "url_share", "mention_share", "hashtag_share", "emoji_share",
                     "predicted_label", "text_content"}
LIVE_CHECKS = {"live_recall_negative", "live_recall_neutral", "live_recall_positive", "live_macro_f1"}
EMPTY_DAY = date(2024, 3, 20)


@pytest.fixture(scope="module")
def airline_champion(mlflow_server, tmp_path_factory):
    """A champion trained on 3,000 airline tweets; silver holds three windows of tweets it never saw."""
    from ml.train import train_model
    from tweetops.core.settings import load_settings

    home = tmp_path_factory.mktemp("drift")
    settings = load_settings({"TWEETOPS_HOME": str(home / "home"), "TWEETOPS_LAKEHOUSE_URI": str(home / "lake"),
                              "TWEETOPS_MLFLOW_TRACKING_URI": mlflow_server,
                              "TWEETOPS_MODEL_NAME": f"drift-{uuid.uuid4().hex[:8]}"})
    write_features(settings, airline().iloc[:3000], TRAINED_ON)
    result = train_model(str(FAST_CONFIG), settings, log=lambda *a: None)
    assert result.alias == "champion"
    write_silver(settings, airline().iloc[3000:4500], SAME_TOPIC_DAY)      # the other half: same topic
    write_silver(settings, other_topics().iloc[:1500], OTHER_TOPICS_DAY)   # new topics
    write_silver(settings, airline().iloc[4500:5000], SCORED_DAY)
    write_silver(settings, airline().iloc[5000:5020], TINY_DAY)
    write_silver(settings, airline().iloc[:3000], TRAINING_DAY)             # what it was trained on
    return settings, result


@pytest.fixture(scope="module")
def config():
    from ml.drift import load_drift_config

    return load_drift_config(None, {"embeddings.enabled": False, "sample_rows": 1500})


def drift_rows(settings, day: date):
    from tweetops.core.tables import open_table

    rows = open_table("gold_drift_metrics", settings).to_pandas()
    return rows[rows["window_start"].dt.date == day].set_index("check")


def test_unseen_tweets_of_the_same_topic_do_not_drift(airline_champion, config):
    from ml.drift import check_drift

    settings, champion = airline_champion
    result = check_drift(SAME_TOPIC_DAY, SAME_TOPIC_DAY + timedelta(days=1), settings, config)

    assert not result.drifted, result.summary()
    assert {c.name for c in result.checks} == DESCRIPTOR_CHECKS | LIVE_CHECKS
    assert result.current_rows == 1500 and result.reference_rows > 400
    assert result.model_version == champion.model_version
    rows = drift_rows(settings, SAME_TOPIC_DAY)
    assert set(rows.index) == DESCRIPTOR_CHECKS | LIVE_CHECKS
    assert not rows["drifted"].any() and rows.drop(index="live_macro_f1")["threshold"].notna().all()
    report = Path(urlparse(rows.loc["text_content", "report_uri"]).path)
    assert report.is_file() and report.parent == settings.home / "reports"


def test_tweets_about_other_topics_drift_and_a_rerun_replaces_the_scores(airline_champion, config):
    from ml.drift import alert_message, check_drift

    settings, _ = airline_champion
    result = check_drift(OTHER_TOPICS_DAY, OTHER_TOPICS_DAY + timedelta(days=1), settings, config)

    drifted = {c.name for c in result.drifted_checks}
    assert {"text_content", "oov_share", "mention_share", "hashtag_share"} <= drifted, result.summary()
    assert any(name.startswith("live_recall_") for name in drifted), result.summary()   # the model is wrong there
    checks = {c.name: c for c in result.checks}
    assert checks["text_content"].value > 0.85            # a classifier tells the topics apart
    assert "@mention" in checks["mention_share"].detail    # says what moved, for people
    assert "no tweet of the window is about a topic the champion knows" in result.note

    text, blocks = alert_message(result)
    assert "mention_share" in text and "/tweetops/reports/drift-" in text and "file://" not in text and "Retraining requested" in text

    before = drift_rows(settings, OTHER_TOPICS_DAY)
    check_drift(OTHER_TOPICS_DAY, OTHER_TOPICS_DAY + timedelta(days=1), settings, config)
    after = drift_rows(settings, OTHER_TOPICS_DAY)
    assert len(after) == len(before) == len(result.checks)          # replaced, not appended
    assert after["drifted"].to_dict() == before["drifted"].to_dict()


def test_predictions_come_from_gold_predictions_when_scoring_made_them(airline_champion, config):
    """The scoring DAG's labels are used as they are: here it (pretends it) said 'positive' to all."""
    from ml.drift import check_drift

    settings, champion = airline_champion
    write_predictions(settings, airline().iloc[4500:5000], SCORED_DAY, "positive", champion.model_version)
    result = check_drift(SCORED_DAY, SCORED_DAY + timedelta(days=1), settings, config)

    checks = {c.name: c for c in result.checks}
    assert checks["predicted_label"].drifted and "positive" in checks["predicted_label"].detail
    assert not checks["mention_share"].drifted and not checks["text_content"].drifted


def test_tweets_the_champion_was_fitted_on_are_left_out(airline_champion, config):
    """Scoring the very days a champion was trained on must not look like drift (overconfident
    predictions on its own training tweets): only its held-out tweets of the window are compared."""
    from ml.drift import check_drift

    settings, _ = airline_champion
    result = check_drift(TRAINING_DAY, TRAINING_DAY + timedelta(days=1), settings, config)

    assert "were left out: the champion was fitted on them" in result.note
    assert 400 < result.current_rows < 800              # the validation and test tweets (~20%)
    assert not result.drifted, result.summary()


def test_a_window_with_too_few_tweets_gets_no_verdict(airline_champion, config):
    from ml.drift import check_drift

    settings, _ = airline_champion
    result = check_drift(TINY_DAY, TINY_DAY + timedelta(days=1), settings, config)

    assert not result.drifted and not result.has_verdict and "only 20 unseen silver tweets" in result.note
    assert drift_rows(settings, TINY_DAY).loc["current_rows", "value"] == 20


def test_an_empty_window_is_said_plainly_and_writes_nothing(airline_champion, config, monkeypatch, capsys):
    from tweetops.core.tables import open_table
    from ml.drift import EmptyWindowError, check_drift
    from tweetops.cli import main

    settings, _ = airline_champion
    rows_before = open_table("gold_drift_metrics", settings).to_pandas()
    with pytest.raises(EmptyWindowError, match=r"no silver tweets with event_date in \[2024-03-20, 2024-03-21\)"):
        check_drift(EMPTY_DAY, EMPTY_DAY + timedelta(days=1), settings, config)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["drift", "--start", EMPTY_DAY.isoformat(), "--no-embeddings"]) == 4
    assert "no silver tweets" in capsys.readouterr().err
    assert main(["drift", "--start", TINY_DAY.isoformat(), "--no-embeddings"]) == 4   # too few: no verdict
    assert "no drift verdict" in capsys.readouterr().out
    rows_after = open_table("gold_drift_metrics", settings).to_pandas()
    assert len(rows_after) == len(rows_before) and EMPTY_DAY not in set(rows_after["window_start"].dt.date)
    with pytest.raises(SystemExit):
        main(["drift", "--start", "20/03/2024"])
    assert "'20/03/2024': expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_after_a_retrain_on_mixed_topics_same_topic_windows_do_not_drift(mlflow_server, tmp_path, config):
    """The champion's reference now mixes topics (their @mention and #hashtag shares differ): a window
    of ordinary airline tweets is compared with the reference's airline rows, so it does not drift."""
    from ml.drift import check_drift
    from ml.train import train_model
    from tweetops.core.settings import load_settings

    settings = load_settings({"TWEETOPS_HOME": str(tmp_path / "home"), "TWEETOPS_LAKEHOUSE_URI": str(tmp_path / "lake"),
                              "TWEETOPS_MLFLOW_TRACKING_URI": mlflow_server,
                              "TWEETOPS_MODEL_NAME": f"mixed-{uuid.uuid4().hex[:8]}"})
    write_features(settings, pd.concat([airline().iloc[:3000], other_topics().iloc[:3000]]), TRAINED_ON)
    assert train_model(str(FAST_CONFIG), settings, log=lambda *a: None).alias == "champion"
    for offset, (first, last) in enumerate([(3000, 3600), (3600, 4800), (4800, 5000)]):
        day = SAME_TOPIC_DAY + timedelta(days=offset)
        write_silver(settings, airline().iloc[first:last], day)
        result = check_drift(day, day + timedelta(days=1), settings, config)
        assert not result.drifted, result.summary()
        assert "matched to the window's topics (airline 100%)" in result.note
    new_day = SAME_TOPIC_DAY + timedelta(days=5)
    write_silver(settings, other_topics().iloc[3000:4000], new_day)   # unseen tweets of topics it knows
    assert not check_drift(new_day, new_day + timedelta(days=1), settings, config).drifted


def test_embeddings_drift_between_topics_on_a_small_sample(airline_champion):
    from ml.drift import check_drift, load_drift_config

    settings, _ = airline_champion
    overrides = {"checks": {}, "sample_rows": 80, "min_current_rows": 50, "embeddings.enabled": True,
                 "embeddings.sample_rows": 80, "live_quality.min_rows_per_class": 10**6}
    window = (OTHER_TOPICS_DAY, OTHER_TOPICS_DAY + timedelta(days=1))
    score_only = check_drift(*window, settings, load_drift_config(None, overrides), write=False)
    with_plot = check_drift(*window, settings, load_drift_config(None, {**overrides, "embeddings.plot": True}))

    assert [c.name for c in score_only.checks] == ["embeddings"]
    check = score_only.checks[0]
    assert check.drifted and check.value > 0.7, score_only.summary()   # 0.5: indistinguishable
    # Evidently's EmbeddingsDrift report gives the very same score, plus its plot.
    assert with_plot.checks[0].value == pytest.approx(check.value)
    assert Path(urlparse(with_plot.checks[0].report_uri).path).name == "drift-2024-03-05-2024-03-06-embeddings.html"


def test_cli_prints_the_verdict_and_exits_1_on_drift(airline_champion, monkeypatch, capsys):
    from tweetops.cli import main

    settings, _ = airline_champion
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["drift", "--start", OTHER_TOPICS_DAY.isoformat(), "--no-embeddings"]) == 1
    out = capsys.readouterr().out
    assert "DRIFT: silver tweets 2024-03-05 to 2024-03-06" in out and "stored in gold_drift_metrics" in out
    assert main(["drift", "--start", "2024-03-05", "--end", "2024-03-01"]) == 2
    assert "--end 2024-03-01 must be after --start 2024-03-05" in capsys.readouterr().out


def test_the_drift_dag_skips_an_empty_window_and_writes_nothing(airline_champion, airflow_db, monkeypatch):
    """An empty day is not a failure of the drift DAG (the quality gate alerts on missing data): the
    task skips, saying why, and no alert or retrain request follows."""
    from airflow.dag_processing.dagbag import DagBag

    from tweetops.core.tables import ensure_table

    settings, _ = airline_champion
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    rows_before = len(ensure_table("gold_drift_metrics", settings).to_pandas())
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "drift.py"))
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["tweetops_drift"].test(run_conf={"start": EMPTY_DAY.isoformat()})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and states["check_drift_in_window"] == "skipped", states
    assert states["alert_drift"] == states["request_retraining"] == "skipped"
    assert len(ensure_table("gold_drift_metrics", settings).to_pandas()) == rows_before
