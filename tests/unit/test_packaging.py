"""pyproject.toml declares what TweetOps needs, and requirements.lock (what CI installs) satisfies it."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalised(name)] = version.strip()
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [dep for group in project["optional-dependencies"].values() for dep in group]
    return [Requirement(dep) for dep in project["dependencies"] + extras]


def test_every_declared_dependency_is_pinned_in_the_lock_within_its_range():
    pins = locked()
    problems = []
    for requirement in declared():
        version = pins.get(normalised(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in requirements.lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: lock pins {version}, pyproject wants {requirement.specifier}")
    assert problems == []


def test_the_extras_split_runtime_from_test_and_dev_tools():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {normalised(Requirement(d).name) for d in project["dependencies"]}
    assert {"apache-airflow", "mlflow", "deltalake", "pyspark", "pydantic-settings"} <= runtime
    assert not runtime & {"pytest", "hypothesis", "import-linter"}
    assert "pytest" in {normalised(Requirement(d).name) for d in project["optional-dependencies"]["test"]}
    assert "import-linter" in {normalised(Requirement(d).name) for d in project["optional-dependencies"]["dev"]}
