"""`tweetops`: the one command line of the platform.

Each subcommand lives in the module that owns the concept; that module provides
`add_arguments(parser)` and `run(args) -> int`, and imports heavy libraries inside `run`
so that `tweetops --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tweetops.settings import SettingsError

# name -> (module, one-line help). Keep in pipeline order: it is the table of contents of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("tweetops.stack", "start, stop or inspect the embedded local stack"),
    "bench": ("tweetops.bench", "run a benchmark and print its figures (last line: JSON)"),
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
