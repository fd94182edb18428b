"""A consumer group under fire: members SIGKILLed at random while a producer writes lose and duplicate nothing."""
from __future__ import annotations

import os

import pytest

from tweetops.bench.chaos import run_chaos

pytestmark = pytest.mark.integration


def test_random_sigkills_of_group_members_while_producing_lose_and_duplicate_nothing(local_lakehouse, topic,
                                                                                     tmp_path):
    # 3 members, 6 partitions, 10 kills at random moments (seeded); bounded to stay well under 2 minutes.
    figures = run_chaos(dict(os.environ), consumers=3, partitions=6, kills=10, rate=300, seed=7,
                        drain_timeout=60, log_dir=tmp_path)
    logs = "\n".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob("consumer-*.log")))
    assert figures["kills"] == 10
    assert figures["produced"] > 3000 and figures["dead_letters"] > 0
    assert (figures["lost"], figures["duplicated"], figures["unexpected"]) == (0, 0, 0), (figures, logs)
    assert figures["tweets"] + figures["dead_letters"] == figures["produced"]
