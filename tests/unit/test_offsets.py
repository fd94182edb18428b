"""Offsets below the log start (retention deleted them) are a counted loss, not an error."""
from __future__ import annotations

import logging

from streaming.consumer import IngestOptions, Ingestor
from streaming.offsets import lost_to_retention
from tweetops.core.settings import load_settings


def test_messages_lost_to_retention_are_those_between_the_next_offset_and_the_log_start():
    assert lost_to_retention(next_offset=10, log_start=25) == 15
    assert lost_to_retention(next_offset=0, log_start=25) == 25   # nothing landed yet
    assert lost_to_retention(next_offset=-1, log_start=25) == 25
    assert lost_to_retention(next_offset=25, log_start=25) == 0
    assert lost_to_retention(next_offset=40, log_start=25) == 0   # ahead of the log start: nothing lost
    assert lost_to_retention(next_offset=10, log_start=0) == 0


def test_the_consumer_logs_and_counts_the_loss_then_continues_at_the_log_start(caplog):
    ingestor = Ingestor(load_settings({}), IngestOptions(topic="retention-test"))

    def lost() -> float:
        return ingestor.metrics.registry.get_sample_value("tweetops_ingest_lost_to_retention_messages_total",
                                                          {"topic": "retention-test", "partition": "2"}) or 0

    before = lost()
    with caplog.at_level(logging.WARNING, logger="tweetops.ingest"):
        assert ingestor._skip_retention_gap(2, next_offset=10, log_start=25)
        assert not ingestor._skip_retention_gap(2, next_offset=25, log_start=25)
    assert lost() - before == 15
    [line] = [r.getMessage() for r in caplog.records]
    assert "retention-test[2]: offsets 10-24 were deleted by the topic's retention" in line
    assert "15 messages lost; continuing at the log start, offset 25" in line
