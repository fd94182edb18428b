"""`tweetops reproduce VERSION`: retrain a registered model version from its lineage and compare.

Reads the version's lineage (features table + Delta version, config name + hash, git commit) and
the exact config logged with its run, retrains on the same data version with the same seed
(without registering anything), and reports whether the test metrics match within the config's
`reproduce_tolerance` (0 for the baseline: it must match exactly).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from ml import contract
from tweetops.core.settings import Settings, load_settings

COMPARED = (contract.METRIC_TEST_MACRO_F1, contract.METRIC_TEST_ACCURACY, "test_macro_precision",
            "test_macro_recall")


@dataclass
class Reproduction:
    model_name: str
    model_version: str
    config_name: str
    config_hash: str
    features_version: int
    original: dict[str, float]
    reproduced: dict[str, float]
    tolerance: float
    matches: bool
    notes: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def reproduce(version: str | int, settings: Settings | None = None, log=print) -> Reproduction:
    from ml import model_access, registry
    from ml.config import config_from_dict
    from ml.train import fit_and_evaluate, git_commit, prepare_data

    settings = settings or load_settings()
    reference = model_access.training_reference(settings, version)
    lineage, config, logged = reference.lineage, reference.config, reference.logged_config
    run = registry.client(settings).get_run(reference.run_id)
    notes = []
    if config.hash != lineage[contract.TAG_CONFIG_HASH]:
        raise ValueError(f"the config logged with run {run.info.run_id} hashes to {config.hash}, but the lineage "
                         f"tag says {lineage[contract.TAG_CONFIG_HASH]}: the run's artifacts were altered")
    sha, dirty = git_commit()
    if sha != lineage[contract.TAG_GIT_COMMIT]:
        notes.append(f"code differs: trained at commit {lineage[contract.TAG_GIT_COMMIT][:12]}, "
                     f"reproducing at {sha[:12]}{' (dirty)' if dirty else ''}")
    features_version = reference.features_version
    if lineage[contract.TAG_FEATURES_TABLE] != config.data["features_table"]:
        notes.append(f"lineage names table {lineage[contract.TAG_FEATURES_TABLE]}, the config "
                     f"{config.data['features_table']}: using the lineage's")
        config = config_from_dict(logged, overrides={"data.features_table": lineage[contract.TAG_FEATURES_TABLE]})
    log(f"reproducing {settings.model_name} version {lineage['version']}: config {config.name} ({config.hash}), "
        f"{config.data['features_table']} version {features_version}")
    sample = json.loads(run.data.tags.get("tweetops.training_sample") or "null")
    if sample and sample.get("max_rows"):  # the run's bound on the rows read: the same sample again
        settings = settings.model_copy(update=dict(train_max_rows=int(sample["max_rows"])))
    data = prepare_data(config, settings, features_version=features_version)
    fitted = fit_and_evaluate(config, data, log=log)
    original = {m: float(run.data.metrics[m]) for m in COMPARED if m in run.data.metrics}
    reproduced = {m: float(fitted.metrics[m]) for m in original}
    matches = bool(original) and all(abs(original[m] - reproduced[m]) <= config.reproduce_tolerance + 1e-12
                                     for m in original)
    return Reproduction(settings.model_name, lineage["version"], config.name, config.hash, features_version,
                        original, reproduced, config.reproduce_tolerance, matches, notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", help="the registered model version to reproduce (a number, or an alias "
                                        "such as champion)")


def run(args: argparse.Namespace) -> int:
    try:
        result = reproduce(args.version)
    except (LookupError, ValueError) as exc:
        print(f"tweetops reproduce: {exc}", file=sys.stderr)
        return 2
    print(f"\n{'metric':<22}{'original':>12}{'reproduced':>12}{'difference':>12}")
    for metric, value in result.original.items():
        print(f"{metric:<22}{value:>12.6f}{result.reproduced[metric]:>12.6f}"
              f"{result.reproduced[metric] - value:>12.2e}")
    for note in result.notes:
        print(f"note: {note}")
    verdict = "MATCH" if result.matches else "MISMATCH"
    print(f"{verdict}: version {result.model_version} (tolerance {result.tolerance:g})")
    print(json.dumps(result.as_dict()))
    return 0 if result.matches else 1
