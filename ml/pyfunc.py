"""The MLflow pyfunc every registered TweetOps model is: raw tweets in, label + probabilities out.

It normalises its input with tweetops.core.text.normalize_text itself (the same function the feature job
used for training), so callers send raw text and there is no training/serving skew. The
classifier inside is either the scikit-learn pipeline (pickled with joblib) or the fine-tuned
transformer; see ml/models.py. Contract: ml/contract.py.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from ml.contract import LABELS, PREDICTION_COLUMNS, PROBA_COLUMNS

# The input schema is declared explicitly (signature()); MLflow's advice to use type hints instead is noise.
warnings.filterwarnings("ignore", message=r"Add type hints to the `predict` method")

ARTIFACT_KEY = "classifier"
INPUT_EXAMPLE = ["@united thanks, the crew was great!", "My flight got cancelled again. Worst airline ever",
                 "Flight 1234 departs at 5pm from gate B7 http://t.co/abc"]


def predict_labels(classifier, texts) -> tuple[list[str], np.ndarray]:
    """Normalise raw texts and predict: (labels, probabilities as an n x 3 array in LABELS order)."""
    from tweetops.core.text import normalize_text

    normalized = [normalize_text("" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t))
                  for t in texts]
    proba = classifier.predict_proba(normalized) if normalized else np.zeros((0, len(LABELS)))
    labels = [LABELS[i] for i in np.argmax(proba, axis=1)] if len(proba) else []
    return labels, proba


def predict_frame(classifier, texts) -> pd.DataFrame:
    """Normalise raw texts and predict: the DataFrame of ml.contract.PREDICTION_COLUMNS."""
    labels, proba = predict_labels(classifier, texts)
    out = pd.DataFrame(proba, columns=list(PROBA_COLUMNS))
    out.insert(0, "label", labels)
    return out[list(PREDICTION_COLUMNS)]


class SentimentModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: load_context loads the classifier from the model's artifacts."""

    def __init__(self, model_type: str):
        self.model_type = model_type
        self.classifier = None

    def load_context(self, context):
        from ml.models import load_classifier

        self.classifier = load_classifier(self.model_type, Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column; got columns {list(model_input.columns)}")
            texts = model_input["text"].tolist()
        elif isinstance(model_input, (list, tuple, pd.Series, np.ndarray)):
            texts = list(model_input)
        else:
            raise ValueError(f"input must be a DataFrame with a 'text' column, got {type(model_input).__name__}")
        return predict_frame(self.classifier, texts)

    def predict_texts(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """What predict answers, as (labels, probabilities), for a list of raw texts: no DataFrame in or
        out and no MLflow input-schema step (the API's fast path; `texts` must be strings)."""
        return predict_labels(self.classifier, texts)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "label"), *[ColSpec("double", c) for c in PROBA_COLUMNS]]),
    )


def pip_requirements(model_type: str) -> list[str]:
    """Explicit requirements (inferring them in this venv would add torch to every model)."""
    from importlib.metadata import version

    names = ["mlflow", "pandas", "numpy", "scikit-learn", "joblib", "ftfy", "pyyaml"]
    if model_type == "transformer":
        names += ["torch", "transformers", "safetensors", "tokenizers"]
    return [f"{name}=={version(name)}" for name in names]


def log_pyfunc(classifier, classifier_dir: Path, model_type: str):
    """Log the model to the active MLflow run; returns mlflow's ModelInfo (model_uri: models:/m-...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickle security note: models load only from our own registry
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=SentimentModel(model_type),
            artifacts={ARTIFACT_KEY: str(classifier_dir)},
            signature=signature(),
            input_example=pd.DataFrame({"text": INPUT_EXAMPLE}),
            pip_requirements=pip_requirements(model_type),
        )
