"""`tweetops`: the one command line of the platform.

Each subcommand lives in the module that owns the concept; that module provides
`add_arguments(parser)` and `run(args) -> int`, and imports heavy libraries inside `run`
so that `tweetops --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tweetops.core.settings import SettingsError

# name -> (module, one-line help). Keep in pipeline order: it is the table of contents of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("tweetops.app.stack", "start, stop or inspect the embedded local stack"),
    "produce": ("streaming.produce", "send tweets to the topic from a JSON-lines file, stdin or the labelled corpus"),
    "ingest": ("tweetops.orchestration.ingest", "land the topic in bronze Delta tables, exactly once (dead letters kept)"),
    "gate": ("expectations.gate", "validate a day of bronze with Great Expectations: silver, quarantine, Data Docs"),
    "features": ("ml.features", "build gold_features from silver with Spark, or seed it from the labelled corpus"),
    "train": ("ml.train", "train a model variant (ml/configs) and register it in MLflow with lineage"),
    "reproduce": ("ml.reproduce", "retrain a registered model version from its lineage and compare metrics"),
    "serve": ("ml.serving", "serve the champion model over HTTP (POST /predict, /health, /model, /metrics)"),
    "explain": ("ml.explain", "say which words pushed a tweet's predicted sentiment, by the champion or a version"),
    "score": ("ml.scoring", "score an interval's silver tweets with the champion into gold_predictions"),
    "drift": ("ml.drift", "check a window of silver tweets for drift against the champion's training data"),
    "promote": ("ml.promotion", "promote the challenger if it is better, roll the champion back, or show the log"),
    "tables": ("lakehouse.listing", "list the lakehouse tables with version, rows, files and size"),
    "sql": ("lakehouse.sql", "run a read-only SQL query over the lakehouse tables (time travel with --version)"),
    "trace": ("tweetops.app.trace", "follow one tweet by id: bronze, dead letters, silver or quarantine, features, prediction"),
    "maintain": ("lakehouse.maintenance", "compact, checkpoint and vacuum the lakehouse tables (safe while ingesting)"),
    "forget": ("ml.erasure", "erase a user's (or a tweet id's) tweets from every table and its history, audited"),
    "bench": ("tweetops.bench", "run a benchmark and print its figures (last line: JSON)"),
    "demo": ("tweetops.app.demo", "run the whole story on real tweets through the embedded stack"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tweetops",
        description="TweetOps: streaming tweets to sentiment models, with Kafka, Delta, Airflow and MLflow.",
        epilog="Settings come from TWEETOPS_* environment variables; see the README's configuration reference.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except SettingsError as exc:
        print(f"tweetops: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
