"""`tweetops bench NAME`: run one benchmark; it prints figures for people, then one JSON line.

Each benchmark is a module with `add_arguments(parser)` and `measure(args) -> dict` (the figures).
`make bench` runs them all and writes a Markdown report under .tweetops/bench/.
"""
from __future__ import annotations

import argparse
import importlib
import json

# name -> module. A benchmark is registered here once its module exists.
BENCHMARKS: dict[str, str] = {
    "ingest": "tweetops.bench.ingest",
    "chaos": "tweetops.bench.chaos",
    "quality-gate": "tweetops.bench.gate",
    "text": "tweetops.bench.text",
    "scale": "tweetops.bench.scale",
    "sql": "tweetops.bench.sql",
    "spark": "tweetops.bench.spark",
    "train": "tweetops.bench.train",
    "serve": "tweetops.bench.serve",
    "drift": "tweetops.bench.drift",
    "freshness": "tweetops.bench.freshness",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        module.add_arguments(command)
        command.set_defaults(_benchmark=module)


def run(args: argparse.Namespace) -> int:
    figures = args._benchmark.measure(args)
    print(json.dumps({"benchmark": args.benchmark, **figures}, default=str))
    return 0
