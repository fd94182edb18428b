"""ml.model_access without a server: batches bound each model call and every batch is contract-checked;
and it is the only model loader (no other module loads a pyfunc, defines its errors, or reaches
into another module's loader)."""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from ml.model_access import ContractError, LoadedModel, predict_batches

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tweetops", "streaming", "lakehouse", "expectations", "ml", "dags", "plugins")
MODEL_USERS = ("ml/serving.py", "ml/scoring.py", "ml/scoring_spark.py", "ml/drift.py", "ml/promotion.py",
               "ml/explain.py", "ml/shadow.py", "ml/reproduce.py", "tweetops/app/trace.py")


class CountingModel:
    """Labels a text negative when it says 'bad'; 'broken' makes it answer an unknown label."""

    def __init__(self):
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        texts = frame["text"].tolist()
        self.calls.append(len(texts))
        labels = ["mystery" if t == "broken" else "negative" if "bad" in t else "positive" for t in texts]
        return pd.DataFrame({"label": labels,
                             "proba_negative": [0.8 if label == "negative" else 0.1 for label in labels],
                             "proba_neutral": [0.1] * len(texts),
                             "proba_positive": [0.1 if label == "negative" else 0.8 for label in labels]})


def test_predict_batches_splits_the_calls_and_keeps_the_order():
    model = CountingModel()
    texts = ["bad", "good", "bad day", "fine", "so bad"]
    labels, probabilities = predict_batches(model, texts, batch_rows=2)
    assert model.calls == [2, 2, 1]
    assert labels == ["negative", "positive", "negative", "positive", "negative"]
    assert probabilities.shape == (5, 3) and probabilities[:, 0].tolist() == [0.8, 0.1, 0.8, 0.1, 0.8]


def test_predict_batches_takes_a_loaded_model_and_an_empty_list():
    model = CountingModel()
    labels, probabilities = predict_batches(LoadedModel("m", "1", model, {}), [])
    assert labels == [] and probabilities.shape == (0, 3) and model.calls == []
    assert predict_batches(LoadedModel("m", "1", model, {}), ["bad"])[0] == ["negative"]


def test_a_broken_answer_in_any_batch_is_a_contract_error():
    with pytest.raises(ContractError, match="labels"):
        predict_batches(CountingModel(), ["good", "fine", "broken"], batch_rows=2)


def _python_files():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def _loads_a_pyfunc(node: ast.AST) -> bool:
    """A call of `<...>.pyfunc.load_model(...)`."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load_model"
            and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "pyfunc")


def test_only_model_access_loads_models_and_defines_their_errors():
    loaders, definitions = [], []
    for path in _python_files():
        where = str(path.relative_to(REPO))
        if where == "ml/model_access.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _loads_a_pyfunc(node):
                loaders.append(f"{where}:{node.lineno}")
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in (
                    "NoChampionError", "ContractError", "resolve_champion", "load_champion_version", "_load_version"):
                definitions.append(f"{where}: {node.name}")
    assert loaders == [], "load models with ml.model_access.load (or .pyfunc on a Spark executor)"
    assert definitions == []


# Modules a model user must not import: promotion -> drift -> scoring -> serving was once the way
# to load a model. (drift still takes its Airflow-context parsing from ml.scoring.)
NOT_FOR_MODELS = {"ml.serving", "ml.drift", "ml.scoring", "ml.promotion"}
ALLOWED = {"ml/shadow.py": {"ml.serving"},  # the rollout runs inside the API: its watcher and runner are serving's
           "ml/drift.py": {"ml.scoring"}}


def test_model_users_import_model_access_not_each_others_loaders():
    for where in MODEL_USERS:
        imports = _imports(REPO / where)
        assert "ml.model_access" in imports, where
        forbidden = NOT_FOR_MODELS - {where[:-3].replace("/", ".")} - ALLOWED.get(where, set())
        assert not imports & forbidden, f"{where} imports {sorted(imports & forbidden)}"
