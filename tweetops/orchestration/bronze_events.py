"""Tell Airflow that bronze_tweets gained commits: the quality gate DAG runs on this asset event.

The consumer calls `landed(version)` after each bronze commit and `tick()` on every loop. At most one
event per `interval` seconds is posted (TWEETOPS_BRONZE_EVENT_INTERVAL_S, default 15), through the
Airflow REST API (`POST /api/v2/assets/events`), from a background thread: a slow or absent Airflow
never slows ingestion. An event that could not be posted is retried on a later tick, so the last
batch before a quiet period still triggers a run. The event's extra names the bronze versions it
covers, which the Airflow UI shows on the run it triggered.
"""
from __future__ import annotations

import logging
import threading
import time

from tweetops.core.settings import Settings

log = logging.getLogger("tweetops.ingest")

class BronzeNotifier:
    """Throttled `bronze_tweets` asset events for the bronze versions landed since the last one posted."""

    def __init__(self, settings: Settings, interval: float | None = None, api=None):
        self.settings = settings
        self.interval = settings.bronze_event_interval_s if interval is None else interval
        self.posted_version: int | None = None     # the last version an event was posted for
        self.first_unposted: int | None = None
        self.latest: int | None = None
        self.last_post = 0.0
        self.posts = 0
        self._api = api          # an AirflowAPI; built on first use
        self._asset_id: int | None = None
        self._thread: threading.Thread | None = None

    def landed(self, version: int) -> None:
        if self.first_unposted is None:
            self.first_unposted = version
        self.latest = version
        self.tick()

    def tick(self) -> None:
        if self.latest is None or self.latest == self.posted_version:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        if time.monotonic() - self.last_post < self.interval:
            return
        self.last_post = time.monotonic()
        first, latest = self.first_unposted, self.latest
        self._thread = threading.Thread(target=self._post, args=(first, latest), daemon=True,
                                        name="tweetops-bronze-event")
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Post what is left (a stopping consumer's last batches), waiting at most `timeout` s."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.latest is not None and self.latest != self.posted_version:
            self.last_post = 0.0
            self.tick()
            if self._thread is not None:
                self._thread.join(timeout)

    def _post(self, first: int, latest: int) -> None:
        from tweetops.orchestration.assets import BRONZE_TWEETS
        from tweetops.orchestration.airflow_api import AirflowAPI

        try:
            if self._api is None:
                self._api = AirflowAPI(self.settings)
            if self._asset_id is None:
                self._asset_id = self._api.asset_id(BRONZE_TWEETS.uri)
            self._api.post_asset_event(self._asset_id, {"bronze_versions": f"{first}..{latest}",
                                                        "bronze_from": first, "bronze_to": latest})
        except Exception as exc:  # noqa: BLE001 - Airflow down or not ready: the next tick retries
            self._api = None if "401" in str(exc) else self._api   # a new token next time
            log.warning("could not tell Airflow about bronze v%s..v%s (retrying in %.0f s): %s",
                        first, latest, self.interval, exc)
            return
        self.posted_version, self.posts = latest, self.posts + 1
        if self.first_unposted == first:
            self.first_unposted = None if self.latest == latest else latest + 1
        log.info("posted a bronze_tweets asset event for bronze v%s..v%s", first, latest)
