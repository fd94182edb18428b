"""One drift episode requests one retraining: the cooldown kept on a real Delta table."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def test_one_drift_episode_requests_one_retraining(local_lakehouse):
    from ml.drift import load_drift_config
    from ml.retrain_cooldown import cooldown_from_config, record_request, retraining_due

    settings = local_lakehouse
    cooldown = cooldown_from_config(load_drift_config())
    assert cooldown == timedelta(hours=24)

    requests = 0
    # Drift fires on every scoring run of the episode: every 20 minutes for 10 hours.
    for step in range(30):
        now = START + step * timedelta(minutes=20)
        due, why = retraining_due("sentiment", cooldown, now, settings)
        if due:
            record_request("sentiment", now, settings)
            requests += 1
        else:
            assert "already requested at 2026-03-01 09:00 UTC" in why
    assert requests == 1
    # Another model has episodes of its own; after the cooldown, a new episode requests again.
    assert retraining_due("other-model", cooldown, START + timedelta(hours=1), settings)[0]
    assert retraining_due("sentiment", cooldown, START + timedelta(hours=24), settings)[0]


def test_the_cooldown_is_configurable_and_checked(tmp_path):
    from ml.drift import CONFIG_FILE, DriftConfigError, load_drift_config
    from ml.retrain_cooldown import cooldown_from_config

    assert cooldown_from_config(load_drift_config(overrides={"retraining.cooldown_hours": 6})) == timedelta(hours=6)
    with pytest.raises(DriftConfigError, match="retraining.cooldown_hours"):
        load_drift_config(overrides={"retraining.cooldown_hours": -1})
    assert CONFIG_FILE.is_file()
