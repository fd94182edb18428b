"""The API's /metrics publishes the newest score of each drift check from gold_drift_metrics."""
from datetime import date, datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest

from ml.drift import Check, DriftResult, write_drift_metrics
from ml.drift_metrics import DriftScoreGauge, latest_scores


def _result(day: int, oov: float, drifted: bool) -> DriftResult:
    return DriftResult(window_start=date(2026, 1, day), window_end=date(2026, 1, day + 1), model_name="m",
                       model_version="1", checked_at=datetime(2026, 1, day + 1, tzinfo=timezone.utc),
                       current_rows=10, reference_rows=10,
                       checks=[Check("oov_share", oov, 0.5, drifted, "wasserstein"),
                               Check("predicted_label", 0.1, 0.2, False, "psi")])


def test_gauge_shows_the_newest_row_of_each_check(local_lakehouse):
    registry = CollectorRegistry()
    gauge = DriftScoreGauge(local_lakehouse, registry, refresh_seconds=0)
    gauge.refresh()  # no table yet: nothing published, no error
    assert "tweetops_drift_score{" not in generate_latest(registry).decode()

    write_drift_metrics(_result(2, 2.25, True), local_lakehouse)
    write_drift_metrics(_result(1, 0.05, False), local_lakehouse)  # an older window, written later
    assert latest_scores(local_lakehouse)["oov_share"] == (2.25, True)

    gauge.refresh()
    text = generate_latest(registry).decode()
    assert 'tweetops_drift_score{check="oov_share"} 2.25' in text
    assert 'tweetops_drift_detected{check="oov_share"} 1.0' in text
    assert 'tweetops_drift_score{check="predicted_label"} 0.1' in text
