"""`tweetops ingest`: the streaming consumer (streaming/consumer.py), optionally wired to Airflow.

With --notify-airflow the consumer posts a throttled `bronze_tweets` asset event after its bronze
commits (bronze_events.py), so the quality gate runs within seconds. The wiring lives here, in
the orchestration layer, because streaming does not know who listens to its commits.
"""
from __future__ import annotations

import argparse

from streaming import consumer

__doc__ = consumer.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    consumer.add_arguments(parser)
    parser.add_argument("--notify-airflow", action="store_true",
                        help="after bronze commits, post a bronze_tweets asset event to Airflow (at most one per "
                             "TWEETOPS_BRONZE_EVENT_INTERVAL_S, default 15): the quality gate runs on it")


def run(args: argparse.Namespace) -> int:
    from tweetops.orchestration.bronze_events import BronzeNotifier

    return consumer.run(args, notifier_factory=BronzeNotifier if args.notify_airflow else None)
