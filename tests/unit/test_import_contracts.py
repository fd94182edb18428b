"""The layers (docs/architecture.md) hold: import-linter checks the packages, an AST walk the DAGs.

A deliberately backwards import in a copy of the code must break the contract with a message that
names the two layers, or the check proves nothing.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tweetops", "streaming", "lakehouse", "expectations", "ml")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# What a DAG file may import from the project: orchestration glue and the domain layers, never
# the CLI, the app (stack, demo, UI) or the benchmarks.
DAG_FORBIDDEN = ("tweetops.cli", "tweetops.app", "tweetops.bench")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def copy_of_the_code(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_backwards_import_breaks_the_build_with_a_readable_message(tmp_path):
    root = copy_of_the_code(tmp_path)
    text = root / "tweetops" / "core" / "text.py"
    text.write_text(text.read_text() + "\n\ndef _backwards():\n    from ml.train import train_model  # core -> ml\n")
    done = lint_imports(root)
    assert done.returncode != 0
    assert "tweetops.core is not allowed to import ml" in done.stdout
    assert "tweetops.core.text -> ml.train" in done.stdout


def test_airflow_stays_out_of_the_domain(tmp_path):
    root = copy_of_the_code(tmp_path)
    scoring = root / "ml" / "scoring.py"
    scoring.write_text(scoring.read_text() + "\n\ndef _leak():\n    from airflow.sdk import get_current_context\n")
    done = lint_imports(root)
    assert done.returncode != 0
    assert "ml is not allowed to import airflow" in done.stdout


def project_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [name for name in found if name.split(".")[0] in PACKAGES]


def forbidden_in_dags(folder: Path) -> list[str]:
    return [f"{path.name} imports {name}" for path in sorted(folder.glob("*.py"))
            for name in project_imports(path) if name.startswith(DAG_FORBIDDEN)]


def test_dags_import_only_orchestration_and_the_domain():
    assert forbidden_in_dags(REPO / "dags") == []
    # and every DAG takes its defaults from the one place that sets them
    for path in sorted((REPO / "dags").glob("*.py")):
        assert "tweetops.orchestration.dag_defaults" in project_imports(path), path.name


def test_the_dag_check_catches_a_dag_that_reaches_into_the_app(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    from tweetops.app.stack import start\n")
    assert forbidden_in_dags(tmp_path) == ["bad.py imports tweetops.app.stack"]
