"""The latest drift scores as a Prometheus gauge, so Grafana can chart drift next to traffic.

Drift checks run as short Airflow tasks that Prometheus cannot scrape; their scores land in
`gold_drift_metrics`. The prediction API (a long-lived process Prometheus already scrapes)
publishes the newest score of each check from that table, re-read at most once a minute.
"""
from __future__ import annotations

import logging
import threading
import time

from tweetops.core.settings import Settings

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0


class DriftScoreGauge:
    """`tweetops_drift_score{check=...}` and `tweetops_drift_detected{check=...}` from the newest rows."""

    def __init__(self, settings: Settings, registry, refresh_seconds: float = REFRESH_SECONDS):
        from prometheus_client import Gauge

        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.score = Gauge("tweetops_drift_score", "Newest score of each drift or quality check",
                           ["check"], registry=registry)
        self.detected = Gauge("tweetops_drift_detected", "1 when the newest run of the check crossed its threshold",
                              ["check"], registry=registry)
        self._lock = threading.Lock()
        self._read_at = float("-inf")

    def refresh(self) -> None:
        """Re-read the table when the last read is older than `refresh_seconds`; never raises."""
        with self._lock:
            if time.monotonic() - self._read_at < self.refresh_seconds:
                return
            self._read_at = time.monotonic()
            try:
                latest = latest_scores(self.settings)
            except Exception as error:  # no table yet, storage down: keep the last values
                log.debug("drift scores not refreshed: %s", error)
                return
        for check, (value, drifted) in latest.items():
            if value is not None:
                self.score.labels(check=check).set(value)
            self.detected.labels(check=check).set(1.0 if drifted else 0.0)


def latest_scores(settings: Settings) -> dict[str, tuple[float | None, bool]]:
    """check -> (value, drifted) of the newest row of each check in gold_drift_metrics."""
    from tweetops.core.tables import open_table

    rows = open_table("gold_drift_metrics", settings).to_pyarrow_table(
        columns=["checked_at", "check", "value", "drifted"]).to_pylist()
    latest: dict[str, dict] = {}
    for row in rows:
        seen = latest.get(row["check"])
        if seen is None or row["checked_at"] > seen["checked_at"]:
            latest[row["check"]] = row
    return {check: (row["value"], bool(row["drifted"])) for check, row in latest.items()}
